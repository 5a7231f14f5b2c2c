"""No function in the collection's plugins or the wrapper is longer than MAX_LINES: a longer
one is split into named helpers (or a table) before it lands."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TREES = ("plugins", "python/firebreak")
MAX_LINES = 80


def _walk(node: ast.AST, prefix: str = ""):
    """(qualified name, function node) of every function under ``node``, nested ones too."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + child.name
            if not isinstance(child, ast.ClassDef):
                yield name, child
            yield from _walk(child, name + ".")
        else:
            yield from _walk(child, prefix)


def _functions() -> list[tuple[str, str, int, int]]:
    """(path, qualified name, first line, length) of every function under TREES."""
    found = []
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            module = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for name, node in _walk(module):
                found.append((rel, name, node.lineno, node.end_lineno - node.lineno + 1))
    return found


def test_no_function_is_longer_than_the_limit():
    too_long = [
        f"{path}:{line} {name} ({length} lines)"
        for path, name, line, length in _functions()
        if length > MAX_LINES
    ]
    assert not too_long, f"functions over {MAX_LINES} lines (split them): " + "; ".join(too_long)


def test_the_walk_sees_the_trees_functions():
    """The limit is checked against real functions: both trees, methods and helpers included."""
    seen = {(path, name) for path, name, _line, _length in _functions()}
    assert ("python/firebreak/kimberlite/core.py", "Replica.__init__") in seen
    assert ("plugins/module_utils/vsr.py", "cluster_summary") in seen
