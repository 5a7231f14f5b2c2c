"""Guard rails that cannot be fooled (issue 11), for real, against one containers lab.

1. ``--check`` changes nothing anywhere: FM-003 (a backup's log corrupted and repaired by the
   replica itself, a second backup's log corrupted and not yet found) and FM-005 (a backup
   killed) run in check mode through the wrapper; on every replica the data directory, the
   unit, the nftables ruleset, /etc/kimberlite, the admin status (isolation, scrub tours,
   checksum failures) and the journal are as before, and on the controller the state dir, the
   runs dir (apart from the run's own dir) and the lock dir. The run says what it would do.
2. A destructive step re-checks the quorum right before it acts: a small playbook runs the
   guard, kills a second replica, then the step (replica_restart's stop, a forced state
   transfer, FM-003's confirmed wipe), which must refuse and leave the target as it was.
3. ``replica_restart`` included on its own, on a cluster without a quorum, refuses.

The lab is the rehearsal tier's shared one (``conftest.py``: containers ``sh-replica-i``, host
addresses ``127.0.77.i``), reset and verified before each test; here its scrubber tours only
when asked (``lab_config``: ``scrub_interval_s`` one hour), so that a scrub run by a playbook
shows in the replica's counters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from firebreak import runner
from firebreak.lab.containers import ContainerLab
from shared_lab import (
    REPLICAS,
    backup_of,
    cluster,
    data_hashes,
    leader_of,
    run_playbook,
    settle_quiet,
    write,
)

pytestmark = pytest.mark.rehearsal

UNIT = "kimberlite-vsr"
GUARD_THEN_ACT = str(Path(__file__).parent / "playbooks" / "guard_then_act")
# Journal lines of an action a check-mode run must never cause.
ACTION_LINES = re.compile(
    r"isolat|rejoin|state transfer|restart|checksum mismatch|stopp|SIGKILL", re.IGNORECASE
)
ETC_LISTING = (
    "find /etc/kimberlite -exec ls -ld {} + ; find /etc/kimberlite -type f -exec sha256sum {} +"
)
RECORD_TASK = "Record | append events and evidence to the incident record"
STATUS_KEYS = (
    "status_name",
    "view",
    "isolated",
    "corrupt_from",
    "repair_held",
    "checksum_failures",
    "scrub_tours",
)


# ----------------------------------------------------------------------------- lab options
@pytest.fixture
def lab_config() -> dict:
    """The scrubber tours only when asked (one hour): a playbook's scrub shows in the counters."""
    return {"scrub_interval_s": 3600}


# ----------------------------------------------------------------------------- snapshots
def _tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every path below root: a file's SHA-256 and mode, a directory's mode."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        mode = oct(p.lstat().st_mode)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = f"{mode} {digest}"
    return out


def _sh(lab: ContainerLab, replica: str, script: str) -> str:
    res = lab.exec(replica, "sh", "-c", script)
    return res.stdout + res.stderr


def _admin_status(lab: ContainerLab, replica: str) -> dict | None:
    res = lab.exec(replica, "kimberlite-admin", "status")
    if res.returncode != 0:
        return None
    status = json.loads(res.stdout)
    return {k: status.get(k) for k in STATUS_KEYS}


def _journal_cursor(lab: ContainerLab, replica: str) -> str:
    out = _sh(lab, replica, f"journalctl --unit={UNIT} --lines=1 --show-cursor --no-pager")
    return re.search(r"-- cursor: (\S+)", out).group(1)


def _actions_since(lab: ContainerLab, replica: str, cursor: str) -> list[str]:
    """The replica's journal lines since the cursor that tell of an action."""
    argv = ["journalctl", f"--unit={UNIT}", f"--after-cursor={cursor}", "--no-pager", "-o", "cat"]
    res = lab.exec(replica, *argv)
    return [line for line in res.stdout.splitlines() if ACTION_LINES.search(line)]


