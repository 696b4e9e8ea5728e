from tensorzero import TensorZeroGateway

with TensorZeroGateway.build_http(gateway_url="http://localhost:3000") as client:
    # The doc's placeholder id (all zeros) names no inference: feedback goes to a real one.
    inference = client.inference(
        model_name="openai::gpt-4o-mini",
        input={"messages": [{"role": "user", "content": "日本的首都是哪里？"}]},
    )
    response = client.feedback(
        metric_name="thumbs_up",
        inference_id=inference.inference_id,
        value=True,  # 👍
    )

    print(response)
