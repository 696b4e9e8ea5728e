from runyard import ai

result = ai.image.generate(
    "A watercolor raccoon reading a book under a maple tree",
    size="1024x1024",
    n=1,
    prefer="balanced",
)
images = result.get("images") or result.get("data") or []
print("first url:", images[0].get("url") if images else None)
