import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

for update in client.run({
    "app": "google/veo-3-1-fast",
    "input": {"prompt": "Ocean waves at sunset"}
}, stream=True):
    print(f"Status: {update['status']}")
    if update.get("logs"):
        print(update["logs"][-1])
