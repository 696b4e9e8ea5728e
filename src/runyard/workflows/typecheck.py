"""Static types of workflow references, checked when a definition is validated.

Every block kind has an output :class:`Shape`: what ``{{ block.field }}`` can read once
:class:`runyard.workflows.engine.Run` has run it (``llm`` → ``content``/``model``/``tokens``
(+ ``json`` with a ``response_format``), ``map`` → ``results``/``count``, ``http`` →
``status``/``headers``/``body``, ``input`` → its declared inputs, ...; ``function``, ``app`` and
``agent`` blocks may declare ``outputs: {field: type}``). Reference chains (``start.a.b``,
``start["a"]``, ``blocks["1"].a``, ``input.a``) are found in Jinja's AST and followed through those
shapes. Problems: a field missing from a closed shape (``unknown_field``); access into a scalar, a
``map.over`` that is not an array, an ``http.url`` that is not a string, an input default of the wrong
type (``type_mismatch``). Whatever is unknown (``any``) is never reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from .definition import INPUT_TYPES, KINDS, WorkflowProblem, env, rewrite_template, whole_expression

__all__ = ["ANY", "Shape", "block_shape", "type_problems"]


@dataclass(frozen=True)
class Shape:
    """A value's static type; ``fields`` holds every key of a closed object (None: open or unknown)."""

    type: str = "any"
    fields: Mapping[str, Shape] | None = None


ANY = Shape()
STR, INT, BOOL, ARRAY, OBJECT = Shape("string"), Shape("integer"), Shape("boolean"), Shape("array"), Shape("object")
_TOKENS = Shape("object", {"prompt": INT, "completion": INT, "total": INT})
_PYTHON: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
_NOT_ARRAY = {"string", "number", "integer", "boolean", "object"}
_NOT_STRING = {"number", "integer", "boolean", "array", "object"}
_TOLERANT = {"defined", "undefined", "none", "default", "d"}  # tests/filters that expect missing fields
_NOT_TEMPLATES = {"id", "kind", "then", "else", "default", "depends_on", "inputs", "block", "if", "over", "routes"}

Step = str | int | None  # a field name, a list index, or something computed (unknown)


def _type_name(spec: Any) -> str:
    """The declared type of an input/output spec (``"string"`` or ``{"type": "string", ...}``)."""
    name = spec.get("type", "any") if isinstance(spec, dict) else spec
    return name if isinstance(name, str) and name in INPUT_TYPES else "any"


def _declared(value: Any) -> dict[str, Shape] | None:
    if not isinstance(value, dict) or not value:
        return None
    return {str(k): Shape(_type_name(v)) for k, v in value.items()}


def block_shape(block: Mapping[str, Any]) -> Shape:
    """What a reference to ``block`` reads at run time (see the ``Run._<kind>`` handlers)."""
    kind = block.get("kind")
    fields: dict[str, Shape] | None
    if kind == "input":
        fields = _declared(block.get("inputs"))
    elif kind == "llm":
        fields = {"content": STR, "model": STR, "tokens": _TOKENS}
        if block.get("response_format"):
            fields["json"] = ANY
    elif kind == "map":
        fields = {"results": ARRAY, "count": INT}
    elif kind == "http":
        fields = {"status": INT, "headers": OBJECT, "body": ANY}
    elif kind == "condition":
        fields = {"result": BOOL, "selected": ARRAY}
    elif kind == "router":
        fields = {"route": INT, "selected": ARRAY}
    elif kind == "output":
        outputs = block.get("outputs")
        if outputs is not None and not isinstance(outputs, dict):
            return ANY
        fields = {str(k): ANY for k in outputs or {}}
    elif kind == "agent":
        fields = {"content": ANY, "chat_id": STR, "steps": INT}
    elif kind in ("function", "app"):
        fields = _declared(block.get("outputs"))
        if fields is None:
            return OBJECT
    else:
        return ANY
    if fields is None:
        return OBJECT
    if block.get("on_error") == "continue":
        fields = {**fields, "error": STR}
    return Shape("object", fields)


def _fits(value: Any, type_name: str) -> bool:
    if type_name == "file":
        return isinstance(value, str | dict)
    if type_name not in _PYTHON:
        return True
    if isinstance(value, bool) and type_name != "boolean":
        return False
    return isinstance(value, _PYTHON[type_name])


