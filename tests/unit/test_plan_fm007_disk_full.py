"""FM-007's plan (plugins/module_utils/plans/fm007_disk_full.py) as a table: clean up the
first full replica, start it when it stopped; nothing is taken out of service."""

from __future__ import annotations

import pytest
from triage_builder import PlanInputError, cluster, down, plan, triage

pytestmark = pytest.mark.unit


def full(*names):
    return [
        {
            "fm": "FM-007",
            "name": "Disk Full",
            "severity": "SEV2",
            "replicas": list(names),
            "evidence": [f"{n} node_filesystem_avail_bytes 0 (<= 1048576)" for n in names],
        }
    ]


ENOSPC = down(3, run_tail=["2026-12-02T10:00:00Z [Errno 28] No space left on device"])

CASES = [
    # id, rows, full, action, decision, target, stopped
    ("healthy", cluster(3), [], "none", "skip", "", False),
    ("running-backup", cluster(3), ["replica-3"], "cleanup", "allow", "host-3", False),
    ("stopped-backup", cluster(3, r3=ENOSPC), ["replica-3"], "cleanup", "allow", "host-3", True),
    ("stopped-leader", cluster(3, r1=down(1)), ["replica-1"], "cleanup", "allow", "host-1", True),
    # Two full of three, the cluster stuck: freeing (and starting) one brings it back.
    (
        "two-of-3",
        cluster(3, r2=down(2), r3=down(3)),
        ["replica-2", "replica-3"],
        "cleanup",
        "allow",
        "host-2",
        True,
    ),
    ("five", cluster(5, r5=down(5)), ["replica-5"], "cleanup", "allow", "host-5", True),
    (
        "unknown-host",
        cluster(3, r3={"host": ""}),
        ["replica-3"],
        "refuse_unknown",
        "deny",
        "",
        False,
    ),
]


@pytest.mark.parametrize(
    "rows,names,action,decision,target,stopped",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_fm007_plan(rows, names, action, decision, target, stopped):
    p = plan("FM-007", triage(rows, findings=full(*names) if names else []))
    assert (p["action"], p["decision"], p["target"]) == (action, decision, target), p["message"]
    # Nothing is taken out of service: no quorum guard, whatever the cluster.
    assert p["out_of_service"] == []
    assert p["replica_stopped"] is stopped
    assert p["severity"] == ("" if decision == "skip" else "SEV2")


def test_the_message_says_what_is_freed_and_never_the_live_log():
    p = plan("FM-007", triage(cluster(3), findings=full("replica-3")))
    assert "write a checkpoint" in p["message"] and "never the live log" in p["message"]
    p = plan("FM-007", triage(cluster(3, r3=ENOSPC), findings=full("replica-3")))
    assert "write a checkpoint" not in p["message"] and "start it (it stopped)" in p["message"]
    p = plan(
        "FM-007",
        triage(cluster(3, r2=down(2), r3=down(3)), findings=full("replica-2", "replica-3")),
    )
    assert "then replica-3, one run each" in p["message"]


def test_bad_options_are_named():
    with pytest.raises(PlanInputError, match="used_percent must be >= 1"):
        plan("FM-007", triage(cluster(3), findings=full("replica-3")), used_percent=0)
