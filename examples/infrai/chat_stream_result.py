from runyard import ai

# stream=True asks the gateway to deliver the completion incrementally.
result = ai.chat(
    "Tell me a 50-word story about a curious raccoon.",
    prefer="balanced",
    stream=True,
)
print(result.get("text") or result.get("content"))
print("request_id:", result["_metadata"].get("request_id"))
print("vendor:", result["_metadata"].get("vendor"))