def _chain(node: nodes.Node) -> tuple[nodes.Node, list[Step], list[nodes.Node]]:
    """``a.b[0][x]`` → (``a``, ["b", 0, None], [``x``]): the base, the steps, computed subscripts."""
    steps: list[Step] = []
    computed: list[nodes.Node] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            steps.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
            steps.append(node.arg.value if not isinstance(node.arg.value, bool) else None)
        else:
            steps.append(None)
            computed.append(node.arg)
        node = node.node
    steps.reverse()
    return node, steps, computed


def _display(root: str, steps: list[Step]) -> str:
    out = root
    for step in steps:
        if isinstance(step, str) and step.isidentifier():
            out += f".{step}"
        else:
            out += "[...]" if step is None else f"[{step!r}]"
    return out


def _follow(shape: Shape, steps: list[Step]) -> tuple[Shape, tuple[str, int, str] | None]:
    """(the shape at the end of ``steps``, or (code, index of the bad step, why) for the first bad one)."""
    for i, step in enumerate(steps):
        kind = shape.type
        if step is None or kind not in _PYTHON or (isinstance(step, str) and step.startswith("_")):
            return ANY, None  # computed, unknown, or an unsafe name (reported as such elsewhere)
        if kind == "object":
            if isinstance(step, int) or shape.fields is None or hasattr(dict, step):
                shape = ANY
            elif step in shape.fields:
                shape = shape.fields[step]
            else:
                return ANY, ("unknown_field", i, f"has no field {step!r} (fields: {', '.join(sorted(shape.fields))})")
        elif isinstance(step, int):
            if kind not in ("string", "array"):
                return ANY, ("type_mismatch", i, f"is {kind}; it cannot be indexed")
            shape = STR if kind == "string" else ANY
        elif any(hasattr(tp, step) for tp in _PYTHON[kind]):
            return ANY, None  # a method or attribute of the value (``.upper()``, ``.real``)
        else:
            return ANY, ("type_mismatch", i, f"is {kind}; it has no field {step!r}")
    return shape, None


