"""Deterministic scenarios for the sans-I/O VSR core (no simulation randomness)."""

from __future__ import annotations

import pytest
from firebreak.kimberlite.core import (
    NORMAL,
    RECOVERING,
    STATE_TRANSFER,
    VIEW_CHANGE,
    Replica,
    StateMachine,
    Timing,
)

pytestmark = pytest.mark.unit

NAMES = ["replica-1", "replica-2", "replica-3"]


class Net:
    """A lossless, in-order network among replicas, with a switch per replica."""

    def __init__(self) -> None:
        self.r = [Replica(NAMES, i, timing=Timing(), seed=i) for i in range(3)]
        self.up = [True, True, True]
        self.now = 0
        self.queue: list = []
        self.replies: list = []
        self.disk: list[list] = [[], [], []]
        self.order: list = []

    def effects(self, i: int, effs: list) -> None:
        for e in effs:
            kind = e[2].get("type") if e[0] == "send" else None
            if kind == "prepare_ok":
                kind = f"prepare_ok {e[2]['op']}"
            self.order.append((i, e[0], kind))
            if e[0] == "send":
                self.queue.append((i, e[1], e[2]))
            elif e[0] == "append":
                self.disk[i] = self.disk[i][: e[1] - 1] + e[2]
            elif e[0] in ("reply", "redirect", "fail"):
                self.replies.append((i, *e))

    def run(self, ms: int = 0) -> None:
        end = self.now + ms
        while True:
            while self.queue:
                src, dst, msg = self.queue.pop(0)
                if self.up[src] and self.up[dst]:
                    self.effects(dst, self.r[dst].on_message(msg, self.now))
            if self.now >= end:
                break
            self.now += 10
            for i, r in enumerate(self.r):
                if self.up[i]:
                    self.effects(i, r.tick(self.now))

    def write(self, i: int, event: str, client=None, req=None) -> None:
        body = {"stream": "s", "event": event}
        self.effects(i, self.r[i].on_request(client, req, body, event))


def test_write_commits_and_replies_only_after_quorum() -> None:
    net = Net()
    net.run(300)
    net.up[1] = net.up[2] = False
    net.write(0, "a")
    net.run(300)
    assert not [x for x in net.replies if x[1] == "reply"], "acknowledged without a quorum"
    assert net.r[0].commit == 0
    net.up[1] = True
    net.run(300)
    assert [x[3]["op"] for x in net.replies if x[1] == "reply"] == [1]
    assert net.r[0].sm.streams["s"] == [["a", 1]]


def test_backup_persists_before_prepare_ok() -> None:
    net = Net()
    net.run(200)
    net.write(0, "a")
    net.run(100)
    order = [(kind, t) for i, kind, t in net.order if i == 1]
    assert order.index(("append", None)) < order.index(("send", "prepare_ok 1"))
    assert net.disk[1][0]["body"]["event"] == "a"


def test_backup_redirects_to_leader() -> None:
    net = Net()
    net.run(200)
    net.write(2, "x")
    assert net.replies[-1][1:4] == ("redirect", "x", 0)


def test_leader_failure_elects_next_in_configuration_order() -> None:
    net = Net()
    net.run(200)
    net.write(0, "a")
    net.run(200)
    net.up[0] = False
    net.run(2500)
    r1, r2 = net.r[1], net.r[2]
    assert r1.status == r2.status == NORMAL
    assert r1.view == r2.view >= 1
    assert r1.primary_of(r1.view) == r1.view % 3
    assert r1.sm.streams["s"] == [["a", 1]]
    leader = r1.primary_of(r1.view)
    net.write(leader, "b")
    net.run(300)
    assert [x[3]["op"] for x in net.replies if x[1] == "reply"] == [1, 2]


def test_duplicate_request_is_answered_from_client_table() -> None:
    net = Net()
    net.run(200)
    net.write(0, "a", client="c", req=1)
    net.run(200)
    net.write(0, "a", client="c", req=1)
    replies = [x for x in net.replies if x[1] == "reply"]
    assert len(replies) == 2 and replies[1][3].get("duplicate")
    assert net.r[0].sm.streams["s"] == [["a", 1]]