def _hosts(lab: ContainerLab) -> dict:
    """What a check-mode run must leave alone on every replica."""
    out = {"data": data_hashes(lab)}
    for r in REPLICAS:
        out[r] = {
            "unit": _sh(
                lab, r, f"systemctl show {UNIT} -p ActiveState -p NRestarts -p InvocationID"
            ),
            "nft": _sh(lab, r, "nft list ruleset"),
            "etc": _sh(lab, r, ETC_LISTING),
            "admin": _admin_status(lab, r),
        }
    return out


def _controller(state: Path, runs: Path, locks: Path, own_run: Path | None = None) -> dict:
    return {"state": _tree(state), "runs": _tree(runs, skip=own_run), "locks": _tree(locks)}


# ----------------------------------------------------------------------------- 1. check mode
def _check_run(lab: ContainerLab, playbook: str, locks: Path, state: Path, expect_target: str):
    """One --check run through the wrapper; everything is compared before and after."""
    runs = Path(os.environ["FIREBREAK_RUNS_DIR"])
    hosts_before = _hosts(lab)
    cursors = {r: _journal_cursor(lab, r) for r in REPLICAS}
    ctl_before = _controller(state, runs, locks)
    res = runner.run_playbook(
        playbook,
        inventory=lab.inventory_path(),
        check=True,
        incident_id="INC-CHECK",
        incident_dir=state / "incidents",
        extra_vars={"firebreak_lock_dir": str(locks)},
        timeout=300,
    )
    assert _controller(state, runs, locks, own_run=Path(res.private_data_dir)) == ctl_before
    after = _hosts(lab)
    changed = {
        (r, key): (hosts_before[r][key], after[r][key])
        for r in REPLICAS
        for key in after[r]
        if after[r][key] != hosts_before[r][key]
    }
    assert changed == {}, changed
    assert after["data"] == hosts_before["data"], "--check changed a data directory"
    journal = {r: _actions_since(lab, r, cursors[r]) for r in REPLICAS}
    assert journal == {r: [] for r in REPLICAS}, journal
    assert res.status == "successful" and res.rc == 0, (res.status, res.rc, res.failed_tasks)
    # What it would do: the predicted change, on the controller, naming the target.
    would = [t for t in res.tasks if t.changed and "would be done" in t.task]
    assert would and expect_target in (would[0].message or ""), [
        (t.task, t.host, t.message) for t in res.tasks if t.changed
    ]
    # Check mode's "changed" is a prediction: the act it would take, and the record it would
    # append (both on the controller, neither done: the trees above are unchanged).
    predicted = {t.task for t in res.tasks if t.changed}
    assert predicted <= {would[0].task, RECORD_TASK}, predicted

    return res


