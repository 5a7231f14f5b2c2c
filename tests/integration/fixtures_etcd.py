"""A real 3-member etcd cluster on loopback for the lab tests.

``etcd_cluster`` (module-scoped fixture) starts three ``etcd`` processes (etcd 3.4 from
Debian) on 127.0.0.1 with distinct client and peer ports and data dirs in a temp dir, waits
until every member answers /health with a leader, and in ``finally`` kills every process it
started (by its own pid) and removes the temp dir. It fails loudly when it cannot: no skip.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures_pg import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    base: Path
    members: list[Member] = field(default_factory=list)

    def kill(self, index: int) -> None:
        """SIGKILL one member and wait until it is gone."""
        proc = self.members[index].proc
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def alive(self) -> list[Member]:
        return [m for m in self.members if m.proc and m.proc.poll() is None]

    def logs(self) -> str:
        out = []
        for m in self.members:
            text = m.log.read_text(errors="replace") if m.log.exists() else ""
            out.append(f"--- {m.name} (last lines) ---\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(out)


def _health(member: Member) -> bool:
    try:
        with urllib.request.urlopen(member.client_url + "/health", timeout=1) as resp:
            return json.loads(resp.read().decode()).get("health") == "true"
    except Exception:
        return False


def wait_healthy(cluster: EtcdCluster, members: list[Member], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if m.proc and m.proc.poll() is not None:
                raise RuntimeError(f"etcd {m.name} exited rc={m.proc.returncode}\n{cluster.logs()}")
        if all(_health(m) for m in members):
            return
        time.sleep(0.2)
    raise RuntimeError(f"etcd cluster not healthy after {timeout} s\n{cluster.logs()}")


def _raft_index(member: Member) -> int | None:
    req = urllib.request.Request(
        member.client_url + "/v3/maintenance/status", data=b"{}", method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=1) as resp:
            return int(json.loads(resp.read().decode())["raftIndex"])
    except Exception:
        return None


def wait_settled(cluster: EtcdCluster, timeout: float = 30) -> None:
    """Until every member holds the same raft index in two reads 0.5 s apart: a new cluster
    still commits its own start-up entries (member attributes, cluster version) for a while,
    and more slowly on a loaded machine."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        now = [_raft_index(m) for m in cluster.members]
        if None not in now and len(set(now)) == 1 and now == last:
            return
        last = now
        time.sleep(0.5)
    raise RuntimeError(f"etcd cluster never settled (raft indexes {last})\n{cluster.logs()}")


@pytest.fixture(scope="module")
def etcd_cluster():
    if not Path(ETCD).exists():
        pytest.fail("etcd is not installed (apt-get install etcd-server etcd-client)")
    base = Path(tempfile.mkdtemp(prefix="fb-etcd-"))
    cluster = EtcdCluster(base=base)
    try:
        for i in (1, 2, 3):
            cluster.members.append(
                Member(f"m{i}", free_port(), free_port(), base / f"m{i}", base / f"m{i}.log")
            )
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in cluster.members)
        for m in cluster.members:
            argv = [
                ETCD,
                "--name", m.name,
                "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url,
                "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", f"fb-{base.name}",
                # etcd's defaults: faster elections flap on a loaded 2-core machine
                "--heartbeat-interval", "100",
                "--election-timeout", "1000",
            ]  # fmt: skip
            with open(m.log, "wb") as log:
                m.proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
        wait_healthy(cluster, cluster.members)
        wait_settled(cluster)
        yield cluster
    finally:
        for m in cluster.members:
            if m.proc and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)
