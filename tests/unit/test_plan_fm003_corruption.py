"""FM-003's plan (plugins/module_utils/plans/fm003_corruption.py) as a table: repair the one
corrupted replica from a clean quorum, or refuse."""

from __future__ import annotations

import pytest
from triage_builder import PlanInputError, cluster, down, plan, triage

pytestmark = pytest.mark.unit


def corrupt(*names):
    return [
        {
            "fm": "FM-003",
            "name": "Data Corruption",
            "severity": "SEV1",
            "replicas": list(names),
            "evidence": [f"{n}: checksum failures" for n in names],
        }
    ]


CASES = [
    # id, rows, corrupted, options, action, decision, target
    ("healthy", cluster(3), [], {}, "none", "skip", ""),
    ("backup-3", cluster(3), ["replica-3"], {}, "repair", "allow", "host-3"),
    ("leader-3", cluster(3), ["replica-1"], {}, "repair", "allow", "host-1"),
    ("two-of-3", cluster(3), ["replica-2", "replica-3"], {}, "refuse_many", "deny", "host-2"),
    # Two of five: the cluster can lose two, so the first is repaired from the other three.
    ("two-of-5", cluster(5), ["replica-4", "replica-5"], {}, "repair", "allow", "host-4"),
    (
        "three-of-5",
        cluster(5),
        ["replica-3", "replica-4", "replica-5"],
        {},
        "refuse_many",
        "deny",
        "host-3",
    ),
    ("other-down-3", cluster(3, r2=down(2)), ["replica-3"], {}, "refuse_quorum", "deny", "host-3"),
    ("other-down-5", cluster(5, r2=down(2)), ["replica-3"], {}, "repair", "allow", "host-3"),
    (
        "other-lags-3",
        cluster(3, r2={"lag": 50}),
        ["replica-3"],
        {},
        "refuse_quorum",
        "deny",
        "host-3",
    ),
    # A commit that is missing (lag unknown) never counts as caught up.
    (
        "other-commit-missing",
        cluster(3, r2={"commit": None, "lag": None}),
        ["replica-3"],
        {},
        "refuse_quorum",
        "deny",
        "host-3",
    ),
    # Normal in an older view than the others: not a carrier.
    (
        "stale-view",
        cluster(3, r1={"view": 4}, r3={"view": 4}, r2={"view": 3}),
        ["replica-3"],
        {},
        "refuse_quorum",
        "deny",
        "host-3",
    ),
    (
        "wipe-unconfirmed",
        cluster(3),
        ["replica-3"],
        {"repair": "wipe"},
        "refuse_wipe",
        "deny",
        "host-3",
    ),
    (
        "wipe-confirmed",
        cluster(3),
        ["replica-3"],
        {"repair": "wipe", "confirm_wipe": True},
        "repair",
        "allow",
        "host-3",
    ),
    ("unknown-host", cluster(3, r3={"host": ""}), ["replica-3"], {}, "refuse_unknown", "deny", ""),
]


@pytest.mark.parametrize(
    "rows,corrupted,options,action,decision,target",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_fm003_plan(rows, corrupted, options, action, decision, target):
    t = triage(rows, findings=corrupt(*corrupted) if corrupted else [])
    p = plan("FM-003", t, **options)
    assert (p["action"], p["decision"], p["target"]) == (action, decision, target), p["message"]
    assert p["out_of_service"] == ([target] if decision == "allow" else []), p
    assert p["severity"] == ("" if decision == "skip" else "SEV1")


def test_the_leader_s_repair_says_a_view_change_comes_first():
    p = plan("FM-003", triage(cluster(3), findings=corrupt("replica-1")))
    assert p["target_was_leader"] and "view change comes first" in p["message"]


def test_refusals_explain_themselves():
    p = plan("FM-003", triage(cluster(3, r2=down(2)), findings=corrupt("replica-3")))
    assert "only 1 replicas are Normal and caught up (replica-1), quorum 2 of 3" in p["message"]
    p = plan("FM-003", triage(cluster(3), findings=corrupt("replica-3")), repair="wipe")
    assert "fm003_corruption_confirm_wipe=true" in p["message"]


@pytest.mark.parametrize(
    "options,words",
    [
        ({"repair": "format"}, "repair must be one of auto, state_transfer, wipe"),
        ({"confirm_wipe": "perhaps"}, "confirm_wipe must be true or false"),
        ({"max_lag": -1}, "max_lag must be >= 0"),
        ({"data_dir": "/"}, "data_dir"),
    ],
)
def test_bad_options_are_named(options, words):
    with pytest.raises(PlanInputError, match=words):
        plan("FM-003", triage(cluster(3), findings=corrupt("replica-3")), **options)
