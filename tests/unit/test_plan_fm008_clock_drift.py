"""FM-008's plan (plugins/module_utils/plans/fm008_clock_drift.py) as a table: from the drifted
replica's time-sync daemon (its unit and status, as the role reads them) to the seed's
scenario: restart a stopped daemon, wait for a slewing one, escalate unreachable sources to the
network team, step a jumped clock only when the operator confirms it, refuse the rest."""

from __future__ import annotations

import json

import pytest
from triage_builder import PlanInputError, cluster, down, plan, triage

pytestmark = pytest.mark.unit

SOURCE = {"name": "host-clock", "address": "the host's clock", "reachable": True, "error": None}
CUT = dict(SOURCE, reachable=False, error="no reply from the time server (simulated cut)")


def drifted(*names, offset=500.0):
    return [
        {
            "fm": "FM-008",
            "name": "Clock Drift Exceeds Tolerance",
            "severity": "SEV3",
            "replicas": list(names),
            "evidence": [f"{n} vsr_clock_offset_ms={offset} (|offset| > 200 ms)" for n in names],
        }
    ]


def reads(active="active", offset=500.0, sources=(SOURCE,), rc=0, state=None):
    """A host's registered reads: `systemctl show` of the daemon and its status."""
    status = {
        "daemon": "running" if active == "active" else "stopped",
        "offset_ms": offset,
        "state": state or "slewing",
        "step_threshold_ms": 1000.0,
        "sources": list(sources),
    }
    return {
        "unit": {"rc": 0, "stdout_lines": [f"ActiveState={active}", "SubState=dead"]},
        "status": {"rc": rc, "stdout": json.dumps(status) if rc == 0 else "", "stderr": "boom"},
    }


def off(ms):
    return {"clock_offset_ms": ms}


STOPPED = reads("inactive")
SLEWING = reads("active", 450.0)
UNREACHABLE = reads("active", 500.0, sources=(CUT,))
NO_SOURCES = reads("active", 500.0, sources=())
JUMPED = reads("active", 5000.0, state="step needed")
JUMPED_STOPPED = reads("inactive", 5000.0)
IN_SYNC = reads("active", 0.0, state="synchronised")
UNREADABLE = reads("active", rc=2)
HOST_DOWN = {"unit": {"unreachable": True}, "status": {"unreachable": True}}

CASES = [
    # id, rows, drifted names, reads by host, confirm, action, decision, target, out of service
    ("healthy", cluster(3), [], {}, False, "none", "skip", "", []),
    (
        "stopped-backup-3",
        cluster(3, r3=off(500.0)),
        ["replica-3"],
        {"host-3": STOPPED},
        False,
        "restart_timesync",
        "allow",
        "host-3",
        [],
    ),
    # The leader's daemon is restarted the same way: the replica itself is not touched.
    (
        "stopped-leader-3",
        cluster(3, r1=off(-600.0)),
        ["replica-1"],
        {"host-1": STOPPED},
        False,
        "restart_timesync",
        "allow",
        "host-1",
        [],
    ),
    (
        "slewing-5",
        cluster(5, r4=off(450.0)),
        ["replica-4"],
        {"host-4": SLEWING},
        False,
        "wait_slew",
        "allow",
        "host-4",
        [],
    ),
    # Two of five drift: the most drifted first.
    (
        "two-of-5",
        cluster(5, r2=off(300.0), r5=off(-900.0)),
        ["replica-2", "replica-5"],
        {"host-2": STOPPED, "host-5": STOPPED},
        False,
        "restart_timesync",
        "allow",
        "host-5",
        [],
    ),
    (
        "unreachable-3",
        cluster(3, r2=off(500.0)),
        ["replica-2"],
        {"host-2": UNREACHABLE},
        False,
        "escalate_network",
        "deny",
        "host-2",
        [],
    ),
    (
        "no-sources-5",
        cluster(5, r3=off(500.0)),
        ["replica-3"],
        {"host-3": NO_SOURCES},
        False,
        "escalate_network",
        "deny",
        "host-3",
        [],
    ),
    (
        "jump-unconfirmed-3",
        cluster(3, r2=off(5000.0)),
        ["replica-2"],
        {"host-2": JUMPED},
        False,
        "refuse_step",
        "deny",
        "host-2",
        [],
    ),
    (
        "jump-confirmed-3",
        cluster(3, r2=off(5000.0)),
        ["replica-2"],
        {"host-2": JUMPED},
        True,
        "step",
        "allow",
        "host-2",
        ["host-2"],
    ),
    (
        "jump-stopped-confirmed-5",
        cluster(5, r5=off(-5000.0)),
        ["replica-5"],
        {"host-5": JUMPED_STOPPED},
        True,
        "restart_and_step",
        "allow",
        "host-5",
        ["host-5"],
    ),
    (
        "jump-stopped-unconfirmed-3",
        cluster(3, r3=off(5000.0)),
        ["replica-3"],
        {"host-3": JUMPED_STOPPED},
        False,
        "refuse_step",
        "deny",
        "host-3",
        [],
    ),
    # A confirmed step still needs the others to carry a quorum.
    (
        "jump-confirmed-other-down-3",
        cluster(3, r1=down(1), r2=off(5000.0)),
        ["replica-2"],
        {"host-2": JUMPED},
        True,
        "refuse_quorum",
        "deny",
        "host-2",
        [],
    ),
    # Stale view: a replica Normal in an old view does not count toward the others' quorum.
    (
        "jump-confirmed-stale-view-3",
        cluster(3, r1={"view": 3}, r2={"view": 3, **off(5000.0)}, r3={"view": 1}),
        ["replica-2"],
        {"host-2": JUMPED},
        True,
        "refuse_quorum",
        "deny",
        "host-2",
        [],
    ),
    (
        "jump-confirmed-two-of-3",
        cluster(3, r2=off(5000.0), r3=off(4000.0)),
        ["replica-2", "replica-3"],
        {"host-2": JUMPED, "host-3": JUMPED},
        True,
        "refuse_many",
        "deny",
        "host-2",
        [],
    ),
    (
        "in-sync-but-drifted-3",
        cluster(3, r2=off(500.0)),
        ["replica-2"],
        {"host-2": IN_SYNC},
        False,
        "escalate_unexplained",
        "deny",
        "host-2",
        [],
    ),
    # Missing reads: the daemon's status unreadable, its host unreachable, never read at all.
    (
        "unreadable-3",
        cluster(3, r2=off(500.0)),
        ["replica-2"],
        {"host-2": UNREADABLE},
        False,
        "refuse_unread",
        "deny",
        "host-2",
        [],
    ),
    (
        "host-unreachable-5",
        cluster(5, r2=off(500.0)),
        ["replica-2"],
        {"host-2": HOST_DOWN},
        False,
        "refuse_unread",
        "deny",
        "host-2",
        [],
    ),
    (
        "not-read-3",
        cluster(3, r2=off(500.0)),
        ["replica-2"],
        {},
        False,
        "refuse_unread",
        "deny",
        "host-2",
        [],
    ),
    # Missing metric: the finding names a replica whose offset the table lacks.
    (
        "missing-offset-3",
        cluster(3, r2=off(None)),
        ["replica-2"],
        {"host-2": STOPPED},
        False,
        "restart_timesync",
        "allow",
        "host-2",
        [],
    ),
    (
        "unknown-replica-3",
        cluster(3),
        ["replica-9"],
        {},
        False,
        "refuse_unknown",
        "deny",
        "",
        [],
    ),
]


