"""`reset` in processes mode (127.0.78.x, this test's own net): the same contract as the
containers lab's (tests/rehearsal/test_lab_reset.py), without systemd.

Faults at once (one replica killed, one slow-committing and partitioned, a workload writing),
one ``reset``: read from the replicas themselves, every one is Normal in one view with equal
commits and no slow commit, and the workload is stopped with its history gone. A replica that
refuses to boot (``corrupt unrepairable``) makes the reset raise LabError naming it; once its
data dir is emptied the next reset recovers it. Options given to ``reset`` reach the config
files and restart only the replicas whose config changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.backend import LabError
from processes_lab import admin_status, all_normal_same_commit, member, processes_lab, wait

pytestmark = pytest.mark.lab

NET = 78
HISTORY = ("attempts.jsonl", "acks.jsonl", "reads.jsonl", "pid", "history")


@pytest.fixture
def lab(tmp_path: Path):
    with processes_lab(tmp_path / "lab", NET, scrub_interval_s=2) as be:
        yield be


def _acks(be) -> int:
    path = be.dir / "workload" / "acks.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _assert_fresh(be) -> None:
    sts = all_normal_same_commit(be)
    assert sts, [admin_status(m) for m in be.state()["replicas"]]
    assert [s["slow_commit_ms"] for s in sts] == [0] * len(sts), sts
    assert [s["partitioned_from"] for s in sts] == [[]] * len(sts), sts
    assert workload.running(be.dir) is None
    left = [n for n in HISTORY if (be.dir / "workload" / n).exists()]
    assert left == [], f"workload history left: {left}"


def test_processes_reset_undoes_faults_refuses_what_cannot_start_and_applies_options(lab) -> None:
    leader = lab.resolve("leader")
    slow, killed = [m["name"] for m in lab.state()["replicas"] if m["name"] != leader]
    workload.start(lab.dir, rate=10, streams=2, workers=2)
    wait(lambda: _acks(lab) >= 5, 30, "the workload's first acknowledgements")
    lab.fault("slow-commit", slow, "200")
    lab.fault("partition", slow, killed)
    lab.fault("kill", killed)
    assert admin_status(member(lab, slow))["slow_commit_ms"] == 200
    report = lab.reset(timeout=60)
    print(f"reset: {report}")
    _assert_fresh(lab)
    assert report["restarted"] == [] and killed in " ".join(report["healed"]), report

    # A replica that refuses to boot: the reset names it, at once.
    lab.fault("corrupt", killed, "unrepairable")
    lab.fault("kill", killed)
    with pytest.raises(LabError) as denied:
        lab.reset(timeout=60)
    msg = str(denied.value)
    assert msg.startswith(f"lab not reset: {killed}: {killed} exited during start-up"), msg
    assert "checksum mismatch" in msg, msg
    # Emptied, it re-syncs from scratch: the next reset recovers it.
    data = Path(member(lab, killed)["data_dir"])
    for p in data.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    lab.reset(timeout=60)
    _assert_fresh(lab)

    # Options: written where they differ, those replicas restarted; the same again: nothing.
    pids = lab.replica_pids()
    report = lab.reset({"scrub_interval_s": 3600, "checkpoint_interval": 50})
    assert sorted(report["restarted"]) == sorted(pids), report
    for m in lab.state()["replicas"]:
        cfg = json.loads(Path(m["config"]).read_text())
        assert (cfg["scrub_interval_s"], cfg["checkpoint_interval"]) == (3600, 50), cfg
    after = lab.replica_pids()
    assert all(after[n] != pids[n] for n in pids), (pids, after)
    assert lab.reset({"scrub_interval_s": 3600, "checkpoint_interval": 50})["restarted"] == []
    assert lab.replica_pids() == after
    _assert_fresh(lab)
