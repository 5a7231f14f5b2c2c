"""The quorum guard's decision (module_utils/guard.py, filter quorum_decision), as tables of
clusters. Each replica's exposition text goes through the module's real parsing
(vsr_metrics.read_replica) and cluster summary, as a guard run reads it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.filter import vsr as vsr_filters
from ansible_collections.firebreak.incident.plugins.module_utils import (
    endpoints as ep,
)
from ansible_collections.firebreak.incident.plugins.module_utils import guard, vsr
from ansible_collections.firebreak.incident.plugins.modules import vsr_metrics

pytestmark = pytest.mark.unit
QUORUM_DECISION = vsr_filters.FilterModule().filters()["quorum_decision"]

METRICS = {
    "status": "vsr_replica_status",
    "view": "vsr_view_number",
    "op": "vsr_op_number",
    "commit": "vsr_commit_number",
    "checksum": "vsr_checksum_failures_total",
    "reconfig": "vsr_reconfig_state",
    "size": "vsr_config_size",
}


def R(label, up=True, **values):
    """One replica: its label (None: no label) and its metrics; a value of None leaves the
    metric out of the exposition; ``up=False`` is a refused endpoint."""
    numbers = {"status": 0, "view": 6, "op": 102, "commit": 100, "checksum": 0, "reconfig": 0}
    numbers.update(values)
    return {"label": label, "up": up, "numbers": numbers}


def exposition(replica):
    tag = f'{{replica="{replica["label"]}"}}' if replica["label"] else ""
    return "".join(
        f"{METRICS[key]}{tag} {value}\n"
        for key, value in replica["numbers"].items()
        if value is not None
    )


def metrics(replicas, names):
    entries = []
    for i, replica in enumerate(replicas):
        endpoint = f"127.0.70.{i + 1}:9090"
        fetched = ep.FetchResult(endpoint, f"http://{endpoint}/metrics", elapsed=0.001)
        if replica["up"]:
            fetched.ok, fetched.status, fetched.body = True, 200, exposition(replica)
            fetched.content_type = "text/plain; version=0.0.4"
        else:
            fetched.error = "connection refused"
        entries.append(vsr_metrics.read_replica(i, fetched, None, "replica", False))
    return {"cluster": vsr.cluster_summary(entries, names), "replicas": entries}


def decide(replicas, target, names=None, **kwargs):
    names = names or [f"replica-{i + 1}" for i in range(len(replicas))]
    hosts = [[f"host-{i + 1}", name] for i, name in enumerate(names)]
    return guard.quorum_decision(metrics(replicas, names), hosts, [target], **kwargs)


def healthy(n, down=(), **changes):
    """n replicas, Normal in view 6 (leader replica-1 of 3, replica-2 of 5), commit 100;
    ``down``: replica numbers whose endpoint refuses; ``changes``: {number: {metric: value}}."""
    rows = []
    for i in range(1, n + 1):
        cell = dict(changes.get(f"r{i}", {}))
        label = cell.pop("label", f"replica-{i}")
        rows.append(R(label, up=i not in down, **cell))
    return rows


# id, replicas, target (host or replica name), allowed, words the result must give
CASES = [
    ("3 healthy, one out", healthy(3), "replica-2", True, []),
    ("3, the crashed one out", healthy(3, down=(3,)), "host-3", True, []),
    ("3, two down", healthy(3, down=(2, 3)), "replica-3", False, ["replica-2", "unreachable"]),
    ("5, two down (the target one of them)", healthy(5, down=(4, 5)), "replica-5", True, []),
    ("5, three down", healthy(5, down=(3, 4, 5)), "replica-5", False, ["replica-3"]),
    (
        "a backup 50 ops behind",
        healthy(3, r3={"commit": 50}),
        "replica-2",
        False,
        ["replica-3", "50 ops behind"],
    ),
    # --- the findings of issue 11 ---
    (
        "a replica Normal in an older view",
        healthy(3, r1={"view": 7}, r2={"view": 7}),
        "replica-1",
        False,
        ["replica-3", "view 6", "view 7"],
    ),
    (
        "a backup's commit metric missing (not 0)",
        healthy(3, r1={"commit": 5}, r2={"commit": 5}, r3={"commit": None}),
        "replica-2",
        False,
        ["replica-3", "commit metric missing"],
    ),
    (
        "the leader's commit metric missing: nobody is caught up",
        healthy(3, r1={"commit": None}),
        "replica-2",
        False,
        ["leader replica-1", "commit metric missing", "nobody counts as caught up"],
    ),
    (
        "two hosts reach the same replica",
        healthy(3, r3={"label": "replica-2"}),
        "replica-1",
        False,
        ["host-2", "host-3", "same replica replica-2"],
    ),
    (
        "a label that is not the inventory's name",
        healthy(3, r3={"label": "replica-9"}),
        "replica-1",
        False,
        ["host-3", "replica-9", "vsr_replica_name replica-3"],
    ),
    (
        "the replicas say 5 members, the inventory 3",
        healthy(3, r1={"size": 5}, r2={"size": 5}, r3={"size": 5}),
        "replica-1",
        False,
        ["vsr_config_size 5", "inventory lists 3", "quorum 3"],
    ),
    (
        "a reconfiguration in progress (Joint)",
        healthy(3, r2={"reconfig": 1}),
        "replica-3",
        False,
        ["Joint", "replica-2", "reconfiguration in progress"],
    ),
    (
        "checksum failures on a replica meant to carry the quorum",
        healthy(3, r3={"checksum": 2}),
        "replica-2",
        False,
        ["replica-3", "2 checksum failures"],
    ),
    (
        "a target that matches no replica of the cluster",
        healthy(3),
        "b-replica-9",
        False,
        ["b-replica-9", "matches no replica"],
    ),
]


@pytest.mark.parametrize(
    "replicas, target, allowed, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_quorum_decision(replicas, target, allowed, words):
    result = decide(replicas, target)
    assert result["allowed"] is allowed, result
    text = result["message"]
    for word in words:
        assert word in text, (word, text)
    for row in result["others_not_ok"]:  # every replica not counted says why
        assert row["reasons"], row


def test_vsr_metrics_reports_a_missing_metric_as_none_and_each_endpoint_s_label():
    result = metrics(healthy(2, r1={"commit": None, "size": 3}), ["replica-1", "replica-2"])
    first, second = result["replicas"]
    assert (first["commit"], first["config_size"], first["replica"]) == (None, 3, "replica-1")
    assert (second["commit"], second["config_size"], second["replica"]) == (100, None, "replica-2")


def test_leader_commit_missing_leaves_the_reference_none_not_zero():
    result = decide(healthy(3, r1={"commit": None}), "replica-2")
    assert result["reference_commit"] is None, result
    assert result["others_ok"] == [], result


def test_fewer_inventory_hosts_than_members_never_shrink_the_quorum():
    """Five members, the inventory knows three of them (one the target): the quorum stays 3."""
    five = healthy(3, **{f"r{i}": {"size": 5} for i in (1, 2, 3)})
    result = decide(five, "replica-3")
    assert (result["n"], result["inventory_n"], result["quorum"]) == (5, 3, 3), result
    assert result["allowed"] is False and "deciding for 5" in result["notes"][0], result


DENIED = healthy(3, down=(2,))  # taking replica-3 out leaves 1 of the 2 others


@pytest.mark.parametrize(
    "override, decision, words",
    [
        (None, "deny", ["firebreak_override_quorum_guard='<why>'"]),
        ({"reason": "replica-3 is wedged", "confirm": False}, "deny", ["the confirmation"]),
        ({"reason": "   ", "confirm": True}, "deny", ["a non-empty reason"]),
        ({"confirm": True}, "deny", ["a non-empty reason"]),
        ({"reason": "replica-3 is wedged", "confirm": "true"}, "deny", ["the confirmation"]),
        (
            {"reason": "replica-3 is wedged", "confirm": True, "by": "alice"},
            "override",
            ["overridden by alice", "replica-3 is wedged", "it had refused"],
        ),
    ],
    ids=["none", "no confirmation", "blank reason", "no reason", "confirm not a bool", "both"],
)
def test_override_needs_a_reason_and_the_confirmation(override, decision, words):
    result = decide(DENIED, "replica-3", override=override)
    assert result["allowed"] is False  # the quorum verdict stays what it was
    assert result["decision"] == decision, result["message"]
    for word in words:
        assert word in result["message"], (word, result["message"])
    if decision == "override":
        assert result["override"]["by"] == "alice"
        assert result["override"]["reason"] == "replica-3 is wedged"
        assert result["override"]["overrode"].startswith("quorum_guard refuses"), result
    else:
        assert "override" not in result


def test_an_override_of_an_allowed_action_changes_nothing():
    result = decide(healthy(3), "replica-3", override={"reason": "x", "confirm": True})
    assert (result["allowed"], result["decision"]) == (True, "allow")
    assert "override" not in result


GOOD = metrics(healthy(3), ["replica-1", "replica-2", "replica-3"])
HOSTS = [[f"host-{i}", f"replica-{i}"] for i in (1, 2, 3)]


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        (("not a result", HOSTS, ["replica-1"]), {}, "vsr_metrics result"),
        ((GOOD, HOSTS[:2], ["replica-1"]), {}, "hosts must list"),
        ((GOOD, HOSTS, ["replica-1"]), {"max_lag": -1}, "max_lag"),
        ((GOOD, HOSTS, "replica-1"), {}, "out_of_service must be a list"),
    ],
    ids=["not a result", "hosts short", "negative lag", "a string target"],
)
def test_the_filter_names_bad_input(args, kwargs, words):
    with pytest.raises(AnsibleFilterError, match="quorum_decision: .*" + words):
        QUORUM_DECISION(*args, **kwargs)


def test_the_filter_decides():
    assert QUORUM_DECISION(GOOD, HOSTS, ["replica-1"])["decision"] == "allow"
