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


RECONFIG = {"reconfig_rate": 0.003}


@pytest.mark.parametrize("seed", range(100, 140))
def test_reconfiguration_with_faults(seed: int) -> None:
    res = _run(seed, **RECONFIG)
    assert res["acked"] > 0 and res["members"]


@pytest.mark.parametrize("seed", range(1200, 1206))
def test_reconfiguration_rough_network_and_disks(seed: int) -> None:
    _run(seed, **ROUGH, reconfig_rate=0.005)


@pytest.mark.parametrize("seed", range(1300, 1304))
def test_reconfiguration_five_replicas_and_down_to_two(seed: int) -> None:
    _run(seed, n=5, reconfig_rate=0.004)
    _run(seed, reconfig_rate=0.004, min_members=2, corrupt_rate=0.0)


def test_reconfiguration_happens_and_replays_exactly() -> None:
    a = Simulation(11, reconfig_rate=0.004).run()
    assert a == Simulation(11, reconfig_rate=0.004).run()
    assert a["reconfigs"] >= 1


def test_reconfig_replay_command() -> None:
    sim = Simulation(5, reconfig_rate=0.003, min_members=2)
    with pytest.raises(InvariantViolation) as err:
        sim.fail("synthetic")
    assert (
        "replay: .venv/bin/python -m firebreak.lab.sim --seed 5 --reconfig-rate 0.003 "
        "--min-members 2" in str(err.value)
    )


WIPES = {"wipe_rate": 0.01, "partition_rate": 0.01}


def test_wiped_member_does_not_take_a_stale_primarys_log() -> None:
    """Seed 3018: replica-1, primary of view 6, is cut off while replica-3 goes on in view 7,
    and replica-2 is wiped. When a wiped replica counted itself toward its recovery quorum,
    replica-1's answer alone made replica-2 adopt view 6's log and acknowledge in it: op 82
    was committed twice (agreement violated)."""
    res = _run(3018, **WIPES)
    assert res["wipes"] >= 1 and res["acked"] > 0


@pytest.mark.parametrize("seed", range(3000, 3010))
def test_wipes_and_partitions(seed: int) -> None:
    assert _run(seed, **WIPES)["wipes"] >= 1


def test_wipes_replay_command_and_bad_combination() -> None:
    sim = Simulation(4, wipe_rate=0.01)
    with pytest.raises(InvariantViolation) as err:
        sim.fail("synthetic")
    assert "replay: .venv/bin/python -m firebreak.lab.sim --seed 4 --wipe-rate 0.01" in str(
        err.value
    )
    with pytest.raises(ValueError, match="do not combine"):
        Simulation(4, wipe_rate=0.01, reconfig_rate=0.003)
