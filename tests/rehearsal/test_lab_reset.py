"""The shared lab's reset is itself verified: what it claims is checked here from the outside.

On the rehearsal tier's shared lab (``conftest.py``). Several faults at once (a clock skew and a
slow commit on one backup, the other backup killed, the leader's disk filled, a workload
writing) and one ``reset``: every replica then answers Normal, in one view, with equal commits,
no slow commit, no fill file, no clock drop-in, and the workload is stopped with its history
gone; a fresh workload afterwards checks clean (nothing "unexpected" from the earlier one). All
read here from the replicas' /metrics and /admin/status, the containers and the lab dir, not
from the report. The deny paths: a replica whose unit cannot start (a drop-in whose
``ExecStartPre`` fails) makes the reset raise LabError naming it, at once; a replica left
isolated (which no heal undoes) makes the verification itself refuse; and the next reset
recovers. A config change through ``reset`` (and ``firebreak lab reset``) reaches the replicas'
config files and, through the restart, the running replicas (their scrubber's pace).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import pytest
from firebreak.lab import workload
from firebreak.lab.backend import LabError, http_json
from firebreak.lab.containers import (
    CLOCK_DROPIN,
    CONFIG_PATH,
    FILL_FILE,
    REPO_ROOT,
    UNIT,
    ContainerLab,
)
from shared_lab import REPLICAS, backup_of, leader_of

pytestmark = pytest.mark.rehearsal

BROKEN_DROPIN = f"/etc/systemd/system/{UNIT}.service.d/zz-test-cannot-start.conf"
FIREBREAK = str(REPO_ROOT / ".venv" / "bin" / "firebreak")
HISTORY = ("attempts.jsonl", "acks.jsonl", "reads.jsonl", "pid", "history")


def _until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _status(lab: ContainerLab, r: str) -> dict:
    code, body = http_json(f"{lab.api_url(r)}/admin/status", timeout=3)
    assert code == 200, (r, code, body)
    return body


def _invocation(lab: ContainerLab, r: str) -> str:
    return lab.systemctl(r, "show", UNIT, "-p", "InvocationID", "--value").stdout.strip()


def _acks(lab: ContainerLab) -> int:
    path = lab.lab_dir / "workload" / "acks.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _streams(lab: ContainerLab) -> set[str]:
    """The streams the workload's acknowledged writes went to (a torn last line skipped)."""
    out = set()
    for line in (lab.lab_dir / "workload" / "acks.jsonl").read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.add(json.loads(line)["stream"])
    return out


def _assert_fresh(lab: ContainerLab) -> dict:
    """The lab as a fresh test must find it, read from the replicas and the lab dir."""
    metrics = {r: lab.metrics(r, timeout=3) for r in REPLICAS}
    status = {r: _status(lab, r) for r in REPLICAS}
    assert {r: m["vsr_replica_status"] for r, m in metrics.items()} == dict.fromkeys(REPLICAS, 0)
    assert len({m["vsr_view_number"] for m in metrics.values()}) == 1, metrics
    assert len({m["vsr_commit_number"] for m in metrics.values()}) == 1, metrics
    assert {r: s["slow_commit_ms"] for r, s in status.items()} == dict.fromkeys(REPLICAS, 0)
    assert {r: lab.unit_state(r) for r in REPLICAS} == dict.fromkeys(REPLICAS, "active")
    for r in REPLICAS:
        assert not (lab.data_path(r) / FILL_FILE).exists(), f"{r}: fill file left"
        assert lab.exec(r, "test", "-e", CLOCK_DROPIN).returncode != 0, f"{r}: clock drop-in"
        assert not status[r]["isolated"], r
    assert workload.running(lab.lab_dir) is None
    left = [n for n in HISTORY if (lab.lab_dir / "workload" / n).exists()]
    assert left == [], f"workload history left: {left}"
    return {"view": metrics[REPLICAS[0]]["vsr_view_number"], "metrics": metrics}


def test_reset_undoes_several_faults_at_once_and_is_verified(lab: ContainerLab) -> None:
    leader = leader_of(lab)
    skewed, killed = [r for r in REPLICAS if r != leader]
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    _until(lambda: _acks(lab) >= 5, 30, "the workload's first acknowledgements")
    old_streams = _streams(lab)
    lab.fault("clock-skew", skewed, "5000")  # the unit restarts under libfaketime
    lab.wait_ready(timeout=60, replicas=[skewed])
    lab.fault("slow-commit", skewed, "200")
    lab.fault("kill", killed)
    lab.fault("disk-full", leader)
    # The faults are real before the reset.
    assert _status(lab, skewed)["slow_commit_ms"] == 200
    assert lab.exec(skewed, "test", "-e", CLOCK_DROPIN).returncode == 0
    assert lab.unit_state(killed) != "active"
    assert (lab.data_path(leader) / FILL_FILE).exists()
    assert workload.running(lab.lab_dir) is not None

    report = lab.reset(timeout=120)
    print(f"reset: {report}")
    fresh = _assert_fresh(lab)
    assert report["view"] == fresh["view"], (report, fresh["view"])
    # Fresh means fresh: a new workload writes streams of its own and checks clean.
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    try:
        _until(lambda: _acks(lab) >= 10, 30, "the fresh workload's acknowledgements")
    finally:
        workload.stop(lab.lab_dir)
    res = workload.check(lab.lab_dir)
    assert res["ok"] and res["unexpected"] == 0 and res["lost"] == 0, res
    assert not set(res["streams"]) & old_streams, (res["streams"], old_streams)


