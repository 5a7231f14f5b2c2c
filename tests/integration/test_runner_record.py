"""The incident record produced by real runs: through the wrapper and plain ansible-playbook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from firebreak import runner
from firebreak.comms import FORMATS, TEMPLATES, render
from firebreak.record import load, verify_file
from firebreak.runner import run_playbook

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _private_data_dirs_under_tmp_path(tmp_path, monkeypatch):
    """Each run's private data dir lands in pytest's tmp_path, not in /tmp for ever."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"


def _incident_run(incident_dir: Path, incident_id: str, **extra):
    result = run_playbook(
        PLAYBOOKS / "selftest_incident.yml",
        inventory=INVENTORY,
        incident_id=incident_id,
        incident_dir=incident_dir,
        extra_vars=extra,
    )
    assert result.status == "successful", [(t.task, t.message) for t in result.failed_tasks]
    return result


def test_two_runs_of_one_incident_append_to_one_valid_chain(tmp_path):
    first = _incident_run(
        tmp_path,
        "INC-A",
        firebreak_severity="SEV1",
        firebreak_incident_state="detected",
        firebreak_failure_mode="fm003_corruption",
        firebreak_fault_started_at="2026-01-01T00:00:00Z",
    )
    path = tmp_path / "INC-A.json"
    assert first.record_path == str(path)
    before = json.loads(path.read_text())
    second = _incident_run(
        tmp_path, "INC-A", selftest_stage="second", firebreak_incident_state="resolved"
    )
    after = json.loads(path.read_text())
    assert verify_file(path).ok
    assert after["timeline"][: len(before["timeline"])] == before["timeline"]
    assert len(after["timeline"]) > len(before["timeline"])
    assert after["timeline"][len(before["timeline"])]["prev_hash"] == before["chain"]["head"]
    assert {e["run_id"] for e in after["timeline"]} == {first.run_id, second.run_id}
    assert after["state"] == "resolved" and after["severity"] == "SEV1"
    assert after["metrics"]["mttd_seconds"] > 0 and after["metrics"]["mttr_seconds"] > 0
    # the module (AnsiballZ, module_utils/escalation.py) derived seed 000's escalations: the
    # SEV1 manager page is due at the detection; the resolution came before the others
    items = {i["id"]: i for i in after["escalation"]}
    assert items["manager"]["due"] == after["milestones"]["detected"]
    assert items["executive"]["status"] == "met" and after["updates"]["next"] is None
    assert len(after["evidence"]) == 4
    actions = [e for e in after["timeline"] if e["type"] == "action"]
    assert [a["outcome"] for a in actions] == [
        "stopped replica-2 (first)",
        "stopped replica-2 (second)",
    ]