def test_corrupt_replica_stops_voting_until_repaired() -> None:
    net = Net()
    net.run(200)
    for k in range(5):
        net.write(0, f"e{k}")
    net.run(300)
    effs = net.r[2].on_corruption(3)
    assert any(e[0] == "log" and e[1] == "ERROR" and "op=3" in e[2] for e in effs)
    assert net.r[2].status == STATE_TRANSFER
    net.up[0] = False  # the primary that could repair it is gone
    net.effects(2, effs)
    net.run(3000)
    # replica-3 never voted: replica-2 alone cannot form a view (f + 1 = 2 needed)
    assert net.r[1].status == VIEW_CHANGE
    assert net.r[2].status == STATE_TRANSFER
    net.up[0] = True
    net.run(3000)
    assert all(r.status == NORMAL for r in net.r)
    assert net.r[2].clean and [e["body"]["event"] for e in net.disk[2]] == [
        f"e{k}" for k in range(5)
    ]


def test_held_repair_waits_for_the_operator() -> None:
    """hold_repair: fenced at once (no votes, status 3), but no state transfer is asked for
    until release_repair(); then it is repaired as usual."""
    net = Net()
    net.r[2] = Replica(NAMES, 2, timing=Timing(), seed=2, hold_repair=True)
    net.run(200)
    for k in range(5):
        net.write(0, f"e{k}")
    net.run(300)
    effs = net.r[2].on_corruption(3)
    assert any(e[0] == "log" and "repair held" in e[2] for e in effs), effs
    net.effects(2, effs)
    assert net.r[2].status == STATE_TRANSFER and net.r[2].repair_held
    sent_before = len(net.order)
    net.run(3000)
    asked = [o for o in net.order[sent_before:] if o[0] == 2 and o[2] == "getstate"]
    assert asked == [], "a held repair asked for the state anyway"
    assert net.r[2].status == STATE_TRANSFER and not net.r[2].clean
    # the other two keep committing without it
    net.write(0, "while-held")
    net.run(300)
    assert net.r[0].commit == 6
    net.effects(2, net.r[2].release_repair())
    net.run(1000)
    assert net.r[2].status == NORMAL and net.r[2].clean and not net.r[2].repair_held
    assert [e["body"]["event"] for e in net.disk[2]][-1] == "while-held"


def test_restart_recovers_from_durable_log() -> None:
    net = Net()
    net.run(200)
    for k in range(3):
        net.write(0, f"e{k}")
    net.run(300)
    net.up[2] = False
    for k in range(3, 6):
        net.write(0, f"e{k}")
    net.run(300)
    net.r[2] = Replica(
        NAMES, 2, log=net.disk[2], view=0, commit_hint=2, restarted=True, now=net.now
    )
    net.up[2] = True
    net.effects(2, net.r[2]._drain())
    net.run(500)
    assert net.r[2].status == NORMAL and net.r[2].commit == 6
    assert len(net.disk[2]) == 6


def test_brand_new_cluster_bootstraps_only_when_all_fresh() -> None:
    net = Net()
    net.r = [Replica(NAMES, i, seed=i, fresh=True) for i in range(3)]
    net.up[2] = False
    net.run(3000)
    assert [r.status for r in net.r[:2]] == [RECOVERING, RECOVERING]  # replica-3 missing
    net.up[2] = True
    net.run(1000)
    assert all(r.status == NORMAL and r.view == 0 for r in net.r)
    net.write(0, "a")
    net.run(300)
    assert [x[3]["op"] for x in net.replies if x[1] == "reply"] == [1]


def test_wiped_replica_relearns_and_never_votes_with_empty_state() -> None:
    net = Net()
    net.run(200)
    for k in range(4):
        net.write(0, f"e{k}")
    net.run(300)
    net.r[2] = Replica(NAMES, 2, seed=9, fresh=True, now=net.now)  # data dir wiped
    net.effects(2, net.r[2]._drain())
    net.up[0] = False  # only replica-2 could answer, and it is not the primary
    net.run(3000)
    assert net.r[2].status == RECOVERING and net.r[2].op == 0
    assert net.r[1].status == VIEW_CHANGE  # the wiped replica gave no vote
    net.up[0] = True
    net.run(3000)
    assert all(r.status == NORMAL for r in net.r)
    assert [e["body"]["event"] for e in net.r[2].log] == [f"e{k}" for k in range(4)]