def test_a_reset_that_cannot_succeed_names_the_replica_and_the_next_recovers(
    lab: ContainerLab,
) -> None:
    target = backup_of(lab)
    others = [r for r in REPLICAS if r != target]
    lab.exec(target, "mkdir", "-p", os.path.dirname(BROKEN_DROPIN), check=True)
    script = f"printf '[Service]\\nExecStartPre=/bin/false\\n' > {BROKEN_DROPIN}"
    lab.exec(target, "sh", "-c", script, check=True)
    try:
        lab.systemctl(target, "daemon-reload", check=True)
        lab.fault("kill", target)
        t0 = time.monotonic()
        with pytest.raises(LabError) as denied:
            lab.reset(timeout=90)
        took = time.monotonic() - t0
        msg = str(denied.value)
        print(f"refused in {took:.1f}s: {msg}")
        assert msg.startswith(f"lab not reset: {target}: {target} did not stay up (failed)"), msg
        assert not any(f"{r}:" in msg for r in others), msg
        assert took < 60, f"the refusal waited out the timeout ({took:.0f}s)"
        assert lab.unit_state(target) == "failed"
    finally:
        lab.exec(target, "rm", "-f", BROKEN_DROPIN)
        lab.systemctl(target, "daemon-reload")
    lab.reset()
    _assert_fresh(lab)


def test_the_verification_refuses_what_no_heal_undoes(lab: ContainerLab) -> None:
    """An isolated replica (a runbook's step, not a lab fault) is Normal and up: only the
    verification can see that the lab is not reset, and it names the replica."""
    target = backup_of(lab)
    assert http_json(f"{lab.api_url(target)}/admin/isolate", "POST", {})[0] == 200
    try:
        with pytest.raises(LabError) as denied:
            lab.reset(timeout=5)
        msg = str(denied.value)
        assert msg == f"lab not reset within 5s: {target}: isolated", msg
    finally:
        http_json(f"{lab.api_url(target)}/admin/rejoin", "POST", {})
    lab.reset()
    _assert_fresh(lab)


def _config(lab: ContainerLab, r: str) -> dict:
    return json.loads(lab.exec(r, "cat", CONFIG_PATH, check=True).stdout)


def _tours(lab: ContainerLab) -> dict[str, int]:
    return {r: _status(lab, r)["scrub_tours"] for r in REPLICAS}


def test_a_config_change_through_reset_applies(lab: ContainerLab) -> None:
    before = {r: _invocation(lab, r) for r in REPLICAS}
    report = lab.reset(config_extra={"scrub_interval_s": 3600})
    assert sorted(report["restarted"]) == REPLICAS, report
    assert {r: _config(lab, r)["scrub_interval_s"] for r in REPLICAS} == dict.fromkeys(
        REPLICAS, 3600
    )
    restarted = {r: _invocation(lab, r) for r in REPLICAS}
    assert all(restarted[r] != before[r] for r in REPLICAS), (before, restarted)
    # The running replicas read it: no scrub tour in 3 s (at 2 s there would be one).
    time.sleep(3)
    assert _tours(lab) == dict.fromkeys(REPLICAS, 0)

    # Asked again for the same options: nothing restarts.
    assert lab.reset(config_extra={"scrub_interval_s": 3600})["restarted"] == []
    assert {r: _invocation(lab, r) for r in REPLICAS} == restarted

    # `firebreak lab reset` changes the option given and keeps the rest.
    env = dict(os.environ, FIREBREAK_LAB_DIR=str(lab.lab_dir))
    proc = subprocess.run(
        [FIREBREAK, "lab", "reset", "--scrub-interval", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"] == {"scrub_interval_s": 1} and sorted(out["restarted"]) == REPLICAS
    assert {r: _config(lab, r)["scrub_interval_s"] for r in REPLICAS} == dict.fromkeys(REPLICAS, 1)
    _until(lambda: all(t >= 2 for t in _tours(lab).values()), 10, "a scrub tour a second")
    _assert_fresh(lab)
