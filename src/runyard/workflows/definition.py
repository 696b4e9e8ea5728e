"""Workflow definitions: a DAG of blocks, written as YAML/JSON or built in Python, validated on save.

A block is ``{id, kind, ...}``; strings anywhere in a block may hold ``{{block_id.field}}``
references, rendered by Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` (numeric ids are
written ``{{ 1.field }}`` and rewritten to ``blocks["1"].field``). A reference makes an edge;
``depends_on`` adds more. ``condition`` (``if``/``then``/``else``) and ``router``
(``routes: [{when, to}]``, ``default``) gate the blocks they name: unchosen ones are skipped.

    flow = (Workflow("acme/hello")
            .input(text="string")
            .llm("ask", model="gpt", prompt="Say {{ input.text }}")
            .output(answer="{{ ask.content }}"))
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["KINDS", "Workflow", "WorkflowProblem", "env", "normalize", "parse_definition", "validate_definition"]

KINDS = ("input", "llm", "agent", "app", "function", "condition", "router", "map", "http", "output")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?$")
BLOCK_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
RESERVED = {"input", "blocks", "item", "index", "loop", "range", "true", "false", "none", "True", "False", "None"}
INPUT_TYPES = {"string", "number", "integer", "boolean", "array", "object", "file", "any"}
_NUMERIC_REF = re.compile(r"(?<![\w.\"'\]])(\d+)\.([A-Za-z_]\w*)")
_EXPR = re.compile(r"\{\{(.*?)\}\}", re.S)
_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)

WorkflowProblem = dict[str, str]


def env() -> SandboxedEnvironment:
    return _ENV


_ENV = SandboxedEnvironment(autoescape=False)
_ENV.filters["tojson"] = lambda v: orjson.dumps(v).decode()


def rewrite(expr: str) -> str:
    """``1.field`` (a numeric block id) → ``blocks["1"].field``."""
    return _NUMERIC_REF.sub(lambda m: f'blocks["{m.group(1)}"].{m.group(2)}', expr)


def rewrite_template(text: str) -> str:
    return _EXPR.sub(lambda m: "{{" + rewrite(m.group(1)) + "}}", text)


def whole_expression(text: str) -> str | None:
    """The expression of a template that is exactly one ``{{ ... }}`` (rendered as a native value)."""
    m = _WHOLE.match(text)
    if m is None or "{{" in m.group(1) or "}}" in m.group(1):
        return None
    return rewrite(m.group(1))


def parse_definition(data: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """A definition mapping from YAML/JSON text or a mapping (not yet validated)."""
    if isinstance(data, dict):
        return data
    import yaml

    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise ValueError(f"not valid YAML/JSON: {err}") from None
    if not isinstance(loaded, dict):
        raise ValueError("a workflow definition must be a mapping")
    return loaded


def normalize(definition: dict[str, Any]) -> dict[str, Any]:
    """Blocks as a list of dicts with string ids (a mapping ``{id: block}`` is accepted too)."""
    blocks = definition.get("blocks")
    if isinstance(blocks, dict):
        blocks = [{"id": str(k), **(v or {})} for k, v in blocks.items()]
    out = dict(definition)
    out["blocks"] = [{**b, "id": str(b["id"])} if isinstance(b, dict) and "id" in b else b for b in blocks or []]
    return out


def _refs_of(value: Any, problems: list[WorkflowProblem], block_id: str, where: str) -> set[str]:
    """Root names referenced by templates inside ``value``; syntax and unsafe access become problems."""
    found: set[str] = set()
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return found
        found |= _template_refs(rewrite_template(value), problems, block_id, where)
    elif isinstance(value, dict):
        for k, v in value.items():
            found |= _refs_of(v, problems, block_id, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= _refs_of(v, problems, block_id, f"{where}[{i}]")
    return found


def _template_refs(source: str, problems: list[WorkflowProblem], block_id: str, where: str) -> set[str]:
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as err:
        problems.append(_p(block_id, "template_syntax", f"{where}: {err.message}"))
        return set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(attr, str) and attr.startswith("_"):
            problems.append(_p(block_id, "unsafe_template", f"{where}: access to {attr!r} is not allowed"))
    roots = set(meta.find_undeclared_variables(ast))
    if "blocks" in roots:
        for node in ast.find_all(nodes.Getitem):
            if isinstance(node.node, nodes.Name) and node.node.name == "blocks" and isinstance(node.arg, nodes.Const):
                roots.add(str(node.arg.value))
    return roots


def _expr_refs(expr: Any, problems: list[WorkflowProblem], block_id: str, where: str) -> set[str]:
    if not isinstance(expr, str) or not expr.strip():
        problems.append(_p(block_id, "invalid_block", f"{where} must be a non-empty expression"))
        return set()
    text = expr if "{{" in expr else "{{ " + expr + " }}"
    return _refs_of(text, problems, block_id, where)


def _p(block_id: str, code: str, message: str) -> WorkflowProblem:
    return {"block": block_id, "code": code, "message": message}


def _block_problems(block: dict[str, Any], problems: list[WorkflowProblem], nested: bool = False) -> set[str]:
    """Per-kind required fields; returns the references the block makes."""
    bid, kind = block["id"], block.get("kind")
    refs: set[str] = set()
    required = {
        "llm": ("model",),
        "function": ("function",),
        "app": ("app",),
        "agent": ("agent", "message"),
        "http": ("url",),
        "map": ("over", "block"),
        "condition": ("if",),
        "router": ("routes",),
    }.get(str(kind), ())
    for key in required:
        if key not in block:
            problems.append(_p(bid, "missing_field", f"{kind} block needs {key!r}"))
    if kind == "llm" and "prompt" not in block and "messages" not in block:
        problems.append(_p(bid, "missing_field", "llm block needs 'prompt' or 'messages'"))
    if kind == "function" and isinstance(block.get("function"), str) and ":" not in block["function"]:
        problems.append(_p(bid, "invalid_block", "function must be 'module:callable'"))
    if kind == "input" and not isinstance(block.get("inputs") or {}, dict):
        problems.append(_p(bid, "invalid_block", "inputs must be a mapping {name: type}"))
    elif kind == "input":
        for name, tp in (block.get("inputs") or {}).items():
            tname = tp.get("type", "any") if isinstance(tp, dict) else tp
            if not isinstance(tname, str) or tname not in INPUT_TYPES:
                problems.append(_p(bid, "type_mismatch", f"input {name!r} has unknown type {tname!r}"))
    for key in ("timeout", "retries"):
        if key in block and not isinstance(block[key], int | float):
            problems.append(_p(bid, "type_mismatch", f"{key} must be a number"))
    if kind == "map":
        inner = block.get("block")
        if isinstance(inner, dict):
            inner = {**inner, "id": f"{bid}.block"}
            if inner.get("kind") not in ("llm", "function", "app", "http"):
                problems.append(_p(bid, "invalid_block", "a map's block must be llm, function, app or http"))
            refs |= _block_problems(inner, problems, nested=True)
        elif inner is not None:
            problems.append(_p(bid, "invalid_block", "map 'block' must be a block mapping"))
        refs |= _expr_refs(block.get("over"), problems, bid, "over") if "over" in block else set()
        conc = block.get("concurrency", 4)
        if not isinstance(conc, int) or conc < 1:
            problems.append(_p(bid, "type_mismatch", "concurrency must be a positive integer"))
    if kind == "condition" and "if" in block:
        refs |= _expr_refs(block["if"], problems, bid, "if")
    if kind == "router":
        for i, route in enumerate(block.get("routes") or []):
            if not isinstance(route, dict) or "when" not in route:
                problems.append(_p(bid, "invalid_block", f"routes[{i}] needs 'when' and 'to'"))
                continue
            refs |= _expr_refs(route["when"], problems, bid, f"routes[{i}].when")
    skip = {"id", "kind", "if", "over", "block", "routes", "then", "else", "default", "depends_on", "inputs"}
    for key, value in block.items():
        if key not in skip:
            refs |= _refs_of(value, problems, bid, key)
    if nested:
        refs -= {"item", "index"}
    return refs


def gates(block: dict[str, Any]) -> list[str]:
    """The block ids a condition/router may choose between."""
    if block.get("kind") == "condition":
        return [*_ids(block.get("then")), *_ids(block.get("else"))]
    if block.get("kind") == "router":
        out = [i for r in block.get("routes") or [] if isinstance(r, dict) for i in _ids(r.get("to"))]
        return out + _ids(block.get("default"))
    return []


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int):
        return [str(value)]
    return [str(v) for v in value]


def validate_definition(definition: dict[str, Any]) -> tuple[dict[str, Any], list[WorkflowProblem]]:
    """(normalized definition, problems): unknown kinds, dangling references, cycles, bad fields, and
    reference types (:mod:`runyard.workflows.typecheck`: unknown fields, type mismatches)."""
    problems: list[WorkflowProblem] = []
    name = definition.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(_p("(workflow)", "invalid_name", "name must be 'namespace/name' or 'name' (a-z 0-9 . _ -)"))
    raw = definition.get("blocks")
    if not isinstance(raw, list | dict) or not raw:
        problems.append(_p("(workflow)", "no_blocks", "a workflow needs a non-empty 'blocks' list"))
        return definition, problems
    if isinstance(raw, dict) and any(v is not None and not isinstance(v, dict) for v in raw.values()):
        problems.append(_p("(workflow)", "invalid_block", "every block must be a mapping"))
        return definition, problems
    if isinstance(raw, list) and any(not isinstance(b, dict) or "id" not in b for b in raw):
        problems.append(_p("(workflow)", "invalid_block", "every block must be a mapping with an 'id'"))
        return definition, problems
    definition = normalize(definition)
    blocks: list[dict[str, Any]] = definition["blocks"]
    ids = [b["id"] for b in blocks]
    seen: set[str] = set()
    for bid in ids:
        if bid in seen:
            problems.append(_p(bid, "duplicate_id", f"block id {bid!r} is used twice"))
        seen.add(bid)
        if not BLOCK_ID_RE.match(bid) or bid in RESERVED:
            problems.append(_p(bid, "invalid_id", f"block id {bid!r} is reserved or malformed"))
    deps: dict[str, set[str]] = {}
    for block in blocks:
        bid, kind = block["id"], block.get("kind")
        if kind not in KINDS:
            problems.append(_p(bid, "unknown_kind", f"unknown block kind {kind!r} (known: {', '.join(KINDS)})"))
            deps[bid] = set()
            continue
        refs = _block_problems(block, problems)
        refs -= {"input", "blocks"} - set(ids)
        for ref in sorted(refs):
            if ref not in seen:
                problems.append(_p(bid, "dangling_reference", f"references unknown block {ref!r}"))
        for dep in _ids(block.get("depends_on")):
            if dep not in seen:
                problems.append(_p(bid, "dangling_reference", f"depends_on unknown block {dep!r}"))
        deps[bid] = {r for r in refs if r in seen} | {d for d in _ids(block.get("depends_on")) if d in seen}
    for block in blocks:
        for target in gates(block):
            if target not in seen:
                problems.append(_p(block["id"], "dangling_reference", f"routes to unknown block {target!r}"))
            elif target in deps:
                deps[target].add(block["id"])
    if sum(1 for b in blocks if b.get("kind") == "input") > 1:
        problems.append(_p("(workflow)", "invalid_block", "at most one input block"))
    from .typecheck import type_problems  # it imports this module

    problems.extend(type_problems(blocks))
    for cycle_block in _cycle(deps):
        problems.append(_p(cycle_block, "cycle", f"block {cycle_block!r} is part of a cycle"))
    definition["_deps"] = {k: sorted(v) for k, v in deps.items()}
    return definition, problems


def _cycle(deps: dict[str, set[str]]) -> list[str]:
    """Blocks left over by a topological sort (those on or behind a cycle), in id order."""
    indeg = {b: len(d) for b, d in deps.items()}
    users: dict[str, list[str]] = {b: [] for b in deps}
    for b, ds in deps.items():
        for d in ds:
            users.setdefault(d, []).append(b)
    ready = [b for b, n in indeg.items() if n == 0]
    while ready:
        b = ready.pop()
        for u in users.get(b, []):
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    return sorted(b for b, n in indeg.items() if n > 0)


class Workflow:
    """A Python builder for workflow definitions; ``to_dict()`` is what the API takes."""

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self.blocks: list[dict[str, Any]] = []

    def block(self, id: str, kind: str, **fields: Any) -> Workflow:
        self.blocks.append({"id": str(id), "kind": kind, **fields})
        return self

    def input(self, id: str = "start", **inputs: Any) -> Workflow:
        return self.block(id, "input", inputs=inputs)

    def llm(self, id: str, *, model: str, prompt: str, **fields: Any) -> Workflow:
        return self.block(id, "llm", model=model, prompt=prompt, **fields)

    def function(self, id: str, function: str, **args: Any) -> Workflow:
        return self.block(id, "function", function=function, args=args)

    def app(self, id: str, app: str, **input: Any) -> Workflow:
        return self.block(id, "app", app=app, input=input)

    def agent(self, id: str, agent: str | dict[str, Any], message: str, **fields: Any) -> Workflow:
        """An agent (template ``ns/name[@version]`` or an inline config) run on ``message``."""
        return self.block(id, "agent", agent=agent, message=message, **fields)

    def http(self, id: str, url: str, **fields: Any) -> Workflow:
        return self.block(id, "http", url=url, **fields)

    def condition(self, id: str, expr: str, then: list[str], otherwise: list[str] | None = None) -> Workflow:
        return self.block(id, "condition", **{"if": expr, "then": then, "else": otherwise or []})

    def map(self, id: str, over: str, block: dict[str, Any], concurrency: int = 4) -> Workflow:
        return self.block(id, "map", over=over, block=block, concurrency=concurrency)

    def output(self, id: str = "out", **outputs: Any) -> Workflow:
        return self.block(id, "output", outputs=outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "blocks": [dict(b) for b in self.blocks]}

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))
