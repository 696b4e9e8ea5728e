"""The doc's Flask streaming example: its generator, as written but for the URL (SIM_BASE_URL and
the workflow id), iterated directly instead of being served by Flask (see README.md)."""

import json
import os

import requests


def generate():
    response = requests.post(
        f"{os.getenv('SIM_BASE_URL', 'https://sim.ai')}/api/workflows/workflow-id/execute",
        headers={
            'Content-Type': 'application/json',
            'X-API-Key': os.getenv('SIM_API_KEY')
        },
        json={
            'message': 'Generate a story',
            'stream': True,
            'selectedOutputs': ['agent1.content']
        },
        stream=True
    )

    for line in response.iter_lines():
        if line:
            decoded_line = line.decode('utf-8')
            if decoded_line.startswith('data: '):
                data = decoded_line[6:]  # Remove 'data: ' prefix

                if data == '[DONE]':
                    break

                try:
                    parsed = json.loads(data)
                    if 'chunk' in parsed:
                        yield f"data: {json.dumps(parsed)}\n\n"
                    elif parsed.get('event') == 'done':
                        yield f"data: {json.dumps(parsed)}\n\n"
                        print("Execution complete:", parsed.get('metadata'))
                except json.JSONDecodeError:
                    pass


for event in generate():
    print(event, end="")
