"""The workload's history checker (``workload.check_history``) on hand-made histories: each
kind of violation caught, correct histories (concurrent operations included) pass."""

from __future__ import annotations

import pytest
from firebreak.lab.workload import check_history

pytestmark = pytest.mark.unit

FINAL = {"s": ["a", "b", "c", "d"], "t": ["x", "y"]}


def ack(t: float, event: str, stream: str = "s") -> dict:
    return {"t": t, "stream": stream, "event": event}


def read(t0: float, t1: float, events: list[str], stream: str = "s") -> dict:
    return {"t0": t0, "t1": t1, "stream": stream, "events": events, "replica": "replica-1"}


CASES = {
    "correct": (
        [ack(1, "a"), ack(2, "b"), ack(5, "c"), ack(6, "x", "t")],
        [
            read(0, 0.5, []),
            read(2.5, 3, ["a", "b"]),
            read(6.5, 7, ["a", "b", "c"]),
            read(7, 8, ["x"], "t"),
            read(8.5, 9, ["x", "y"], "t"),
        ],
        [],
    ),
    "a read concurrent with an ack may miss it": (
        [ack(3, "c")],
        [read(2, 4, ["a", "b"]), read(3.5, 4.5, ["a", "b", "c"])],
        [],
    ),
    "concurrent reads may see each other out of order": (
        [],
        [read(1, 5, ["a", "b", "c"]), read(2, 6, ["a"])],
        [],
    ),
    "an ack of an event never read back is the set check's (lost), not a history one": (
        [ack(1, "lost-one")],
        [read(2, 3, ["a"])],
        [],
    ),
    "reordered": ([], [read(1, 2, ["a", "c", "b"])], [("not_prefix", 1)]),
    "a phantom event": ([], [read(1, 2, ["a", "b", "zz"])], [("not_prefix", 1)]),
    "longer than the final order": (
        [],
        [read(1, 2, ["a", "b", "c", "d", "e"])],
        [("not_prefix", 1)],
    ),
    "stale after an ack": (
        [ack(1, "a"), ack(2, "b")],
        [read(3, 4, ["a"])],
        [("missing_ack", 1)],
    ),
    "went back": (
        [],
        [read(1, 2, ["a", "b", "c"]), read(3, 4, ["a", "b"])],
        [("went_back", 1)],
    ),
    "stale and went back": (
        [ack(1, "c")],
        [read(1.5, 2, ["a", "b", "c"]), read(3, 4, ["a"])],
        [("missing_ack", 1), ("went_back", 1)],
    ),
    "a bad read on one stream does not taint another": (
        [ack(1, "y", "t")],
        [read(2, 3, ["x"], "t"), read(2, 3, ["a", "b"])],
        [("missing_ack", 1)],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_history(case: str) -> None:
    acks, reads, want = CASES[case]
    got = check_history(acks, reads, FINAL)
    kinds = sorted({v["kind"] for v in got})
    assert [(k, sum(v["kind"] == k for v in got)) for k in kinds] == sorted(want), got


def test_violation_names_the_read() -> None:
    (v,) = check_history([ack(1, "b")], [read(3, 4, ["a"])], FINAL)
    assert v == {
        "kind": "missing_ack",
        "stream": "s",
        "replica": "replica-1",
        "t0": 3,
        "event": "b",
        "seen": 1,
    }
