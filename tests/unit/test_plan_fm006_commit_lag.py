"""FM-006's plan (plugins/module_utils/plans/fm006_commit_lag.py) as a table: restart the most
lagging backup while the others keep a quorum, escalate a lagging leader, refuse the rest."""

from __future__ import annotations

import pytest
from triage_builder import PlanInputError, cluster, down, plan, triage

pytestmark = pytest.mark.unit


def lagging(*names):
    return [
        {
            "fm": "FM-006",
            "name": "Commit Lag Accumulation",
            "severity": "SEV3",
            "replicas": list(names),
            "evidence": [f"{n} vsr_op_number - vsr_commit_number = 150 (> 100)" for n in names],
        }
    ]


BEHIND = {"op": 400, "commit": 250, "lag": 150}
BEHIND_MORE = {"op": 400, "commit": 100, "lag": 300}

CASES = [
    # id, rows, lagging, action, decision, target
    ("healthy", cluster(3), [], "none", "skip", ""),
    ("backup-3", cluster(3, r3=BEHIND), ["replica-3"], "restart", "allow", "host-3"),
    ("leader-3", cluster(3, r1=BEHIND), ["replica-1"], "escalate_leader", "deny", "host-1"),
    (
        "two-of-3",
        cluster(3, r2=BEHIND, r3=BEHIND),
        ["replica-2", "replica-3"],
        "refuse_many",
        "deny",
        "host-2",
    ),
    # Two of five lag: the most behind is restarted, the other three carry the quorum.
    (
        "two-of-5",
        cluster(5, r4=BEHIND, r5=BEHIND_MORE),
        ["replica-4", "replica-5"],
        "restart",
        "allow",
        "host-5",
    ),
    (
        "other-down-3",
        cluster(3, r2=down(2), r3=BEHIND),
        ["replica-3"],
        "refuse_quorum",
        "deny",
        "host-3",
    ),
    (
        "other-down-5",
        cluster(5, r2=down(2), r3=BEHIND),
        ["replica-3"],
        "restart",
        "allow",
        "host-3",
    ),
    (
        "unknown-host",
        cluster(3, r3={**BEHIND, "host": ""}),
        ["replica-3"],
        "refuse_unknown",
        "deny",
        "",
    ),
]


@pytest.mark.parametrize(
    "rows,names,action,decision,target", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_fm006_plan(rows, names, action, decision, target):
    p = plan("FM-006", triage(rows, findings=lagging(*names) if names else []))
    assert (p["action"], p["decision"], p["target"]) == (action, decision, target), p["message"]
    assert p["out_of_service"] == ([target] if decision == "allow" else []), p
    assert p["severity"] == ("" if decision == "skip" else "SEV3")


def test_the_message_names_the_lag_and_the_carriers():
    p = plan("FM-006", triage(cluster(3, r3=BEHIND), findings=lagging("replica-3")))
    assert "op - commit 150" in p["message"] and "replica-1, replica-2" in p["message"]
    assert p["lags"] == {"replica-3": 150}


def test_bad_options_are_named():
    with pytest.raises(PlanInputError, match="max_lag must be >= 0"):
        plan("FM-006", triage(cluster(3), findings=lagging("replica-3")), max_lag=-5)
