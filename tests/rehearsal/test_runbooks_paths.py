"""The runbooks' two remaining paths, for real: ansible-playbook against the containers lab.

1. FM-003 with a confirmed wipe: the replica's data directory is emptied and resynced from
   scratch, its evidence kept (and hashed) before the wipe, the confirmation in the record.
   The role makes a wipe happen in two ways, both tested: ``fm003_corruption_repair=wipe``
   ("wipe and resync straight away"), and ``fm003_corruption_repair=auto`` (the default) when
   the state transfer fails: the lab's ``corrupt ... unrepairable`` fault garbles the
   replica's ``meta.json`` too, so it refuses to boot and only a wipe brings it back.
2. FM-005 with a repeat crash: the restarted replica is killed again inside the watch window
   (from a background thread, once the restart is done); the run restarts it once, never
   twice, keeps the crash journal as evidence and ends ``escalated``; the others keep the
   quorum, untouched.

The helpers come from ``shared_lab``; the lab is the rehearsal tier's shared one
(``conftest.py``: containers ``sh-replica-i``, host addresses ``127.0.77.i``), reset and
verified before each test, its scrubber touring every 2 s; ``$FIREBREAK_LAB_DIR`` names its lab
dir while this module runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from firebreak.kimberlite import storage
from firebreak.lab import workload
from firebreak.lab.containers import ContainerLab
from shared_lab import (
    REPLICAS,
    actions,
    backup_of,
    cluster,
    record,
    run_playbook,
    settle_quiet,
    wait_detected,
    write,
)

# $FIREBREAK_LAB_DIR is the shared lab's dir while this module runs (conftest)
pytestmark = [pytest.mark.rehearsal, pytest.mark.usefixtures("shared_lab_dir_env")]

SENTINEL = "wipe-sentinel"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unit_identity(lab: ContainerLab, replica: str) -> str:
    out = lab.systemctl(
        replica, "show", "kimberlite-vsr", "--property=MainPID", "--property=InvocationID"
    )
    return out.stdout.strip()


# ----------------------------------------------------------------------------- FM-003
def test_fm003_confirmed_wipe_resyncs_from_scratch(
    lab: ContainerLab, work: dict, tmp_path: Path
) -> None:
    write(lab, 30)
    target = backup_of(lab)
    settle_quiet(lab)  # the commit hint on disk (written every 0.5 s) covers the writes
    damaged_op = lab.fault("corrupt", target)["op"]
    wait_detected(lab, target)
    settle_quiet(lab)
    data = lab.data_path(target)
    log_before = (data / "log.dat").read_bytes()
    # A file only a wipe removes: the resync rebuilds the log, never this.
    (data / SENTINEL).write_text("before the wipe\n")

    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    try:
        run = run_playbook(
            lab,
            work,
            "fm003_corruption",
            "fm003_corruption_repair=wipe",
            "fm003_corruption_confirm_wipe=true",
        )
    finally:
        workload.stop(lab.lab_dir)
    assert run.rc == 0, run
    res = workload.check(lab.lab_dir)
    assert res["acknowledged"] > 0 and res["lost"] == 0, res

    # Wiped and resynced from scratch: the sentinel is gone, the log rebuilt.
    assert not (data / SENTINEL).exists(), "the data directory was not wiped"
    assert (data / "log.dat").exists()
    assert lab.unit_state(target) == "active"
    settle_quiet(lab)
    c = cluster(lab)
    assert c["normal"] == 3 and len(set(c["views"])) == 1, c
    leader_commit = c["by"][REPLICAS[max(c["views"]) % len(REPLICAS)]]["vsr_commit_number"]
    assert c["by"][target]["vsr_commit_number"] == leader_commit, c
    assert sum(c["checksum"]) == 0, c

    # The record: the plan, the confirmation, the wipe, after the evidence.
    rec = record(work)
    assert rec["state"] == "mitigated", rec["state"]
    acts = actions(rec)
    for step in (
        "fm003_corruption_plan",
        "remediation_lock",
        "quorum_guard",
        "replica_isolate",
        "replica_stop",
        "quorum_without_target",
        "wipe_confirmation",
        "replica_wipe",
        "state_transfer",
        "replica_rejoin",
        "cluster_verified",
    ):
        assert step in acts, (step, acts)
    plan = next(e for e in rec["timeline"] if e["action"] == "fm003_corruption_plan")
    assert plan["detail"]["wipe_confirmed"] in (True, "True"), plan
    assert plan["detail"]["repair"] == "wipe", plan
    confirm = next(e for e in rec["timeline"] if e["action"] == "wipe_confirmation")
    assert confirm["decision"] == "allow" and confirm["outcome"] == "wipe confirmed", confirm
    wipe = next(e for e in rec["timeline"] if e["action"] == "replica_wipe")
    assert confirm["seq"] < wipe["seq"]
    assert acts.index("replica_isolate") < acts.index("replica_stop") < acts.index("replica_wipe")
    evidence = [e for e in rec["timeline"] if e["type"] == "evidence" and e["phase"] == "act"]
    assert evidence and max(e["seq"] for e in evidence) < wipe["seq"], (evidence, wipe)

    # The evidence files are there, hash as recorded, and hold the log from before the wipe.
    folder = work["evidence"] / "INC-T" / target
    sums = dict(
        reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines()
    )
    assert {"metrics.json", "journal.txt", "segments/log.dat"} <= set(sums)
    for rel, digest in sums.items():
        assert _sha256(folder / rel) == digest, rel
    recorded = {i["data"]["sha256"] for i in rec["evidence"] if i["kind"] == "file_hash"}
    assert set(sums.values()) <= recorded
    # Kept before the wipe: the journal names the damaged op (the lab replica rewrites the
    # damaged entry itself once its scrubber finds it, so the log copy holds the repaired
    # entry), and the kept log starts with the log as it was before the run (append-only).
    journal = (folder / "journal.txt").read_text()
    assert f"checksum mismatch in log entry op={damaged_op}" in journal, journal[-2000:]
    kept = (folder / "segments" / "log.dat").read_bytes()
    assert kept.startswith(log_before), "the kept log is not the replica's pre-wipe log"
    copy = tmp_path / "evidence-log"
    copy.mkdir()
    (copy / "log.dat").write_bytes(kept)
    loaded = storage.Log(copy).load()
    assert not loaded.corrupt and len(loaded.entries) >= damaged_op, loaded.corrupt
    assert _sha256(data / "log.dat") != sums["segments/log.dat"]


def _wipe_if_unbootable(lab: ContainerLab, replica: str) -> None:
    """Leave no unbootable replica to the next test: stop it and empty its data dir."""
    try:
        storage.load_meta(lab.data_path(replica))
    except storage.MetaCorruptError:
        lab.systemctl(replica, "stop", "kimberlite-vsr")
        for p in lab.data_path(replica).iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


def test_fm003_unrepairable_auto_wipes_only_once_confirmed(lab: ContainerLab, work: dict) -> None:
    """repair=auto, the default: a state transfer cannot repair a replica that no longer boots
    (its meta.json fails its checksum), so the run goes on to the wipe. Without the
    confirmation it stops there, the replica left stopped and its data untouched; re-run with
    it, the replica is wiped, resynced from scratch, and nothing acknowledged is lost."""
    write(lab, 30)
    target = backup_of(lab)
    settle_quiet(lab)
    assert lab.fault("corrupt", target, "unrepairable")["meta"] is True
    wait_detected(lab, target)
    settle_quiet(lab)  # it repairs the log entry while it runs; meta.json stays garbled
    data = lab.data_path(target)
    (data / SENTINEL).write_text("before the wipe\n")
    fast = "fm003_corruption_normal_timeout=20"
    try:
        refused = run_playbook(lab, work, "fm003_corruption", fast, incident="INC-U1")
        assert refused.rc != 0
        assert any("not confirmed" in f for f in refused.failures()), refused
        assert (data / SENTINEL).exists(), "an unconfirmed wipe touched the data directory"
        with pytest.raises(storage.MetaCorruptError):
            storage.load_meta(data)
        assert lab.unit_state(target) in ("failed", "inactive")
        assert cluster(lab)["normal"] == len(REPLICAS) - 1
        rec = record(work, "INC-U1")
        failed = next(e for e in rec["timeline"] if e["action"] == "state_transfer_repair")
        # Why, from the replica's own journal (the restart's failure message carries it).
        assert failed["outcome"] == "failed", failed
        assert "checksum mismatch" in failed["detail"]["text"], failed
        deny = next(e for e in rec["timeline"] if e["action"] == "wipe_confirmation")
        assert deny["decision"] == "deny" and failed["seq"] < deny["seq"], deny
        assert "replica_wipe" not in actions(rec)

        workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
        try:
            wiped = run_playbook(
                lab,
                work,
                "fm003_corruption",
                fast,
                "fm003_corruption_confirm_wipe=true",
                incident="INC-U2",
            )
        finally:
            workload.stop(lab.lab_dir)
        assert wiped.rc == 0, wiped
        res = workload.check(lab.lab_dir)
        assert res["acknowledged"] > 0 and res["lost"] == 0, res
        assert not (data / SENTINEL).exists(), "the data directory was not wiped"
        assert storage.load_meta(data) is not None
        settle_quiet(lab)
        c = cluster(lab)
        assert c["normal"] == 3 and len(set(c["views"])) == 1 and sum(c["checksum"]) == 0, c
        rec = record(work, "INC-U2")
        assert rec["state"] == "mitigated", rec["state"]
        seq = {e["action"]: e["seq"] for e in reversed(rec["timeline"]) if e.get("action")}
        failed = next(e for e in rec["timeline"] if e["action"] == "state_transfer_repair")
        assert failed["outcome"] == "failed", failed
        allow = next(e for e in rec["timeline"] if e["action"] == "wipe_confirmation")
        assert allow["decision"] == "allow", allow
        assert failed["seq"] < allow["seq"] < seq["replica_wipe"] < seq["replica_rejoin"]
        assert "cluster_verified" in seq
    finally:
        _wipe_if_unbootable(lab, target)


# ----------------------------------------------------------------------------- FM-005
def test_fm005_repeat_crash_escalated_not_looped(lab: ContainerLab, work: dict) -> None:
    target = backup_of(lab)
    others = [r for r in REPLICAS if r != target]
    others_before = {r: _unit_identity(lab, r) for r in others}
    lab.fault("kill", target)
    killed_identity = _unit_identity(lab, target)
    second: dict = {}
    stop = threading.Event()

    def crash_again() -> None:
        """Once the runbook restarted the replica and it caught up, kill it once more."""
        try:
            deadline = time.monotonic() + 240
            steady = 0
            while not stop.is_set() and time.monotonic() < deadline:
                if lab.unit_state(target) == "active" and _unit_identity(lab, target) != (
                    killed_identity
                ):
                    c = cluster(lab)
                    m = c["by"].get(target) or {}
                    level = len(set(c["commits"])) == 1
                    steady = steady + 1 if m.get("vsr_replica_status") == 0 and level else 0
                    if steady >= 3:
                        time.sleep(4)  # past the restart role's catch-up check: the watch
                        lab.fault("kill", target)
                        second["at"] = time.monotonic()
                        return
                time.sleep(0.5)
        except Exception as exc:
            second["error"] = repr(exc)

    killer = threading.Thread(target=crash_again, daemon=True)
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    killer.start()
    try:
        run = run_playbook(lab, work, "fm005_replica_crash", "fm005_replica_crash_watch_seconds=30")
    finally:
        stop.set()
        killer.join(30)
        workload.stop(lab.lab_dir)
    assert "at" in second, f"the repeat crash was never injected: {second}"

    assert run.rc != 0, run
    msg = " ".join(run.failures())
    assert "crashed again" in msg and "does not restart it a second time" in msg, msg
    # Not restarted again: the unit stays down after the run.
    assert lab.unit_state(target) != "active"
    rec = record(work)
    assert rec["state"] == "escalated", rec["state"]
    acts = actions(rec)
    assert acts.count("replica_start") == 1, acts
    assert acts.count("replica_stop") <= 1, acts
    starts = [n for n, _h, res in run.results() if n.endswith("start the unit (seed step 4)")]
    assert len(starts) == 1, starts
    watch = next(e for e in rec["timeline"] if e["action"] == "fm005_replica_crash_watch")
    assert watch["outcome"] == "crashed again within the watch window", watch
    # The watch looks every 3 s and ends at the look that sees the crash: fewer looks than the
    # whole 30 s window holds (11), not one look at its end.
    assert 1 <= int(watch["detail"]["looks"]) < 11, watch["detail"]

    # The crash evidence: the journal (and unit state) kept, hashed, in the record.
    folder = work["evidence"] / "INC-T" / target
    items = {
        Path(i["data"]["path"]).name: i
        for i in rec["evidence"]
        if i["kind"] == "file_hash" and Path(i["data"]["path"]).parent == folder
    }
    assert {"journal.txt", "systemctl-status.txt"} <= set(items), items
    for name in ("journal.txt", "systemctl-status.txt"):
        assert _sha256(folder / name) == items[name]["data"]["sha256"], name
    journal = (folder / "journal.txt").read_text()
    assert journal.count("status=9/KILL") >= 2, journal[-3000:]

    # The others were never touched and kept the quorum.
    assert {r: _unit_identity(lab, r) for r in others} == others_before
    c = cluster(lab)
    assert all((c["by"][r] or {}).get("vsr_replica_status") == 0 for r in others), c
    res = workload.check(lab.lab_dir)
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    print(f"escalated: {json.dumps(watch['detail'])}")


def test_a_failed_smoke_test_fails_the_verify_and_is_recorded(
    lab: ContainerLab, work: dict
) -> None:
    """The skeleton's smoke test (seed 000, phase 3) after a repair: a write the API refuses
    fails the verify, even with every replica Normal, and no monitoring follows."""
    target = backup_of(lab)
    lab.fault("kill", target)
    refused = "vsr_api_url=http://127.0.0.1:9"  # every host's API: a loopback port nobody serves
    run = run_playbook(
        lab, work, "fm005_replica_crash", "fm005_replica_crash_watch_seconds=2", refused
    )
    assert run.rc != 0, run.out[-2000:]
    timeline = record(work)["timeline"]
    (verified,) = [e for e in timeline if e["action"] == "cluster_verified"]
    checks = verified["detail"]["checks"]
    assert str(checks["smoke_test"]) == "False" and str(checks["all_normal"]) == "True"
    assert verified["outcome"].startswith("NOT healthy")
    assert not [e for e in timeline if e["action"] == "cluster_monitored"]
    assert "smoke_test" in run.out  # the failure names the check
