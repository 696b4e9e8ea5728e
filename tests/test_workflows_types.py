"""Static types of workflow references, checked on save: each block kind's output shape, unknown
fields, access into scalars, ``map.over``/``http.url`` types and input defaults (each problem naming
the block that holds the bad reference), a valid counterpart for every check, and the 422 over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runyard.workflows import Workflow, validate_definition
from runyard.workflows.typecheck import ANY, Shape, block_shape
from support.gateway import GatewayProcess
from support.tasks_e2e import app_env

START: dict[str, Any] = {
    "id": "start",
    "kind": "input",
    "inputs": {"name": "string", "count": {"type": "number", "default": 2}, "xs": "array", "doc": "file"},
}


def problems(*blocks: dict[str, Any]) -> list[dict[str, str]]:
    return validate_definition({"name": "t/types", "blocks": [START, *blocks]})[1]


def codes(*blocks: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["block"], p["code"]) for p in problems(*blocks)}


def out(**outputs: str) -> dict[str, Any]:
    return {"id": "out", "kind": "output", "outputs": outputs}


def fetch(**fields: Any) -> dict[str, Any]:
    return {"id": "fetch", "kind": "http", "url": "https://example.com/x", **fields}


def ask(**fields: Any) -> dict[str, Any]:
    return {"id": "ask", "kind": "llm", "model": "gpt", "prompt": "hi", **fields}


def test_shapes_follow_what_each_kind_returns_at_run_time() -> None:
    llm = block_shape(ask())
    assert llm.fields is not None and set(llm.fields) == {"content", "model", "tokens"}
    json_llm = block_shape(ask(response_format={"type": "json_object"}))
    assert json_llm.fields is not None and json_llm.fields["json"] == ANY
    assert block_shape({"id": "m", "kind": "map"}).fields == {"results": Shape("array"), "count": Shape("integer")}
    assert block_shape(fetch()).fields == {"status": Shape("integer"), "headers": Shape("object"), "body": ANY}
    assert block_shape({"id": "c", "kind": "condition"}).fields == {
        "result": Shape("boolean"),
        "selected": Shape("array"),
    }
    router = block_shape({"id": "r", "kind": "router"})
    assert router.fields is not None and set(router.fields) == {"route", "selected"}
    start = block_shape(START).fields
    assert start is not None and start["count"] == Shape("number") and start["doc"] == Shape("file")
    assert block_shape({"id": "s", "kind": "input"}) == Shape("object")  # nothing declared: open
    assert block_shape({"id": "f", "kind": "function", "function": "m:f"}) == Shape("object")  # open
    agent = block_shape({"id": "g", "kind": "agent", "agent": "x/y", "message": "m"})
    assert agent.fields is not None and set(agent.fields) == {"content", "chat_id", "steps"}
    declared = block_shape({"id": "f", "kind": "function", "function": "m:f", "outputs": {"n": "integer"}})
    assert declared.fields == {"n": Shape("integer")}
    assert block_shape({"id": "o", "kind": "output", "outputs": {"a": "{{ x }}"}}).fields == {"a": ANY}
    continued = block_shape(fetch(on_error="continue"))
    assert continued.fields is not None and continued.fields["error"] == Shape("string")


def test_unknown_field_of_an_input_block() -> None:
    found = problems(out(x="{{ start.nmae }}"))
    assert [(p["block"], p["code"]) for p in found] == [("out", "unknown_field")]
    assert "start.nmae" in found[0]["message"] and "outputs.x" in found[0]["message"]
    assert codes(out(x="{{ start['nmae'] }}")) == {("out", "unknown_field")}
    assert codes(out(x="{{ input.nmae }}")) == {("out", "unknown_field")}  # the run's input, as declared
    assert problems(out(x="{{ start.name }}", y="{{ start['count'] }}", z="{{ input.xs }}")) == []
    open_input = {"name": "t/open", "blocks": [{"id": "s", "kind": "input"}, out(x="{{ s.anything.deeper }}")]}
    assert validate_definition(open_input)[1] == []  # no declared inputs: nothing is known


def test_unknown_field_of_http_llm_map_condition_and_router() -> None:
    assert codes(fetch(), out(x="{{ fetch.stauts }}")) == {("out", "unknown_field")}
    fine = out(x="{{ fetch.status }}", y="{{ fetch.body.any.thing }}", z="{{ fetch.headers.x }}")
    assert problems(fetch(), fine) == []

    assert codes(ask(), out(x="{{ ask.contnet }}")) == {("out", "unknown_field")}
    assert codes(ask(), out(x="{{ ask.tokens.totl }}")) == {("out", "unknown_field")}
    assert codes(ask(), out(x="{{ ask.json.a }}")) == {("out", "unknown_field")}  # json needs a response_format
    fine = out(x="{{ ask.content }}", y="{{ ask.tokens.total }}", z="{{ ask.json.a }}", w="{{ ask.model }}")
    assert problems(ask(response_format={"type": "json_object"}), fine) == []

    each = {"id": "m", "kind": "map", "over": "start.xs", "block": {"kind": "function", "function": "m:f"}}
    assert codes(each, out(x="{{ m.cnt }}")) == {("out", "unknown_field")}
    assert problems(each, out(x="{{ m.count }}", y="{{ m.results[0].result }}")) == []

    check = {"id": "check", "kind": "condition", "if": "start.count > 1", "then": ["out"]}
    assert codes(check, out(x="{{ check.value }}")) == {("out", "unknown_field")}
    assert problems(check, out(x="{{ check.result }}", y="{{ check.selected }}")) == []

    def route(when: str) -> dict[str, Any]:
        return {"id": "r", "kind": "router", "routes": [{"when": when, "to": "out"}]}

    assert codes(fetch(), route("fetch.stauts == 200"), out(x="{{ r.route }}")) == {("r", "unknown_field")}
    assert problems(fetch(), route("fetch.status == 200"), out(x="{{ r.route }} {{ r.selected }}")) == []


def test_numeric_ids_are_checked_like_names() -> None:
    one = {"id": "1", "kind": "http", "url": "https://example.com"}
    assert codes(one, out(x="{{ 1.stauts }}")) == {("out", "unknown_field")}
    assert codes(one, out(x="{{ blocks['1'].stauts }}")) == {("out", "unknown_field")}
    assert codes(one, out(x="{{ 1.status.x }}")) == {("out", "type_mismatch")}
    found = problems(one, out(x="prefix {{ 1.stauts }}"))
    assert found and "1.stauts" in found[0]["message"]
    assert problems(one, out(x="{{ 1.status }}", y="{{ blocks['1'].body }}", z="{{ blocks.start.name }}")) == []


def test_attribute_access_into_a_scalar() -> None:
    assert codes(out(x="{{ start.count.x }}")) == {("out", "type_mismatch")}
    assert codes(out(x="{{ start.count[0] }}")) == {("out", "type_mismatch")}
    assert codes(out(x="{{ start.name.first }}")) == {("out", "type_mismatch")}
    assert codes(out(x="{{ start.xs.nope }}")) == {("out", "type_mismatch")}
    fine = out(
        a="{{ start.name.upper() }}",  # methods of the value are fine
        b="{{ start.name[0] }}",
        c="{{ start.xs[1].anything }}",  # items of an array are unknown
        d="{{ start.count.real }}",
        e="{{ start.doc.url }}",  # file: a string or a mapping
        f="{{ start.items() }}",
    )
    assert problems(fine) == []


def test_map_over_must_be_an_array() -> None:
    inner = {"kind": "function", "function": "m:f", "args": {"x": "{{ item }}", "i": "{{ index }}"}}
    bad = {"id": "m", "kind": "map", "over": "start.name", "block": inner}
    found = problems(bad)
    assert [(p["block"], p["code"]) for p in found] == [("m", "type_mismatch")] and "string" in found[0]["message"]
    assert codes({**bad, "over": "{{ start.count }}"}) == {("m", "type_mismatch")}
    assert codes(fetch(), {**bad, "over": "fetch.status"}) == {("m", "type_mismatch")}
    assert codes({**bad, "over": "start"}) == {("m", "type_mismatch")}  # the input block: an object
    assert problems({**bad, "over": "start.xs"}) == []
    assert problems({**bad, "over": "{{ start.xs }}"}) == []
    assert problems(fetch(), {**bad, "over": "fetch.body.items"}) == []  # unknown: not reported
    assert problems({**bad, "over": "start.xs | reverse | list"}) == []  # not a plain reference
    other = {"id": "m2", "kind": "map", "over": "start.xs", "block": inner}
    assert problems(other, {**bad, "over": "m2.results"}) == []
    nested = {**bad, "over": "start.xs", "block": {**inner, "args": {"x": "{{ start.nmae }} {{ item.x }}"}}}
    assert codes(nested) == {("m.block", "unknown_field")}  # the inner block, as other inner problems


def test_http_url_must_be_a_string() -> None:
    found = problems(fetch(url="{{ start.count }}"))
    assert [(p["block"], p["code"]) for p in found] == [("fetch", "type_mismatch")]
    assert codes(fetch(url="{{ start.xs }}")) == {("fetch", "type_mismatch")}
    assert problems(fetch(url="{{ start.name }}")) == []
    assert problems(fetch(url="https://example.com/{{ start.count }}")) == []  # rendered into a string
    assert problems(ask(), fetch(url="{{ ask.content }}")) == []
    each = {"id": "m", "kind": "map", "over": "start.xs", "block": {"kind": "http", "url": "{{ start.count }}"}}
    assert codes(each) == {("m.block", "type_mismatch")}
    assert problems({**each, "block": {"kind": "http", "url": "{{ item }}"}}) == []
    assert codes(fetch(timeout="{{ start.count }}")) == {("fetch", "type_mismatch")}  # existing check stays


def test_input_defaults_match_their_type() -> None:
    def defaults(**inputs: Any) -> set[tuple[str, str]]:
        data = {"name": "t/defaults", "blocks": [{"id": "s", "kind": "input", "inputs": inputs}]}
        return {(p["block"], p["code"]) for p in validate_definition(data)[1]}

    assert defaults(n={"type": "number", "default": "3"}) == {("s", "type_mismatch")}
    assert defaults(n={"type": "integer", "default": 1.5}) == {("s", "type_mismatch")}
    assert defaults(n={"type": "integer", "default": True}) == {("s", "type_mismatch")}
    assert defaults(t={"type": "string", "default": 5}) == {("s", "type_mismatch")}
    assert defaults(b={"type": "boolean", "default": "yes"}) == {("s", "type_mismatch")}
    assert defaults(xs={"type": "array", "default": {}}) == {("s", "type_mismatch")}
    assert (
        defaults(
            n={"type": "number", "default": 3},
            i={"type": "integer", "default": 2},
            t={"type": "string", "default": "-"},
            b={"type": "boolean", "default": False},
            xs={"type": "array", "default": []},
            o={"type": "object", "default": {}},
            f={"type": "file", "default": "https://example.com/a.png"},
            a={"default": 1},
            none={"type": "string", "default": None, "required": False},
        )
        == set()
    )
    assert defaults(x=["list"]) == {("s", "type_mismatch")}  # an unhashable type name: a problem, not a crash
    bad_inputs = {"name": "t/defaults", "blocks": [{"id": "s", "kind": "input", "inputs": ["a"]}]}
    assert {p["code"] for p in validate_definition(bad_inputs)[1]} == {"invalid_block"}


def test_declared_outputs_of_function_app_and_agent_blocks() -> None:
    typed = {"id": "f", "kind": "function", "function": "m:f", "outputs": {"result": "integer"}}
    assert codes(typed, out(x="{{ f.reslt }}")) == {("out", "unknown_field")}
    assert codes(typed, out(x="{{ f.result.x }}")) == {("out", "type_mismatch")}
    assert codes(typed, fetch(url="{{ f.result }}")) == {("fetch", "type_mismatch")}
    assert problems(typed, out(x="{{ f.result }}")) == []
    untyped = {"id": "f", "kind": "function", "function": "m:f"}
    app = {"id": "a", "kind": "app", "app": "acme/x"}
    agent = {"id": "g", "kind": "agent", "agent": "x/y", "message": "m"}
    assert problems(untyped, app, agent, out(x="{{ f.x.y }}", y="{{ a.anything[0].z }}", z="{{ g.content }}")) == []
    assert codes(agent, out(z="{{ g.answer }}")) == {("out", "unknown_field")}  # agents return content
    bad_type = {**typed, "outputs": {"result": "complex"}}
    assert codes(bad_type) == {("f", "type_mismatch")}


def test_conservative_where_the_template_expects_missing_values() -> None:
    fine = out(
        a="{{ start.nmae | default('x') }}",
        b="{% if start.nmae is defined %}{{ start.name }}{% endif %}",
        c="{% for start in start.xs %}{{ start.anything }}{% endfor %}",  # a loop variable shadows the block
        d="{% set ask = {'x': 1} %}{{ ask.x }}",
    )
    assert problems(ask(), fine) == []
    continued = fetch(on_error="continue")
    assert problems(continued, out(x="{{ fetch.error }}")) == []
    assert codes(fetch(), out(x="{{ fetch.error }}")) == {("out", "unknown_field")}
    assert codes(out(x="{{ (start or start).nmae }}")) == set()  # not a plain chain: unknown


def test_each_problem_is_listed_once_with_its_block() -> None:
    found = problems(
        fetch(url="{{ start.count }}"),
        {"id": "m", "kind": "map", "over": "fetch.status", "block": {"kind": "function", "function": "m:f"}},
        out(x="{{ start.nmae }} and {{ start.nmae }}", y="{{ fetch.stauts }}", z="{{ start.count.x }}"),
    )
    assert sorted((p["block"], p["code"]) for p in found) == [
        ("fetch", "type_mismatch"),
        ("m", "type_mismatch"),
        ("out", "type_mismatch"),
        ("out", "unknown_field"),
        ("out", "unknown_field"),
    ]
    assert all(set(p) == {"block", "code", "message"} for p in found)


def test_example_workflows_stay_valid() -> None:
    readme = {
        "name": "acme/triage",
        "blocks": [
            {"id": "start", "kind": "input", "inputs": {"text": "string", "scores": "array"}},
            {"id": "clean", "kind": "function", "function": "acme.steps:clean", "args": {"text": "{{ start.text }}"}},
            {
                "id": "each",
                "kind": "map",
                "over": "start.scores",
                "concurrency": 4,
                "block": {"kind": "function", "function": "acme.steps:score", "args": {"x": "{{ item }}"}},
            },
            {"id": "hot", "kind": "condition", "if": "each.count > 2", "then": ["escalate"], "else": ["reply"]},
            {"id": "escalate", "kind": "http", "method": "POST", "url": "https://h.example.com", "body": {"t": "x"}},
            {"id": "reply", "kind": "llm", "model": "gpt", "prompt": "Answer briefly: {{ clean.text }}"},
            {"id": "out", "kind": "output", "outputs": {"answer": "{{ reply.content }}", "n": "{{ each.count }}"}},
        ],
    }
    assert validate_definition(readme)[1] == []
    flow = (
        Workflow("acme/hello")
        .input(text="string", nums={"type": "array"}, note={"type": "string", "default": "-"})
        .map("sq", "start.nums", {"kind": "function", "function": "m:sq", "args": {"x": "{{ item }}"}})
        .function("total", "m:total", values="{{ sq.results | map(attribute='result') | list }}")
        .llm("ask", model="gpt", prompt="Say {{ start.text }} {{ input.note }}")
        .output(answer="{{ ask.content }}", total="{{ total.result }}", n="{{ sq.count }}")
    )
    assert validate_definition(flow.to_dict())[1] == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("wf-types")
    path = root / "runyard.toml"
    path.write_text(f'[storage]\nurl = "sqlite+aiosqlite:///{root / "runyard.db"}"\n')
    gateway = GatewayProcess(path, env=app_env()).start()
    try:
        yield gateway
    finally:
        gateway.stop()


def test_saving_a_mistyped_workflow_is_422_listing_each_problem(server: GatewayProcess) -> None:
    bad = {
        "name": "tests/types",
        "blocks": [
            START,
            fetch(url="{{ start.count }}"),
            {"id": "m", "kind": "map", "over": "start.name", "block": {"kind": "http", "url": "{{ item }}"}},
            out(x="{{ fetch.stauts }}"),
        ],
    }
    for route in ("/v1/workflows", "/v1/workflows/validate"):
        response = httpx.post(server.url + route, json=bad, timeout=10)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_workflow"
        assert {(p["block"], p["code"]) for p in error["details"]} == {
            ("fetch", "type_mismatch"),
            ("m", "type_mismatch"),
            ("out", "unknown_field"),
        }
    good = {**bad, "blocks": [START, fetch(url="{{ start.name }}"), out(x="{{ fetch.status }}")]}
    saved = httpx.post(server.url + "/v1/workflows", json=good, timeout=10)
    assert saved.status_code == 201, saved.text


def test_blocks_mapping_with_a_non_mapping_block_is_a_problem_not_a_crash() -> None:
    _, problems = validate_definition({"name": "t/x", "blocks": {"a": [1]}})
    assert [p["code"] for p in problems] == ["invalid_block"]
    _, problems = validate_definition({"name": "t/x", "blocks": {"a": {"kind": "output", "outputs": {}}}})
    assert problems == []
