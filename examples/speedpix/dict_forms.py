import speedpix
from speedpix import Client

# 方式1:最简单(推荐新手)
output = speedpix.run("workflow-id", {
    "input": {
        "prompt": "test",
        "image": "./input.jpg",  # 文件路径会自动上传并转换
    }
})
print("方式1:", output["prompt"])

# 方式2:实例化客户端
client = Client()  # 自动从环境变量读取配置
output = client.run("workflow-id", {
    "input": {
        "prompt": "test",
        "reference": "/path/to/ref.png",  # 支持绝对路径
    }
})
print("方式2:", output["prompt"], output["reference"])
