"""The console's server-side drawing and rendering helpers: escaping, layout, CSV safety."""

from __future__ import annotations

from runyard.server.console import svg
from runyard.server.console.pages_data import _csv_safe
from runyard.server.console.render import file_refs, make_env, pretty

SCRIPT = "<script>alert(1)</script>"


def test_bars_and_graphs_escape_labels() -> None:
    drawn = str(svg.bars([(SCRIPT, 3.0), ("ok", 1.0)]))
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn
    assert drawn.count("<rect") == 2
    dag = str(svg.dag([{"id": "a", "kind": "input"}, {"id": "b", "kind": SCRIPT}], {"a": [], "b": ["a"]}))
    assert "<script>" not in dag and dag.count('class="edge"') == 1
    spans = [{"blockId": SCRIPT, "status": "success", "startTime": "2026-01-01T00:00:00+00:00",
              "endTime": "2026-01-01T00:00:01+00:00", "duration": 1000.0,
              "children": [{"blockId": "child", "status": "error", "startTime": "2026-01-01T00:00:00.5+00:00",
                            "endTime": "2026-01-01T00:00:01+00:00", "duration": 500.0}]}]  # fmt: skip
    fall = str(svg.waterfall(spans))
    assert "<script>" not in fall and fall.count("<rect") == 2 and "1000 ms" in fall


def test_dag_columns_follow_dependencies_and_survive_cycles() -> None:
    assert svg.layers({"a": [], "b": ["a"], "c": ["a", "b"], "d": []}) == {"a": 0, "b": 1, "c": 2, "d": 0}
    cyclic = svg.layers({"x": ["y"], "y": ["x"]})
    assert set(cyclic) == {"x", "y"}  # cut, not endless


def test_templates_autoescape_and_helpers() -> None:
    env = make_env()
    assert "&lt;script&gt;" in env.from_string("{{ v }}").render(v=SCRIPT)
    assert pretty('{"a": 1}') == '{\n  "a": 1\n}' and pretty("{not json") == "{not json"
    ref = "runyard://files/01a247f4-b2f8-73c3-8ab0-21032355cf57"
    assert file_refs({"x": [ref, ref], "y": "plain"}) == ["01a247f4-b2f8-73c3-8ab0-21032355cf57"]


def test_csv_cells_never_start_a_formula() -> None:
    assert _csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)" and _csv_safe("+1") == "'+1"
    assert _csv_safe("gpt") == "gpt" and _csv_safe(3) == 3
