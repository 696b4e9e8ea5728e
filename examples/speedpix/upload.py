from speedpix import Client


def upload_example():
    client = Client()

    # 1. 上传本地文件
    file = client.files.create("./input.jpg")

    # 2. 在工作流中使用文件URL
    output = client.run("your-workflow-id", {
        "input": {
            "image": file.access_url,  # 使用上传后的文件URL
            "prompt": "处理这张图片",
        },
        "alias_id": "main",
    })

    # 3. 保存结果
    if hasattr(output.get('images'), 'save'):
        output['images'].save("processed-result.png")
        print("处理后的图片已保存")


upload_example()
