from runyard import ai

# The signature's knobs, as the reference lists them (routing picks the model: no model named).
r = ai.chat(
    "What is the capital of Japan?",
    task="general",
    prefer="cheapest",
    cache_strategy="infrai",
    max_cost_multiplier=1.5,
    timeout_seconds=60,
    idempotency_key="capital-of-japan-1",
)
print(r["content"])
print("vendor:", r["_metadata"].get("vendor"), "| model:", r["_metadata"].get("model"))
