"""FM-005's plan (plugins/module_utils/plans/fm005_replica_crash.py) as a table: restart the
one crashed replica, refuse FM-001, escalate what a restart would hide."""

from __future__ import annotations

import pytest
from triage_builder import PlanInputError, cluster, down, plan, row, triage

pytestmark = pytest.mark.unit

ENOSPC = ["2026-12-02T10:00:00Z persist failed: [Errno 28] No space left on device"]
CKSUM = ["2026-12-02T10:00:00Z checksum mismatch at op 31"]

CASES = [
    # id, rows, action, decision, target, words in the message
    ("healthy-3", cluster(3), "none", "skip", "", ["no replica is down"]),
    ("backup-down-3", cluster(3, r3=down(3)), "restart", "allow", "host-3", ["restart replica-3"]),
    ("leader-down-3", cluster(3, r1=down(1)), "restart", "allow", "host-1", ["restart replica-1"]),
    ("two-down-3", cluster(3, r2=down(2), r3=down(3)), "refuse_fm001", "deny", "", ["FM-001"]),
    ("two-down-5", cluster(5, r4=down(4), r5=down(5)), "refuse_fm001", "deny", "", ["2 of 5"]),
    ("one-down-5", cluster(5, r5=down(5)), "restart", "allow", "host-5", ["quorum 3"]),
    (
        "disk-full",
        cluster(3, r2=down(2, run_tail=ENOSPC)),
        "escalate",
        "deny",
        "host-2",
        ["fm007_disk_full"],
    ),
    (
        "corruption",
        cluster(3, r2=down(2, run_excerpt=CKSUM)),
        "escalate",
        "deny",
        "host-2",
        ["fm003_corruption"],
    ),
    (
        "unknown-host",
        cluster(3, r3=down(3, host="")),
        "refuse_unknown",
        "deny",
        "",
        ["vsr_replica_name"],
    ),
]


@pytest.mark.parametrize(
    "rows,action,decision,target,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_fm005_plan(rows, action, decision, target, words):
    p = plan("FM-005", triage(rows))
    assert (p["action"], p["decision"], p["target"]) == (action, decision, target), p
    for w in words:
        assert w in p["message"], p["message"]
    assert p["out_of_service"] == ([target] if decision == "allow" else []), p
    assert p["failure_mode"] == "FM-005" and p["runbook"] == "fm005_replica_crash"


def test_no_quorum_without_the_crashed_one_is_fm001_sev1():
    # One unit down, but the others are not a quorum of Normal replicas (one in ViewChange).
    t = triage(cluster(3, r1=down(1), r2={"status": 1, "status_name": "ViewChange"}))
    p = plan("FM-005", t)
    assert (p["action"], p["severity"]) == ("refuse_fm001", "SEV1"), p


def test_only_the_crashed_run_s_lines_decide():
    # An earlier run's ENOSPC is in the journal window, not in this run's lines.
    t = triage(cluster(3, r2=down(2, journal_tail=ENOSPC)))
    assert plan("FM-005", t)["action"] == "restart"


def test_a_skip_has_no_severity_and_the_reason_is_kept():
    p = plan("FM-005", triage(cluster(3, r3=down(3))))
    assert p["severity"] == "SEV3" and "signal" in p["crash_reason"]
    assert plan("FM-005", triage(cluster(3)))["severity"] == ""


@pytest.mark.parametrize(
    "options,words",
    [
        ({"watch_seconds": -1}, "watch_seconds must be >= 0"),
        ({"watch_interval": 0}, "watch_interval must be >= 1"),
        ({"not_a_process_crash": {"x": "("}}, "bad pattern"),
        ({"not_a_process_crash": "oops"}, "must map"),
    ],
)
def test_bad_options_are_named(options, words):
    with pytest.raises(PlanInputError, match=words):
        plan("FM-005", triage(cluster(3, r3=down(3))), **options)


def test_a_triage_without_its_table_is_refused():
    with pytest.raises(PlanInputError, match="firebreak_triage"):
        plan("FM-005", {"n": 3})
    with pytest.raises(PlanInputError, match="unique names"):
        plan("FM-005", triage([row(1), row(1)]))
