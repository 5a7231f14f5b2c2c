"""Inject a lab fault from the node itself, where the replica runs under systemd.

The harness's backends inject faults from outside (a processes lab's supervisor, podman on the
containers' host). A Molecule scenario, or any inventory of systemd hosts, has only the node:
``python3 -m firebreak.lab.node_fault KIND [ARG] --json`` runs there (as root) against the
unit ``kimberlite-vsr``, its data directory and its API on loopback, and prints what it did
(``heal clock-skew`` undoes a skew: the replica back on the real clock, the time-sync daemon
``kimberlite-timesync`` reset and started).
Dispatch is a table (``KINDS``); a kind that needs the container runtime or the host's
network (``pause``, ``partition``) is refused with the way to inject it instead.

Standard library, ``firebreak.kimberlite.storage`` and ``.timesync`` only: the lab image has no
more.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firebreak.kimberlite import storage, timesync

UNIT = "kimberlite-vsr"
DATA_DIR = "/var/lib/kimberlite"
API_URL = "http://127.0.0.1:8080"
FILL_FILE = ".firebreak-fill"
CLOCK_DROPIN = f"/etc/systemd/system/{UNIT}.service.d/50-firebreak-clock-skew.conf"
# clock-skew: the replica process runs under libfaketime (Debian's libfaketime package).
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
DEFAULT_CLOCK_SKEW_MS = 500
# The lab's time-sync daemon (firebreak.kimberlite.timesync), the replica's chronyd: it owns the
# offset libfaketime reads, so a skew lasts while it is stopped (or cannot reach a source, or
# the offset is a jump beyond what it slews) and a running daemon slews it back to 0.
TIMESYNC_UNIT = "kimberlite-timesync"
TIMESYNC_DIR = timesync.DEFAULT_DIR
# clock-skew MS[:HOW]: what the time-sync daemon does about it (seed 000 FM-008's scenarios).
CLOCK_SKEW_HOW = {
    "stopped": "the time-sync daemon is stopped (scenario 1)",
    "unreachable": "the daemon runs but reaches no source (scenario 2)",
    "running": "the daemon runs and reaches its source: it slews the skew away, unless it is "
    "a jump beyond its step threshold (scenario 3)",
}
# slow-commit: ms per op the backup executes. 200 ms (5 ops/s) against the workload's 20 writes
# plus 2 reads per second grows op - commit by about 17 a second: past 100 within ~6 s.
DEFAULT_SLOW_COMMIT_MS = 200
DEFAULT_LATENCY_MS = 200
NOT_ON_A_NODE = {
    "pause": "freezes the container's cgroup from outside",
    "partition": "drops the replica's traffic in its network namespace from the host",
}


class NodeFaultError(RuntimeError):
    """A fault that cannot be injected here; printed, exit status 2."""


def positive_ms(arg: Any, default: int, what: str) -> int:
    """A fault's argument in whole milliseconds > 0 (``default`` when empty)."""
    try:
        ms = int(arg) if arg not in (None, "") else default
    except (TypeError, ValueError) as exc:
        raise NodeFaultError(f"{what}: MS is a whole number of milliseconds, not {arg!r}") from exc
    if ms <= 0:
        raise NodeFaultError(f"{what}: MS must be > 0, not {ms}")
    return ms


