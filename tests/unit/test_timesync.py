"""The lab's time-sync daemon (firebreak.kimberlite.timesync), the replicas' chronyd stand-in:
its offset file (what libfaketime reads), the slew toward 0, what it says about a skew, the
chronyc-like commands. The daemon itself is started here, on a temporary dir."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from firebreak.kimberlite import timesync

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("ms", "text"), [(500, "+0.500"), (-250, "-0.250"), (0, "+0.000"), (5000, "+5.000")]
)
def test_offset_round_trips_as_a_libfaketime_spec(ms, text):
    assert timesync.format_offset(ms) == text
    assert timesync.parse_offset(text + "\n") == ms


def test_a_garbled_offset_file_is_named():
    with pytest.raises(timesync.TimesyncError, match="not a faketime offset"):
        timesync.parse_offset("@2020-01-01")


@pytest.mark.parametrize(
    ("offset", "elapsed", "rate", "after"),
    [
        (500, 1.0, 100, 400),
        (-500, 1.0, 100, -400),
        (50, 1.0, 100, 0),  # never past 0
        (-50, 1.0, 100, 0),
        (500, 0.0, 100, 500),
        (500, -1.0, 100, 500),  # a clock going back gives no slew
    ],
)
def test_slew_moves_toward_zero_and_never_past_it(offset, elapsed, rate, after):
    assert timesync.slew(offset, elapsed, rate) == after


REACHABLE = [{"name": "host-clock", "reachable": True}]
CUT = [{"name": "host-clock", "reachable": False}]


@pytest.mark.parametrize(
    ("offset", "running", "sources", "state"),
    [
        (500, False, REACHABLE, "stopped"),
        (500, True, CUT, "no reachable source"),
        (500, True, [], "no reachable source"),
        (5000, True, REACHABLE, "step needed"),
        (-5000, True, REACHABLE, "step needed"),
        (500, True, REACHABLE, "slewing"),
        (0.4, True, REACHABLE, "synchronised"),
    ],
)
def test_assess_names_what_the_daemon_does(offset, running, sources, state):
    assert timesync.assess(offset, running, sources, 1000) == state


def test_status_of_a_stopped_daemon_and_makestep_refused(tmp_path):
    st = timesync.State(tmp_path)
    st.set_offset_ms(700)
    out = timesync.status(st)
    assert out["daemon"] == "stopped" and out["state"] == "stopped" and out["offset_ms"] == 700
    assert out["sources"][0]["reachable"] is True
    with pytest.raises(timesync.TimesyncError, match="not running"):
        timesync.makestep(st)
    assert st.offset_ms() == 700  # refused: nothing changed


CMD = [sys.executable, "-m", "firebreak.kimberlite.timesync"]


def _serve(tmp_path, *args):
    return subprocess.Popen(
        [*CMD, "serve", "--dir", str(tmp_path), *args],
        env={"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin"},
    )


def _cli(tmp_path, *args):
    res = subprocess.run(
        [*CMD, *args, "--dir", str(tmp_path), "--json"],
        env={"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return res.returncode, (json.loads(res.stdout) if res.stdout else None), res.stderr


def _until(pred, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_running_daemon_slews_a_skew_away(tmp_path):
    st = timesync.State(tmp_path)
    st.set_offset_ms(300)
    proc = _serve(tmp_path, "--slew-ms-per-s", "400")
    try:
        _until(lambda: st.daemon()["running"], 10, "the daemon to run")
        _until(lambda: st.offset_ms() == 0, 10, "the offset slewed to 0")
        rc, out, _ = _cli(tmp_path, "status")
        assert rc == 0 and out["daemon"] == "running" and out["state"] == "synchronised"
    finally:
        proc.terminate()
        proc.wait(10)
    assert not st.daemon()["running"]  # a stopped daemon says so


def test_a_jump_waits_for_makestep_and_a_cut_source_for_the_network(tmp_path):
    st = timesync.State(tmp_path)
    st.set_offset_ms(5000)
    proc = _serve(tmp_path, "--step-threshold-ms", "1000")
    try:
        _until(lambda: st.daemon()["running"], 10, "the daemon to run")
        time.sleep(1.2)
        assert st.offset_ms() == 5000  # a jump is not slewed
        assert _cli(tmp_path, "status")[1]["state"] == "step needed"
        rc, out, _ = _cli(tmp_path, "makestep")
        assert rc == 0 and out == {"stepped_ms": -5000.0, "offset_ms": 0.0}
        assert st.offset_ms() == 0
        st.set_sources(CUT)
        st.set_offset_ms(400)
        time.sleep(1.2)
        assert st.offset_ms() == 400  # no source: nothing to slew toward
        rc, out, _ = _cli(tmp_path, "sources")
        assert rc == 0 and out == CUT
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_in_process_marks_and_unmarks_the_daemon(tmp_path):
    st, stop = timesync.State(tmp_path), threading.Event()
    t = threading.Thread(target=timesync.serve, args=(st, 100.0, 1000.0, stop))
    t.start()
    try:
        _until(lambda: (tmp_path / "daemon.json").exists(), 5, "daemon.json")
    finally:
        stop.set()
        t.join(5)
    assert not (tmp_path / "daemon.json").exists()
