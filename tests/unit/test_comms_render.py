"""Communication templates rendered from a record: only recorded facts, the rest marked."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from firebreak.comms import FORMATS, TEMPLATES, CommsError, render
from firebreak.comms.render import failure_mode_title, human_duration
from firebreak.record import chain
from firebreak.record.model import IncidentRecord

pytestmark = pytest.mark.unit

NOW = datetime(2026, 2, 5, 14, 45, tzinfo=UTC)
# Values of the seed's examples that a template must never copy.
SEED_EXAMPLES = ("Alice", "zoom.us", "JIRA-6789", "5,000", "DC-EAST", "2,400", "1,200 ops")


def _record(resolved: bool = True) -> IncidentRecord:
    document = chain.new_record("INC-77", "prod-east", now="2026-02-05T14:32:00.000Z")
    chain.append(
        document,
        events_by_host={
            "replica-2": [
                {"type": "state", "outcome": "detected", "at": "2026-02-05T14:32:00Z"},
                {
                    "type": "action",
                    "phase": "act",
                    "action": "replica_stop",
                    "target": "replica-2",
                    "outcome": "stopped",
                    "at": "2026-02-05T14:40:00Z",
                },
                {
                    "type": "observation",
                    "phase": "verify",
                    "action": "quorum_check",
                    "target": "cluster",
                    "outcome": "3 of 3 normal",
                    "at": "2026-02-05T15:10:00Z",
                },
            ]
        },
        evidence_by_host={
            "replica-2": [
                {
                    "kind": "log_excerpt",
                    "phase": "before",
                    "summary": "checksum mismatch at op 118",
                    "at": "2026-02-05T14:33:00Z",
                    "data": {"lines": []},
                }
            ]
        },
        severity="SEV1",
        failure_mode="fm003_corruption",
        fault_started_at="2026-02-05T14:30:00Z",
        state="resolved" if resolved else "mitigating",
        now="2026-02-05T15:12:00.000Z",
    )
    return IncidentRecord.from_dict(document)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_template_renders_recorded_facts_and_marks_the_rest(template, fmt):
    text = render(_record(), template, fmt, now=NOW)
    assert "INC-77" in text and "SEV1" in text and "prod-east" in text
    assert "FM-003 Data Corruption Detected" in text
    assert "[TO BE FILLED:" in text
    for example in SEED_EXAMPLES:
        assert example not in text, f"{template}.{fmt} copied the seed's example {example!r}"
    assert "None" not in text


def test_people_only_fields_are_marked_not_invented():
    initial = render(_record(), "initial", "txt", now=NOW)
    assert "War Room: [TO BE FILLED: war room link]" in initial
    assert "Incident Commander: [TO BE FILLED: incident commander]" in initial
    assert "Estimated affected users: [TO BE FILLED: affected users]" in initial
    assert "Next Update: 15:00 UTC" in initial
    postmortem = render(_record(), "postmortem", "md", now=NOW)
    assert "[TO BE FILLED: detailed technical explanation]" in postmortem
    assert "**MTTD (detected - fault start):** 2 minutes" in postmortem
    assert "**MTTR (resolved - detected):** 40 minutes" in postmortem


def test_the_resolution_states_duration_actions_and_verification():
    text = render(_record(), "resolution", "txt", now=NOW)
    assert "Duration: 40 minutes (14:32 - 15:12 UTC" in text
    assert "act: replica_stop on replica-2: stopped" in text
    assert "verify: Observed quorum_check on cluster: 3 of 3 normal" in text


def test_the_postmortem_timeline_lists_every_entry_in_time_order():
    record = _record()
    text = render(record, "postmortem", "md", now=NOW)
    rows = re.findall(r"^\| (\d{4}-\d\d-\d\dT[^ ]+) \|", text, re.M)
    assert len(rows) == len(record.timeline)
    assert rows == sorted(rows)


def test_a_resolution_for_an_unresolved_incident_is_refused():
    with pytest.raises(CommsError, match="not resolved"):
        render(_record(resolved=False), "resolution", "md")


def test_unknown_template_and_format():
    with pytest.raises(CommsError):
        render(_record(), "tweet", "md")
    with pytest.raises(CommsError):
        render(_record(), "initial", "html")


def test_helpers():
    assert failure_mode_title("fm001_quorum_lost") == "FM-001 Quorum Lost (fm001_quorum_lost)"
    assert failure_mode_title("custom") == "custom"
    assert human_duration(None) is None
    assert human_duration(61) == "61 seconds"
    assert human_duration(7500) == "2 h 5 min"


TASKS = [
    {
        "failure_mode": "FM-003",
        "text": "Check disk health (smartctl -a)",
        "owner": "hardware on-call",
    },
    {"failure_mode": "FM-003", "text": "Check memory errors", "owner": "hardware on-call"},
]


def _record_with_tasks() -> IncidentRecord:
    document = chain.new_record("INC-78", "prod-east", now="2026-02-05T14:32:00.000Z")
    for _ in range(2):  # a second run of the same failure mode adds no second copy
        chain.append(
            document,
            events_by_host={"h": [{"type": "state", "outcome": "detected"}]},
            failure_mode="fm003_corruption",
            tasks=TASKS,
            now="2026-02-05T14:33:00.000Z",
        )
    assert [e["type"] for e in document["timeline"]].count("task") == 2
    assert chain.verify(document) == []
    return IncidentRecord.from_dict(document)


def test_tasks_for_people_fill_the_postmortem_action_items_and_the_update():
    record = _record_with_tasks()
    postmortem = render(record, "postmortem", "md")
    assert "| AI-1 | Check disk health (smartctl -a) | hardware on-call |" in postmortem
    assert "| AI-2 | Check memory errors | hardware on-call |" in postmortem
    assert "[TO BE FILLED: action]" not in postmortem
    update = render(record, "update", "txt")
    assert "Tasks for people:\n- hardware on-call: Check disk health (smartctl -a)" in update
    assert "Task for hardware on-call: Check disk health" in render(record, "postmortem", "txt")


def test_without_tasks_the_action_items_stay_to_be_filled():
    assert "[TO BE FILLED: action]" in render(_record(), "postmortem", "md")
    assert "Tasks for people" not in render(_record(resolved=False), "update", "md")
