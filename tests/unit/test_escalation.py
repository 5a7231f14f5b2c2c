"""Seed 000's escalation paths and comms cadence, computed from a record's milestones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import escalation as esc

pytestmark = pytest.mark.unit

T0 = "2026-02-05T14:32:00.000Z"  # the seed's example: detected 14:32 UTC, a Thursday


def ms(**times):
    out = {"fault_started": None, "detected": T0, "acknowledged": None}
    out.update(mitigated=None, resolved=None)
    out.update(times)
    return out


def by_id(items):
    return {i["id"]: i for i in items}


@pytest.mark.parametrize(
    "severity, expected",
    [
        (
            "SEV1",
            {
                "manager": "14:32",
                "response": "14:47",
                "secondary": "14:47",
                "escalation_engineer": "15:02",
                "level2_sev1": "15:02",
                "executive": "16:32",
                "level3": "18:32",
            },
        ),
        (
            "SEV2",
            {
                "secondary": "14:47",
                "response": "15:02",
                "escalation_engineer": "15:02",
                "level2_sev2": "16:32",
                "level3": "18:32",
            },
        ),
        ("SEV3", {"secondary": "14:47", "escalation_engineer": "15:02", "response": "16:32"}),
        ("SEV4", {"secondary": "14:47", "escalation_engineer": "15:02", "response": "09:00"}),
    ],
)
def test_due_times_by_severity(severity, expected):
    items = esc.due(severity, ms())
    assert {i["id"]: i["due"][11:16] for i in items} == expected
    assert [i["due"] for i in items] == sorted(i["due"] for i in items)
    assert all(i["status"] == "open" and i["because"] for i in items)


def test_sev4_responds_the_next_business_day():
    (resp,) = [i for i in esc.due("SEV4", ms()) if i["id"] == "response"]
    assert resp["due"] == "2026-02-06T09:00:00.000Z"  # Friday
    friday = ms(detected="2026-02-06T17:00:00Z")
    (resp,) = [i for i in esc.due("SEV4", friday) if i["id"] == "response"]
    assert resp["due"] == "2026-02-09T09:00:00.000Z"  # Monday


def test_an_ack_in_time_meets_the_on_call_escalations_a_late_one_does_not():
    early = by_id(esc.due("SEV1", ms(acknowledged="2026-02-05T14:35:00Z")))
    assert early["secondary"]["status"] == "met" and early["response"]["status"] == "met"
    assert early["secondary"]["met_at"] == "2026-02-05T14:35:00.000Z"
    late = by_id(esc.due("SEV1", ms(acknowledged="2026-02-05T14:50:00Z")))
    assert late["secondary"]["status"] == "open" and late["secondary"]["met_at"] is None
    assert late["escalation_engineer"]["status"] == "met"
    # nothing but the manager's own page meets the SEV1 manager escalation
    assert late["manager"]["status"] == "open" and late["manager"]["unless"] is None


def test_mitigation_and_resolution_meet_the_technical_and_executive_ones():
    items = by_id(
        esc.due("SEV1", ms(mitigated="2026-02-05T14:58:00Z", resolved="2026-02-05T15:12:00Z"))
    )
    assert items["level2_sev1"]["status"] == "met" and items["level3"]["status"] == "met"
    assert items["executive"]["status"] == "met"
    slow = by_id(esc.due("SEV1", ms(mitigated="2026-02-05T15:30:00Z")))
    assert slow["level2_sev1"]["status"] == "open" and slow["level3"]["status"] == "met"
    assert slow["executive"]["status"] == "open"


def test_a_resolution_before_the_due_time_meets_every_escalation_not_yet_due():
    items = by_id(esc.due("SEV1", ms(resolved="2026-02-05T14:40:00Z")))
    assert items["secondary"]["status"] == "met" and items["executive"]["status"] == "met"
    assert items["secondary"]["met_at"] == "2026-02-05T14:40:00.000Z"
    # the SEV1 manager page was due at the detection, before the resolution
    assert items["manager"]["status"] == "open"


def test_a_mitigation_before_the_timeout_meets_the_pages_not_the_primarys_response():
    items = by_id(esc.due("SEV3", ms(mitigated="2026-02-05T14:40:00Z")))
    assert items["secondary"]["status"] == "met" and items["escalation_engineer"]["status"] == "met"
    assert items["response"]["status"] == "open"  # the primary still owes a response (< 2 h)
    late = by_id(esc.due("SEV3", ms(mitigated="2026-02-05T14:50:00Z")))
    assert late["secondary"]["status"] == "open" and late["escalation_engineer"]["status"] == "met"


def test_status_at_a_time():
    (sec,) = [i for i in esc.due("SEV2", ms()) if i["id"] == "secondary"]
    assert esc.status_at(sec, "2026-02-05T14:46:59Z") == "pending"
    assert esc.status_at(sec, "2026-02-05T14:47:00Z") == "overdue"
    met = dict(sec, status="met")
    assert esc.status_at(met, "2026-02-05T23:00:00Z") == "met"


@pytest.mark.parametrize("severity", [None, "", "none"])
def test_no_incident_no_escalation(severity):
    assert esc.due(severity, ms()) == []


def test_not_detected_yet_no_escalation():
    assert esc.due("SEV1", ms(detected=None)) == []
    assert esc.updates("SEV1", ms(detected=None)) is None


@pytest.mark.parametrize(
    "severity, milestones, complaint",
    [
        ("SEV9", ms(), "severity must be one of"),
        ("SEV1", ms(detected="yesterday"), "milestone detected"),
        ("SEV1", ms(detected="2026-02-05T14:32:00"), "no time zone"),
        ("SEV1", ["not", "a", "dict"], "milestones must be a dict"),
        ("SEV1", ms(acknowledged=5), "milestone acknowledged"),
    ],
)
def test_bad_input_is_named(severity, milestones, complaint):
    with pytest.raises(esc.EscalationError, match=complaint):
        esc.due(severity, milestones)


def test_updates_every_15_minutes_for_sev1_and_sev2_while_open():
    done = esc.updates("SEV1", ms(resolved="2026-02-05T15:12:00Z"))
    assert done["every_minutes"] == 15 and done["next"] is None
    assert [t[11:16] for t in done["due"]] == ["14:47", "15:02"]
    open_ = esc.updates("SEV2", ms(), until="2026-02-05T14:50:00Z")
    assert [t[11:16] for t in open_["due"]] == ["14:47"] and open_["next"][11:16] == "15:02"
    assert esc.updates("SEV2", ms())["due"] == [] and esc.updates("SEV2", ms())["next"]
    assert esc.updates("SEV3", ms()) is None and esc.updates("SEV4", ms()) is None