def faketime_env(ms: float) -> dict[str, str]:
    """The environment that skews a process's wall clock by a fixed ``ms`` (processes mode).

    Only the wall clock drifts: timeouts measured on the monotonic clock stay honest."""
    return {
        "LD_PRELOAD": FAKETIME_LIB,
        "FAKETIME": f"{'+' if ms >= 0 else '-'}{abs(ms) / 1000:.3f}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }


def faketime_file_env(offset_file: str) -> dict[str, str]:
    """The environment that makes a process's wall clock real time plus the offset in
    ``offset_file`` (re-read every second), which the time-sync daemon owns and slews."""
    return {
        "LD_PRELOAD": FAKETIME_LIB,
        "FAKETIME_TIMESTAMP_FILE": offset_file,
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }


def clock_skew_arg(arg: Any) -> tuple[float, str]:
    """``MS[:HOW]`` of clock-skew: the skew in ms and what the time-sync daemon does
    (:data:`CLOCK_SKEW_HOW`, default ``stopped``)."""
    text = str(arg) if arg not in (None, "") else str(DEFAULT_CLOCK_SKEW_MS)
    ms_text, _, how = text.partition(":")
    try:
        ms = float(ms_text)
    except ValueError as exc:
        raise NodeFaultError(f"clock-skew: MS is a number of milliseconds, not {arg!r}") from exc
    how = how or "stopped"
    if how not in CLOCK_SKEW_HOW:
        raise NodeFaultError(
            f"clock-skew: HOW is one of {', '.join(CLOCK_SKEW_HOW)}, not {how!r} (MS[:HOW])"
        )
    return ms, how


def fill_disk(mount: Path, arg: Any, checkpoint_url: str | None) -> dict[str, Any]:
    """``disk-full``: fill the filesystem of ``mount`` (the replica's data directory).

    ``old-logs`` is a failed log cleanup: rotated segments that a fresh checkpoint covers
    (taken first through ``checkpoint_url`` while the replica is up). Without an argument, one
    file takes every free block."""
    if arg not in (None, "", storage.OLD_LOGS):
        raise NodeFaultError(f"disk-full: ARG is {storage.OLD_LOGS!r} or none, not {arg!r}")
    if arg == storage.OLD_LOGS:
        if checkpoint_url:
            with contextlib.suppress(OSError):
                _post(checkpoint_url, {})
        try:
            return storage.fill_with_old_segments(mount)
        except (OSError, RuntimeError) as exc:
            raise NodeFaultError(f"disk-full old-logs: {exc}") from exc
    fill = mount / FILL_FILE
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    if free > 0:
        subprocess.run(["fallocate", "-l", str(free), str(fill)], check=False)
    # fallocate may leave a few blocks (metadata); top up with small writes.
    with contextlib.suppress(OSError), open(fill, "ab") as fh:
        block = b"\0" * 4096
        while True:
            fh.write(block)
            fh.flush()
    st = os.statvfs(mount)
    return {"free_bytes": st.f_bavail * st.f_frsize}


def _post(url: str, body: dict) -> dict:
    """POST ``body`` as JSON to ``url`` (http only: the replica's API); its JSON answer."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise NodeFaultError(f"not an http URL: {url!r}")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
    try:
        conn.request("POST", u.path or "/", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise NodeFaultError(f"POST {url}: {resp.status} {data[:200]!r}")
    return json.loads(data or b"{}")


def _systemctl(*args: str) -> None:
    res = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise NodeFaultError(f"systemctl {' '.join(args)}: {res.stderr.strip() or res.returncode}")


def _kill(_arg: Any) -> dict[str, Any]:
    _systemctl("kill", "--signal=SIGKILL", UNIT)
    return {"signal": "SIGKILL"}


def _stop(_arg: Any) -> dict[str, Any]:
    _systemctl("stop", UNIT)
    return {"stopped": UNIT}


def _corrupt(arg: Any) -> dict[str, Any]:
    try:
        return storage.inject_corruption(DATA_DIR, arg)
    except (OSError, RuntimeError) as exc:
        raise NodeFaultError(f"corrupt: {exc}") from exc


def _disk_full(arg: Any) -> dict[str, Any]:
    return fill_disk(Path(DATA_DIR), arg, f"{API_URL}/admin/checkpoint")


def _api_knob(path: str, ms: int) -> dict[str, Any]:
    try:
        _post(f"{API_URL}{path}", {"ms": ms})
    except OSError as exc:
        raise NodeFaultError(f"POST {path}: {exc}") from exc
    return {"ms": ms}


def _slow_commit(arg: Any) -> dict[str, Any]:
    return _api_knob("/admin/slow-commit", positive_ms(arg, DEFAULT_SLOW_COMMIT_MS, "slow-commit"))


def _viewchange_stuck(arg: Any) -> dict[str, Any]:
    """The replica starts a view change and drops every DoViewChange and StartView it receives
    (memory only: a restart clears it); on every replica, FM-002."""
    try:
        _post(f"{API_URL}/admin/viewchange-stuck", {"on": True})
    except OSError as exc:
        raise NodeFaultError(f"POST /admin/viewchange-stuck: {exc}") from exc
    return {"viewchange_stuck": True}


def _latency(arg: Any) -> dict[str, Any]:
    return _api_knob("/admin/latency", positive_ms(arg, DEFAULT_LATENCY_MS, "latency"))


def _clock_skew(arg: Any) -> dict[str, Any]:
    """The replica's clock ``MS`` off, restarted under libfaketime reading the time-sync
    daemon's offset file; the daemon stopped, cut from its sources, or left running (``HOW``)."""
    ms, how = clock_skew_arg(arg)
    if how == "stopped":
        _systemctl("stop", TIMESYNC_UNIT)
    state = timesync.State(TIMESYNC_DIR)
    sources = [dict(s) for s in timesync.DEFAULT_SOURCES]
    if how == "unreachable":
        for s in sources:
            s.update(reachable=False, error="no reply from the time server (simulated cut)")
    state.set_sources(sources)
    state.set_offset_ms(ms)
    env = faketime_file_env(str(state.offset_file))
    dropin = Path(CLOCK_DROPIN)
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\n" + "".join(f'Environment="{k}={v}"\n' for k, v in env.items()))
    _systemctl("daemon-reload")
    _systemctl("restart", UNIT)
    return {"faketime": timesync.format_offset(ms), "timesync": how}


def heal_clock() -> dict[str, Any]:
    """Undo clock-skew here: the replica back on the real clock, the daemon's offset and
    sources reset, the daemon started."""
    done = []
    if Path(CLOCK_DROPIN).exists():
        Path(CLOCK_DROPIN).unlink()
        _systemctl("daemon-reload")
        _systemctl("restart", UNIT)
        done.append("clock-skew")
    state = timesync.State(TIMESYNC_DIR)
    for f in (state.offset_file, state.dir / "sources.json"):
        if f.exists():
            f.unlink()
            done.append(f"timesync {f.name}")
    res = subprocess.run(["systemctl", "is-active", TIMESYNC_UNIT], capture_output=True, text=True)
    if res.stdout.strip() != "active":
        _systemctl("reset-failed", TIMESYNC_UNIT)
        _systemctl("start", TIMESYNC_UNIT)
        done.append("timesync start")
    return {"healed": done}


KINDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "kill": _kill,
    "stop": _stop,
    "corrupt": _corrupt,
    "disk-full": _disk_full,
    "slow-commit": _slow_commit,
    "viewchange-stuck": _viewchange_stuck,
    "latency": _latency,
    "clock-skew": _clock_skew,
}


