"""FM-007 (Disk Full) on the lab in processes mode, end to end, with real processes.

Under the lab workload, `disk-full old-logs` fills a backup's loop-mounted data dir with rotated
log segments (a failed log cleanup); the replica fail-stops on ENOSPC; its node exporter (its
own process) still answers, with nothing available; vsr_metrics with node_endpoints and
vsr_classify (through ansible-playbook) name FM-007, not FM-005; `kimberlite-admin cleanup`
frees the segments and nothing else; the replica restarts on the same disk and catches up;
no acknowledged write is lost. Needs root (loop mounts).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from firebreak.kimberlite import storage
from firebreak.lab import workload
from firebreak.lab.backend import save_state
from firebreak.lab.processes import ProcessesBackend
from processes_lab import (
    admin_status,
    all_normal_same_commit,
    clean_up,
    leftover_pids,
    processes_lab,
    wait,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from playbook_harness import run_tasks

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="disk-full loop-mounts a filesystem (root)"),
]

NET = 57  # 127.0.57.i (and 58): this test's own addresses
ORDER = ["replica-1", "replica-2", "replica-3"]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    d = tmp_path / "lab"
    monkeypatch.setenv("FIREBREAK_LAB_DIR", str(d))
    with processes_lab(d, NET, checkpoint_interval=20, scrub_interval_s=1.0) as be:
        yield be


def _node_avail(m: dict) -> float | None:
    with urllib.request.urlopen(m["node_metrics_url"] + "/metrics", timeout=2) as resp:
        text = resp.read().decode()
    found = re.search(
        r'^node_filesystem_avail_bytes\{[^}]*mountpoint="([^"]*)"[^}]*\} (\S+)$', text, re.M
    )
    assert found, text
    assert found.group(1) == m["data_dir"]  # the data dir as the inventory knows it
    return float(found.group(2))


def _du(data_dir: str) -> dict[str, int]:
    """`du -sb <data_dir>/*` as the runbook's step 2 runs it: name -> bytes."""
    out = subprocess.run(
        f"du -sb {data_dir}/*", shell=True, capture_output=True, text=True, check=True
    ).stdout
    return {Path(p).name: int(n) for n, p in (line.split("\t", 1) for line in out.splitlines())}


