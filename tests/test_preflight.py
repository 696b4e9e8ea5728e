"""What a workflow or agent names is checked when it is validated, published or created, not when it runs;
``jobs.wait`` says ``success`` as its status does. Embedded gateways over one SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import Client
from runyard.config import parse_config
from runyard.errors import RunyardError
from runyard.workflows import Workflow


def gateway(root: Path, modules: list[str]) -> Client:
    config = parse_config(
        {
            "storage": {"url": f"sqlite+aiosqlite:///{root / 'shared.db'}", "flush_interval_ms": 20},
            "files": {"dir": str(root / "files")},
            "apps": {"modules": modules},
        }
    )
    return Client.embedded(config=config, max_retries=0)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with gateway(tmp_path, ["apps.flows", "apps.demo"]) as c:
        yield c


def refused(client: Client, workflow: Workflow) -> list[dict[str, str]]:
    client.workflows.save(workflow.to_dict())
    with pytest.raises(RunyardError) as caught:
        client.workflows.publish(workflow.name)
    assert caught.value.status == 422 and caught.value.code == "invalid_workflow"
    details = caught.value.details
    assert isinstance(details, list)
    return details


def test_publish_refuses_what_cannot_resolve(client: Client) -> None:
    cases = [
        (Workflow("pf/module").function("f", "not_listed.mod:fn", x=1), "function_not_allowed"),
        (Workflow("pf/attr").function("f", "apps.flows:no_such_fn", x=1), "function_not_found"),
        (Workflow("pf/model").llm("reply", model="gpt", prompt="hi"), "model_not_found"),
        (Workflow("pf/provider").llm("reply", model="nope::x", prompt="hi"), "provider_not_found"),
        (Workflow("pf/app").app("a", "acme/not-an-app"), "app_not_found"),
        (Workflow("pf/agent").agent("ag", "acme/no-agent@latest", message="hi"), "agent_not_found"),
    ]
    for workflow, code in cases:
        problems = refused(client, workflow)
        assert [p["code"] for p in problems] == [code], (workflow.name, problems)
    fine = Workflow("pf/fine").function("f", "apps.flows:square", x=3).llm("r", model="dummy::echo", prompt="hi")
    client.workflows.save(fine.to_dict())
    assert client.workflows.publish("pf/fine")["published_version"] == 1
    assert client.workflows.validate("pf/fine@main")["valid"] is True


def test_validate_rechecks_against_the_gateway_as_configured(tmp_path: Path) -> None:
    """Published where ``apps.flows`` was allowed; validated by a gateway whose config dropped it."""
    flow = Workflow("pf/moved").function("f", "apps.flows:square", x=3)
    with gateway(tmp_path, ["apps.flows"]) as allowed:
        allowed.workflows.save(flow.to_dict())
        allowed.workflows.publish("pf/moved")
        assert allowed.workflows.validate("pf/moved@main")["valid"] is True
    with gateway(tmp_path, []) as narrowed:
        check = narrowed.workflows.validate("pf/moved@main")
        assert check["valid"] is False
        assert [(p["block"], p["code"]) for p in check["problems"]] == [("f", "function_not_allowed")]
        run = narrowed.workflows.execute("pf/moved", {})
        assert run["success"] is False and run["error"]["code"] == "function_not_allowed"  # as validate said


def test_agent_template_model_checked_at_create(client: Client) -> None:
    with pytest.raises(RunyardError) as caught:
        client.agents.create("pf/ops", {"model": "gpt", "system_prompt": "hi"})
    assert caught.value.status == 422 and caught.value.code == "model_not_found" and "gpt" in caught.value.message
    made = client.agents.create("pf/ops", {"model": "dummy::echo", "system_prompt": "hi"})
    assert made["version"] == 1
    reply = client.agent("pf/ops@latest").send_message("hello")
    assert reply.text == "echo: hello"


def test_jobs_wait_success_follows_status(client: Client) -> None:
    client.workflows.save(Workflow("pf/boom").function("f", "apps.flows:boom").to_dict())
    client.workflows.publish("pf/boom")
    client.workflows.save(Workflow("pf/ok").function("f", "apps.flows:square", x=4).to_dict())
    client.workflows.publish("pf/ok")
    failed = client.jobs.wait(client.workflows.execute("pf/boom", {}, async_execution=True)["task_id"], timeout=60)
    assert failed["status"] == "failed" and failed["success"] is False
    done = client.jobs.wait(client.workflows.execute("pf/ok", {}, async_execution=True)["task_id"], timeout=60)
    assert done["status"] == "completed" and done["success"] is True
