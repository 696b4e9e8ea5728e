import os

from inferencesh import inference

# The doc uses inference(api_key=...): Runyard also needs base_url (http://HOST:PORT/inferencesh).
client = inference(api_key=os.environ["INFERENCE_API_KEY"], base_url=os.environ["INFERENCE_BASE_URL"])

from inferencesh import string, tool
from inferencesh.agent import pending_approvals


def prompt_user(question):  # the doc leaves this to you
    print(question, "-> no")
    return False


delete_files = tool("delete_temp_files").describe("Delete temp files").param("path", string("Path")).require_approval().build()
agent = client.agent({"core_app": {"ref": "infsh/claude-sonnet-4@latest"}, "tools": [delete_files]})

# The doc's handle_tool reads call.requires_approval, which 0.36's ToolCallInfo lacks, and
# on_tool_call is never called for a call awaiting approval: read them from the chat instead.
agent.send_message("Delete all temp files")
for call in pending_approvals(agent.get_chat()):
    if prompt_user(f"Allow {call.tool_name}?"):
        agent.approve_tool(call.tool_invocation_id)
    else:
        agent.submit_tool_result(call.tool_invocation_id, {"error": "Denied by user"})
chat = agent.get_chat()
print(chat["status"], "|", chat["output"])
