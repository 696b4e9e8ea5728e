import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

result = client.run({
    "app": "image-processor",
    "input": {
        "image": "/path/to/image.png"  # Auto-uploaded
    }
})
print(result["output"])
