from speedpix import Client

# 初始化客户端(自动从环境变量读取配置)
client = Client()
# 运行 AI 工作流
try:
    output = client.run(
        workflow_id="your_workflow_id",
        input={
            "text": "一幅美丽的山水画",
            "image": "./input.jpg",  # 本地文件路径,SDK会自动上传并转换为URL
        },
        alias_id="main",  # 版本别名,默认为 "main"
        # return_temp_files=True, # 是否返回临时文件
    )
    output["images"]["url"].save("output.png")  # 保存输出图片
    # output['subject_image']['url'].save("subject_image.png") # 保存输出图片
    # output['mask_image']['url'].save("mask_image.png") # 保存输出图片
except Exception as e:
    print("发生错误:", e)
    output = None

print("saved output.png:", output is not None and open("output.png", "rb").read() == open("input.jpg", "rb").read())
