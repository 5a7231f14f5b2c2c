"""inventory/production.example.yml works as shipped once its hosts are replaced (issue 10).

The example is loaded as a user would copy it; only its hosts change: each example host gives
its place to one replica of a processes lab on 127.0.61.x (its name and its address), with the
lab inventory's local connection. Every other variable the example sets is kept, and the real
playbooks/triage.yml runs against it through firebreak.runner.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from firebreak import runner
from firebreak.lab.backend import http_json
from firebreak.lab.processes import ProcessesBackend

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "production.example.yml"
GROUP = "kimberlite_vsr"
NET = 61
WRITES = 5


def example_with_hosts(replicas: list[dict]) -> dict:
    """The example inventory with its hosts replaced by these replicas, in order."""
    inventory = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    group = inventory["all"]["children"][GROUP]
    example_hosts = group["hosts"]
    assert len(example_hosts) == len(replicas), f"the example has {len(example_hosts)} hosts"
    renamed, hosts = {}, {}
    for (name, host_vars), replica in zip(example_hosts.items(), replicas, strict=True):
        renamed[name] = replica["name"]
        hosts[replica["name"]] = {
            **(host_vars or {}),
            "ansible_host": urlsplit(replica["metrics_url"]).hostname,
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        }
    group["hosts"] = hosts
    group_vars = group["vars"]
    if "vsr_replica_order" in group_vars:
        group_vars["vsr_replica_order"] = [renamed[n] for n in group_vars["vsr_replica_order"]]
    # The processes lab has no systemd unit, journal or admin command to read: as in the lab's
    # own inventory, triage works from the metrics alone.
    group_vars["vsr_lab_mode"] = "processes"
    return inventory


def _converged(be: ProcessesBackend, timeout: float = 20) -> dict[str, tuple[int, int, int]]:
    """Each replica's (view, op, commit) once all are Normal at the same numbers."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = be.status()
        numbers = {r["name"]: (r.get("view"), r.get("op"), r.get("commit")) for r in rows}
        if all(r.get("status") == 0 for r in rows) and len(set(numbers.values())) == 1:
            return numbers
        time.sleep(0.1)
    raise AssertionError(f"the lab did not settle within {timeout}s: {rows}")


def test_example_inventory_with_the_labs_hosts_triages_the_lab(tmp_path) -> None:
    be = ProcessesBackend(tmp_path / "lab")
    try:
        replicas = be.up(replicas=3, net=NET)["replicas"]
        leader = be.resolve("leader")
        api = next(r["api_url"] for r in replicas if r["name"] == leader)
        for k in range(WRITES):
            body = {"stream": "example-inventory", "event": f"e{k}"}
            assert http_json(api + "/api/write", "POST", body, timeout=10)[0] == 200
        lab_numbers = _converged(be)

        example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump(example_with_hosts(replicas)), encoding="utf-8")
        run = runner.run_playbook("triage", inventory=inventory, incident_dir=tmp_path / "inc")

        assert run.status == "successful", [(t.task, t.message) for t in run.failed_tasks]
        assert _converged(be) == lab_numbers, "the lab moved during the triage"
        triage = run.facts("firebreak_triage")
        metrics = run.facts("triage_vsr_metrics")
        assert metrics["urls"] == [r["metrics_url"] + "/metrics" for r in replicas]
        example_vars = example["all"]["children"][GROUP]["vars"]
        for role, name in (example_vars.get("vsr_metric_names") or {}).items():
            assert metrics["metric_names"][role] == name
        assert triage["cluster"] == example_vars["vsr_cluster_name"]
        assert (triage["failure_mode"], triage["severity"]) == ("none", "none"), triage["findings"]
        assert triage["has_quorum"] and triage["n"] == 3 and triage["down"] == []
        assert triage["leader"] == leader
        read = {r["name"]: (r["view"], r["op"], r["commit"]) for r in triage["replicas"]}
        assert read == lab_numbers
        assert all(r["status_name"] == "Normal" and r["lag"] == 0 for r in triage["replicas"])
        assert min(commit for _, _, commit in read.values()) >= WRITES
    finally:
        be.down()
