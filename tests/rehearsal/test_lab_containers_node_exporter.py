"""The containers lab's node exporter (``node-exporter.service``) and FM-007's old-logs fault.

On the rehearsal tier's shared lab (``conftest.py``: containers ``sh-replica-i``, host
addresses ``127.0.77.i``), reset and verified before the test with ``checkpoint_interval`` 20
(``lab_config``). It used to bring up a lab of its own on ``127.0.87.i``, FM-007's rehearsal
net, with 32 MB data disks; the shared lab's are 64 MB, which changes nothing asserted here (the
fault fills whatever is free). Needs root and podman; the image rebuilds itself when its recipe
(the units included) changed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
from firebreak.kimberlite import storage
from firebreak.lab.backend import http_json
from firebreak.lab.containers import DATA_DIR, ContainerLab

pytestmark = pytest.mark.rehearsal


@pytest.fixture
def lab_config() -> dict:
    """Checkpoints every 20 ops: the 45 writes below are covered by one."""
    return {"scrub_interval_s": 2, "checkpoint_interval": 20}


def _avail(url: str) -> tuple[float, str]:
    with urllib.request.urlopen(url + "/metrics", timeout=3) as resp:
        text = resp.read().decode()
    m = re.search(r"^node_filesystem_avail_bytes\{([^}]*)\} (\S+)$", text, re.M)
    assert m, text
    return float(m.group(2)), m.group(1)


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")


def test_node_exporter_unit_answers_and_outlives_a_full_disk(lab: ContainerLab) -> None:
    for r in lab.replica_names():
        assert lab.systemctl(r, "is-enabled", "node-exporter").stdout.strip() == "enabled"
        avail, labels = _avail(f"http://127.0.{lab.net}.{r.rsplit('-', 1)[1]}:9100")
        assert avail > 0 and f'mountpoint="{DATA_DIR}"' in labels and "/dev/loop" in labels
    inv = lab.write_inventory().read_text()
    assert f"node_metrics_url: http://127.0.{lab.net}.1:9100" in inv
    cfg = json.loads(lab.exec("replica-1", "cat", "/etc/kimberlite/replica.json").stdout)
    assert cfg["checkpoint_interval"] == 20, cfg

    leader = next(
        r
        for r in lab.replica_names()
        if http_json(f"{lab.api_url(r)}/admin/status")[1].get("is_primary")
    )
    for k in range(45):
        code, _ = http_json(
            f"{lab.api_url(leader)}/api/write", "POST", {"stream": "s", "event": k}, timeout=10
        )
        assert code == 200
    victim = next(r for r in lab.replica_names() if r != leader)
    done = lab.fault("disk-full", victim, storage.OLD_LOGS)
    assert done["segments"] and done["free_bytes"] < 64 * 1024
    # the replica fails stop at its next append; its node exporter does not
    for k in range(200):
        http_json(f"{lab.api_url(leader)}/api/write", "POST", {"stream": "s", "event": k})
        if lab.unit_state(victim) != "active":
            break
    _wait(lambda: lab.unit_state(victim) in ("failed", "inactive"), 30, "the fail-stop")
    assert "No space left on device" in lab.journal(victim, 100)
    assert _avail(lab.node_metrics_url(victim))[0] < 64 * 1024
    # the runbook's `du -sh /var/lib/kimberlite/*`, then the cleanup, in the container
    du = lab.exec(victim, "sh", "-c", f"du -sk {DATA_DIR}/*").stdout
    biggest = max(du.splitlines(), key=lambda line: int(line.split()[0]))
    assert "/log.old." in biggest, du
    res = lab.exec(victim, "kimberlite-admin", "cleanup")
    out = json.loads(res.stdout)
    assert res.returncode == 0 and sorted(out["removed"]) == sorted(done["segments"]), out
    assert _avail(lab.node_metrics_url(victim))[0] > 1024 * 1024
    lab.systemctl(victim, "reset-failed", "kimberlite-vsr")
    lab.systemctl(victim, "start", "kimberlite-vsr", check=True)
    lab.wait_ready(timeout=60)
