"""``GET /v1/inferences`` over real HTTP: filters, cursor paging, typed errors, workspaces."""

from __future__ import annotations

import uuid

import httpx

from runyard import Client
from support.console import ADMIN_KEY, create_key
from support.gateway import GatewayProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def listing(server: GatewayProcess, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    return httpx.get(server.url + "/v1/inferences", params=params, headers=headers or ADMIN)


def test_filters_and_cursor_paging(console_server: GatewayProcess, admin: Client) -> None:
    episode = str(uuid.uuid4())
    made = [admin.ai.chat(f"page me {i}", model="gpt", episode_id=episode).inference_id for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"episode_id": episode, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = listing(console_server, **params).json()
        assert len(page["data"]) <= 2 and all("input" not in r and "output" not in r for r in page["data"])
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert seen == list(reversed(made))  # newest first, each once
    admin.feedback("thumbs_up", True, inference_id=made[0])
    rated = listing(console_server, episode_id=episode, has_feedback="true").json()["data"]
    assert [r["id"] for r in rated] == [made[0]]
    unrated = listing(console_server, episode_id=episode, has_feedback="false").json()["data"]
    assert made[0] not in [r["id"] for r in unrated] and len(unrated) == 4
    assert listing(console_server, episode_id=episode, model="gpt-fallback").json()["data"] == []
    assert len(listing(console_server, episode_id=episode, kind="chat", status="ok").json()["data"]) == 5
    future = listing(console_server, episode_id=episode, since="2999-01-01").json()["data"]
    assert future == []


def test_bad_parameters_get_typed_errors(console_server: GatewayProcess) -> None:
    for params, code in (
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "many"}, "invalid_limit"),
        ({"has_feedback": "maybe"}, "invalid_has_feedback"),
        ({"since": "yesterday"}, "invalid_time"),
        ({"model": "m" * 300}, "invalid_filter"),
    ):
        response = listing(console_server, **params)
        assert response.status_code == 400 and response.json()["error"]["code"] == code, params
    assert httpx.get(console_server.url + "/v1/inferences").status_code == 401


def test_a_store_key_lists_its_workspace_only(console_server: GatewayProcess) -> None:
    one, other = create_key(console_server, "one", "w-one"), create_key(console_server, "two", "w-two")
    with Client(base_url=console_server.url, api_key=one["key"], max_retries=0) as a:
        mine = a.ai.chat("mine", model="gpt").inference_id
    with Client(base_url=console_server.url, api_key=other["key"], max_retries=0) as b:
        theirs = b.ai.chat("theirs", model="gpt").inference_id
    ids = [r["id"] for r in listing(console_server, {"Authorization": f"Bearer {one['key']}"}).json()["data"]]
    assert mine in ids and theirs not in ids
    assert {
        r["api_key_id"] for r in listing(console_server, {"Authorization": f"Bearer {one['key']}"}).json()["data"]
    } == {one["id"]}
    everything = [r["id"] for r in listing(console_server, limit="200").json()["data"]]
    assert mine in everything and theirs in everything
