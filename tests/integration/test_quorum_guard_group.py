"""The quorum guard decides for the cluster it was asked about (issue 11's first finding).

Two processes labs in one inventory: A in the default group kimberlite_vsr, 3 of 3 Normal;
B in group b_vsr with only 1 of 3 alive. A play on B with ``firebreak_vsr_group: b_vsr`` asks
the guard to take a B replica out of service: it must count B's replicas and refuse. (On main
it re-read A through triage's default group and allowed it: out_of_service [], commit 0.)
The same play on A, with a quorum of healthy others, is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from firebreak.lab.processes import ProcessesBackend
from firebreak.runner import run_playbook

pytestmark = pytest.mark.lab

NETS = {"a": 50, "b": 51}
PLAY = """
- name: Quorum guard on one cluster of two
  hosts: "{{ guard_group }}"
  gather_facts: false
  tasks:
    - name: Ask the guard to take one replica out of service
      ansible.builtin.include_role:
        name: firebreak.incident.quorum_guard
      vars:
        quorum_guard_out_of_service: ["{{ guard_target }}"]
        quorum_guard_action: "restart {{ guard_target }}"
    - name: Report the decision
      ansible.builtin.debug:
        var: quorum_guard_result
      run_once: true
"""


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory):
    labs = {}
    try:
        for name, net in NETS.items():
            be = ProcessesBackend(tmp_path_factory.mktemp(f"lab-{name}"))
            be.up(replicas=3, net=net)
            labs[name] = be
        for victim in ("replica-2", "replica-3"):
            labs["b"].fault("kill", victim)
        yield labs
    finally:
        for be in labs.values():
            be.down()


def _inventory(labs, path: Path) -> Path:
    groups = {}
    for name, group in (("a", "kimberlite_vsr"), ("b", "b_vsr")):
        hosts = {}
        for r in labs[name].state()["replicas"]:
            hosts[f"{name}-{r['name']}"] = {
                "vsr_replica_name": r["name"],
                "vsr_api_url": r["api_url"],
                "vsr_metrics_url": r["metrics_url"],
                "vsr_lab_mode": "processes",
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }
        groups[group] = {"hosts": hosts}
    path.write_text(yaml.safe_dump({"all": {"children": groups}}))
    return path


def _guard(tmp_path, labs, group: str, target: str, **extra):
    play = tmp_path / "guard.yml"
    play.write_text(PLAY)
    run = run_playbook(
        play,
        inventory=_inventory(labs, tmp_path / "hosts.yml"),
        extra_vars={"guard_group": group, "guard_target": target, **extra},
        timeout=180,
    )
    return run, run.facts("quorum_guard_result")


def test_the_guard_reads_the_group_it_was_given_and_refuses(two_labs, tmp_path) -> None:
    run, result = _guard(tmp_path, two_labs, "b_vsr", "b-replica-1", firebreak_vsr_group="b_vsr")
    assert run.status == "failed", run.status
    failed = " ".join(t.message or "" for t in run.failed_tasks)
    assert "quorum_guard refuses" in failed, failed
    assert result is not None and result["allowed"] in (False, "False"), result
    assert result["out_of_service"] == ["replica-1"], result
    assert sorted(result["others"]) == ["replica-2", "replica-3"], result
    assert result["others_ok"] == [], result


def test_the_same_guard_on_a_healthy_cluster_allows(two_labs, tmp_path) -> None:
    run, result = _guard(tmp_path, two_labs, "kimberlite_vsr", "a-replica-2")
    assert run.status == "successful", [t.message for t in run.failed_tasks]
    assert result["allowed"] in (True, "True"), result
    assert result["out_of_service"] == ["replica-2"]
    assert sorted(result["others_ok"]) == ["replica-1", "replica-3"], result
