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

# Still too long, each owned by an engineer who is splitting it: remove an entry once its
# function is short. The list only shrinks; a new long function fails the test.
STILL_LONG = {
    ("plugins/module_utils/vsr.py", "cluster_summary"),
}


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
        if length > MAX_LINES and (path, name) not in STILL_LONG
    ]
    assert not too_long, f"functions over {MAX_LINES} lines (split them): " + "; ".join(too_long)


def test_the_list_of_functions_still_long_names_only_long_functions():
    """An entry whose function got short (or went away) is taken off the list."""
    long_now = {(path, name) for path, name, _line, length in _functions() if length > MAX_LINES}
    assert not STILL_LONG - long_now, f"short now, remove from STILL_LONG: {STILL_LONG - long_now}"
