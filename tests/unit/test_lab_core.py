"""Deterministic scenarios for the sans-I/O VSR core (no simulation randomness)."""

from __future__ import annotations

import pytest
from firebreak.lab.core import NORMAL, RECOVERING, STATE_TRANSFER, VIEW_CHANGE, Replica, Timing

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
