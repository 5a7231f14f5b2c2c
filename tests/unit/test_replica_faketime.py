"""The replica's sleeps under libfaketime (the lab's clock-skew fault).

Python 3.11's ``time.sleep`` is ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)``; libfaketime
with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` shifts that absolute deadline by the faked wall clock
into a negative time, so the call fails with EINVAL. The replica's ticker thread died of it at
start-up (``OSError: [Errno 22]``) while the replica still reported Normal. The replica sleeps
with ``replica.pause`` (a timed wait on a lock), which libfaketime leaves alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from firebreak.lab.node_fault import FAKETIME_LIB, faketime_env

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, time
from firebreak.kimberlite import replica
sleep = {"pause": replica.pause, "time.sleep": time.sleep}[sys.argv[1]]
t0, errors = time.monotonic(), []
for _ in range(20):
    try:
        sleep(0.01)
    except OSError as exc:
        errors.append(str(exc))
print(json.dumps({"elapsed": time.monotonic() - t0, "errors": errors, "wall": time.time()}))
"""


def _probe(which: str, skew_ms: float | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    if skew_ms is not None:
        env.update(faketime_env(skew_ms))
    res = subprocess.run(
        [sys.executable, "-c", PROBE, which],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


needs_faketime = pytest.mark.skipif(
    not Path(FAKETIME_LIB).exists(), reason=f"libfaketime not installed ({FAKETIME_LIB})"
)


@needs_faketime
@pytest.mark.parametrize("skew_ms", [5000, -5000, 500])
def test_pause_sleeps_under_libfaketime(skew_ms):
    out = _probe("pause", skew_ms)
    assert out["errors"] == []
    # 20 pauses of 10 ms really waited (a failing sleep returns at once)
    assert out["elapsed"] >= 0.18, out


@needs_faketime
def test_the_cause_time_sleep_fails_under_libfaketime():
    """The interaction the fix works around, on this machine's libfaketime: if it ever stops
    failing, the workaround can go (and this test says so)."""
    out = _probe("time.sleep", 5000)
    assert out["errors"] and all("Errno 22" in e for e in out["errors"]), out
    assert out["elapsed"] < 0.1, out


def test_pause_sleeps_without_libfaketime():
    out = _probe("pause", None)
    assert out["errors"] == [] and out["elapsed"] >= 0.18, out
