"""kimberlite-timesync: the lab's time-sync daemon, a chronyd stand-in beside each replica.

The lab never touches a host's clock. A replica's clock is real time plus an offset that
libfaketime reads from ``<dir>/offset`` (``FAKETIME_TIMESTAMP_FILE``, re-read every second):
the replica runs under libfaketime only while the lab's clock-skew fault is on
(:mod:`firebreak.lab.node_fault`). This daemon owns that offset as chronyd owns the system
clock: while it runs and one of its sources is reachable it slews the offset toward 0
(``--slew-ms-per-s``, 100); an offset beyond ``--step-threshold-ms`` (1000) is a clock jump
it does not slew (stepping a replica's clock can break consensus): it reports ``step needed``
and waits for ``makestep``, an operator's decision. Its sources are ``<dir>/sources.json``
(default: the host's clock, reachable); the lab marks them unreachable to simulate a network
cut from the time servers.

Commands (chronyc-like, JSON with ``--json``):

* ``serve``: the daemon (``kimberlite-timesync.service``); ``<dir>/daemon.json`` says it runs;
* ``status``: daemon running or not, offset, state, sources (``chronyc tracking``);
* ``sources``: the sources and whether each is reachable (``chronyc sources``);
* ``makestep``: set the offset to 0 at once (``chronyc makestep``; refused while the daemon
  is not running, as chronyc cannot talk to a stopped chronyd).

Standard library only: the lab image has no more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_DIR = "/var/lib/kimberlite-timesync"
DEFAULT_SLEW_MS_PER_S = 100.0
DEFAULT_STEP_THRESHOLD_MS = 1000.0
INTERVAL_S = 0.5
#: Below this the clock counts as synchronised (chrony's "Normal" leap status, loosely).
SYNCED_MS = 1.0
DEFAULT_SOURCES = [
    {"name": "host-clock", "address": "the host's clock", "reachable": True, "error": None}
]


class TimesyncError(RuntimeError):
    """A command that cannot be carried out here; printed, exit status 2."""


def parse_offset(text: str) -> float:
    """Milliseconds of a libfaketime relative spec (``+0.500``, ``-1.2``); 0 for an empty one."""
    text = text.strip()
    if not text:
        return 0.0
    try:
        return float(text) * 1000.0
    except ValueError as exc:
        raise TimesyncError(f"offset file holds {text!r}, not a faketime offset") from exc


def format_offset(ms: float) -> str:
    """The libfaketime relative spec of ``ms`` milliseconds (``+0.500``)."""
    return f"{'+' if ms >= 0 else '-'}{abs(ms) / 1000.0:.3f}"


def slew(offset_ms: float, elapsed_s: float, rate_ms_per_s: float) -> float:
    """The offset after slewing toward 0 for ``elapsed_s`` at ``rate_ms_per_s``, never past 0."""
    step = max(0.0, elapsed_s) * max(0.0, rate_ms_per_s)
    if abs(offset_ms) <= step:
        return 0.0
    return offset_ms - step if offset_ms > 0 else offset_ms + step


def assess(offset_ms: float, running: bool, sources: list[dict], step_threshold_ms: float) -> str:
    """What the daemon is doing about ``offset_ms``: ``stopped``, ``no reachable source``,
    ``step needed`` (a jump beyond what it slews), ``slewing`` or ``synchronised``."""
    if not running:
        return "stopped"
    if not any(s.get("reachable") for s in sources):
        return "no reachable source"
    if abs(offset_ms) > step_threshold_ms:
        return "step needed"
    return "slewing" if abs(offset_ms) > SYNCED_MS else "synchronised"


class State:
    """The daemon's files in ``path``: ``offset``, ``sources.json``, ``daemon.json``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.dir = Path(path)
        self.offset_file = self.dir / "offset"

    def _write(self, path: Path, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # libfaketime re-reads the file: never a half-written one

    def offset_ms(self) -> float:
        try:
            return parse_offset(self.offset_file.read_text())
        except FileNotFoundError:
            return 0.0

    def set_offset_ms(self, ms: float) -> None:
        self._write(self.offset_file, format_offset(ms) + "\n")

    def sources(self) -> list[dict]:
        try:
            data = json.loads((self.dir / "sources.json").read_text())
        except (OSError, ValueError):
            return [dict(s) for s in DEFAULT_SOURCES]
        return [s for s in data if isinstance(s, dict)] if isinstance(data, list) else []

    def set_sources(self, sources: list[dict]) -> None:
        self._write(self.dir / "sources.json", json.dumps(sources, indent=1) + "\n")

    def daemon(self) -> dict:
        """The daemon's record, with ``running``: its pid alive and a ``serve`` process."""
        try:
            info = json.loads((self.dir / "daemon.json").read_text())
        except (OSError, ValueError):
            return {"running": False}
        pid = info.get("pid")
        try:
            cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except (OSError, TypeError, ValueError):
            cmdline = b""
        info["running"] = b"timesync" in cmdline and b"serve" in cmdline
        return info

    def mark_daemon(self, info: dict | None) -> None:
        if info is None:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "daemon.json").unlink()
        else:
            self._write(self.dir / "daemon.json", json.dumps(info) + "\n")


