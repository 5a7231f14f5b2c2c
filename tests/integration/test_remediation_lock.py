"""The remediation lock and the record of a killed run, against real runs (issue 11).

A runbook-shaped play (playbooks/selftest_lock_act.yml) takes the lock, does a fake act step,
appends it to the record, waits at a gate (a file the test creates), acts again, and always
releases and records. Every lock lives in the test's own lock dir.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from firebreak import lock, runner
from firebreak.record import load_document, verify_file
from firebreak.runner import run_playbook

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
PLAYBOOK = PLAYBOOKS / "selftest_lock_act.yml"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"
FIREBREAK = str(Path(sys.executable).parent / "firebreak")
CLUSTER = "lockc"
WAIT = 90  # seconds a play gets to reach its gate: a bound on a busy machine, not a measure


@pytest.fixture(autouse=True)
def _private_data_dirs_under_tmp_path(tmp_path, monkeypatch):
    """Each run's private data dir lands in pytest's tmp_path, not in /tmp for ever."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def site(tmp_path):
    """The lock dir, incident dir, work dir and gate of one test; every process of a run the
    test started is killed at the end, whatever happened."""
    dirs = {name: tmp_path / name for name in ("locks", "incidents", "work")}
    for path in dirs.values():
        path.mkdir()
    started: list[str] = []  # run ids (the FIREBREAK_RUN_ID marker) to sweep
    yield {**dirs, "gate": tmp_path / "gate", "runs": started}
    for run_id in started:
        runner._sweep(run_id)


def _vars(site, **extra) -> dict:
    return {
        "firebreak_lock_dir": str(site["locks"]),
        "firebreak_cluster": CLUSTER,
        "selftest_work_dir": str(site["work"]),
        "selftest_gate": str(site["gate"]),
        **extra,
    }


def _run(site, incident: str, timeout: float = 300, **extra) -> runner.RunResult:
    return run_playbook(
        PLAYBOOK,
        inventory=INVENTORY,
        incident_id=incident,
        incident_dir=site["incidents"],
        extra_vars=_vars(site, **extra),
        timeout=timeout,
    )


def _lock_path(site) -> Path:
    return site["locks"] / f"{CLUSTER}.lock"


def _owner(site) -> dict:
    return json.loads((_lock_path(site) / "owner.json").read_text())


def _wait_for(what: str, check, alive=lambda: True) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert alive(), f"the run ended before {what}"
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def _record(site, incident: str) -> dict:
    return load_document(site["incidents"] / f"{incident}.json")


def _actions(record: dict) -> list[str]:
    return [e["action"] for e in record["timeline"] if e["action"]]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FIREBREAK, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


class _Holder:
    """A run of the play in a thread, held at its gate until `finish()`."""

    def __init__(self, site, incident: str):
        self.site, self.result = site, None
        self.thread = threading.Thread(target=self._go, args=(incident,), daemon=True)
        self.thread.start()
        _wait_for(
            "the holder took the lock",
            lambda: (_lock_path(site) / "owner.json").is_file(),
            self.thread.is_alive,
        )
        site["runs"].append(_owner(site)["run_id"])

    def _go(self, incident):
        self.result = _run(self.site, incident)

    def finish(self) -> runner.RunResult:
        self.site["gate"].touch()
        self.thread.join(timeout=WAIT)
        assert self.result is not None, "the holder never finished"
        return self.result