# ---------------------------------------------------------------- reconfiguration (joint)
UNIVERSE = [*NAMES, "replica-4"]


class RNet(Net):
    """Net over a universe of four names; replica-4 is not provisioned until ``provision``."""

    def __init__(self) -> None:
        super().__init__()
        self.r = [
            Replica(UNIVERSE, i, timing=Timing(), seed=i, members=NAMES) for i in range(3)
        ] + [None]
        self.up = [True, True, True, False]
        self.disk = [[], [], [], []]

    def provision(self) -> None:
        self.r[3] = Replica(UNIVERSE, 3, seed=3, fresh=True, now=self.now, members=NAMES)
        self.up[3] = True
        self.effects(3, self.r[3]._drain())

    def reconfig(self, i: int, action: str, name: str) -> None:
        body = {"kind": "reconfig", "action": action, "replica": name}
        self.effects(i, self.r[i].on_request(None, None, body, f"reconfig-{action}-{name}"))

    def leader(self) -> int:
        (i,) = [i for i, r in enumerate(self.r) if r and r.status == NORMAL and r.is_primary]
        return i


def _replies(net, token) -> list:
    return [x[3] for x in net.replies if x[1] == "reply" and x[2] == token]


def test_remove_goes_joint_then_stable_and_new_quorum_rules() -> None:
    net = RNet()
    net.run(200)
    net.write(0, "a")
    net.run(200)
    net.reconfig(0, "remove", "replica-3")
    net.run(300)
    (res,) = _replies(net, "reconfig-remove-replica-3")
    assert res["reconfig"] == "joint" and res["new"] == ["replica-1", "replica-2"]
    for r in net.r[:3]:
        assert r.cfg == (("replica-1", "replica-2"), None)  # stable, from the log
        assert r.sm.config == ["replica-1", "replica-2"] and r.stable_entered == 1
    assert not net.r[2].member and net.r[0].member and net.r[1].member
    # replica-3 alone cannot help any more: with replica-2 down nothing commits (2 of 2)
    net.up[1] = False
    net.write(0, "b")
    net.run(500)
    assert net.r[0].commit == net.r[0].op - 1
    net.up[1] = True
    net.run(500)
    assert net.r[0].commit == net.r[0].op
    # and with replica-3 down (removed) writes commit with replica-1 and replica-2
    net.up[2] = False
    net.write(0, "c")
    net.run(300)
    assert [e for e, _ in net.r[0].sm.streams["s"]] == ["a", "b", "c"]


def test_joint_commit_needs_a_majority_of_both_configurations() -> None:
    net = RNet()
    net.run(200)
    net.up[1] = False  # new configuration {1, 2} needs replica-2; old {1, 2, 3} has 1 + 3
    net.reconfig(0, "remove", "replica-3")
    net.run(1000)
    r0 = net.r[0]
    assert r0.cfg[1] is not None and r0.commit < r0.op  # joint proposed, not committed
    assert not _replies(net, "reconfig-remove-replica-3")
    assert net.r[2].op == r0.op  # replica-3 holds it: a majority of the old, not of the new
    net.up[1] = True
    net.r[1].last_heard = net.now  # it was down, not partitioned: no view change
    net.run(1000)
    assert _replies(net, "reconfig-remove-replica-3")
    assert all(r.cfg == (("replica-1", "replica-2"), None) for r in net.r[:3])


