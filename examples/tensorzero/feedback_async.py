import asyncio

from tensorzero import AsyncTensorZeroGateway


async def run():
    async with await AsyncTensorZeroGateway.build_http(gateway_url="http://localhost:3000") as client:
        inference = await client.inference(
            model_name="openai::gpt-4o-mini",
            input={"messages": [{"role": "user", "content": "日本的首都是哪里？"}]},
        )
        response = await client.feedback(
            metric_name="thumbs_up",
            inference_id=inference.inference_id,
            value=True,  # 👍
        )

        print(response)


if __name__ == "__main__":
    asyncio.run(run())
