import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

from pathlib import Path

agent = client.agent({"core_app": {"ref": "infsh/gpt-4o-mini@latest"}})
image_png = str(Path(__file__).with_name("image.png"))

# From file path
with open(image_png, "rb") as f:
    response = agent.send_message(
        "What's in this image?",
        files=[f.read()]
    )
print(agent.get_chat()["output"])

# From base64
import base64

data_uri = "data:image/png;base64," + base64.b64encode(Path(image_png).read_bytes()).decode()
response = agent.send_message(
    "Analyze this",
    files=[data_uri]
)
print(agent.get_chat()["output"])