def test_a_live_lock_is_broken_only_by_the_confirmed_override_and_that_is_recorded(site):
    holder = _Holder(site, "INC-LIVE-A")
    try:
        first = _owner(site)
        time.sleep(1.1)  # the lock is older than a 1 s stale period and than 0 s
        # The tuning knobs never break a live holder: stale_after=0, or a short stale period.
        # (A run that wrongly got the lock would pass the gate's short timeout and fail.)
        for knobs, why in (
            ({"remediation_lock_stale_after": 0, "remediation_lock_break_stale": True}, "> 0"),
            ({"remediation_lock_stale_after": 1, "remediation_lock_break_stale": True}, "alive"),
            ({"firebreak_override_lock": "the holder is hung"}, "confirm"),  # not confirmed
        ):
            other = _run(site, "INC-LIVE-B", selftest_gate_timeout=5, **knobs)
            assert _owner(site) == first, f"{knobs} broke the live lock"
            assert other.status == "failed", knobs
            messages = " ".join(t.message or "" for t in other.failed_tasks)
            assert why in messages, (knobs, messages)
        # The explicit, confirmed override does, and says so in its record.
        site["gate"].touch()
        (site["work"] / "isolated").unlink()
        override = _run(
            site,
            "INC-LIVE-C",
            firebreak_override_lock="holder hung, checked by the on-call",
            firebreak_override_lock_confirm=True,
        )
    finally:
        result = holder.finish()
    assert override.status == "successful", [t.message for t in override.failed_tasks]
    broken = [
        e
        for e in _record(site, "INC-LIVE-C")["timeline"]
        if e["action"] == "remediation_lock_override"
    ]
    assert len(broken) == 1
    assert broken[0]["decision"] == "allow"
    assert broken[0]["detail"]["override"] == "holder hung, checked by the on-call"
    assert broken[0]["detail"]["holder"]["run_id"] == first["run_id"]
    assert "alive" in broken[0]["detail"]["why"]
    (refusal,) = [e for e in _record(site, "INC-LIVE-B")["timeline"] if e["decision"] == "deny"]
    assert refusal["detail"]["holder"]["run_id"] == first["run_id"]  # the one that read it
    assert result.status == "successful"  # the overridden holder's release left the new lock
    assert not _lock_path(site).exists()


def test_a_lock_without_owner_file_is_broken_only_after_the_stale_period(site):
    site["gate"].touch()
    _lock_path(site).mkdir()  # what a crash between mkdir and the owner file left
    fresh = _run(site, "INC-EMPTY-1", remediation_lock_break_stale=True)
    assert fresh.status == "failed"
    assert _lock_path(site).is_dir() and not (_lock_path(site) / "owner.json").exists()
    old = time.time() - 7200
    os.utime(_lock_path(site), (old, old))
    stale = _run(site, "INC-EMPTY-2", remediation_lock_break_stale=True)
    assert stale.status == "successful", [t.message for t in stale.failed_tasks]
    (broken,) = [
        e
        for e in _record(site, "INC-EMPTY-2")["timeline"]
        if e["action"] == "remediation_lock_break_stale"
    ]
    assert "no owner file" in broken["detail"]["why"]
    assert not _lock_path(site).exists()


def _take(lock_dir: str, run_id: str, start, done, out) -> None:
    impl = lock.impl
    owner = impl.new_owner(
        CLUSTER,
        run_id,
        processes={"pid": os.getpid(), "pid_start": impl.process_start(os.getpid())},
    )
    start.wait()
    try:
        impl.acquire(lock_dir, owner, 3600, break_stale=True)
        out.put((run_id, "acquired", None))
    except impl.LockHeld as exc:
        out.put((run_id, "refused", (exc.holder or {}).get("run_id")))
    done.wait()  # the winner stays alive while the loser looks at it


def test_two_runs_taking_over_one_stale_lock_at_once_only_one_wins(tmp_path):
    impl = lock.impl
    ctx = multiprocessing.get_context("fork")
    dead = subprocess.Popen(["true"])
    dead.wait()
    for round_ in range(3):
        lock_dir = tmp_path / f"locks{round_}"
        lock_dir.mkdir()
        impl.acquire(  # a stale lock: its holder's process is gone
            str(lock_dir),
            impl.new_owner(CLUSTER, "dead-run", processes={"pid": dead.pid, "pid_start": "1"}),
            3600,
        )
        start, done, out = ctx.Barrier(2), ctx.Event(), ctx.Queue()
        takers = [
            ctx.Process(target=_take, args=(str(lock_dir), f"taker-{i}", start, done, out))
            for i in range(2)
        ]
        try:
            for p in takers:
                p.start()
            answers = sorted(out.get(timeout=30) for _ in takers)
        finally:
            done.set()
            for p in takers:
                p.join(timeout=30)
        outcomes = [a[1] for a in answers]
        assert sorted(outcomes) == ["acquired", "refused"], answers
        winner = next(a[0] for a in answers if a[1] == "acquired")
        assert next(a[2] for a in answers if a[1] == "refused") == winner
        assert impl.read_owner(impl.lock_path(str(lock_dir), CLUSTER))["run_id"] == winner