def test_disk_full_old_logs_is_fm007_and_cleanup_recovers(lab, tmp_path):
    st = lab.state()
    assert all(m["node_metrics_url"].endswith(":9100") for m in st["replicas"])
    inv = Path(lab.inventory()).read_text()
    assert inv.count("node_metrics_url: http://127.0.57.") == 3

    workload.start(lab.dir, rate=30, streams=3)
    leader = lab.resolve("leader")
    lm = next(m for m in st["replicas"] if m["name"] == leader)
    wait(
        lambda: (s := admin_status(lm)) and s["commit"] >= 60,
        30,
        "the workload to commit a few checkpoints' worth of ops",
    )
    victim = lab.resolve("backup")
    m = next(r for r in lab.state()["replicas"] if r["name"] == victim)
    done = lab.fault("disk-full", victim, storage.OLD_LOGS)
    segments = done["segments"]
    assert segments and all(storage.parse_segment(s)[1] <= done["checkpoint_op"] for s in segments)
    assert done["free_bytes"] < 64 * 1024

    # the full replica fail-stops on ENOSPC (its next append), the others keep committing
    wait(lambda: lab.replica_pids()[victim] is None, 30, "the full replica to fail stop")
    assert "No space left on device" in Path(m["log"]).read_text()
    # what fills the disk is identifiable the runbook's way: the segments are the bulk
    du = _du(m["data_dir"])
    old = sum(n for name, n in du.items() if name.startswith("log.old."))
    assert old > 0.9 * sum(du.values()), du
    # a segment holds the log's own records (copies of log.dat's bytes)
    first = (Path(m["data_dir"]) / segments[0]).read_bytes()[:4]
    assert first == storage.MAGIC

    # the node exporter is its own process: it still answers, with (nearly) nothing available
    assert _node_avail(m) < 64 * 1024

    order = [r["name"] for r in lab.state()["replicas"]]
    args = {
        "endpoints": [r["metrics_url"] for r in lab.state()["replicas"]],
        "node_endpoints": [r["node_metrics_url"] for r in lab.state()["replicas"]],
        "replica_order": order,
        "timeout": 3,
    }
    task = {
        "name": "disk",
        "module": "firebreak.incident.vsr_metrics",
        "args": args,
        "filter": "firebreak.incident.vsr_classify",
    }
    run = run_tasks([task], tmp_path / "play")
    r = run.results["disk"]
    assert r["failed"] is False, r.get("msg")
    down = r["replicas"][order.index(victim)]
    assert down["reachable"] is False and down["node"]["reachable"] is True
    assert down["filesystem_avail_bytes"] < 64 * 1024 and down["filesystem_used_percent"] > 99
    classified = run.filtered["disk"]
    assert classified["overall"]["failure_mode"] == "FM-007", classified
    assert classified["overall"]["targets"] == [victim]
    fm005 = [f for f in classified["findings"] if f["fm"] == "FM-005"]
    assert fm005 and fm005[0]["explained_by"] == ["FM-007"], classified["findings"]

    # the seed's proper recovery: log cleanup (offline: the replica is down), then restart
    keep = {p.name for p in Path(m["data_dir"]).iterdir()} - set(segments)
    res = subprocess.run(
        [sys.executable, "-m", "firebreak.kimberlite.admin", "--config", m["config"], "cleanup"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(res.stdout)
    assert sorted(out["removed"]) == sorted(segments) and out["kept"] == []
    assert out["freed_bytes"] >= done["bytes"] and out["checkpoint_op"] >= done["checkpoint_op"]
    assert {p.name for p in Path(m["data_dir"]).iterdir()} == keep  # log.dat, meta... stay
    assert os.path.ismount(m["data_dir"])  # still on the small disk: cleanup made the room
    assert _node_avail(m) > 1024 * 1024

    st = lab.state()
    mm = next(r for r in st["replicas"] if r["name"] == victim)
    lab._spawn(st, victim)  # the operator's `systemctl start`: no heal, the disk stays as it is
    save_state(st, lab.dir)
    assert lab._wait_health(mm) is None
    wait(
        lambda: all((s := admin_status(r)) and s["status"] == 0 for r in st["replicas"]),
        40,
        "the restarted replica to rejoin (Normal) under the workload",
    )
    workload.stop(lab.dir)
    sts = wait(lambda: all_normal_same_commit(lab), 20, "equal commits after the workload")
    assert len(sts) == 3
    result = workload.check(lab.dir)
    assert result["acknowledged"] > 0 and result["lost"] == 0, result
    assert lab.replica_pids()[victim] is not None and os.path.ismount(m["data_dir"])


def _node_exporters_of(d: Path) -> list[int]:
    return [
        pid
        for pid in leftover_pids(d)
        if b"firebreak.kimberlite.node_exporter" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_node_exporters_start_and_stop_with_the_lab_even_a_failed_up(tmp_path, monkeypatch):
    """A node exporter per replica while the lab runs; none left after `lab down`, nor after a
    `lab up` that failed (what the CLI does then: take_down)."""
    from firebreak.lab.cli import take_down

    d = tmp_path / "lab"
    monkeypatch.setenv("FIREBREAK_LAB_DIR", str(d))
    be = ProcessesBackend(d)
    try:
        be.up(replicas=3, net=NET + 1)
        assert len(_node_exporters_of(d)) == 3
        rows = be.status()
        assert all(r["node_exporter_running"] for r in rows)
        victim = rows[0]["name"]
        be.fault("kill", victim)
        m = next(r for r in be.state()["replicas"] if r["name"] == victim)
        assert _node_avail(m) > 0  # the replica is gone, its host's disk is still read
        be.down()
        assert _node_exporters_of(d) == [] and leftover_pids(d) == []

        with pytest.raises(Exception, match="not ready"):
            be.up(replicas=3, net=NET + 1, timeout=0.01)
        assert len(_node_exporters_of(d)) == 3  # started before it gave up
        take_down(d)
        assert leftover_pids(d) == []
    finally:
        try:
            be.down()
        finally:
            clean_up(d)