@pytest.mark.parametrize(
    ("rows", "names", "by_host", "confirm", "action", "decision", "target", "oos"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_fm008_plan(rows, names, by_host, confirm, action, decision, target, oos):
    t = triage(rows, drifted(*names) if names else [])
    p = plan("FM-008", t, timesync=by_host, confirm_step=confirm)
    assert (p["action"], p["decision"], p["target"]) == (action, decision, target), p["message"]
    assert p["out_of_service"] == oos
    assert p["runbook"] == "fm008_clock_drift" and p["failure_mode"] == "FM-008"
    assert p["severity"] == ("" if decision == "skip" else "SEV3")


def test_a_refused_step_warns_and_names_the_confirmation():
    t = triage(cluster(3, r2=off(5000.0)), drifted("replica-2", offset=5000.0))
    p = plan("FM-008", t, timesync={"host-2": JUMPED})
    assert "CAN BREAK CONSENSUS" in p["message"]
    assert "fm008_clock_drift_confirm_step=true" in p["message"]
    assert p["confirm_step"] is False


def test_a_confirmed_step_says_it_is_the_operators_decision():
    t = triage(cluster(3, r2=off(5000.0)), drifted("replica-2", offset=5000.0))
    p = plan("FM-008", t, timesync={"host-2": JUMPED}, confirm_step="true")
    assert p["message"].startswith("WARNING: step replica-2's clock by -5000.0 ms")
    assert "confirmed by the operator" in p["message"] and p["confirm_step"] is True


def test_a_stopped_daemon_with_a_jump_is_restarted_then_stepped():
    t = triage(cluster(3, r3=off(5000.0)), drifted("replica-3", offset=5000.0))
    p = plan("FM-008", t, timesync={"host-3": JUMPED_STOPPED}, confirm_step=True)
    assert p["message"].startswith(
        "WARNING: restart replica-3's stopped time-sync daemon, then step its clock by -5000.0 ms"
    ), p["message"]


def test_the_network_escalation_names_the_team_and_the_sources():
    t = triage(cluster(3, r2=off(500.0)), drifted("replica-2"))
    p = plan("FM-008", t, timesync={"host-2": UNREACHABLE})
    assert "network team" in p["message"] and "simulated cut" in p["message"]


def test_the_restart_names_the_alert_threshold_and_the_rest():
    t = triage(cluster(5, r2=off(300.0), r5=off(-900.0)), drifted("replica-2", "replica-5"))
    p = plan("FM-008", t, timesync={"host-5": STOPPED})
    assert "below 100.0 ms" in p["message"] and "then replica-2, one run each" in p["message"]
    assert p["alert_ms"] == 100.0 and p["timesync"]["unit_state"] == "inactive"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timesync": ["host-2"]}, "option timesync must be"),
        ({"confirm_step": "maybe"}, "option confirm_step must be true or false"),
        ({"max_lag": -1}, "option max_lag must be >= 0"),
    ],
)
def test_bad_options_are_named(options, message):
    t = triage(cluster(3, r2=off(500.0)), drifted("replica-2"))
    with pytest.raises(PlanInputError, match=message):
        plan("FM-008", t, **options)