def test_add_catches_up_as_learner_then_counts() -> None:
    net = RNet()
    net.run(200)
    for k in range(5):
        net.write(0, f"e{k}")
    net.run(300)
    net.reconfig(0, "add", "replica-4")  # not provisioned yet: waits as a learner
    net.run(500)
    assert net.r[0].learner and net.r[0].cfg == (tuple(NAMES), None)
    net.provision()
    net.run(800)
    (res,) = _replies(net, "reconfig-add-replica-4")
    assert res["new"] == UNIVERSE
    r4 = net.r[3]
    assert r4.status == NORMAL and r4.member and r4.commit == net.r[0].commit
    assert [e["body"].get("event") for e in r4.log[:5]] == [f"e{k}" for k in range(5)]
    # the new configuration {1,2,3,4} needs 3: replica-4 counts
    net.up[1] = net.up[2] = False
    net.write(0, "x")
    net.run(300)
    assert net.r[0].commit < net.r[0].op
    net.up[1] = True
    net.run(500)
    assert net.r[0].commit == net.r[0].op


def test_fresh_replica_not_in_configuration_stays_recovering() -> None:
    net = RNet()
    net.run(200)
    net.write(0, "a")
    net.run(200)
    net.provision()
    net.run(2000)
    r4 = net.r[3]
    assert r4.status == RECOVERING and not r4.member and r4.op == 0


def test_removed_leader_steps_down_and_members_elect() -> None:
    net = RNet()
    net.run(200)
    net.write(0, "a")
    net.run(200)
    net.reconfig(0, "remove", "replica-1")
    net.run(3000)
    assert _replies(net, "reconfig-remove-replica-1")
    r1 = net.r[0]
    assert not r1.member and not r1.is_primary
    leader = net.leader()
    assert leader in (1, 2) and net.r[leader].view >= 1
    assert net.r[leader].cfg == (("replica-2", "replica-3"), None)
    net.write(leader, "b")
    net.run(300)
    assert net.r[1].sm.streams["s"] == [["a", 1], ["b", net.r[1].op]]
    # the removed replica cannot disrupt: its StartViewChange for a higher view is ignored
    view = net.r[leader].view
    net.effects(1, net.r[1].on_message({"type": "svc", "view": view + 5, "from": "replica-1"}))
    assert net.r[1].view == view


def test_configuration_is_recovered_from_the_log_on_restart() -> None:
    net = RNet()
    net.run(200)
    net.reconfig(0, "remove", "replica-3")
    net.run(300)
    net.up[1] = False
    net.r[1] = Replica(
        UNIVERSE, 1, log=net.disk[1], restarted=True, now=net.now, members=NAMES, seed=5
    )
    assert net.r[1].cfg == (("replica-1", "replica-2"), None)
    net.up[1] = True
    net.effects(1, net.r[1]._drain())
    net.run(500)
    assert net.r[1].status == NORMAL and net.r[1].member


def test_wiped_replica_needs_a_quorum_of_others_not_a_stale_primary() -> None:
    """A wiped replica does not count itself toward its recovery quorum: the stale primary of
    view 0 answering alone is not enough; it waits for f + 1 others, the primary of the highest
    view among them included, and takes that primary's log."""
    net = Net()
    net.run(200)
    for k in range(2):
        net.write(0, f"e{k}")
    net.run(300)
    net.up[0] = False  # replica-1 (primary of view 0) cut off: it still thinks it leads view 0
    net.run(2500)
    assert net.r[1].status == NORMAL and net.r[1].is_primary and net.r[1].view == 1
    for k in range(2, 4):
        net.write(1, f"e{k}")
    net.run(300)
    assert net.r[1].commit == 4 and net.r[0].view == 0 and net.r[0].is_primary
    net.r[2] = Replica(NAMES, 2, seed=9, fresh=True, now=net.now)  # replica-3 wiped
    net.effects(2, net.r[2]._drain())
    net.up[0], net.up[1] = True, False  # only the stale primary answers
    net.run(1000)
    r3 = net.r[2]
    assert r3.status == RECOVERING and r3.op == 0, (r3.status, r3.view, r3.log)
    net.up[1] = True
    net.run(1000)
    assert r3.status == NORMAL and r3.view >= 1 and r3.leader == "replica-2"
    assert [e["body"]["event"] for e in r3.log] == [f"e{k}" for k in range(4)]


