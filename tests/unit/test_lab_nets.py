"""Every lab a test or a benchmark starts has loopback addresses of its own (127.0.N.i).

Two labs on one N collide when they are up at once (the rehearsal tier's shared lab stays up
for the whole tier; a rehearsal's net comes from the registry). Nets are picked by hand in the
test files; this test reads them all and fails on a net used in two places.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import failure_modes as fmr

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit

# NET = 57, CONTAINERS_NET = 95, net=70, NET + 1
_CONST = re.compile(r"^\s*[A-Z_]*NET\s*=\s*(\d+)\b", re.MULTILINE)
_KEYWORD = re.compile(r"\bnet\s*=\s*(\d+)\b")
_PLAIN = re.compile(r"^\s*NET\s*=\s*(\d+)\b", re.MULTILINE)
_OFFSET = re.compile(r"\bNET\s*\+\s*(\d+)\b")


def nets_in(text: str) -> set[int]:
    """The lab nets a test file claims: its constants, its net= keywords, NET + k."""
    base = [int(n) for n in _CONST.findall(text)]
    nets = set(base) | {int(n) for n in _KEYWORD.findall(text)}
    for k in _OFFSET.findall(text):
        nets.update(int(b) + int(k) for b in _PLAIN.findall(text))
    return nets


def claimed() -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for entry in fmr.REGISTRY:
        out[entry["rehearsal_net"]].add("registry " + entry["id"])
    for folder in ("tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == Path(__file__).name:
                continue
            for net in nets_in(path.read_text(encoding="utf-8")):
                out[net].add(str(path.relative_to(ROOT)))
    return out


def test_scanner_reads_every_way_a_test_names_its_net():
    text = "NET = 57  # mine\nCONTAINERS_NET = 95\nbe.up(net=70)\nbe.up(net=NET + 1)\n"
    assert nets_in(text) == {57, 58, 70, 95}
    assert nets_in("x = 127\nnetwork = 5\n") == set()


def test_no_two_places_claim_one_net():
    shared = {n: sorted(w) for n, w in claimed().items() if len(w) > 1}
    assert not shared, f"nets claimed twice (pick a free 127.0.N): {shared}"


def test_the_scan_finds_the_known_labs():
    nets = claimed()
    # the rehearsal tier's shared lab, a processes lab test, FM-003's rehearsal
    assert "tests/rehearsal/conftest.py" in nets[77]
    assert "tests/integration/test_fm007_disk_full.py" in nets[57]
    assert "registry FM-003" in nets[40]
