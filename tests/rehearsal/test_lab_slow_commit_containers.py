"""The slow-commit fault (FM-006) in a containers lab: systemd containers, a real unit restart.

On the rehearsal tier's shared lab (``conftest.py``: containers ``sh-replica-i``, host
addresses ``127.0.77.i``, reset and verified before the test; it used to bring up a lab of its
own on ``127.0.86.i``, FM-006's rehearsal net). Under the lab workload a backup's op - commit
passes 100 while its /metrics answer, and ``systemctl restart kimberlite-vsr`` in its container
clears the fault: it catches up and stays caught up, and no acknowledged write is lost.
"""

from __future__ import annotations

import time

import pytest
from firebreak.lab import workload
from firebreak.lab.backend import http_json
from firebreak.lab.containers import UNIT, ContainerLab
from shared_lab import REPLICAS

pytestmark = pytest.mark.rehearsal

SLOW_MS = 200


def _until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _status(lab: ContainerLab, r: str) -> dict:
    code, body = http_json(f"{lab.api_url(r)}/admin/status", timeout=3)
    assert code == 200, body
    return body


def _lag(lab: ContainerLab, r: str) -> float:
    """op - commit from the replica's /metrics (raises when it does not answer)."""
    m = lab.metrics(r, timeout=3)
    return m["vsr_op_number"] - m["vsr_commit_number"]


def test_slow_commit_lags_a_backup_and_a_unit_restart_clears_it(lab: ContainerLab) -> None:
    workload.start(lab.lab_dir, rate=20, streams=3)
    leader = _status(lab, REPLICAS[0])["leader"]
    backup = next(r for r in reversed(REPLICAS) if r != leader)
    try:
        done = lab.fault("slow-commit", backup, str(SLOW_MS))
        assert done["ms"] == SLOW_MS and _status(lab, backup)["slow_commit_ms"] == SLOW_MS
        t0 = time.monotonic()
        lag = _until(lambda: (x := _lag(lab, backup)) > 100 and x, 30, f"{backup} lag > 100")
        print(f"{backup}: op - commit {lag:.0f} after {time.monotonic() - t0:.1f}s")
        assert _status(lab, backup)["status"] == 0  # Normal, answering, only behind

        pid = _status(lab, backup)["pid"]
        lab.systemctl(backup, "restart", UNIT, check=True)
        s = _until(
            lambda: (x := _status_or_none(lab, backup)) and x["status"] == 0 and x,
            30,
            f"{backup} back in Normal",
        )
        assert s["pid"] != pid and s["slow_commit_ms"] == 0, s
        _until(lambda: _lag(lab, backup) < 10, 30, f"{backup} caught up")
        time.sleep(3)  # with the fault it would be ~50 behind by now
        assert _lag(lab, backup) < 20
    finally:
        workload.stop(lab.lab_dir)
        lab.heal()
    _until(lambda: len({_status(lab, r)["commit"] for r in REPLICAS}) == 1, 30, "equal commits")
    res = workload.check(lab.lab_dir)
    assert res["acknowledged"] > 0 and res["lost"] == 0, res


def _status_or_none(lab: ContainerLab, r: str) -> dict | None:
    try:
        code, body = http_json(f"{lab.api_url(r)}/admin/status", timeout=3)
    except OSError:
        return None
    return body if code == 200 else None
