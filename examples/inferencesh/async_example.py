import os

from inferencesh import async_inference
import asyncio

async def main():
    client = async_inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

    # Async app execution
    result = await client.run({
        "app": "infsh/flux-schnell",
        "input": {"prompt": "A galaxy"}
    })
    print(result["output"])

    # Async agent
    agent = client.agent("my-org/assistant@latest")
    response = await agent.send_message("Hello!")

    # Async streaming (it re-opens the stream forever: stop after the first message)
    async for msg in agent.stream_messages():
        print(msg["content"])
        break

asyncio.run(main())
