"""The VSR core under the seeded deterministic simulation: many seeds, invariants every step.

A failure prints the seed and the one-line command that replays it exactly (the simulation's
own message ends with ``replay: .venv/bin/python -m firebreak.lab.sim --seed N ...``)."""

from __future__ import annotations

import pytest
from firebreak.lab.sim import InvariantViolation, Simulation

pytestmark = pytest.mark.unit

ROUGH = {"crash_rate": 0.005, "corrupt_rate": 0.003, "partition_rate": 0.003, "drop": 0.15}


def _run(seed: int, **kw) -> dict:
    try:
        return Simulation(seed, **kw).run()
    except InvariantViolation as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize("seed", range(60))
def test_three_replicas(seed: int) -> None:
    res = _run(seed)
    assert res["acked"] > 0


@pytest.mark.parametrize("seed", range(500, 510))
def test_five_replicas(seed: int) -> None:
    _run(seed, n=5)


@pytest.mark.parametrize("seed", range(900, 915))
def test_rough_network_and_disks(seed: int) -> None:
    _run(seed, **ROUGH)


def test_seed_replays_exactly() -> None:
    assert Simulation(7).run() == Simulation(7).run()


def test_violation_message_has_replay_command() -> None:
    sim = Simulation(3, n=5, drop=0.15)
    with pytest.raises(InvariantViolation) as err:
        sim.fail("synthetic")
    assert "replay: .venv/bin/python -m firebreak.lab.sim --seed 3 --n 5 --drop 0.15" in str(
        err.value
    )