def test_check_mode_changes_nothing_anywhere(
    lab: ContainerLab, work: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    monkeypatch.setenv("FIREBREAK_RUNS_DIR", str(runs))
    locks = tmp_path / "locks"
    locks.mkdir()
    state = Path(os.environ["FIREBREAK_STATE_DIR"])
    write(lab, 40)
    repaired = backup_of(lab)
    latent = next(r for r in REPLICAS if r not in (leader_of(lab), repaired))
    try:
        # FM-003: one backup found its corruption (one scrub tour) and repaired itself; the
        # other's is on disk, not found yet: a scrub would count it and start a state transfer.
        lab.fault("corrupt", repaired)
        found = json.loads(lab.exec(repaired, "kimberlite-admin", "scrub").stdout)
        assert found["checksum_failures"], found
        settle_quiet(lab)
        lab.fault("corrupt", latent)
        _check_run(lab, "fm003_corruption", locks, state, expect_target=repaired)

        # FM-005: a killed backup (not the repaired one: its journal names the corruption, and
        # FM-005 rightly hands that to FM-003); the first run's dir is now in the runs dir.
        lab.fault("kill", latent)
        _check_run(lab, "fm005_replica_crash", locks, state, expect_target=latent)
    finally:
        lab.heal()
        # Leave no corruption and no counted failure behind for the next test.
        with contextlib.suppress(Exception):
            lab.exec(latent, "kimberlite-admin", "scrub")
            settle_quiet(lab)
        for r in (repaired, latent):
            lab.systemctl(r, "restart", UNIT)


def test_check_mode_changes_nothing_on_a_full_disk(
    lab: ContainerLab, work: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FM-007 on the engine: a backup stopped on a disk full of old log segments; --check
    names the cleanup it would do and removes nothing (the segments stay, the unit stays down)."""
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    monkeypatch.setenv("FIREBREAK_RUNS_DIR", str(runs))
    locks = tmp_path / "locks"
    locks.mkdir()
    state = Path(os.environ["FIREBREAK_STATE_DIR"])
    write(lab, 40)
    target = backup_of(lab)
    try:
        filled = lab.fault("disk-full", target, "old-logs")
        assert filled.get("segments"), filled
        deadline = time.monotonic() + 60
        while lab.unit_state(target) == "active" and time.monotonic() < deadline:
            write(lab, 5)  # the next write fails on the full disk: the replica stops
        assert lab.unit_state(target) != "active", "the replica did not stop on the full disk"
        # The other two are level and nothing moves (the stopped one cannot be Normal).
        prev, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            c = cluster(lab)
            snap = (c["normal"], tuple(c["views"]), tuple(c["commits"]))
            if c["normal"] == len(REPLICAS) - 1 and len(set(c["commits"])) == 1 and snap == prev:
                break
            prev = snap
            time.sleep(1)
        time.sleep(1.5)  # a commit hint is written at most every 0.5 s
        _check_run(lab, "fm007_disk_full", locks, state, expect_target=target)
        left = _sh(lab, target, "ls /var/lib/kimberlite").split()
        assert set(filled["segments"]) <= set(left), left
    finally:
        lab.heal()
        lab.systemctl(target, "restart", UNIT)


# ----------------------------------------------------------------------------- 2. re-check
def _identity(lab: ContainerLab, replica: str) -> str:
    return _sh(lab, replica, f"systemctl show {UNIT} -p ActiveState -p MainPID -p InvocationID")


@pytest.mark.parametrize("step", ["stop", "state_transfer", "wipe"])
def test_destructive_step_rechecks_the_quorum(lab: ContainerLab, work: dict, step: str) -> None:
    target = backup_of(lab)
    second = next(r for r in REPLICAS if r not in (leader_of(lab), target))
    if step == "wipe":
        lab.systemctl(target, "stop", UNIT, check=True)  # FM-003 wipes a stopped replica
    before = {"unit": _identity(lab, target), "data": data_hashes(lab)}
    cursor = _journal_cursor(lab, target)
    run = run_playbook(
        lab, work, GUARD_THEN_ACT, f"target={target}", f"second={second}", f"step={step}"
    )
    assert run.rc != 0, run
    guards = [e for e in run.fact("quorum_guard_record_events") or []]
    assert [g["decision"] for g in guards] == ["allow", "deny"], guards
    assert any("quorum_guard refuses" in f for f in run.failures()), run
    assert _identity(lab, target) == before["unit"], f"{step} touched {target}"
    assert data_hashes(lab) == before["data"], f"{step} changed a data directory"
    acted = _actions_since(lab, target, cursor)
    assert acted == [], acted


# ----------------------------------------------------------------------------- 3. standalone
def test_replica_restart_alone_without_quorum_refuses(lab: ContainerLab, work: dict) -> None:
    leader = leader_of(lab)
    for r in REPLICAS:
        if r != leader:
            lab.fault("kill", r)
    before = _identity(lab, leader)
    run = run_playbook(lab, work, GUARD_THEN_ACT, f"target={leader}", "second=", "step=alone")
    assert run.rc != 0, run
    assert any("quorum_guard refuses" in f for f in run.failures()), run
    assert _identity(lab, leader) == before, "replica_restart restarted the last live replica"
