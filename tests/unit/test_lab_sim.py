"""The VSR core under the seeded deterministic simulation: many seeds, invariants every step.

A failure prints the seed and the one-line command that replays it exactly (the simulation's
own message ends with ``replay: .venv/bin/python -m firebreak.kimberlite.sim --seed N ...``)."""

from __future__ import annotations

import os

import pytest
from firebreak.kimberlite.core import Replica
from firebreak.kimberlite.sim import InvariantViolation, Simulation
from firebreak.kimberlite.storage import load_meta, scan

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
    assert "replay: .venv/bin/python -m firebreak.kimberlite.sim --seed 3 --n 5 --drop 0.15" in str(
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
        "replay: .venv/bin/python -m firebreak.kimberlite.sim --seed 5 --reconfig-rate 0.003 "
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
    assert "replay: .venv/bin/python -m firebreak.kimberlite.sim --seed 4 --wipe-rate 0.01" in str(
        err.value
    )
    with pytest.raises(ValueError, match="do not combine"):
        Simulation(4, wipe_rate=0.01, reconfig_rate=0.003)


# ---------------------------------------------------------------- storage, mid-batch crashes,
# torn writes, one-way partitions (every replica's disk is a real storage.Log data directory)
FULL = {
    "midcrash_rate": 0.05,
    "oneway": 0.5,
    "wipe_rate": 0.01,
    "partition_rate": 0.004,
    "corrupt_rate": 0.002,
}


@pytest.mark.parametrize("seed", range(8000, 8012))
def test_crashes_mid_batch_torn_writes_one_way_partitions(seed: int) -> None:
    res = _run(seed, **FULL)
    assert res["midcrashes"] >= 1 and res["acked"] > 0


def test_torn_writes_reach_the_disk_and_restart_drops_them() -> None:
    """Seed 8004 tears four appends; Log.load at restart finds a torn tail three times."""
    res = _run(8004, **FULL)
    assert res["torn"] >= 2 and res["torn_dropped"] >= 2


def test_durable_log_is_the_replicas_log_and_disks_are_removed() -> None:
    sim = Simulation(2, crash_rate=0.0, corrupt_rate=0.0, partition_rate=0.0)
    for _ in range(400):
        sim.step()
    for i, r in enumerate(sim.replicas):
        assert r.commit > 10
        assert scan(sim.disks[i].log.path).entries == r.log
        assert load_meta(sim.disks[i].path) == {"view": r.view, "last_normal_view": 0}
    root = sim.root
    sim.run()
    assert not root.exists()


def test_one_way_partition_blocks_one_direction_only() -> None:
    sim = Simulation(1, oneway=1.0, partition_rate=1.0, crash_rate=0.0, corrupt_rate=0.0)
    sim.random_faults()
    side = {a for a, _ in sim.blocked}
    assert side and sim.blocked == {(a, b) for a in side for b in range(3) if b not in side}
    assert sim.oneways == 1


def test_midcrash_catches_a_view_sent_before_it_was_persisted(monkeypatch) -> None:
    """A deliberately broken core that sends StartViewChange before persisting its view: a
    crash between the two makes the replica forget a view it spoke in. Only a crash in the
    middle of a batch exposes it; the same seed without such crashes passes."""
    start_view_change = Replica._start_view_change

    def meta_last(self, v: int) -> None:
        start_view_change(self, v)
        self.out.sort(key=lambda e: e[0] == "meta")

    monkeypatch.setattr(Replica, "_start_view_change", meta_last)
    with pytest.raises(InvariantViolation, match=r"restarted in view \d+, spoke in \d+"):
        Simulation(8000, midcrash_rate=0.08, oneway=0.5).run()
    Simulation(8000, oneway=0.5).run()


def test_midcrash_regressions() -> None:
    """Seeds that found bugs in the simulation once its disks were real: 5002 (the initial
    members had no meta on disk, so a member that crashed early booted fresh and the cluster
    never converged) and 5008 (an ack followed by a crash in the same batch was never seen as
    committed: a false durability alarm)."""
    _run(5002, midcrash_rate=0.01)
    _run(5008, wipe_rate=0.01, midcrash_rate=0.02, oneway=0.5)


def test_corruption_of_a_torn_file_regression() -> None:
    """Seed 9057 (found by the fresh range): a disk flipped bits in a crashed replica's log by
    the offsets of its last write, past the end of the file its torn write left: IndexError.
    Damage is placed by the records the file holds."""
    assert _run(9057, **FULL)["torn_dropped"] >= 1


# more corruptions and fewer wipes (one disk fault at a time): length faults every few seeds
LENGTHS = dict(FULL, wipe_rate=0.002, corrupt_rate=0.006, length_rate=0.7)


@pytest.mark.parametrize("seed", range(8100, 8108))
def test_length_fields_damaged_on_disk(seed: int) -> None:
    """Half of the disk corruptions flip a bit of a record's length field (past the end of the
    file, into later records, past MAX_BODY or short), half of those with the body too."""
    _run(seed, **LENGTHS)


def test_length_faults_reach_the_disk_and_replay() -> None:
    res = _run(8103, **LENGTHS)
    assert res["length_faults"] >= 2 and res["acked"] > 0
    assert res == _run(8103, **LENGTHS)
    sim = Simulation(4, length_rate=0.5)
    with pytest.raises(InvariantViolation) as err:
        sim.fail("synthetic")
    assert "replay: .venv/bin/python -m firebreak.kimberlite.sim --seed 4 --length-rate 0.5" in str(
        err.value
    )


# ---------------------------------------------------------------- a fresh range every run
FRESH_COUNT = 20


def test_fresh_random_seeds(capsys) -> None:
    """20 seeds from a base drawn on every run (``FIREBREAK_SIM_SEED=N`` replays a base), every
    fault kind on (length fields too); the base and the replay commands are printed and in the
    failure message."""
    env = os.environ.get("FIREBREAK_SIM_SEED")
    base = int(env) if env else int.from_bytes(os.urandom(4), "big") % 10**9
    again = f"FIREBREAK_SIM_SEED={base} pytest tests/unit/test_lab_sim.py -k fresh_random"
    with capsys.disabled():
        print(f"\nfresh simulation seeds {base}..{base + FRESH_COUNT - 1}; replay all: {again}")
    for seed in range(base, base + FRESH_COUNT):
        kw = dict(LENGTHS, wipe_rate=0.0, reconfig_rate=0.004) if seed % 4 == 3 else LENGTHS
        try:
            Simulation(seed, **kw).run()
        except InvariantViolation as exc:
            pytest.fail(f"fresh seed base {base} ({again}): {exc}", pytrace=False)
