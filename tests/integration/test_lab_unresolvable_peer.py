"""Issue 10: a replica whose peer cannot be resolved still answers its own endpoints at once.

The stall is real, not simulated: the replica process runs in a private mount namespace whose
/etc/resolv.conf names a "DNS server" on 127.0.60.53 that reads every query and never answers,
so each lookup that /etc/hosts cannot settle waits for the resolver's timeout (glibc's default:
5 s, 2 attempts). One peer's host is a name that is not in /etc/hosts; another peer resolves
(an address on loopback) but nothing listens there.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from firebreak.lab.backend import replica_config

pytestmark = pytest.mark.lab

NET = 60
HOST = f"127.0.{NET}.1"
DNS_ADDR = (f"127.0.{NET}.53", 53)
UNRESOLVABLE = "replica-2.unresolvable.firebreak.test"  # not in /etc/hosts: asked of DNS
DOWN_HOST = f"127.0.{NET}.3"  # resolves (an address), nothing listens there
REQUEST_S = 1.0  # the bound for one request
STARTUP_S = 8.0  # launch (interpreter and imports) to the first answer; the old stall was 20 s
WINDOW_S = 6.0  # inside the 10 s the resolver keeps the peer's lookup waiting


def _qname(packet: bytes) -> str:
    """The question's name of a DNS query packet."""
    labels, i = [], 12
    while i < len(packet) and packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode(errors="replace"))
        i += 1 + n
    return ".".join(labels)


@pytest.fixture
def silent_dns():
    """A UDP "DNS server" that reads every query and answers none; yields the names asked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(DNS_ADDR)
    sock.settimeout(0.2)
    asked: list[str] = []
    stop = threading.Event()

    def swallow() -> None:
        while not stop.is_set():
            try:
                packet, _ = sock.recvfrom(4096)
            except TimeoutError:
                continue
            asked.append(_qname(packet))

    t = threading.Thread(target=swallow, name="silent-dns", daemon=True)
    t.start()
    try:
        yield asked
    finally:
        stop.set()
        t.join(timeout=5)
        sock.close()


@pytest.fixture
def replica(tmp_path, silent_dns):
    """replica-1 on 127.0.60.1 under the silent resolver; yields (process, launch time, log)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {DNS_ADDR[0]}\n")
    replicas = [
        {"name": "replica-1", "host": HOST, "api_port": 8080, "metrics_port": 9090},
        {"name": "replica-2", "host": UNRESOLVABLE, "api_port": 8080, "metrics_port": 9090},
        {"name": "replica-3", "host": DOWN_HOST, "api_port": 8080, "metrics_port": 9090},
    ]
    cfg = replica_config("dnslab", replicas, "replica-1", str(tmp_path / "data"))
    cfg_path = tmp_path / "replica.json"
    cfg_path.write_text(json.dumps(cfg))
    python = f"{shlex.quote(sys.executable)} -m firebreak.lab.replica --config {cfg_path}"
    script = f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && exec {python}"
    log_path = tmp_path / "replica.log"
    src = str(Path(__file__).resolve().parents[2] / "python")
    with open(log_path, "wb") as log:
        launched = time.monotonic()
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": src},
        )
    try:
        yield proc, launched, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _get(port: int, path: str) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one GET with the issue's 1 s bound; raises OSError past it."""
    start = time.monotonic()
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=REQUEST_S) as resp:
        return resp.status, resp.read(), time.monotonic() - start


def test_unresolvable_peer_never_stalls_the_replicas_own_endpoints(replica, silent_dns) -> None:
    proc, launched, log_path = replica

    first = None
    while first is None and time.monotonic() - launched < STARTUP_S:
        try:
            first = _get(9090, "/health")
        except OSError:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.05)
    assert first is not None, (
        f"/health did not answer within {STARTUP_S} s of launch; log:\n{log_path.read_text()}"
    )

    samples = 0
    window_end = time.monotonic() + WINDOW_S
    while time.monotonic() < window_end:
        for port, path in ((9090, "/health"), (9090, "/metrics"), (8080, "/admin/status")):
            try:
                code, _, took = _get(port, path)
            except OSError as exc:
                pytest.fail(f"{path} gave no answer within {REQUEST_S} s ({exc})")
            assert code == 200 and took < REQUEST_S, (path, code, took)
            samples += 1
        time.sleep(0.1)
    assert samples >= 3 * 10, samples

    # the lookup really went to the silent server (and is still waiting for its timeout)
    assert UNRESOLVABLE in silent_dns, silent_dns

    _, raw, _ = _get(8080, "/admin/status")
    peers = json.loads(raw)["peers"]
    assert set(peers) == {"replica-2", "replica-3"}, peers
    assert peers["replica-2"]["reachable"] is False
    assert "name resolution" in peers["replica-2"]["error"], peers["replica-2"]
    assert peers["replica-3"]["reachable"] is False
    assert "refused" in peers["replica-3"]["error"], peers["replica-3"]

    _, raw, _ = _get(9090, "/metrics")
    reach = dict(
        re.findall(r'^vsr_peer_reachable\{[^}]*peer="([^"]+)"[^}]*\} (\S+)$', raw.decode(), re.M)
    )
    assert reach == {"replica-2": "0.0", "replica-3": "0.0"}, reach