#: ``heal KIND``: what a node undoes itself (the containers backend heals the rest from outside).
HEALS: dict[str, Callable[[], dict[str, Any]]] = {"clock-skew": heal_clock}


def inject(kind: str, arg: Any = None) -> dict[str, Any]:
    """Inject ``kind`` on this node (``heal KIND``: undo it); what was done, with ``fault`` and
    ``arg``."""
    if kind == "heal":
        if arg not in HEALS:
            raise NodeFaultError(f"heal: a node heals {', '.join(HEALS)}, not {arg!r}")
        return {"fault": kind, "arg": arg, **HEALS[arg]()}
    if kind in NOT_ON_A_NODE:
        raise NodeFaultError(
            f"{kind} is not a node-local fault (it {NOT_ON_A_NODE[kind]}): "
            f"inject it with `firebreak lab fault {kind} --replica R`"
        )
    if kind not in KINDS:
        raise NodeFaultError(f"unknown fault {kind!r}; a node injects: {', '.join(KINDS)}")
    return {"fault": kind, "arg": arg, **KINDS[kind](arg)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m firebreak.lab.node_fault", description=__doc__)
    ap.add_argument("kind", help="one of: " + ", ".join(KINDS))
    ap.add_argument("arg", nargs="?", default=None, help="the fault's argument, as in `lab fault`")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ns = ap.parse_args(argv)
    try:
        out = inject(ns.kind, ns.arg)
    except NodeFaultError as exc:
        print(f"node_fault: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, sort_keys=True) if ns.json else out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
