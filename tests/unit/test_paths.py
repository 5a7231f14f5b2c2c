"""The wrapper (firebreak.paths) and the collection (lookup firebreak.incident.state_dir) put
records, evidence and labs in the same state dir, never in a source tree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleError
from firebreak import paths

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "state_dir_lookup", ROOT / "plugins" / "lookup" / "state_dir.py"
)
lookup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lookup)

CASES = [
    ({"FIREBREAK_STATE_DIR": "/srv/fb", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/srv/fb"),
    ({"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/firebreak"),
    ({"FIREBREAK_STATE_DIR": "", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/firebreak"),
    ({"HOME": "/h"}, "/h/.local/state/firebreak"),
]


@pytest.mark.parametrize(("env", "expected"), CASES)
def test_wrapper_and_lookup_agree(monkeypatch, env, expected) -> None:
    for k in ("FIREBREAK_STATE_DIR", "XDG_STATE_HOME", "HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert str(paths.state_dir()) == expected
    assert lookup.state_dir() == expected
    assert lookup.LookupModule().run(["incidents"]) == [str(paths.incidents_dir())]
    assert not str(paths.labs_dir()).startswith(str(ROOT))


@pytest.mark.parametrize("term", ["../etc", "/etc/passwd", "a/../../b"])
def test_lookup_refuses_paths_outside_the_state_dir(term) -> None:
    with pytest.raises(AnsibleError, match="relative path below"):
        lookup.LookupModule().run([term])