def test_learner_needs_a_quorum_not_a_stale_primarys_word() -> None:
    """Issue 11: a learner (a replica being added) took a log from the primary's answer alone.
    replica-1, primary of view 0, accepts an add of replica-4 and is cut off; replica-2 and
    replica-3 go on in view 1 and commit two more writes. replica-4, provisioned, hears only
    replica-1: it must not adopt view 0's stale log (it did: Normal in view 0, missing e2 and
    e3). It waits for a quorum of the configuration, the current view's primary included,
    and is added by that primary."""
    net = RNet()
    net.run(200)
    for k in range(2):
        net.write(0, f"e{k}")
    net.run(300)
    net.reconfig(0, "add", "replica-4")  # replica-1 keeps replica-4 as a learner
    assert net.r[0].learner
    net.up[0] = False  # replica-1 cut off: it still leads view 0, with its learner
    net.run(2500)
    assert net.r[1].status == NORMAL and net.r[1].is_primary and net.r[1].view == 1
    for k in range(2, 4):
        net.write(1, f"e{k}")
    net.run(300)
    assert net.r[1].commit == 4 and net.r[0].view == 0 and net.r[0].learner
    net.up[0], net.up[1], net.up[2] = True, False, False  # only the stale primary answers
    net.provision()
    net.run(1000)
    r4 = net.r[3]
    assert r4.status == RECOVERING and r4.op == 0, (r4.status, r4.view, r4.log)
    net.up[1] = net.up[2] = True
    net.run(1500)
    assert r4.status == RECOVERING and r4.op == 0, "added by no primary of the current view"
    leader = net.leader()
    assert net.r[leader].view >= 1
    net.reconfig(leader, "add", "replica-4")
    net.run(1500)
    assert _replies(net, "reconfig-add-replica-4"), net.replies
    assert r4.status == NORMAL and r4.member and r4.view >= 1
    assert [e["body"].get("event") for e in r4.log[:4]] == [f"e{k}" for k in range(4)]


def test_fresh_backups_of_a_primary_that_bootstrapped_first_join_it() -> None:
    """A brand-new cluster where replica-1 hears both others fresh (and bootstraps view 0)
    before they hear anything: its answer (view 0, nothing in its log) counts as fresh, so the
    two backups join it instead of each waiting for the other to be Normal (found by
    test_lab_lifecycle on a real processes lab: two replicas Recovering for good)."""
    net = Net()
    net.r = [Replica(NAMES, i, seed=i, fresh=True) for i in range(3)]
    for now in range(10, 2000, 10):  # only replica-1's clock runs: it asks, the others answer
        net.now = now
        net.effects(0, net.r[0].tick(now))
        while net.queue and net.r[0].status != NORMAL:
            _src, dst, msg = net.queue.pop(0)
            net.effects(dst, net.r[dst].on_message(msg, now))
        if net.r[0].status == NORMAL:
            net.queue.clear()  # what it sends next is lost: the others still know nothing
            break
    assert net.r[0].status == NORMAL and [r.status for r in net.r[1:]] == [RECOVERING] * 2
    net.run(2000)
    assert all(r.status == NORMAL and r.view == 0 for r in net.r), [r.status for r in net.r]
    net.write(0, "a")
    net.run(300)
    assert [x[3]["op"] for x in net.replies if x[1] == "reply"] == [1]


def test_a_read_op_answers_the_stream_as_of_its_place_in_the_log() -> None:
    """A linearizable read is an op: it sees exactly the writes ordered before it."""
    sm = StateMachine()
    w = [{"op": k, "view": 0, "body": {"stream": "s", "event": f"e{k}"}} for k in (1, 2, 4)]
    read = {"op": 3, "view": 0, "body": {"kind": "read", "stream": "s"}}
    results = [sm.apply(e) for e in (w[0], w[1], read, w[2])]
    assert results[2] == {"op": 3, "stream": "s", "events": ["e1", "e2"], "ops": [1, 2]}
    assert [ev for ev, _ in sm.streams["s"]] == ["e1", "e2", "e4"]
    assert (
        sm.apply({"op": 5, "view": 0, "body": {"kind": "read", "stream": "none"}})["events"] == []
    )
