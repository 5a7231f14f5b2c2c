"""`firebreak triage` names each failure mode on its own fault: every registry entry's lab fault
(``fault`` argv lists) injected into one processes lab, reset and verified between cases, with
the workload writing, then the real triage playbook. A new failure mode is a new case here
with no edit: the list is the registry's.

A failure mode whose registry fault does not provoke it yet is listed in ``NOT_YET`` with why.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from firebreak import runner
from firebreak.collection import module_utils
from firebreak.lab import workload
from firebreak.lab.processes import ProcessesBackend

pytestmark = pytest.mark.lab

NET = 72  # 127.0.72.i: this test's own addresses
failure_modes = module_utils("failure_modes")
# failure mode -> why its registry fault is not triaged here (each one is a known gap)
NOT_YET: dict[str, str] = {}
# A reset heals, restarts and verifies the lab but repairs no corruption (its counters stay):
# the faults that corrupt run last, so that no other case sees their checksum failures.
LAST = ("corrupt",)
CASES = sorted(
    (e["id"] for e in failure_modes.REGISTRY if e["id"] not in NOT_YET),
    key=lambda fm: any(f[0] in LAST for f in failure_modes.get(fm)["fault"]),
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    be = ProcessesBackend(tmp_path_factory.mktemp("triage-faults-lab"))
    try:
        be.up(replicas=3, net=NET, checkpoint_interval=20, scrub_interval_s=1.0)
        yield be
    finally:
        workload.stop(be.dir)
        be.down()


def _inject(be: ProcessesBackend, argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    target = rest[rest.index("--replica") + 1]
    args = [
        a for i, a in enumerate(rest) if a != "--replica" and (i == 0 or rest[i - 1] != "--replica")
    ]
    be.fault(kind, target, args[0] if args else None)


@pytest.mark.parametrize("fm", CASES)
def test_triage_names_the_failure_mode_of_each_registry_fault(lab, fm, tmp_path):
    entry = failure_modes.get(fm)
    lab.reset()
    workload.start(lab.dir, rate=10, streams=2, workers=2)
    try:
        time.sleep(2)  # acknowledged writes before the fault
        for argv in entry["fault"]:
            _inject(lab, argv)
        deadline, triage = time.monotonic() + 45, {}
        while time.monotonic() < deadline:
            run = runner.run_playbook(
                "triage", inventory=Path(lab.inventory()), incident_dir=tmp_path / "inc"
            )
            assert run.status == "successful", [(t.task, t.message) for t in run.failed_tasks]
            triage = run.facts("firebreak_triage")
            if triage["failure_mode"] == fm:
                break
            time.sleep(1)
    finally:
        workload.stop(lab.dir)
    assert triage["failure_mode"] == fm, (entry["fault"], triage["findings"])
    assert triage["severity"] == entry["severity"] and triage["runbook"] == failure_modes.runbook(
        fm
    )
    assert triage["evidence"], "a verdict without its evidence"


def test_every_failure_mode_is_triaged_here_or_says_why_not():
    assert set(CASES) | set(NOT_YET) == {e["id"] for e in failure_modes.REGISTRY}
    assert all(NOT_YET.values())