class _Checker:
    """Follows the references of one workflow's templates through its blocks' shapes."""

    def __init__(self, blocks: list[dict[str, Any]]) -> None:
        self.shapes = {b["id"]: block_shape(b) for b in blocks}
        first_input = next((b for b in blocks if b.get("kind") == "input"), None)
        self.input = block_shape(first_input) if first_input is not None else OBJECT
        self.problems: list[WorkflowProblem] = []

    def _root(self, base: nodes.Node, steps: list[Step], local: set[str]) -> tuple[str, Shape, list[Step]] | None:
        if not isinstance(base, nodes.Name) or base.name in local:
            return None
        name = base.name
        if name == "blocks" and name not in self.shapes:
            first = steps[0] if steps else None
            if not isinstance(first, str) or first not in self.shapes or hasattr(dict, first):
                return None
            return first, self.shapes[first], steps[1:]
        if name == "input" and name not in self.shapes:
            return name, self.input, steps
        if name in self.shapes:
            return name, self.shapes[name], steps
        return None  # item, index, loop, or a dangling name (reported elsewhere)

    def expression(self, text: str) -> tuple[str, Shape] | None:
        """(reference, shape) when ``text`` is exactly one ``{{ chain }}`` whose type is known."""
        expr = whole_expression(text)
        if expr is None:
            return None
        try:
            body = env().parse("{{ " + expr + " }}").body
        except TemplateSyntaxError:
            return None
        if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
            return None
        base, steps, _ = _chain(body[0].nodes[0])
        root = self._root(base, steps, set())
        if root is None:
            return None
        shape, bad = _follow(root[1], root[2])
        return (_display(root[0], root[2]), shape) if bad is None else None

    def template(self, block_id: str, where: str, text: str) -> None:
        """Report each bad reference chain in one template string."""
        try:
            ast = env().parse(rewrite_template(text))
        except TemplateSyntaxError:
            return  # reported as template_syntax
        local = {n.name for n in ast.find_all(nodes.Name) if n.ctx != "load"}
        self._walk(ast, block_id, where, local, tolerant=False)

    def _walk(self, node: nodes.Node, block_id: str, where: str, local: set[str], tolerant: bool) -> None:
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
            base, steps, computed = _chain(node)
            root = self._root(base, steps, local)
            if root is None:
                self._walk_children(base, block_id, where, local)
            elif not tolerant:
                _, bad = _follow(root[1], root[2])
                if bad is not None:
                    code, index, why = bad
                    ref = _display(root[0], root[2][: index + 1])
                    owner = _display(root[0], root[2][:index])
                    self.problems.append(
                        {"block": block_id, "code": code, "message": f"{where}: {{{{ {ref} }}}}: {owner} {why}"}
                    )
            for sub in computed:
                self._walk(sub, block_id, where, local, tolerant=False)
            return
        self._walk_children(node, block_id, where, local)

    def _walk_children(self, node: nodes.Node, block_id: str, where: str, local: set[str]) -> None:
        operand = node.node if isinstance(node, nodes.Filter | nodes.Test) and node.name in _TOLERANT else None
        for child in node.iter_child_nodes():
            self._walk(child, block_id, where, local, tolerant=operand is not None and child is operand)

    def block(self, block: dict[str, Any], block_id: str) -> None:
        """Check one block (and a map's inner block) against the shapes."""
        kind = block.get("kind")
        for where, text in _templates(block):
            self.template(block_id, where, text)
        if kind == "input" and isinstance(block.get("inputs"), dict):
            for name, spec in block["inputs"].items():
                tname = _type_name(spec)
                if isinstance(spec, dict) and spec.get("default") is not None and not _fits(spec["default"], tname):
                    message = f"input {name!r}: default {spec['default']!r} is not {tname}"
                    self.problems.append({"block": block_id, "code": "type_mismatch", "message": message})
        if kind in ("function", "app") and isinstance(block.get("outputs"), dict):
            for name, spec in block["outputs"].items():
                raw = spec.get("type", "any") if isinstance(spec, dict) else spec
                if not isinstance(raw, str) or raw not in INPUT_TYPES:
                    message = f"output {name!r} has unknown type {raw!r}"
                    self.problems.append({"block": block_id, "code": "type_mismatch", "message": message})
        if kind == "map" and isinstance(block.get("over"), str):
            found = self.expression(_as_template(block["over"]))
            if found is not None and found[1].type in _NOT_ARRAY:
                message = f"over: {{{{ {found[0]} }}}} is {found[1].type}, not an array"
                self.problems.append({"block": block_id, "code": "type_mismatch", "message": message})
        if kind == "map" and isinstance(block.get("block"), dict):
            self.block(block["block"], f"{block_id}.block")
        if kind == "http" and isinstance(block.get("url"), str):
            found = self.expression(block["url"])
            if found is not None and found[1].type in _NOT_STRING:
                message = f"url: {{{{ {found[0]} }}}} is {found[1].type}, not a string"
                self.problems.append({"block": block_id, "code": "type_mismatch", "message": message})


def _as_template(expr: str) -> str:
    return expr if "{{" in expr else "{{ " + expr + " }}"


def _templates(block: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, template) for every template string of a block, as the validator and ``Run`` read them."""
    kind = block.get("kind")
    if kind == "condition" and isinstance(block.get("if"), str):
        yield "if", _as_template(block["if"])
    if kind == "map" and isinstance(block.get("over"), str):
        yield "over", _as_template(block["over"])
    if kind == "router" and isinstance(block.get("routes"), list):
        for i, route in enumerate(block["routes"]):
            if isinstance(route, dict) and isinstance(route.get("when"), str):
                yield f"routes[{i}].when", _as_template(route["when"])
    for key, value in block.items():
        if key not in _NOT_TEMPLATES:
            yield from _strings(value, str(key))


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def type_problems(blocks: list[dict[str, Any]]) -> list[WorkflowProblem]:
    """``unknown_field`` / ``type_mismatch`` problems of normalized blocks (unknown kinds are skipped)."""
    checker = _Checker(blocks)
    for block in blocks:
        if block.get("kind") in KINDS:
            checker.block(block, block["id"])
    unique = {tuple(sorted(p.items())): p for p in checker.problems}  # a reference repeated in one field
    return list(unique.values())
