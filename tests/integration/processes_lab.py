"""A processes lab for the lab tier: brought up on a loopback net of the test's own, and taken
down however the test ends (its workload, every replica and node exporter, its mounts); plus
the waits and reads the lab tests share."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from firebreak.lab import workload
from firebreak.lab.backend import http_json
from firebreak.lab.processes import ProcessesBackend

# What a lab's processes run: the replicas and node exporters (the system under test) and the
# workload (the harness).
MODULES = (b"firebreak.kimberlite.", b"firebreak.lab.")


def leftover_pids(d: Path) -> list[int]:
    """Processes of the lab in ``d`` still running (their command line names ``d``)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (p / "cmdline").read_bytes()
                if any(m in cmd for m in MODULES) and str(d).encode() in cmd:
                    out.append(int(p.name))
    return out


def clean_up(d: Path) -> None:
    """Kill what is left of the lab in ``d`` and unmount what it mounted under it."""
    for pid in leftover_pids(d):
        subprocess.run(["kill", "-9", str(pid)], check=False)
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mnt = line.split()[1]
        if mnt.startswith(str(d)):
            subprocess.run(["umount", "-l", mnt], check=False)


@contextlib.contextmanager
def processes_lab(d: Path, net: int, replicas: int = 3, **opts: Any) -> Iterator[ProcessesBackend]:
    """A processes lab in ``d`` on 127.0.<net>.x (``opts``: the replicas' config options)."""
    be = ProcessesBackend(d)
    try:
        be.up(replicas=replicas, net=net, **opts)
        yield be
    finally:
        try:
            workload.stop(d)
            be.down()
        finally:
            clean_up(d)


def wait(pred: Callable[[], Any], timeout: float, what: str, pause: float = 0.1) -> Any:
    """``pred()``'s first true answer within ``timeout`` s, else AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")


def member(be: ProcessesBackend, name: str) -> dict:
    """The lab state's entry of replica ``name``."""
    return next(r for r in be.state()["replicas"] if r["name"] == name)


def admin_status(m: dict) -> dict | None:
    """A replica's /admin/status (``m``: its state entry), None while it does not answer."""
    try:
        code, s = http_json(m["api_url"] + "/admin/status", timeout=1)
        return s if code == 200 else None
    except OSError:
        return None


def all_normal_same_commit(be: ProcessesBackend) -> list | bool:
    """Every replica's status when all are Normal in one view with equal commits, else False."""
    sts = [admin_status(m) for m in be.state()["replicas"]]
    if any(s is None or s["status"] != 0 for s in sts):
        return False
    return len({(s["view"], s["commit"]) for s in sts}) == 1 and sts


def metric(url: str, name: str) -> float:
    """A replica's metric ``name`` (``url``: its metrics base URL); NaN while it does not answer
    (restarting)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
            body = resp.read().decode()
    except OSError:
        return float("nan")
    m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", body, re.M)
    assert m, f"{name} not in metrics"
    return float(m.group(1))
