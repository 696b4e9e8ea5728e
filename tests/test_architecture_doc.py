"""ARCHITECTURE.md stays true, and the layering it describes holds.

Every `path:function` it names exists (a module-level function or class, a method, or a function
nested in one of those); services, backends and the worker never reach for the whole gateway;
no source module grows past 500 lines.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "runyard"
DOC = ROOT / "ARCHITECTURE.md"
HOP = re.compile(r"`(src/runyard/[\w/]+\.py):([A-Za-z_][\w.]*)`")
MAX_LINES = 500


@cache
def _tree(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(), filename=path)


def _defines(body: list[ast.stmt], qualname: list[str]) -> bool:
    head, rest = qualname[0], qualname[1:]
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.name == head:
            return not rest or _defines(node.body, rest)
    return False


def _hops(text: str) -> list[tuple[str, str]]:
    return HOP.findall(text)


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.splitlines()[0]: p for p in parts[1:]}


def test_every_named_hop_exists() -> None:
    hops = _hops(DOC.read_text())
    assert len(hops) >= 40, "ARCHITECTURE.md should name the hops of its three paths"
    missing = [
        f"{path}:{name}"
        for path, name in hops
        if not (ROOT / path).is_file() or not _defines(_tree(path).body, name.split("."))
    ]
    assert not missing, f"ARCHITECTURE.md names what does not exist: {missing}"


def test_three_paths_each_on_one_screen() -> None:
    sections = _sections(DOC.read_text())
    paths = {title: body for title, body in sections.items() if title.startswith("Path ")}
    assert len(paths) == 3, list(sections)
    for title, body in paths.items():
        assert len(_hops(body)) >= 10, f"{title}: too few hops to follow"
        assert len(body.splitlines()) <= 50, f"{title}: longer than a screen"


def test_the_checker_refuses_what_does_not_exist() -> None:
    doc = "`src/runyard/worker.py:Worker._run` `src/runyard/worker.py:Worker.no_such` `src/runyard/nope.py:f`"
    hops = _hops(doc)
    found = [(ROOT / p).is_file() and _defines(_tree(p).body, n.split(".")) for p, n in hops]
    assert found == [True, False, False]


def _imports_gateway(path: Path, src: Path = SRC) -> bool:
    """Does the module at ``path`` (inside the package ``src``) import ``runyard.gateway``?"""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(src.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "runyard.gateway" or a.name.startswith("runyard.gateway.") for a in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = {f"{module}.{a.name}" for a in node.names}
            if module == "runyard.gateway" or "runyard.gateway" in names:
                return True
    return False


def _layered_modules() -> list[Path]:
    return [*sorted((SRC / "services").rglob("*.py")), *sorted((SRC / "backends").rglob("*.py")), SRC / "worker.py"]


@pytest.mark.parametrize("path", _layered_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_service_backend_or_worker_imports_the_gateway(path: Path) -> None:
    assert not _imports_gateway(path), f"{path.relative_to(ROOT)} imports runyard.gateway"


def test_the_import_check_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    services = tmp_path / "runyard" / "services"
    services.mkdir(parents=True)
    cases = {
        "from ..gateway import Gateway": True,
        "from .. import gateway": True,
        "import runyard.gateway": True,
        "from runyard.gateway import Gateway": True,
        "from ..config import RunyardConfig": False,
        "from .tasks import TaskService": False,
    }
    for i, (source, expected) in enumerate(cases.items()):
        module = services / f"m{i}.py"
        module.write_text(f"if False:\n    {source}\n")
        assert _imports_gateway(module, tmp_path / "runyard") is expected, source


def test_no_source_module_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _attached_after_construction(source: str) -> list[str]:
    """Assignments to an attribute of an attribute (``self.tasks.files = ...``) and appends to one
    (``self.ai.observers.append(...)``): wiring done by reaching into a built service."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                found.append(ast.unparse(target))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("append", "extend", "update", "setdefault")
            and isinstance(node.func.value, ast.Attribute)
            and isinstance(node.func.value.value, ast.Attribute)
        ):
            found.append(ast.unparse(node.func))
    return found


def test_the_composition_root_only_passes_collaborators_in() -> None:
    assert _attached_after_construction((SRC / "gateway.py").read_text()) == []
    wired_late = "self.tasks.files = self.files\nself.ai.usage_observers.append(self.limits.observe)\n"
    assert _attached_after_construction(wired_late) == ["self.tasks.files", "self.ai.usage_observers.append"]
