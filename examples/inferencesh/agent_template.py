import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

agent = client.agent("my-team/support-agent@latest")

# Send message
response = agent.send_message("Hello!")
print(agent.get_chat()["output"])  # the doc's response.text: send_message returns a dict (see README)

# Multi-turn conversation
response = agent.send_message("Tell me more")

# Reset conversation
agent.reset()
agent.send_message("Hello again!")

# Get chat history
chat = agent.get_chat()
print(len(chat["messages"]), "messages:", chat["output"])