def test_kill_9_of_firebreak_run_mid_act_leaves_a_record_and_a_releasable_lock(site):
    incident = f"INC-K9-{uuid.uuid4().hex[:6]}"
    record = site["incidents"] / f"{incident}.json"
    lock_args = ("--lock-dir", str(site["locks"]))
    proc = subprocess.Popen(
        [
            *(FIREBREAK, "run", str(PLAYBOOK), "-i", str(INVENTORY), "--incident-id", incident),
            *("--incident-dir", str(site["incidents"]), "--json"),
            *[a for k, v in _vars(site).items() for a in ("-e", f"{k}={v}")],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            "the isolation in the record",
            lambda: record.is_file() and "fake_isolate" in _actions(_record(site, incident)),
            lambda: proc.poll() is None,
        )
        owner = _owner(site)
        site["runs"].append(owner["run_id"])
        # The lock names its holder, and the release refuses while it lives.
        assert (owner["incident_id"], owner["wrapper_pid"]) == (incident, proc.pid)
        assert owner["pid"] and owner["host"] and owner["owner"]
        shown = _cli("lock", "show", CLUSTER, *lock_args)
        assert shown.returncode == 0 and owner["run_id"] in shown.stdout, shown
        assert f"incident {incident}" in shown.stdout and "holder alive" in shown.stdout
        refused = _cli("lock", "release", CLUSTER, *lock_args)
        assert refused.returncode == 1, refused
        assert "alive" in refused.stderr and _lock_path(site).is_dir()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # What was appended as it happened is there; the chain holds.
    assert verify_file(record).ok
    acts = _actions(_record(site, incident))
    assert "fake_isolate" in acts and "fake_stop" not in acts
    assert [a for a in acts if a == "remediation_lock"] == ["remediation_lock"]
    # ansible-playbook outlives its killed wrapper: still the holder.
    refused = _cli("lock", "release", CLUSTER, *lock_args)
    assert refused.returncode == 1, refused
    runner._sweep(owner["run_id"])  # the operator ends what is left of the run
    released = _cli("lock", "release", str(_lock_path(site)))
    assert released.returncode == 0, released
    assert not _lock_path(site).exists()
    (entry,) = [
        e for e in _record(site, incident)["timeline"] if e["action"] == "remediation_lock_release"
    ]
    assert entry["detail"]["holder"]["run_id"] == owner["run_id"] and entry["detail"]["operator"]
    assert verify_file(record).ok
    # The next run proceeds.
    site["gate"].touch()
    again = _run(site, incident)
    assert again.status == "successful", [t.message for t in again.failed_tasks]
    assert (site["work"] / "stopped").is_file() and not _lock_path(site).exists()


def test_a_run_killed_on_timeout_records_what_it_did_and_the_lock_it_leaves(site):
    incident = "INC-TIMEOUT"
    result = _run(site, incident, timeout=40)
    site["runs"].append(result.run_id)
    assert result.status == "timeout"
    timeline = _record(site, incident)["timeline"]
    assert verify_file(site["incidents"] / f"{incident}.json").ok
    (killed,) = [e for e in timeline if e["action"] == "run_killed"]
    assert killed["outcome"] == "timeout" and killed["run_id"] == result.run_id
    finished = killed["detail"]["tasks_finished"]
    assert any("isolate (fake step" in t for t in finished)
    assert any("wait at the gate" in t for t in killed["detail"]["tasks_cut_off"])
    assert killed["detail"]["lock_left"]["path"] == str(_lock_path(site))
    assert [e["action"] for e in timeline].index("fake_isolate") < [
        e["action"] for e in timeline
    ].index("run_killed")
    # The wrapper killed every process of the run: the documented release works at once.
    released = _cli("lock", "release", CLUSTER, "--lock-dir", str(site["locks"]))
    assert released.returncode == 0, released


def test_actions_appended_as_they_happen_are_not_appended_again_at_the_end(site):
    site["gate"].touch()
    result = _run(site, "INC-ONCE")
    assert result.status == "successful", [t.message for t in result.failed_tasks]
    record = _record(site, "INC-ONCE")
    acts = _actions(record)
    for action in ("fake_isolate", "fake_stop", "remediation_lock", "remediation_lock_release"):
        assert acts.count(action) == 1, (action, acts)
    assert acts.index("remediation_lock") < acts.index("fake_isolate") < acts.index("fake_stop")
    assert verify_file(site["incidents"] / "INC-ONCE.json").ok
