import os

from simstudio import SimStudioClient

# Using context manager to automatically close the session
with SimStudioClient(api_key=os.getenv("SIM_API_KEY"), base_url=os.getenv("SIM_BASE_URL", "https://sim.ai")) as client:
    result = client.execute_workflow("workflow-id")
    print("Result:", result)
# Session is automatically closed here
