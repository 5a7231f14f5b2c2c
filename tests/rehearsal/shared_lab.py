"""The rehearsal tier's containers labs and the helpers of the tests that run on them.

:func:`snapshot_lab` makes a containers lab that runs a snapshot of the source (written once:
the shared lab of ``conftest.py`` and any module's own lab use it). The rest reads a lab
(``cluster``: every replica's metrics), picks replicas (``leader``, ``backup``), writes,
waits (``wait_detected``, ``settle_quiet``), hashes data directories, and runs a playbook
against the lab (``run_playbook``, its ``Run``, the incident ``record`` and its ``actions``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.containers import REPO_ROOT, ContainerLab

REPLICAS = ["replica-1", "replica-2", "replica-3"]
PLAYBOOK = Path(REPO_ROOT) / ".venv" / "bin" / "ansible-playbook"
PLAYBOOKS = Path(REPO_ROOT) / "playbooks"
RUN_TIMEOUT = 600


# ----------------------------------------------------------------------------- labs
@contextlib.contextmanager
def snapshot_lab(tmp_path_factory: pytest.TempPathFactory, name: str, **options):
    """A containers lab of its own (``options``: lab_dir, net, network, name_prefix,
    config_extra, ...) running a snapshot of the source.

    The replicas run the source bind-mounted from the host: a snapshot taken now keeps every
    restart of the lab on the same code, whatever is edited meanwhile. Whatever happens, its
    workload stops and the lab comes down."""
    source = tmp_path_factory.mktemp(f"{name}-source") / "python"
    shutil.copytree(
        Path(REPO_ROOT) / "python",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    lab_dir = options.pop("lab_dir", None) or tmp_path_factory.mktemp(f"{name}-lab")
    lab = ContainerLab(lab_dir, replicas=len(REPLICAS), source_dir=source, **options)
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab up in {time.monotonic() - t0:.1f}s")
        yield lab
    finally:
        with contextlib.suppress(Exception):
            workload.stop(lab.lab_dir)
        lab.down()


def left_behind(lab: ContainerLab) -> list[str]:
    """The containers of ``lab`` that podman still has (after its ``down``: none)."""
    return subprocess.run(
        ["podman", "ps", "-a", "-q", "--filter", f"label=firebreak.lab.id={lab.lab_id}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()


# ----------------------------------------------------------------------------- reading a lab
def cluster(lab: ContainerLab) -> dict:
    """Every replica's /metrics: how many are Normal, their views, commits and checksum
    failures, and each one's metrics ``by`` name (None when it does not answer)."""
    out = {"normal": 0, "views": [], "commits": [], "checksum": [], "by": {}}
    for r in REPLICAS:
        try:
            m = lab.metrics(r, timeout=2)
        except OSError:
            out["by"][r] = None
            continue
        out["by"][r] = m
        out["normal"] += int(m.get("vsr_replica_status", -1) == 0)
        out["views"].append(int(m.get("vsr_view_number", -1)))
        out["commits"].append(int(m.get("vsr_commit_number", -1)))
        out["checksum"].append(int(m.get("vsr_checksum_failures_total", 0)))
    return out


def leader_of(lab: ContainerLab) -> str:
    c = cluster(lab)
    view = max(c["views"])
    return REPLICAS[view % len(REPLICAS)]


def backup_of(lab: ContainerLab) -> str:
    primary = leader_of(lab)
    return next(r for r in reversed(REPLICAS) if r != primary)


def write(lab: ContainerLab, n: int = 40) -> None:
    for i in range(n):
        req = urllib.request.Request(
            f"{lab.api_url(REPLICAS[0])}/api/write",
            data=json.dumps({"stream": "seed", "event": f"e{i}"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200


def wait_detected(lab: ContainerLab, replica: str, timeout: float = 30) -> None:
    """Until the replica counts the corruption (its scrubber tours every 2 s here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = cluster(lab)["by"].get(replica) or {}
        if m.get("vsr_checksum_failures_total", 0) > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{replica} never counted the injected corruption")


def settle_quiet(lab: ContainerLab, timeout: float = 60) -> None:
    """Until nothing moves: every replica Normal (the corrupted one repaired itself) and level."""
    deadline = time.monotonic() + timeout
    prev = None
    while time.monotonic() < deadline:
        c = cluster(lab)
        snap = (c["normal"], tuple(c["views"]), tuple(c["commits"]))
        if c["normal"] == len(REPLICAS) and len(set(c["commits"])) == 1 and snap == prev:
            time.sleep(1.5)  # a commit hint is written at most every 0.5 s
            return
        prev = snap
        time.sleep(1)
    raise AssertionError(f"lab never went quiet: {cluster(lab)}")


def data_hashes(lab: ContainerLab) -> dict[str, str]:
    """SHA-256 of every file of every replica's data directory, read from the host side."""
    out = {}
    for r in REPLICAS:
        root = lab.data_path(r)
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[f"{r}/{p.relative_to(root)}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- playbooks
class Run:
    def __init__(self, rc: int, out: str, err: str, seconds: float) -> None:
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds
        try:
            self.data = json.loads(out[out.index("{") :]) if "{" in out else {}
        except ValueError:
            self.data = {}

    def results(self):
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                for host, res in task.get("hosts", {}).items():
                    yield task["task"]["name"], host, res

    def host_changes(self) -> list[tuple[str, str]]:
        """Changed tasks that ran on a replica host (not delegated to the controller)."""
        out = []
        for name, host, res in self.results():
            delegated = (res.get("_ansible_delegated_vars") or {}).get("ansible_host")
            if res.get("changed") and delegated not in ("localhost", "127.0.0.1"):
                out.append((name, host))
        return out

    def failures(self) -> list[str]:
        return [
            f"{host}: {name}: {res.get('msg')}"
            for name, host, res in self.results()
            if res.get("failed") and not res.get("_ansible_ignore_errors")
        ]

    def fact(self, key: str):
        value = None
        for _name, _host, res in self.results():
            facts = res.get("ansible_facts") or {}
            if key in facts:
                value = facts[key]
        return value

    def __repr__(self) -> str:
        tail = self.err[-2000:]
        return f"rc={self.rc} in {self.seconds:.0f}s; failures: {self.failures()}\n{tail}"


def run_playbook(
    lab: ContainerLab, dirs: dict, name: str, *extra: str, check: bool = False, incident="INC-T"
) -> Run:
    argv = [
        str(PLAYBOOK),
        str(PLAYBOOKS / f"{name}.yml"),
        "-i",
        str(lab.inventory_path()),
        "-e",
        f"firebreak_incident_id={incident}",
        "-e",
        f"firebreak_incident_dir={dirs['incidents']}",
        "-e",
        f"firebreak_lock_dir={dirs['locks']}",
        "-e",
        f"firebreak_evidence_dir={dirs['evidence']}",
        *[a for x in extra for a in ("-e", x)],
    ]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    proc = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    print(f"{name}{' --check' if check else ''} {' '.join(extra)}: rc={run.rc} {run.seconds:.0f}s")
    return run


def record(dirs: dict, incident: str = "INC-T") -> dict:
    return json.loads((dirs["incidents"] / f"{incident}.json").read_text())


def actions(rec: dict) -> list[str]:
    return [e["action"] for e in rec["timeline"] if e.get("action")]
