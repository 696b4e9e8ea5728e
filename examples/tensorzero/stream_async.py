import asyncio

from tensorzero import AsyncTensorZeroGateway


async def run():
    async with await AsyncTensorZeroGateway.build_http(
        gateway_url="http://localhost:3000",
        # async_setup=False  # optional: skip the `await` and run `build_http` blocking
    ) as client:
        stream = await client.inference(
            model_name="openai::gpt-4o-mini",
            input={
                "messages": [{"role": "user", "content": "日本的首都是哪里？"}],
            },
            stream=True,
        )

        async for chunk in stream:
            print(chunk)


if __name__ == "__main__":
    asyncio.run(run())
