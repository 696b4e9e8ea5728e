from runyard import ai

r = ai.vision(prompt="What's in this image?",
              images=[{"url": "https://example.com/photo.jpg"}])
print(r.get("content") or r.get("text"))