def _ansible_playbook(playbook: str, *args: str, inventory: Path = INVENTORY) -> dict:
    """Plain ansible-playbook (no wrapper), its output as the ansible.posix.json document."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(runner.ANSIBLE_CFG),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory)]
    argv += [str(PLAYBOOKS / playbook), *args]
    proc = subprocess.run(
        argv, cwd=runner.REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    return json.loads(proc.stdout)


def _record_task_result(output: dict) -> dict:
    """What the incident_record module returned (it runs once, delegated to the controller)."""
    for play in output["plays"]:
        for task in play["tasks"]:
            if "incident_record : Record | append" in task["task"]["name"]:
                (result,) = task["hosts"].values()
                return result
    raise AssertionError("no incident_record task in the run")


def test_plain_ansible_playbook_produces_the_same_record(tmp_path):
    """The convention needs no wrapper: AWX or ansible-playbook write the same document."""
    _ansible_playbook(
        "selftest_incident.yml",
        "-e",
        f"firebreak_incident_id=INC-B firebreak_incident_dir={tmp_path}",
        "-e",
        "firebreak_incident_state=detected firebreak_severity=SEV2",
    )
    plain = json.loads((tmp_path / "INC-B.json").read_text())
    wrapped_dir = tmp_path / "wrapped"
    _incident_run(
        wrapped_dir, "INC-B", firebreak_incident_state="detected", firebreak_severity="SEV2"
    )
    wrapped = json.loads((wrapped_dir / "INC-B.json").read_text())
    assert verify_file(tmp_path / "INC-B.json").ok and verify_file(wrapped_dir / "INC-B.json").ok

    def shape(record):
        return [
            (e["type"], e["phase"], e["action"], e["target"], e["decision"], e["outcome"])
            for e in record["timeline"]
        ]

    assert shape(plain) == shape(wrapped)
    assert plain["timeline"][0]["run_id"] is None  # no wrapper, no run id
    assert wrapped["timeline"][0]["run_id"]


def test_check_mode_does_not_write_the_record(tmp_path):
    result = run_playbook(
        PLAYBOOKS / "selftest_incident.yml",
        inventory=INVENTORY,
        check=True,
        incident_id="INC-C",
        incident_dir=tmp_path,
    )
    assert result.status == "successful"
    record_task = next(t for t in result.tasks if t.action.endswith("incident_record"))
    assert record_task.result["appended"] and record_task.changed
    assert not (tmp_path / "INC-C.json").exists()


def test_check_mode_writes_nothing_at_all(tmp_path):
    """--check against a fresh directory: no directory, no lock file, no record; it says what
    it would append and where."""
    incident_dir = tmp_path / "fresh" / "incidents"
    output = _ansible_playbook(
        "selftest_incident.yml",
        "--check",
        "-e",
        f"firebreak_incident_id=INC-CHECK firebreak_incident_dir={incident_dir}",
        "-e",
        "firebreak_incident_state=detected firebreak_severity=SEV2",
    )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == []
    result = _record_task_result(output)
    assert result["changed"] and result["created"], result
    assert result["path"] == str(incident_dir / "INC-CHECK.json")
    appended = result["appended"]
    actions = [e["action"] for e in appended if e["action"]]
    assert actions == ["read_metrics", "quorum_guard", "replica_stop"], appended
    assert (appended[-1]["type"], appended[-1]["outcome"]) == ("state", "detected"), appended


SUB_SECOND_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
RECORD_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def test_events_of_several_hosts_land_in_the_order_they_were_emitted(tmp_path):
    output = _ansible_playbook(
        "selftest_record_order.yml",
        "-e",
        f"firebreak_incident_id=INC-ORDER firebreak_incident_dir={tmp_path}",
        inventory=PLAYBOOKS / "inventory" / "two_local.yml",
    )
    emitted = _record_task_result(output)["invocation"]["module_args"]["events"]
    stamps = [e["at"] for events in emitted.values() for e in events]
    assert len(stamps) == 13 and all(SUB_SECOND_STAMP.fullmatch(s) for s in stamps), stamps
    record = json.loads((tmp_path / "INC-ORDER.json").read_text())
    timeline = record["timeline"]
    assert verify_file(tmp_path / "INC-ORDER.json").ok
    assert [e["seq"] for e in timeline] == list(range(len(timeline)))
    assert all(RECORD_STAMP.fullmatch(e["at"]) for e in timeline), [e["at"] for e in timeline]
    # Task n ran on both hosts before task n+1 started: n never goes back along the sequence.
    ns = [e["detail"]["n"] for e in timeline]
    assert ns == sorted(ns) and len(ns) == 13, ns
    for host in ("host-a", "host-b"):
        steps = [e["detail"]["n"] for e in timeline if e["host"] == host and e["type"] == "action"]
        assert steps == list(range(1, 7)), (host, steps)
    assert timeline[-1]["type"] == "note" and timeline[-1]["host"] == "host-a"
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)


def test_the_record_phase_fails_loudly_without_an_incident_id(tmp_path):
    result = run_playbook(PLAYBOOKS / "selftest_incident.yml", inventory=INVENTORY)
    assert result.status == "failed"
    (failed,) = result.failed_tasks
    assert "firebreak_incident_id" in failed.message


@pytest.fixture(scope="module")
def real_record(tmp_path_factory):
    """One incident, detected by a first run and resolved by a second."""
    incident_dir = tmp_path_factory.mktemp("incidents")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("runs")))
        _incident_run(
            incident_dir,
            "INC-D",
            firebreak_severity="SEV1",
            firebreak_incident_state="detected",
            firebreak_failure_mode="fm003_corruption",
        )
        _incident_run(incident_dir, "INC-D", firebreak_incident_state="resolved")
    return incident_dir / "INC-D.json"


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_templates_render_from_a_record_made_by_real_runs(real_record, template, fmt):
    record = load(real_record)
    text = render(record, template, fmt)
    assert "INC-D" in text and "SEV1" in text
    assert "[TO BE FILLED: " in text
    if template in ("initial", "resolution"):
        assert "replica_stop on replica-2: stopped replica-2 (first)" in text
    if template == "postmortem":
        for entry in record.timeline:
            assert entry.at in text
