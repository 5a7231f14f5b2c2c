"""The runbook engine's shared parts: every registry runbook has a plan function and a role on
the skeleton; the record's state after a run; the hosts' findings triage adds."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from triage_builder import cluster, down, failure_modes, plan, runbook, triage, vsr

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("fm,role", sorted(failure_modes.runbooks().items()))
def test_every_runbook_has_a_plan_and_sits_on_the_skeleton(fm, role):
    module = importlib.import_module(runbook._PLANS + role)
    assert callable(module.plan)
    main = (ROOT / "roles" / role / "tasks" / "main.yml").read_text()
    assert "name: firebreak.incident.runbook" in main and f"runbook_failure_mode: {fm}" in main
    assert (ROOT / "roles" / role / "tasks" / "act.yml").is_file()


def test_a_failure_mode_without_a_runbook_has_no_plan():
    with pytest.raises(runbook.PlanInputError, match="FM-001 has no runbook"):
        plan("FM-001", triage(cluster(3)))
    with pytest.raises(failure_modes.UnknownFailureMode):
        plan("FM-099", triage(cluster(3)))


@pytest.mark.parametrize(
    "decision,failed,escalated,check,state",
    [
        ("allow", False, False, False, "mitigated"),
        ("allow", True, False, False, "investigating"),
        ("allow", False, False, True, "investigating"),
        ("allow", True, True, False, "escalated"),
        ("deny", False, False, False, "escalated"),
        ("skip", False, False, False, ""),
        ("skip", True, False, False, ""),
    ],
)
def test_outcome(decision, failed, escalated, check, state):
    assert runbook.outcome({"decision": decision}, failed, escalated, check) == state


def test_a_plan_with_an_unknown_decision_is_refused():
    entry = failure_modes.get("FM-005")
    with pytest.raises(runbook.PlanInputError, match="decision must be one of"):
        runbook.finish(entry, runbook.Triage(triage(cluster(3))), {"decision": "maybe"})


FM003 = {
    "fm": "FM-003",
    "name": "Data Corruption",
    "severity": "SEV1",
    "runbook": "fm003_corruption",
}


@pytest.mark.parametrize(
    "findings,rows,quorum,expect",
    [
        # The journal of replica-2's current run reports checksum mismatches: FM-003 first.
        ([], cluster(3, r2={"run_checksum_lines": 2}), True, [("FM-003", ["replica-2"])]),
        # Its admin status says it is corrupt from op 31.
        ([], cluster(3, r3={"corrupt_from": 31}), True, [("FM-003", ["replica-3"])]),
        # The metrics named replica-1; the journal adds replica-2 to the same finding.
        (
            [dict(FM003, replicas=["replica-1"], evidence=["metrics"])],
            cluster(3, r2={"run_checksum_lines": 1}),
            True,
            [("FM-003", ["replica-1", "replica-2"])],
        ),
        # One unit down, a quorum kept: FM-005.
        ([], cluster(3, r3=down(3)), True, [("FM-005", ["replica-3"])]),
        # Without a quorum it is not FM-005 (classify says FM-001).
        ([], cluster(3, r3=down(3)), False, []),
        # Two units down: not FM-005 either.
        ([], cluster(3, r2=down(2), r3=down(3)), True, []),
        # A host whose state could not be read says nothing.
        ([], cluster(3, r3=down(3, host_state_read=False)), True, []),
    ],
)
def test_host_findings(findings, rows, quorum, expect):
    got = vsr.host_findings(findings, rows, quorum)
    assert [(f["fm"], f["replicas"]) for f in got] == expect, got
    for f in got:
        assert f["runbook"] == failure_modes.runbook(f["fm"]) and f["evidence"]
