import asyncio

from speedpix import Client


async def main():
    client = Client()  # 自动从环境变量读取配置
    # 异步运行工作流
    try:
        output = await client.async_run(
            workflow_id="your_workflow_id",
            input={
                "text": "一幅美丽的山水画",
                "image": "./input.jpg",  # 本地文件路径,SDK会自动上传并转换为URL
            },
            alias_id="main",
        )
        await output["images"]["url"].async_save("async_result.png")
        print("saved async_result.png, text:", output["text"])
    except Exception as e:
        print("发生错误:", e)
        output = None


asyncio.run(main())
