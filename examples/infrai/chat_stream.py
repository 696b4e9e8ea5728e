from runyard import ai

for chunk in ai.chat("Tell me a 50-word story about a curious raccoon.", stream=True):
    print(chunk.delta.content or "", end="", flush=True)
print()
