"""Workflow definitions without a gateway: YAML/JSON parsing, the Python builder, validation
problems (each naming its block), numeric block ids, and the template sandbox."""

from __future__ import annotations

import json

from runyard.workflows import Workflow, parse_definition, validate_definition

YAML = """
name: acme/summarize
blocks:
  - id: start
    kind: input
    inputs: {text: string}
  - id: "1"
    kind: function
    function: apps.flows:shout
    args: {text: "{{ start.text }}"}
  - id: pick
    kind: router
    routes:
      - when: "1.length > 3"
        to: [long]
    default: [short]
  - {id: long, kind: function, function: "apps.flows:shout", args: {text: long}}
  - {id: short, kind: function, function: "apps.flows:shout", args: {text: short}}
  - id: out
    kind: output
    outputs: {shout: "{{ 1.text }}", size: "{{ (long or short).text }}"}
"""


def problems_of(data: dict) -> set[tuple[str, str]]:
    _, problems = validate_definition(data)
    return {(p["block"], p["code"]) for p in problems}


def test_yaml_and_json_parse_to_the_same_valid_definition() -> None:
    from_yaml = parse_definition(YAML)
    from_json = parse_definition(json.dumps(from_yaml))
    assert from_yaml == from_json
    definition, problems = validate_definition(from_yaml)
    assert problems == []
    deps = definition["_deps"]
    assert deps["1"] == ["start"] and deps["pick"] == ["1"]  # numeric id referenced as {{ 1.text }}
    assert deps["long"] == ["pick"] and deps["out"] == ["1", "long", "short"]


def test_builder_round_trips_through_yaml() -> None:
    flow = (
        Workflow("acme/hello")
        .input(text="string")
        .llm("ask", model="gpt", prompt="Say {{ start.text }}")
        .output(answer="{{ ask.content }}")
    )
    assert parse_definition(flow.to_yaml()) == flow.to_dict()
    assert validate_definition(flow.to_dict())[1] == []


def test_each_problem_names_its_block() -> None:
    data = {
        "name": "Bad Name",
        "blocks": [
            {"id": "a", "kind": "llm", "model": "gpt", "prompt": "{{ b.content }}"},
            {"id": "b", "kind": "llm", "model": "gpt", "prompt": "{{ a.content }}"},
            {"id": "c", "kind": "nope"},
            {"id": "d", "kind": "function", "function": "no_colon"},
            {"id": "e", "kind": "condition", "if": "a.x", "then": ["ghost"]},
            {"id": "f", "kind": "input", "inputs": {"n": "complex"}},
            {"id": "g", "kind": "output", "outputs": {"x": "{{ a.__globals__ }}", "y": "{{ a[ '_x' ] }}"}},
            {"id": "h", "kind": "map", "over": "a.items", "block": {"kind": "output"}},
            {"id": "i", "kind": "llm", "model": "gpt", "prompt": "{{ unclosed "},
            {"id": "c", "kind": "output", "outputs": {}},
        ],
    }
    found = problems_of(data)
    expected = {
        ("(workflow)", "invalid_name"),
        ("a", "cycle"),
        ("b", "cycle"),
        ("c", "unknown_kind"),
        ("d", "invalid_block"),
        ("e", "dangling_reference"),
        ("f", "type_mismatch"),
        ("g", "unsafe_template"),
        ("h", "invalid_block"),
        ("i", "template_syntax"),
        ("c", "duplicate_id"),
    }
    assert expected <= found, expected - found


def test_map_items_and_input_are_not_dangling() -> None:
    flow = (
        Workflow("acme/m")
        .input(xs="array")
        .map("m", "input.xs", {"kind": "function", "function": "apps.flows:square", "args": {"x": "{{ item }}"}})
    )
    assert validate_definition(flow.to_dict())[1] == []
    outside = Workflow("acme/m2").function("f", "apps.flows:square", x="{{ item }}")
    assert problems_of(outside.to_dict()) == {("f", "dangling_reference")}


def test_numeric_ids_router_and_url_guard_at_run_time(tmp_path: object) -> None:
    """Embedded: numeric block ids and a router at run time; an http block to a private address is refused."""
    import sys
    from pathlib import Path

    from runyard import Client
    from runyard.config import parse_config

    tests_dir = str(Path(__file__).resolve().parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    root = Path(str(tmp_path))
    cfg = parse_config(
        {
            "storage": {"url": f"sqlite+aiosqlite:///{root / 'wf.db'}"},
            "files": {"dir": str(root / "files")},
            "apps": {"modules": ["apps.flows"]},
        }
    )
    guarded = (
        Workflow("acme/guard").block("call", "http", url="http://127.0.0.1:9/private").output(x="{{ call }}").to_dict()
    )
    with Client.embedded(cfg, max_retries=0) as client:
        client.workflows.save(YAML)
        client.workflows.publish("acme/summarize")
        long = client.workflows.execute("acme/summarize", {"text": "hello"})
        assert long["output"] == {"shout": "HELLO", "size": "LONG"}
        short = client.workflows.execute("acme/summarize", {"text": "hey"})
        assert short["output"] == {"shout": "HEY", "size": "SHORT"}
        assert {s["blockId"] for s in short["trace_spans"]} == {"start", "1", "pick", "short", "out"}
        client.workflows.save(guarded)
        client.workflows.publish("acme/guard")
        refused = client.workflows.execute("acme/guard", {})
        assert refused["success"] is False and refused["error"]["block"] == "call"
        assert refused["error"]["code"] in ("unsafe_url", "private_address", "url_not_allowed")
