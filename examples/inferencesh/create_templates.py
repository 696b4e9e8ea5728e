"""The agent templates the doc's template examples name, created with Runyard's own SDK
(inference.sh creates them in its web app). RUNYARD_BASE_URL: the gateway, e.g. http://127.0.0.1:8000."""

from runyard import Client

with Client() as rc:
    for name, prompt in [
        ("my-team/support-agent", "You are a friendly support agent."),
        ("my-org/assistant", "You are a helpful assistant."),
        ("my-org/researcher", "You research topics and answer briefly."),
    ]:
        template = rc.agents.create(name, {"model": "infsh/claude-sonnet-4@latest", "system_prompt": prompt})
        print("created", template["id"])
