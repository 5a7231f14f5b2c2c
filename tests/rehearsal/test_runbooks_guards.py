"""The runbooks for real: ansible-playbook against the shared containers lab.

Cases (the FM-003 / FM-005 contract): a corrupted backup repaired with its evidence, `--check`
first changing nothing (data directory hashes), a second run changing nothing; corruption on the
leader (view change first); a wipe needed but not confirmed (refused, untouched, recorded); a
single crash restarted; two crashes refused naming FM-001; a second concurrent remediation
refused by the lock.

The lab is the rehearsal tier's shared one (``conftest.py``: containers ``sh-replica-i``, host
addresses ``127.0.77.i``), reset and verified before each test (every replica Normal, in one
view, commits level, a fresh workload) with its scrubber touring every 2 s. On a failure the
journals of every replica are printed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
from firebreak.lab import workload
from firebreak.lab.containers import ContainerLab
from shared_lab import (
    REPLICAS,
    RUN_TIMEOUT,
    actions,
    backup_of,
    cluster,
    data_hashes,
    leader_of,
    record,
    run_playbook,
    settle_quiet,
    wait_detected,
    write,
)

pytestmark = pytest.mark.rehearsal


# ----------------------------------------------------------------------------- FM-003
def test_fm003_check_first_then_repair_then_nothing(lab: ContainerLab, work: dict) -> None:
    """--check changes nothing (hashes); the repair keeps evidence; a second run changes nothing."""
    write(lab)
    target = backup_of(lab)
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    time.sleep(2)
    lab.fault("corrupt", target)
    wait_detected(lab, target)
    workload.stop(lab.lab_dir)
    settle_quiet(lab)

    before = data_hashes(lab)
    check = run_playbook(lab, work, "fm003_corruption", check=True)
    assert check.rc == 0, check
    assert check.fact("runbook_plan")["action"] == "repair", check
    assert check.host_changes() == [], check.host_changes()
    assert data_hashes(lab) == before, "--check changed a data directory"
    assert not (work["incidents"] / "INC-T.json").exists(), "--check wrote the record"

    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    repair = run_playbook(lab, work, "fm003_corruption")
    assert repair.rc == 0, repair
    workload.stop(lab.lab_dir)
    res = workload.check(lab.lab_dir)
    assert res["acknowledged"] > 0 and res["lost"] == 0, res

    rec = record(work)
    acts = actions(rec)
    for step in (
        "fm003_corruption_plan",
        "remediation_lock",
        "quorum_guard",
        "replica_isolate",
        "replica_stop",
        "quorum_without_target",
        "state_transfer",
        "replica_rejoin",
        "cluster_verified",
    ):
        assert step in acts, (step, acts)
    # Evidence before the stop, never a restart first.
    assert acts.index("replica_isolate") < acts.index("replica_stop") < acts.index("replica_start")
    evidence = [e for e in rec["timeline"] if e["type"] == "evidence"]
    assert min(e["seq"] for e in evidence if e["phase"] == "act") < next(
        e["seq"] for e in rec["timeline"] if e["action"] == "replica_stop"
    )
    # The files are there and hash as recorded.
    folder = work["evidence"] / "INC-T" / target
    sums = dict(
        reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines()
    )
    assert {"metrics.json", "journal.txt", "segments/log.dat"} <= set(sums)
    for rel, digest in sums.items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest, rel
    recorded = {i["data"]["sha256"] for i in rec["evidence"] if i["kind"] == "file_hash"}
    assert set(sums.values()) <= recorded
    st = repair.fact("state_transfer_result")
    assert st["observed_status_3"] and st["caught_up"], st

    c = cluster(lab)
    assert c["normal"] == 3 and len(set(c["views"])) == 1 and sum(c["checksum"]) == 0, c
    again = run_playbook(lab, work, "fm003_corruption")
    assert again.rc == 0, again
    assert again.fact("runbook_plan")["action"] == "none"
    assert again.host_changes() == [], again.host_changes()


def test_fm003_corruption_on_the_leader(lab: ContainerLab, work: dict) -> None:
    write(lab, 20)
    leader = leader_of(lab)
    lab.fault("corrupt", leader)
    wait_detected(lab, leader)
    run = run_playbook(lab, work, "fm003_corruption")
    assert run.rc == 0, run
    plan = run.fact("runbook_plan")
    assert plan["target_name"] == leader, plan
    rec = record(work)
    without = next(e for e in rec["timeline"] if e["action"] == "quorum_without_target")
    # The others settled on a leader other than the corrupted replica before the repair.
    assert without["detail"]["leader_after"] != leader, without
    acts = actions(rec)
    assert acts.index("quorum_without_target") < acts.index("state_transfer")
    assert cluster(lab)["normal"] == 3


def test_fm003_wipe_not_confirmed_is_refused(lab: ContainerLab, work: dict) -> None:
    write(lab, 20)
    target = backup_of(lab)
    lab.fault("corrupt", target)
    wait_detected(lab, target)
    settle_quiet(lab)
    before = data_hashes(lab)
    run = run_playbook(lab, work, "fm003_corruption", "fm003_corruption_repair=wipe")
    assert run.rc != 0
    assert any("not confirmed" in f for f in run.failures()), run
    assert data_hashes(lab) == before, "a refused wipe touched a data directory"
    assert lab.unit_state(target) == "active"
    rec = record(work)
    deny = [e for e in rec["timeline"] if e["type"] == "guard" and e["decision"] == "deny"]
    assert deny and "not confirmed" in json.dumps(deny[0]["detail"]), deny
    # Leave no checksum failure counted behind for the next test: a plain restart.
    lab.systemctl(target, "restart", "kimberlite-vsr", check=True)


def _refused_untouched(lab: ContainerLab, work: dict, action: str, untouched: list[str]) -> dict:
    """FM-003 ran, refused with ACTION, touched nothing on UNTOUCHED, and escalated."""
    before = {r: lab.unit_state(r) for r in untouched}
    run = run_playbook(lab, work, "fm003_corruption")
    assert run.rc != 0, run
    plan = run.fact("runbook_plan")
    assert plan["action"] == action, plan
    assert run.host_changes() == [], run.host_changes()  # no task changed a replica host
    assert {r: lab.unit_state(r) for r in untouched} == before, "a refusing FM-003 acted"
    rec = record(work)
    assert rec["state"] == "escalated", rec["state"]
    acts = actions(rec)
    assert not {"replica_isolate", "replica_stop", "state_transfer", "replica_wipe"} & set(acts)
    return plan


def test_fm003_refuses_more_corrupted_replicas_than_it_can_lose(lab, work) -> None:
    """Both backups corrupted: repairing one would leave no quorum of clean replicas to repair
    from (refuse_many); nothing is isolated, stopped or repaired."""
    write(lab, 20)
    backups = [r for r in REPLICAS if r != leader_of(lab)]
    for r in backups:
        lab.fault("corrupt", r)
    for r in backups:
        wait_detected(lab, r)
    plan = _refused_untouched(lab, work, "refuse_many", REPLICAS)
    assert sorted(plan["targets"]) == sorted(backups), plan
    assert "more than the 1 the cluster can lose" in plan["message"], plan["message"]
    for r in backups:  # no counted checksum failure left behind for the next test
        lab.systemctl(r, "restart", "kimberlite-vsr", check=True)


def test_fm003_refuses_without_a_quorum_of_others(lab, work) -> None:
    """One backup corrupted, the other down: without the target only the leader is Normal, so
    isolating the target would stop the cluster (refuse_quorum)."""
    write(lab, 20)
    leader = leader_of(lab)
    target, other = [r for r in REPLICAS if r != leader]
    lab.fault("corrupt", target)
    wait_detected(lab, target)
    lab.fault("kill", other)
    plan = _refused_untouched(lab, work, "refuse_quorum", [leader, target])
    assert plan["target_name"] == target and plan["others_ok"] == [leader], plan
    lab.systemctl(target, "restart", "kimberlite-vsr", check=True)


# ----------------------------------------------------------------------------- FM-005
def test_fm005_single_crash_restarted_then_nothing(lab: ContainerLab, work: dict) -> None:
    target = backup_of(lab)
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    lab.fault("kill", target)
    run = run_playbook(lab, work, "fm005_replica_crash", "fm005_replica_crash_watch_seconds=5")
    assert run.rc == 0, run
    workload.stop(lab.lab_dir)
    res = workload.check(lab.lab_dir)
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert lab.unit_state(target) == "active"
    rec = record(work)
    assert rec["state"] == "mitigated"
    done = set(actions(rec))
    assert {"quorum_guard", "replica_stop", "replica_start", "fm005_replica_crash_watch"} <= done
    again = run_playbook(lab, work, "fm005_replica_crash", "fm005_replica_crash_watch_seconds=5")
    assert again.rc == 0 and again.host_changes() == [], again


def test_fm005_two_crashed_refused_naming_fm001(lab: ContainerLab, work: dict) -> None:
    leader = leader_of(lab)
    down = [r for r in REPLICAS if r != leader]
    for r in down:
        lab.fault("kill", r)
    run = run_playbook(lab, work, "fm005_replica_crash")
    assert run.rc != 0
    msg = " ".join(run.failures())
    assert "FM-001" in msg and "2 of 3" in msg, msg
    assert all(lab.unit_state(r) != "active" for r in down), "FM-005 touched a replica"
    rec = record(work)
    assert rec["state"] == "escalated" and rec["severity"] == "SEV1"


def test_second_concurrent_remediation_refused_by_the_lock(lab: ContainerLab, work: dict) -> None:
    first_target, second_target = [r for r in REPLICAS if r != leader_of(lab)]
    lab.fault("kill", first_target)
    first: dict = {}

    def first_run() -> None:
        first["run"] = run_playbook(
            lab,
            work,
            "fm005_replica_crash",
            "fm005_replica_crash_watch_seconds=40",
            incident="INC-FIRST",
        )

    t = threading.Thread(target=first_run)
    t.start()
    lock = work["locks"] / "lab.lock"
    deadline = time.monotonic() + 240
    while not (lock / "owner.json").exists() or lab.unit_state(first_target) != "active":
        assert t.is_alive() and time.monotonic() < deadline, first.get("run")
        time.sleep(0.5)
    # The first run holds the lock (it watches its restarted replica): a second fault, a second
    # remediation of the same cluster.
    lab.fault("kill", second_target)
    second = run_playbook(lab, work, "fm005_replica_crash", incident="INC-SECOND")
    assert second.rc != 0
    assert any("remediation lock refused" in f for f in second.failures()), second
    assert lab.unit_state(second_target) != "active", "the refused run touched a replica"
    assert lock.exists(), "the refused run released the lock it did not hold"
    # Undo the second fault while the first run still watches its replica: its verify phase
    # rightly fails on any replica down.
    lab.heal()
    t.join(RUN_TIMEOUT)
    assert first["run"].rc == 0, first["run"]
    assert not lock.exists(), "the first run did not release its lock"
    deny = [
        e
        for e in record(work, "INC-SECOND")["timeline"]
        if e["action"] == "remediation_lock" and e["decision"] == "deny"
    ]
    assert deny, "the refusal is not in the record"
