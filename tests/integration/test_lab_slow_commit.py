"""The lab's slow-commit fault (FM-006, Commit Lag) in processes mode, on 127.0.56.x.

Under the lab workload a backup given ``slow-commit`` keeps acknowledging prepares but executes
slowly: its op - commit passes the seed's 100 while its /metrics keep answering, the real
``vsr_metrics`` module and ``vsr_classify`` filter (in a playbook run) call it FM-006 (not a
crash, FM-005, nor latency, FM-004); a restart of that replica clears the fault and it catches
up, losing no acknowledged write; ``heal`` clears it in place too.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.backend import http_json
from playbook_harness import run_tasks
from processes_lab import member, processes_lab, wait

pytestmark = pytest.mark.lab

NET = 56
SLOW_MS = 200
RATE = 20  # the workload's default (`lab workload start`)
ORDER = ["replica-1", "replica-2", "replica-3"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("slow-commit-lab")
    with processes_lab(d, NET) as be:
        yield be


@pytest.fixture
def under_workload(lab):
    """The lab workload running (stopped and checked afterwards: nothing acknowledged lost).
    The history is the lab's whole: the streams hold every earlier test's writes too."""
    workload.start(lab.dir, rate=RATE, streams=3)
    try:
        yield lab
    finally:
        workload.stop(lab.dir)
        lab.heal()  # a failing test leaves no fault for the next one
    wait(lambda: _same_commits(lab), 20, "equal commits on every replica")
    res = workload.check(lab.dir)
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert res["duplicated"] == 0 and res["unexpected"] == 0, res


def _status(be, name: str) -> dict:
    code, s = http_json(member(be, name)["api_url"] + "/admin/status", timeout=2)
    assert code == 200, s
    return s


def _same_commits(be) -> list | None:
    sts = [_status(be, n) for n in ORDER]
    ok = all(s["status"] == 0 for s in sts) and len({(s["view"], s["commit"]) for s in sts}) == 1
    return [(s["replica"], s["commit"]) for s in sts] if ok else None


def _metrics(be, name: str) -> dict[str, float]:
    """op and commit from the replica's /metrics (raises when it does not answer)."""
    url = member(be, name)["metrics_url"]
    with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
        body = resp.read().decode()
    with urllib.request.urlopen(url + "/health", timeout=2) as resp:
        assert resp.status == 200
    out = {}
    for key in ("vsr_op_number", "vsr_commit_number"):
        m = re.search(rf"^{key}\{{[^}}]*\}} (\S+)$", body, re.M)
        assert m, f"{key} not in {name}'s metrics"
        out[key] = float(m.group(1))
    return out


def _lag(be, name: str) -> float:
    m = _metrics(be, name)
    return m["vsr_op_number"] - m["vsr_commit_number"]


def _classify(be, tmp_path: Path) -> dict:
    """The real vsr_metrics module on the lab's metrics, its result through vsr_classify."""
    endpoints = [member(be, n)["metrics_url"] for n in ORDER]
    run = run_tasks(
        [
            {
                "name": "lab",
                "module": "firebreak.incident.vsr_metrics",
                "args": {"endpoints": endpoints, "replica_order": ORDER, "timeout": 3},
                "filter": "firebreak.incident.vsr_classify",
            }
        ],
        tmp_path,
    )
    assert not run.results["lab"]["failed"], run.results["lab"]
    return run.filtered["lab"]


def test_slow_commit_backup_is_fm006_and_a_restart_clears_it(under_workload, tmp_path) -> None:
    be = under_workload
    done = be.fault("slow-commit", "backup", str(SLOW_MS))
    target = done["replica"]
    leader = be.resolve("leader")
    assert target != leader and done["ms"] == SLOW_MS
    assert _status(be, target)["slow_commit_ms"] == SLOW_MS
    commit_at_fault = _status(be, leader)["commit"]
    t0 = time.monotonic()
    # every poll reads the metrics (a paused or dead replica would raise here)
    lag = wait(
        lambda: (x := _lag(be, target)) > 100 and x, 20, f"{target} op - commit > 100", pause=0.2
    )
    took = time.monotonic() - t0
    print(f"{target}: op - commit {lag:.0f} after {took:.1f}s at rate {RATE}, {SLOW_MS} ms/op")
    # the cluster keeps committing with the others, and the other backup keeps up
    assert _status(be, leader)["commit"] > commit_at_fault + 100
    other = next(n for n in ORDER if n not in (target, leader))
    assert _lag(be, other) < 20

    verdict = _classify(be, tmp_path)
    assert verdict["overall"]["failure_mode"] == "FM-006", verdict
    assert verdict["overall"]["targets"] == [target], verdict
    found = {f["fm"] for f in verdict["findings"]}
    assert "FM-005" not in found and "FM-001" not in found, verdict["findings"]

    # the runbook's remedy: restart the replica (stop, then start: heal only starts it here)
    old_pid = _status(be, target)["pid"]
    be.fault("stop", target)
    healed = be.heal()
    assert healed["healed"] == [f"restarted {target}"] and not healed["failed"], healed
    wait(lambda: _status(be, target)["status"] == 0, 20, f"{target} back in Normal")
    s = _status(be, target)
    assert s["pid"] != old_pid and s["slow_commit_ms"] == 0, s
    wait(lambda: _lag(be, target) < 10, 20, f"{target} caught up")
    # and stays caught up: with the fault it would grow by ~17 ops a second
    time.sleep(3)
    assert _lag(be, target) < 20


def test_heal_ends_slow_commit_in_place(under_workload) -> None:
    be = under_workload
    target = be.fault("slow-commit", "backup", str(SLOW_MS))["replica"]
    pid = _status(be, target)["pid"]
    wait(lambda: _lag(be, target) > 50, 20, f"{target} op - commit > 50")
    healed = be.heal()
    assert healed["healed"] == [f"cleared slow-commit on {target}"], healed
    s = _status(be, target)
    assert s["slow_commit_ms"] == 0 and s["pid"] == pid, s
    wait(lambda: _lag(be, target) < 10, 10, f"{target} caught up")
    time.sleep(3)
    assert _lag(be, target) < 20
