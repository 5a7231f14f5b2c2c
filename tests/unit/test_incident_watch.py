"""firebreak while a run goes on: escalations printed when they come due, update drafts
written on the comms cadence, the contacts table (a real record file, no Ansible)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from firebreak import incident_watch as iw
from firebreak.record import chain as record_chain
from firebreak.record.schema import schema_errors

pytestmark = pytest.mark.unit

DETECTED = "2026-02-05T14:32:00.000Z"


def _record_file(tmp_path, severity="SEV1", state="investigating", acked=None):
    record = record_chain.new_record("INC-W", "lab", now=DETECTED)
    events = [{"type": "state", "outcome": "detected", "at": DETECTED}]
    if acked:
        events.append({"type": "state", "outcome": "acknowledged", "at": acked})
    events.append({"type": "state", "outcome": state, "at": "2026-02-05T14:33:00Z"})
    record_chain.append(
        record,
        events_by_host={"localhost": events},
        severity=severity,
        failure_mode="fm003_corruption",
        now="2026-02-05T14:33:00.000Z",
    )
    assert schema_errors(record) == []
    path = tmp_path / "INC-W.json"
    path.write_text(json.dumps(record))
    return path


def _watch(path, now, contacts=None):
    out = io.StringIO()
    watch = iw.IncidentWatch(out, contacts, clock=lambda: now)
    watch.on_task(
        SimpleNamespace(action="firebreak.incident.incident_record", result={"path": str(path)})
    )
    return watch, out


def test_an_overdue_escalation_is_announced_once_with_its_contact(tmp_path):
    path = _record_file(tmp_path)
    contacts = {"secondary on-call": {"name": "Bob", "phone": "+1-555-0100"}}
    watch, out = _watch(path, "2026-02-05T14:48:00.000Z", contacts)
    text = out.getvalue()
    assert "ESCALATE now (14:47 UTC was due): secondary on-call (Bob, +1-555-0100)" in text
    assert "manager on-call" in text  # SEV1: due at the detection
    assert "escalation engineer" not in text  # due 15:02, not yet
    watch.check()
    assert out.getvalue().count("secondary on-call") == 1


def test_an_acknowledged_incident_does_not_page_the_secondary(tmp_path):
    path = _record_file(tmp_path, acked="2026-02-05T14:35:00Z")
    _, out = _watch(path, "2026-02-05T15:10:00.000Z")
    assert "secondary on-call" not in out.getvalue()
    assert "senior engineer" in out.getvalue()  # SEV1 not mitigated in 30 minutes


def test_update_drafts_on_the_cadence_while_open(tmp_path):
    path = _record_file(tmp_path)
    watch, out = _watch(path, "2026-02-05T14:40:00.000Z")
    assert watch.drafts == []  # the first update is due 14:47
    watch.check("2026-02-05T14:47:30.000Z")
    (draft,) = watch.drafts
    assert draft.name == "INC-W.update-1.md" and "SEV1" in draft.read_text()
    watch.check("2026-02-05T14:50:00.000Z")
    assert len(watch.drafts) == 1
    watch.check("2026-02-05T15:03:00.000Z")
    assert [d.name for d in watch.drafts][-1] == "INC-W.update-2.md"
    assert "update #2 due: draft" in out.getvalue()


@pytest.mark.parametrize("severity, state", [("SEV3", "investigating"), ("SEV1", "resolved")])
def test_no_update_drafts_for_sev3_or_a_resolved_incident(tmp_path, severity, state):
    path = _record_file(tmp_path, severity=severity, state=state)
    watch, _out = _watch(path, "2026-02-05T16:00:00.000Z")
    assert watch.drafts == [] and not list(tmp_path.glob("*.update-*"))


def test_lines_show_each_escalation_as_it_stands(tmp_path):
    path = _record_file(tmp_path, acked="2026-02-05T14:35:00Z")
    record = json.loads(path.read_text())
    lines = iw.escalation_lines(record, {}, now="2026-02-05T14:50:00.000Z")
    assert any("met 14:35" in line and "secondary on-call" in line for line in lines)
    assert any("overdue" in line and "manager on-call" in line for line in lines)
    assert any("pending" in line and "VP engineering" in line for line in lines)


def test_contacts_table(tmp_path, monkeypatch):
    table = tmp_path / "contacts.yml"
    table.write_text(
        "manager on-call:\n  name: Bob Johnson\n  phone: +1-555-0100\n  backup: Alice\n"
    )
    monkeypatch.setenv("FIREBREAK_CONTACTS", str(table))
    contacts = iw.load_contacts()
    assert (
        iw.who("manager on-call", contacts)
        == "manager on-call (Bob Johnson, +1-555-0100; backup Alice)"
    )
    assert iw.who("VP engineering", contacts) == "VP engineering"


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("- a list\n", "a mapping of role to contact"),
        ("manager on-call: Bob\n", "must map to name, phone, email, backup"),
        ("manager on-call:\n  pager: 5\n", "must map to"),
        ("manager on-call: [\n", "contacts table"),
    ],
)
def test_a_bad_contacts_table_is_a_clear_error(tmp_path, monkeypatch, text, complaint):
    table = tmp_path / "contacts.yml"
    table.write_text(text)
    monkeypatch.setenv("FIREBREAK_CONTACTS", str(table))
    with pytest.raises(iw.ContactsError, match=complaint):
        iw.load_contacts()


def test_a_named_contacts_table_that_is_missing_is_an_error_the_default_is_not(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("FIREBREAK_CONTACTS", str(tmp_path / "nope.yml"))
    with pytest.raises(iw.ContactsError, match="no such file"):
        iw.load_contacts()
    monkeypatch.delenv("FIREBREAK_CONTACTS")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert iw.load_contacts() == {}


def test_the_watch_thread_stops_and_checks_a_last_time(tmp_path):
    path = _record_file(tmp_path)
    out = io.StringIO()
    watch = iw.IncidentWatch(out, interval=0.05, clock=lambda: "2026-02-05T14:48:00.000Z")
    with watch:
        watch.record_path = path
    assert "ESCALATE now" in out.getvalue()
    assert not watch._thread.is_alive()
