import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

from inferencesh import (
    agent_tool, app_tool, array, boolean, enum_of, integer, number, obj, optional, string, tool, webhook_tool
)

name = string("User's name")
age = integer("Age in years")
score = number("Score 0-1")
active = boolean("Is active")
priority = enum_of(["low", "medium", "high"], "Priority")
tags = array(string("Tag"), "List of tags")
address = obj({
    "street": string("Street"),
    "city": string("City"),
    "zip": optional(string("ZIP"))
}, "Address")

greet = (
    tool("greet")
    .display("Greet User")
    .describe("Greets a user by name")
    .param("name", string("Name to greet"))
    .require_approval()
    .build()
)

generate = (
    app_tool("generate_image", "infsh/flux-schnell@latest")
    .describe("Generate an image from text")
    .param("prompt", string("Image description"))
    .setup({"model": "schnell"})
    .input({"steps": 20})
    .require_approval()
    .build()
)

researcher = (
    agent_tool("research", "my-org/researcher@v1")
    .describe("Research a topic")
    .param("topic", string("Topic to research"))
    .build()
)

notify = (
    webhook_tool("slack", "https://hooks.slack.com/...")
    .describe("Send Slack notification")
    .secret("SLACK_SECRET")
    .param("channel", string("Channel"))
    .param("message", string("Message"))
    .build()
)

# All five kinds in one agent: Runyard checks the config when the chat starts.
agent = client.agent({
    "core_app": {"ref": "infsh/claude-sonnet-4@latest"},
    "tools": [greet, generate, researcher, notify],
})
agent.send_message("Hi")
print(agent.get_chat()["output"])
