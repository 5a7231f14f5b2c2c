"""The quorum guard's refusal can only be overridden on the record (issue 11).

A processes lab (net 70), replica-3 killed; a play asks the guard to take replica-2 out of
service (1 of the 2 others healthy: refused), then reaches an act step, then writes the
incident record whatever happened. ``-e quorum_guard_fail=false`` (the old knob) and a half
override still refuse, and the act step does not run; a reason with its confirmation lets the
play go on, and the record's guard event says ``override`` with the reason, who and the
refusal it overrode."""

from __future__ import annotations

import json
import os

import pytest
from firebreak.lab.processes import ProcessesBackend
from firebreak.record import verify_file
from firebreak.runner import run_playbook

pytestmark = pytest.mark.lab

ACT = "Act | the step the guard protects"
PLAY = f"""
- name: Quorum guard, an act step, the record
  hosts: kimberlite_vsr
  gather_facts: false
  tasks:
    - name: Guard, then act
      block:
        - name: Ask the guard to take replica-2 out of service
          ansible.builtin.include_role:
            name: firebreak.incident.quorum_guard
          vars:
            quorum_guard_out_of_service: [replica-2]
            quorum_guard_action: restart replica-2
        - name: {ACT}
          ansible.builtin.debug:
            msg: the act phase ran
          run_once: true
      always:
        - name: Publish the guard's events
          ansible.builtin.set_fact:
            firebreak_record_events: "{{{{ quorum_guard_record_events | default([]) }}}}"
          run_once: true
        - name: Append to the incident record
          ansible.builtin.include_role:
            name: firebreak.incident.incident_record
          vars:
            incident_record_hosts: "{{{{ ansible_play_hosts_all[:1] }}}}"
"""


@pytest.fixture(scope="module")
def degraded_lab(tmp_path_factory):
    be = ProcessesBackend(tmp_path_factory.mktemp("lab-override"))
    try:
        be.up(replicas=3, net=70)
        be.fault("kill", "replica-3")
        yield be
    finally:
        be.down()


def _run(lab, tmp_path, **extra):
    play = tmp_path / "guard.yml"
    play.write_text(PLAY)
    run = run_playbook(
        play,
        inventory=lab.inventory(),
        extra_vars=extra,
        incident_id="INC-GUARD",
        incident_dir=tmp_path,
        timeout=180,
    )
    path = tmp_path / "INC-GUARD.json"
    assert verify_file(path).ok
    guards = [e for e in json.loads(path.read_text())["timeline"] if e["action"] == "quorum_guard"]
    assert len(guards) == 1, guards
    acted = [t for t in run.tasks if t.task == ACT and t.status == "ok"]
    return run, guards[0], bool(acted)


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"quorum_guard_fail": "false"}, "replica-3 (unreachable"),
        ({"firebreak_override_quorum_guard": "replica-2 is wedged"}, "the confirmation"),
        (
            {
                "firebreak_override_quorum_guard": " ",
                "firebreak_override_quorum_guard_confirm": "true",
            },
            "a non-empty reason",
        ),
    ],
    ids=["the old knob quorum_guard_fail=false", "a reason without confirmation", "a blank reason"],
)
def test_a_refusal_stands_without_a_whole_override(degraded_lab, tmp_path, extra, words):
    run, event, acted = _run(degraded_lab, tmp_path, **extra)
    assert run.status == "failed", run.status
    failed = " ".join(t.message or "" for t in run.failed_tasks)
    assert "quorum_guard refuses" in failed and words in failed, failed
    assert not acted, "the act step ran after a refusal"
    assert event["decision"] == "deny", event
    assert event["detail"]["others_ok"] == ["replica-1"], event


def test_a_reason_with_its_confirmation_overrides_on_the_record(degraded_lab, tmp_path):
    run, event, acted = _run(
        degraded_lab,
        tmp_path,
        firebreak_override_quorum_guard="replica-2 is wedged; INC-GUARD bridge call agreed",
        firebreak_override_quorum_guard_confirm="true",
    )
    assert run.status == "successful", [t.message for t in run.failed_tasks]
    assert acted, "the act step did not run after the override"
    assert event["decision"] == "override", event
    override = event["detail"]["override"]
    assert override["reason"] == "replica-2 is wedged; INC-GUARD bridge call agreed"
    assert override["by"] == (os.environ.get("USER") or "unknown"), override
    assert override["overrode"].startswith('quorum_guard refuses "restart replica-2"'), override
    assert "replica-3 (unreachable" in override["overrode"], override
    assert event["detail"]["allowed"] is False, event
