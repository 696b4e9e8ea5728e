import speedpix

try:
    # 使用全局函数(需要先设置环境变量)
    output = speedpix.run(
        workflow_id="your_workflow_id",
        input={
            "text": "一幅美丽的山水画",
            "image": "./input.jpg",  # 本地文件路径,SDK会自动上传并转换为URL
        },
        alias_id="main",
    )
    output["images"]["url"].save("global_output.png")  # 保存输出图片
    print("saved global_output.png, text:", output["text"])
except Exception as e:
    print("发生错误:", e)
    output = None