def status(state: State, step_threshold_ms: float | None = None) -> dict[str, Any]:
    daemon = state.daemon()
    threshold = float(step_threshold_ms or daemon.get("step_threshold_ms") or 0) or (
        DEFAULT_STEP_THRESHOLD_MS
    )
    offset, sources = state.offset_ms(), state.sources()
    return {
        "daemon": "running" if daemon["running"] else "stopped",
        "pid": daemon.get("pid") if daemon["running"] else None,
        "offset_ms": round(offset, 1),
        "state": assess(offset, daemon["running"], sources, threshold),
        "step_threshold_ms": threshold,
        "slew_ms_per_s": daemon.get("slew_ms_per_s", DEFAULT_SLEW_MS_PER_S),
        "sources": sources,
        "offset_file": str(state.offset_file),
    }


def makestep(state: State) -> dict[str, Any]:
    if not state.daemon()["running"]:
        raise TimesyncError("the daemon is not running (cannot talk to it): start it first")
    before = state.offset_ms()
    state.set_offset_ms(0.0)
    return {"stepped_ms": round(-before, 1), "offset_ms": 0.0}


def serve(state: State, slew_rate: float, step_threshold_ms: float, stop: threading.Event) -> None:
    """Slew the offset toward 0 every ``INTERVAL_S`` while a source is reachable."""
    state.mark_daemon(
        {
            "pid": os.getpid(),
            "started_at": time.time(),
            "slew_ms_per_s": slew_rate,
            "step_threshold_ms": step_threshold_ms,
        }
    )
    last = time.monotonic()
    try:
        while not stop.wait(INTERVAL_S):
            now, elapsed = time.monotonic(), time.monotonic() - last
            last = now
            offset = state.offset_ms()
            if assess(offset, True, state.sources(), step_threshold_ms) == "slewing":
                state.set_offset_ms(slew(offset, elapsed, slew_rate))
    finally:
        state.mark_daemon(None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kimberlite-timesync", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("serve", "status", "sources", "makestep"))
    ap.add_argument("--dir", default=os.environ.get("KIMBERLITE_TIMESYNC_DIR", DEFAULT_DIR))
    ap.add_argument("--slew-ms-per-s", type=float, default=DEFAULT_SLEW_MS_PER_S)
    ap.add_argument("--step-threshold-ms", type=float, default=DEFAULT_STEP_THRESHOLD_MS)
    ap.add_argument("--json", action="store_true", help="print JSON")
    ns = ap.parse_args(argv)
    state = State(ns.dir)
    try:
        if ns.command == "serve":
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            serve(state, ns.slew_ms_per_s, ns.step_threshold_ms, stop)
            return 0
        if ns.command == "makestep":
            out: Any = makestep(state)
        elif ns.command == "sources":
            out = state.sources()
        else:
            out = status(state)
    except (TimesyncError, OSError) as exc:
        print(f"kimberlite-timesync: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, sort_keys=True) if ns.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
