"""FM-008 Clock Drift, for real: triage and ansible-playbook against the shared containers lab.

The lab's clock-skew fault puts a backup's replica on libfaketime reading the offset of its
time-sync daemon (``kimberlite-timesync``, the lab's chronyd: the host's clock is never
touched) and, by its ``HOW``, stops the daemon (seed scenario 1), cuts it from its sources
(scenario 2) or leaves it running with a jump beyond what it slews (scenario 3). Under the
workload: ``firebreak triage`` names FM-008; ``--check`` changes nothing (daemon, offset,
record); the run restarts the daemon and the offset converges below 100 ms with no
acknowledged write lost; unreachable sources escalate to the network team and touch nothing;
a jump is refused until the operator confirms the step, then stepped.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.containers import ContainerLab
from firebreak.lab.node_fault import TIMESYNC_UNIT
from shared_lab import backup_of, record, run_playbook

# $FIREBREAK_LAB_DIR is the shared lab's dir while this module runs (conftest)
pytestmark = [pytest.mark.rehearsal, pytest.mark.usefixtures("shared_lab_dir_env")]

ROOT = Path(__file__).resolve().parents[2]
FIREBREAK = ROOT / ".venv" / "bin" / "firebreak"


def _timesync(lab: ContainerLab, replica: str) -> dict:
    """The daemon as the host sees it: its unit's identity and its status."""
    unit = lab.systemctl(
        replica, "show", TIMESYNC_UNIT, "--property=ActiveState", "--property=InvocationID"
    ).stdout.strip()
    status = json.loads(lab.exec(replica, "kimberlite-timesync", "status", "--json").stdout)
    return {"unit": unit, "offset_ms": status["offset_ms"], "state": status["state"]}


def _offset(lab: ContainerLab, replica: str) -> float:
    """The replica's own measure (0 while it restarts under the fault and does not answer)."""
    try:
        return lab.metrics(replica).get("vsr_clock_offset_ms", 0.0)
    except OSError:
        return 0.0


def _skew(lab: ContainerLab, arg: str) -> str:
    """A backup's clock skewed (``arg``: MS[:HOW]), until its replica measures it."""
    target = backup_of(lab)
    lab.fault("clock-skew", target, arg)
    want = float(arg.split(":")[0]) * 0.8
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _offset(lab, target) < want:
        time.sleep(0.5)
    assert _offset(lab, target) >= want, f"{target} never measured its skew {arg}"
    return target


def _no_lost_write(lab: ContainerLab) -> dict:
    workload.stop(lab.lab_dir)
    res = workload.check(lab.lab_dir)
    # lost = 0 counts only when writes were acknowledged
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert res["history_violations"] == 0, res
    return res


def test_fm008_triage_names_a_skewed_backup_then_check_changes_nothing_then_it_heals(
    lab: ContainerLab, work: dict
) -> None:
    workload.start(lab.lab_dir)
    target = _skew(lab, "500")
    # The skewed replica's ticker survives libfaketime (it died of EINVAL in time.sleep).
    journal = lab.journal(target, 300)
    assert "Errno 22" not in journal and "Exception in thread" not in journal, journal[-2000:]

    tri = subprocess.run(
        [str(FIREBREAK), "triage", "-i", str(lab.inventory_path()), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    verdict = json.loads(tri.stdout)
    triage = verdict.get("triage", verdict)
    assert triage["failure_mode"] == "FM-008" and triage["targets"] == [target], tri.stdout[-3000:]

    before = _timesync(lab, target)
    assert before["state"] == "stopped" and "ActiveState=inactive" in before["unit"], before
    check = run_playbook(lab, work, "fm008_clock_drift", check=True, incident="INC-CHECK")
    assert check.rc == 0, check
    assert check.host_changes() == [], check.host_changes()
    after = _timesync(lab, target)
    assert after["unit"] == before["unit"] and after["offset_ms"] == before["offset_ms"], after
    assert not (work["incidents"] / "INC-CHECK.json").exists(), "--check wrote a record"
    assert not work["locks"].exists() or not any(work["locks"].iterdir()), "--check took a lock"
    assert not work["evidence"].exists() or not any(work["evidence"].iterdir())

    run = run_playbook(lab, work, "fm008_clock_drift")
    assert run.rc == 0, run
    assert abs(_offset(lab, target)) < 100
    assert _timesync(lab, target)["state"] in ("synchronised", "slewing")
    rec = record(work)
    acts = [e.get("action") for e in rec["timeline"]]
    assert rec["state"] == "mitigated" and "timesync_restart" in acts, acts
    assert "clock_offset_converged" in acts and "clock_step" not in acts, acts
    _no_lost_write(lab)


def test_fm008_unreachable_time_servers_escalate_to_the_network_team(
    lab: ContainerLab, work: dict
) -> None:
    target = _skew(lab, "500:unreachable")
    before = _timesync(lab, target)
    run = run_playbook(lab, work, "fm008_clock_drift")
    assert run.rc != 0 and any("network team" in f for f in run.failures()), run
    assert _timesync(lab, target) == before  # the daemon untouched, the offset as it was
    rec = record(work)
    assert rec["state"] == "escalated", rec["state"]
    tasks = [e for e in rec["timeline"] if e["type"] == "task"]
    assert any(t["detail"]["owner"] == "network team" for t in tasks), tasks


def test_fm008_a_jumped_clock_is_stepped_only_once_the_operator_confirms(
    lab: ContainerLab, work: dict
) -> None:
    target = _skew(lab, "5000:running")
    assert _timesync(lab, target)["state"] == "step needed"
    refused = run_playbook(lab, work, "fm008_clock_drift", incident="INC-NO")
    assert refused.rc != 0 and any("CAN BREAK CONSENSUS" in f for f in refused.failures())
    assert _timesync(lab, target)["offset_ms"] == 5000.0  # not stepped
    no = record(work, "INC-NO")
    assert "clock_step" not in [e.get("action") for e in no["timeline"]]

    run = run_playbook(lab, work, "fm008_clock_drift", "fm008_clock_drift_confirm_step=true")
    assert run.rc == 0, run
    assert _timesync(lab, target)["offset_ms"] == 0.0 and abs(_offset(lab, target)) < 100
    entries = {e.get("action"): e for e in record(work)["timeline"]}
    assert entries["clock_step_confirmation"]["decision"] == "allow"
    assert "operator" in entries["clock_step_confirmation"]["outcome"]
    assert "clock_step" in entries and "quorum_guard" in entries, sorted(entries)
