"""Server-side SVG: horizontal bar charts, a workflow's DAG and a run's waterfall.

Drawn here (no JavaScript, no library): text is escaped with :func:`markupsafe.escape` and
every number is formatted by Python, so the markup is safe to embed in a page as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

NODE_W, NODE_H, GAP_X, GAP_Y = 150, 44, 60, 22
COLORS = {
    "input": "#5b8def",
    "output": "#5b8def",
    "llm": "#9b59b6",
    "agent": "#9b59b6",
    "condition": "#e67e22",
    "router": "#e67e22",
    "map": "#16a085",
    "function": "#2c3e50",
    "app": "#2c3e50",
    "http": "#7f8c8d",
}
STATUS_COLORS = {"success": "#27ae60", "error": "#c0392b", "skipped": "#95a5a6"}


def bars(items: Sequence[tuple[str, float]], *, unit: str = "", width: int = 420) -> Markup:
    """Horizontal bars, one per ``(label, value)``, scaled to the largest."""
    if not items:
        return Markup('<p class="muted">no data yet</p>')
    row_h, label_w = 22, 150
    top = max(v for _, v in items) or 1.0
    height = row_h * len(items) + 4
    parts = [f'<svg class="bars" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">']
    for i, (label, value) in enumerate(items):
        y = i * row_h + 2
        w = max(1.0, (width - label_w - 90) * value / top)
        text = escape(label if len(label) <= 22 else label[:21] + "…")
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{text}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" rx="2"><title>{escape(label)}'
            f"</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{escape(_num(value))}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(value: float) -> str:
    if value and abs(value) < 0.01:
        return f"{value:.6f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4f}"


def layers(deps: dict[str, list[str]]) -> dict[str, int]:
    """Each block's column: one past its deepest dependency (cycles are cut)."""
    depth: dict[str, int] = {}

    def visit(block: str, seen: frozenset[str]) -> int:
        if block in depth:
            return depth[block]
        parents = [d for d in deps.get(block, []) if d in deps and d not in seen]
        depth[block] = 1 + max((visit(p, seen | {block}) for p in parents), default=-1)
        return depth[block]

    for block in deps:
        visit(block, frozenset())
    return depth


def dag(blocks: list[dict[str, Any]], deps: dict[str, list[str]]) -> Markup:
    """A workflow's blocks as boxes in dependency columns, with an arrow per dependency."""
    if not blocks:
        return Markup('<p class="muted">no blocks</p>')
    column = layers({b["id"]: deps.get(b["id"], []) for b in blocks})
    rows: dict[int, int] = {}
    at: dict[str, tuple[int, int]] = {}
    for block in blocks:
        col = column[block["id"]]
        at[block["id"]] = (col * (NODE_W + GAP_X) + 10, rows.get(col, 0) * (NODE_H + GAP_Y) + 10)
        rows[col] = rows.get(col, 0) + 1
    width = (max(column.values()) + 1) * (NODE_W + GAP_X) + 10
    height = max(rows.values()) * (NODE_H + GAP_Y) + 10
    parts = [
        f'<svg class="dag" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#888"/></marker></defs>'
    ]
    for block in blocks:
        x2, y2 = at[block["id"]]
        for dep in deps.get(block["id"], []):
            if dep not in at:
                continue
            x1, y1 = at[dep]
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (sx + ex) / 2
            parts.append(
                f'<path class="edge" d="M {sx} {sy} C {mid} {sy}, {mid} {ey}, {ex - 2} {ey}" '
                'fill="none" stroke="#888" marker-end="url(#arrow)"/>'
            )
    for block in blocks:
        x, y = at[block["id"]]
        kind = str(block.get("kind", "?"))
        color = COLORS.get(kind, "#555")
        parts.append(
            f'<g class="node" data-block="{escape(block["id"])}"><rect x="{x}" y="{y}" width="{NODE_W}" '
            f'height="{NODE_H}" rx="6" fill="#fff" stroke="{color}" stroke-width="2"/>'
            f'<text x="{x + 10}" y="{y + 19}" class="node-id">{escape(_short(block["id"]))}</text>'
            f'<text x="{x + 10}" y="{y + 35}" class="node-kind" fill="{color}">{escape(kind)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(text: str, n: int = 20) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def waterfall(spans: list[dict[str, Any]], *, width: int = 640) -> Markup:
    """A run's trace spans (children indented under their parent) as bars on a shared clock."""
    flat: list[tuple[int, dict[str, Any]]] = []

    def walk(items: list[dict[str, Any]], level: int) -> None:
        for span in items:
            flat.append((level, span))
            walk(span.get("children") or [], level + 1)

    walk(spans, 0)
    clock = {id(s): (_t(s.get("startTime")), _t(s.get("endTime"))) for _, s in flat}
    starts = [a for a, _ in clock.values() if a is not None]
    if not starts:
        return Markup('<p class="muted">no spans</p>')
    start = min(starts)
    end = max(b if b is not None else (a or start) for a, b in clock.values())
    total = max(end - start, 1e-9)
    row_h, label_w = 22, 170
    plot_w = width - label_w - 80
    height = row_h * len(flat) + 4
    parts = [f'<svg class="waterfall" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">']
    for i, (level, span) in enumerate(flat):
        y = i * row_h + 2
        a, b = clock[id(span)]
        s0 = a if a is not None else start
        s1 = b if b is not None else s0
        x = label_w + plot_w * (s0 - start) / total
        w = max(2.0, plot_w * (s1 - s0) / total)
        color = STATUS_COLORS.get(str(span.get("status")), "#5b8def")
        label = escape(_short(("  " * level) + str(span.get("blockId", "?")), 24))
        parts.append(
            f'<text x="4" y="{y + 15}" xml:space="preserve">{label}</text>'
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}" rx="2">'
            f"<title>{escape(str(span.get('blockId')))}: {escape(str(span.get('status')))}</title></rect>"
            f'<text x="{x + w + 4:.1f}" y="{y + 15}">{escape(_dur(span.get("duration")))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _t(value: Any) -> float | None:
    """Seconds from an ISO 8601 time (the spans' clock) or a number."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _dur(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return f"{value:.0f} ms" if value >= 1 else f"{value:.2f} ms"
