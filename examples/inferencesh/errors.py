import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

from inferencesh import RequirementsNotMetError  # the doc's RequirementsNotMetException is not in 0.36

try:
    result = client.run({"app": "needs-key", "input": {}})
except RequirementsNotMetError as e:
    print(f"Missing requirements:")
    for err in e.errors:
        print(f"  - {err.type}: {err.key}")  # items are objects in 0.36, not dicts
except RuntimeError as e:
    print(f"Error: {e}")
