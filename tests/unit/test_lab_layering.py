"""The lab's layering: the system under test (firebreak.kimberlite) and the harness around it
(firebreak.lab) import in one direction only, and nothing imports in a circle.

Every import counts, a function's own included (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PYTHON = Path(__file__).resolve().parents[2] / "python"
PACKAGES = ("firebreak.kimberlite", "firebreak.lab")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PYTHON).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports (``from pkg import mod`` names mod)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def _graph() -> dict[str, set[str]]:
    files = [f for pkg in PACKAGES for f in (PYTHON / pkg.replace(".", "/")).rglob("*.py")]
    known = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, known) - {_module_name(f)} for f in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order, the first repeated), else None."""
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done
    path: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (found := walk(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := walk(m)):
            return found
    return None


def test_the_system_under_test_never_imports_its_harness() -> None:
    graph = _graph()
    sut = {m: deps for m, deps in graph.items() if m.startswith("firebreak.kimberlite")}
    assert {"firebreak.kimberlite.core", "firebreak.kimberlite.replica"} <= set(sut)
    wrong = {m: sorted(d for d in deps if d.startswith("firebreak.lab")) for m, deps in sut.items()}
    assert not {m: d for m, d in wrong.items() if d}, wrong


def test_no_import_circle_in_the_lab_or_the_system_under_test() -> None:
    graph = _graph()
    assert "firebreak.lab.containers" in graph["firebreak.lab.backends"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
