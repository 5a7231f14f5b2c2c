"""The lab CLI's parser, backend dispatch and inventory (no processes started)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from firebreak.lab import backend, backends, cli, workload

pytestmark = pytest.mark.unit


def _parse(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    cli.add_parser(sub)
    return ap.parse_args(["lab", *argv])


def test_add_parser_registers_lab_group() -> None:
    ns = _parse("up", "--mode", "processes", "--replicas", "5")
    assert (ns.lab_cmd, ns.mode, ns.replicas) == ("up", "processes", 5)
    assert _parse("status", "--json").json
    assert _parse("workload", "check", "--json").action == "check"
    assert _parse("workload", "check", "--per-replica").per_replica is True
    assert _parse("workload", "start").readers == 1
    assert _parse("workload", "start", "--readers", "0").readers == 0


@pytest.mark.parametrize(
    "argv",
    [
        ("fault", "clock-skew", "--replica", "replica-3", "1500"),
        ("fault", "clock-skew", "1500", "--replica", "replica-3"),
    ],
)
def test_fault_argument_in_either_position(argv) -> None:
    ns = _parse(*argv)
    target, *rest = ns.replica
    assert (ns.kind, target, ns.arg or rest[0]) == ("clock-skew", "replica-3", "1500")


def test_reconfig_parser() -> None:
    ns = _parse("reconfig", "add", "replica-4", "--wait", "10")
    assert (ns.lab_cmd, ns.action, ns.replica, ns.wait) == ("reconfig", "add", "replica-4", 10)
    assert _parse("reconfig", "remove", "replica-2").wait == 30


def test_lab_dir_env_override(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FIREBREAK_LAB_DIR", str(tmp_path))
    assert backend.lab_dir() == tmp_path
    monkeypatch.delenv("FIREBREAK_LAB_DIR")
    monkeypatch.setenv("FIREBREAK_STATE_DIR", str(tmp_path / "state"))
    assert backend.lab_dir() == tmp_path / "state" / "labs" / "default"
    # With no state dir set, the default lab lives in the user's, never in the checkout.
    monkeypatch.delenv("FIREBREAK_STATE_DIR")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/sre")
    assert backend.lab_dir() == Path("/home/sre/.local/state/firebreak/labs/default")


def test_status_without_lab_fails_clearly(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("FIREBREAK_LAB_DIR", str(tmp_path))
    assert cli.main(["status"]) == 2
    assert "no lab is running" in capsys.readouterr().err


def test_container_names_refused_in_processes_mode(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("FIREBREAK_LAB_DIR", str(tmp_path))
    assert cli.main(["up", "--mode", "processes", "--name-prefix", "x-"]) == 2
    assert "containers only" in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists()
    ns = _parse("up", "--mode", "containers", "--name-prefix", "rh-", "--network", "n1")
    assert (ns.name_prefix, ns.network) == ("rh-", "n1")


def test_processes_backend_is_dispatched_and_unknown_mode_refused(tmp_path) -> None:
    assert backends.get_backend("processes", tmp_path).mode == "processes"
    with pytest.raises(backend.LabError):
        backends.get_backend("vms", tmp_path)


def test_inventory_shape(tmp_path) -> None:
    reps = [
        {
            "name": f"replica-{i}",
            "api_url": f"http://127.0.20.{i}:8080",
            "metrics_url": f"http://127.0.20.{i}:9090",
            "data_dir": f"/d/{i}",
            "service": "kimberlite-vsr",
        }
        for i in (1, 2, 3)
    ]
    path = backend.write_inventory(
        {"mode": "processes", "cluster": "lab", "replicas": reps}, tmp_path / "inv.yml"
    )
    inv = yaml.safe_load(path.read_text())
    hosts = inv["all"]["children"]["kimberlite_vsr"]["hosts"]
    assert list(hosts) == ["replica-1", "replica-2", "replica-3"]
    h = hosts["replica-2"]
    assert h["ansible_connection"] == "local"
    assert h["vsr_api_url"] == "http://127.0.20.2:8080"
    assert h["vsr_metrics_url"] == "http://127.0.20.2:9090"
    assert (h["vsr_replica_name"], h["vsr_data_dir"], h["vsr_service_name"]) == (
        "replica-2",
        "/d/2",
        "kimberlite-vsr",
    )


def test_replica_config_keeps_contract_keys() -> None:
    cfg = backend.replica_config(
        "lab",
        [{"name": "replica-1", "host": "h", "api_port": 8080, "metrics_port": 9090}],
        "replica-1",
        "/data",
    )
    for key in (
        "cluster",
        "replica",
        "replicas",
        "data_dir",
        "checkpoint_interval",
        "checkpoint_keep",
        "scrub_interval_s",
    ):
        assert key in cfg


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_lab_rules(tmp_path):
    """Which leftovers `ContainerLab.up` may reclaim (podman's `ps --format json` rows)."""
    from firebreak.lab.containers import ContainerLab

    owner = tmp_path / "owner"
    owner.mkdir()
    row = {"Names": ["x-replica-1"], "Labels": {"firebreak.lab.id": "abc"}, "State": "running"}
    live = [{**row, "Pid": os.getpid()}]
    reason = ContainerLab._stale_reason
    # no dir, no state file, a state file naming another lab: orphaned
    assert "no longer records" in reason("abc", "", live)
    assert "no longer records" in reason("abc", str(owner), live)
    (owner / "state.json").write_text(json.dumps({"lab_id": "other"}))
    assert "no longer records" in reason("abc", str(owner), live)
    # recorded, and its containers' processes are alive: not stale
    (owner / "state.json").write_text(json.dumps({"lab_id": "abc"}))
    assert reason("abc", str(owner), live) is None
    # recorded, but podman's "running" container has no process: stale
    dead = [{**row, "Pid": _dead_pid()}]
    assert "is gone" in reason("abc", str(owner), dead)
    # an exited container is the lab's business (a stopped replica), not staleness
    assert reason("abc", str(owner), [{**row, "State": "exited", "Pid": 0}]) is None
    # other labs' rows do not count
    other = [{**row, "Labels": {"firebreak.lab.id": "zzz"}, "Pid": _dead_pid()}]
    assert reason("abc", str(owner), other) is None


def test_status_table_notes_unreachable_peers(capsys) -> None:
    peers = {
        "replica-2": {"reachable": False, "error": "name resolution of 'r2': no answer for 3.0 s"},
        "replica-3": {"reachable": True, "error": None},
    }
    cli._print_status([{"name": "replica-1", "running": True, "peers": peers}])
    row = capsys.readouterr().out.splitlines()[1]
    assert row.endswith("unreachable replica-2"), row


def test_a_workload_check_with_nothing_acknowledged_is_not_ok(tmp_path) -> None:
    """A check of "0 lost" proves nothing when nothing was acknowledged: not a pass."""
    (tmp_path / "state.json").write_text(
        json.dumps({"mode": "processes", "replicas": [{"api_url": "http://127.0.0.1:9"}]})
    )
    result = workload.check(tmp_path)
    assert result["acknowledged"] == 0 and result["lost"] == 0
    assert result["ok"] is False


EXPOSITION = Path(__file__).parent / "fixtures" / "exposition"


def test_container_lab_metrics_sum_samples_by_name():
    """`ContainerLab.metrics` reads /metrics with the collection's prometheus_text parser."""
    from firebreak.lab.containers import parse_metrics

    text = (
        "# HELP vsr_view Current view.\n# TYPE vsr_view gauge\n"
        'vsr_view{replica="r1"} 3.0\nvsr_view{replica="r2"} 4\n'
        "# TYPE vsr_commits_total counter\nvsr_commits_total 7.0 1700000000000\n"
    )
    assert parse_metrics(text) == {"vsr_view": 7.0, "vsr_commits_total": 7.0}
    assert all(isinstance(v, float) for v in parse_metrics(text).values())
    recorded = parse_metrics((EXPOSITION / "generic" / "lab_replica-1.prom").read_text())
    assert recorded and all(isinstance(v, float) for v in recorded.values())
    with pytest.raises(ValueError, match=r"^line 2: "):
        parse_metrics("vsr_view 1\nvsr_view{replica=r1} 2\n")
