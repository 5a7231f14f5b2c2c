"""The lab in processes mode: real replica processes on 127.0.59.x, real faults."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.backend import http_json
from processes_lab import (
    admin_status,
    all_normal_same_commit,
    member,
    metric,
    processes_lab,
    wait,
)

pytestmark = pytest.mark.lab

NET = 59
SCRUB_S = 1.0


def _processes_lab(d: Path, net: int, **opts):
    """A 3-replica processes lab on 127.0.<net>.x, brought down (every process) however the
    test ends."""
    return processes_lab(d, net, scrub_interval_s=SCRUB_S, **opts)


def _status(be, name: str) -> dict | None:
    return admin_status(member(be, name))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIREBREAK_LAB_DIR", str(d))
    try:
        with _processes_lab(d, NET, checkpoint_interval=50) as be:
            yield be
    finally:
        mp.undo()


def _leader_writes(be, stream: str, events: list[str], timeout: float = 6) -> dict:
    """Write each event to the current leader (each acknowledged); the leader's state entry."""
    leader = be.resolve("leader")
    lm = next(r for r in be.state()["replicas"] if r["name"] == leader)
    for event in events:
        body = {"stream": stream, "event": event}
        code, _ = http_json(lm["api_url"] + "/api/write", "POST", body, timeout=timeout)
        assert code == 200
    return lm


def _check_workload(be) -> dict:
    workload.stop(be.dir)
    wait(lambda: all_normal_same_commit(be), 20, "convergence")
    res = workload.check(be.dir)
    assert res["acknowledged"] > 0
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert res["duplicated"] == 0 and res["unexpected"] == 0, res
    return res


def test_seed_smoke_test_and_operational_surface(lab) -> None:
    host = f"127.0.{NET}.1"
    w = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            f"http://{host}:8080/api/write",
            "-d",
            '{"stream":"test","event":"recovery-test"}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(w.stdout)["acknowledged"] is True
    r = subprocess.run(
        ["curl", "-s", f"http://{host}:8080/api/read?stream=test"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "recovery-test" in json.loads(r.stdout)["events"]
    metrics = subprocess.run(
        ["curl", "-s", f"http://{host}:9090/metrics"], capture_output=True, text=True, check=True
    ).stdout
    for name in (
        "vsr_replica_status",
        "vsr_view_number",
        "vsr_op_number",
        "vsr_commit_number",
        "vsr_operations_total",
        "vsr_checksum_failures_total",
        "vsr_pending_requests",
        "vsr_client_latency_ms_bucket",
        "vsr_prepare_latency_ms_bucket",
        "vsr_clock_offset_ms",
        "vsr_messages_sent_prepare",
        "vsr_reconfig_state",
        "vsr_scrub_tours_completed",
    ):
        assert re.search(rf'^{name}\{{.*replica="replica-1".*\}} ', metrics, re.M) or re.search(
            rf'^{name}\{{.*cluster="lab".*replica="replica-1".*\}} ', metrics, re.M
        ), name
    assert http_json(f"http://{host}:9090/health")[0] == 200
    assert http_json(f"http://{host}:9090/ready")[0] == 200
    admin = subprocess.run(
        [
            sys.executable,
            "-m",
            "firebreak.kimberlite.admin",
            "--host",
            host,
            "--port",
            "8080",
            "status",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(admin.stdout)["replica"] == "replica-1"
    log = Path(lab.state()["replicas"][0]["log"]).read_text()
    assert "Replica started" in log and "Entering Normal status" in log
    assert re.search(r"replica-\d is primary \(leader\) for view \d+", log)


def test_kill_leader_under_workload(lab) -> None:
    workload.start(lab.dir, rate=30, streams=3, workers=3)
    time.sleep(2)
    leader = lab.resolve("leader")
    view0 = _status(lab, leader)["view"]
    t0 = time.monotonic()
    lab.fault("kill", leader)

    def new_view():
        for m in lab.state()["replicas"]:
            s = _status(lab, m["name"])
            if s and s["status"] == 0 and s["view"] > view0 and s["is_primary"]:
                return s
        return None

    s = wait(new_view, 10, "a new view in normal status")
    assert s["replica"] != leader
    elapsed = time.monotonic() - t0
    time.sleep(2)
    lab.heal()
    res = _check_workload(lab)
    print(f"new view {s['view']} after {elapsed:.2f}s; workload {res}")


def test_corrupt_backup_detected_and_repaired(lab) -> None:
    workload.start(lab.dir, rate=30, streams=3, workers=3)
    time.sleep(1.5)
    victim = lab.resolve("backup")
    m = next(r for r in lab.state()["replicas"] if r["name"] == victim)
    before = metric(m["metrics_url"], "vsr_checksum_failures_total")
    done = lab.fault("corrupt", victim)
    t0 = time.monotonic()
    wait(
        lambda: metric(m["metrics_url"], "vsr_checksum_failures_total") > before,
        SCRUB_S + 1.5,
        "vsr_checksum_failures_total to rise",
    )
    assert time.monotonic() - t0 <= SCRUB_S + 1.5
    log = Path(m["log"]).read_text()
    assert re.search(rf"ERROR .*checksum.*op={done['op']}\b", log), log[-2000:]
    wait(lambda: "state transfer repaired" in Path(m["log"]).read_text(), 10, "repair")
    wait(
        lambda: (s := _status(lab, victim)) and s["status"] == 0 and s["corrupt_from"] is None,
        10,
        "the victim back to normal",
    )
    code, scrub = http_json(m["api_url"] + "/admin/scrub", "POST", {})
    assert code == 200 and scrub["checksum_failures"] == []
    _check_workload(lab)


def test_unrepairable_corruption_refuses_to_boot_and_heal_says_so(lab) -> None:
    """`corrupt unrepairable`: the replica repairs its log while it runs, but its meta.json
    fails its checksum at the next start, so it refuses to boot; `lab heal` reports that (exit
    1, the replica's own reason) instead of calling it healed. A wipe brings it back."""
    workload.start(lab.dir, rate=30, streams=3, workers=3)
    time.sleep(1.0)
    victim = lab.resolve("backup")
    m = next(r for r in lab.state()["replicas"] if r["name"] == victim)
    done = lab.fault("corrupt", victim, "unrepairable")
    assert done["meta"] is True
    wait(lambda: metric(m["metrics_url"], "vsr_checksum_failures_total") > 0, 5, "detection")
    lab.fault("kill", victim)
    env = {"FIREBREAK_LAB_DIR": str(lab.dir), "PATH": "/usr/bin:/bin"}
    heal = subprocess.run(
        [sys.executable, "-m", "firebreak.cli", "lab", "heal"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert heal.returncode == 1, heal
    assert victim in json.loads(heal.stdout)["failed"], heal.stdout
    assert "refusing to start: checksum mismatch" in heal.stderr, heal.stderr
    assert _status(lab, victim) is None
    # The other two keep the quorum: writes still commit.
    _leader_writes(lab, "unboot", ["x"])
    # The way back (FM-003 step 5): wipe the data directory, start it, it resyncs.
    for p in Path(m["data_dir"]).iterdir():
        subprocess.run(["rm", "-rf", str(p)], check=True)
    assert lab.heal()["failed"] == {}
    _check_workload(lab)


def test_restart_replica_recovers_and_catches_up(lab) -> None:
    victim = lab.resolve("backup")
    lab.fault("stop", victim)
    _leader_writes(lab, "restart", [f"r{k}" for k in range(30)])
    lab.heal()
    wait(lambda: all_normal_same_commit(lab), 15, "the restarted replica to catch up")
    m = next(r for r in lab.state()["replicas"] if r["name"] == victim)
    code, data = http_json(m["api_url"] + "/api/read?stream=restart&local=1")
    assert code == 200 and data["events"] == [f"r{k}" for k in range(30)]
    assert "recovering" in Path(m["log"]).read_text().lower()


def test_minority_partition_cannot_commit(lab) -> None:
    leader = lab.resolve("leader")
    lab.fault("partition", leader)
    lm = next(r for r in lab.state()["replicas"] if r["name"] == leader)
    t0 = time.monotonic()
    code, resp = http_json(
        lm["api_url"] + "/api/write", "POST", {"stream": "part", "event": "minority"}, timeout=15
    )
    assert code == 503 and resp["acknowledged"] is False
    assert time.monotonic() - t0 < 10
    others = [r for r in lab.state()["replicas"] if r["name"] != leader]
    code, resp = http_json(
        others[0]["api_url"] + "/api/write",
        "POST",
        {"stream": "part", "event": "majority"},
        timeout=15,
    )
    assert code == 200, resp
    lab.heal()
    wait(lambda: all_normal_same_commit(lab), 15, "the healed minority to catch up")
    code, data = http_json(lm["api_url"] + "/api/read?stream=part")
    assert code == 200 and "majority" in data["events"]


def test_paused_leader_is_replaced_and_rejoins(lab) -> None:
    leader = lab.resolve("leader")
    view0 = _status(lab, lab.resolve("backup"))["view"]
    lab.fault("pause", leader)
    others = [r for r in lab.state()["replicas"] if r["name"] != leader]
    wait(
        lambda: any(
            (s := _status(lab, r["name"])) and s["status"] == 0 and s["view"] > view0
            for r in others
        ),
        10,
        "a new view without the paused leader",
    )
    code, resp = http_json(
        others[0]["api_url"] + "/api/write", "POST", {"stream": "pause", "event": "p1"}, timeout=10
    )
    assert code == 200, resp
    lab.heal()  # SIGCONT: the old primary resumes in an old view and must follow the new one
    wait(lambda: all_normal_same_commit(lab), 15, "the resumed replica to rejoin")


def test_clock_skew_shows_in_clock_offset(lab) -> None:
    victim = lab.resolve("backup")
    lab.fault("clock-skew", victim, "1500")
    m = next(r for r in lab.state()["replicas"] if r["name"] == victim)
    wait(
        lambda: abs(metric(m["metrics_url"], "vsr_clock_offset_ms") - 1500) < 300,
        10,
        "vsr_clock_offset_ms near 1500 on the skewed replica",
    )
    # Under libfaketime time.sleep failed with EINVAL and killed the ticker thread at start-up
    # (the replica still answered Normal); its sleeps are replica.pause now.
    log = Path(m["log"]).read_text()
    assert "Exception in thread" not in log and "Errno 22" not in log, log[-2000:]
    lab.heal()
    wait(lambda: all_normal_same_commit(lab), 15, "convergence after clock-skew heal")
    wait(
        lambda: abs(metric(m["metrics_url"], "vsr_clock_offset_ms")) < 100,
        10,
        "clock offset back near 0",
    )


def test_disk_full_backup_fails_stop_and_recovers(lab) -> None:
    victim = lab.resolve("backup")
    lab.fault("disk-full", victim, "8")
    leader = lab.resolve("leader")
    lm = next(r for r in lab.state()["replicas"] if r["name"] == leader)
    m = next(r for r in lab.state()["replicas"] if r["name"] == victim)
    for k in range(150):
        code, resp = http_json(
            lm["api_url"] + "/api/write",
            "POST",
            {"stream": "disk", "event": f"d{k}"},
            timeout=10,
        )
        assert code == 200, resp  # the cluster keeps committing without the full replica
        if lab.replica_pids()[victim] is None:
            break
    wait(lambda: lab.replica_pids()[victim] is None, 10, "the full replica to fail stop")
    assert "No space left on device" in Path(m["log"]).read_text()
    lab.heal()
    wait(lambda: all_normal_same_commit(lab), 20, "the healed replica to catch up")


def test_whole_cluster_restart_keeps_committed_writes(lab) -> None:
    lm = next(r for r in lab.state()["replicas"] if r["name"] == lab.resolve("leader"))
    for k in range(5):
        code, _ = http_json(
            lm["api_url"] + "/api/write", "POST", {"stream": "all", "event": f"a{k}"}, timeout=10
        )
        assert code == 200
    for r in lab.state()["replicas"]:
        lab.fault("kill", r["name"])
    lab.heal()
    wait(lambda: all_normal_same_commit(lab), 20, "the restarted cluster to be normal")
    code, data = http_json(lm["api_url"] + "/api/read?stream=all", timeout=5)
    assert code == 200 and data["events"] == [f"a{k}" for k in range(5)]


def test_held_repair_keeps_the_damage_until_the_operator_repairs(tmp_path) -> None:
    """`lab up --hold-repair`: the corrupted replica fences itself (status 3, `repair_held`)
    and its log keeps the damaged entry (evidence) until a forced state transfer repairs it."""
    from firebreak.kimberlite import storage

    with _processes_lab(tmp_path, 47, hold_repair=True) as be:
        _leader_writes(be, "h", [f"h{k}" for k in range(20)])
        victim = be.resolve("backup")
        m = next(r for r in be.state()["replicas"] if r["name"] == victim)
        op = be.fault("corrupt", victim)["op"]
        wait(
            lambda: (s := _status(be, victim)) and s["repair_held"] and s["status"] == 3,
            SCRUB_S + 5,
            "the held repair",
        )
        time.sleep(2 * SCRUB_S)  # scrub tours go by: still nothing repaired
        assert op in storage.scan(Path(m["data_dir"]) / "log.dat").corrupt
        assert _status(be, victim)["repair_held"]
        assert "repair held for the operator" in Path(m["log"]).read_text()
        # The others keep committing meanwhile.
        _leader_writes(be, "h", ["held"])
        code, answer = http_json(m["api_url"] + "/admin/state-transfer", "POST", {})
        assert code == 200 and answer.get("released") is True, answer
        wait(lambda: all_normal_same_commit(be), 15, "the repair")
        assert storage.scan(Path(m["data_dir"]) / "log.dat").corrupt == []
        assert not _status(be, victim)["repair_held"]


def test_enlarged_length_at_restart_is_counted_fenced_and_repaired(tmp_path) -> None:
    """Issue 11: record 31 of 60 of a stopped backup's log given a length past the end of the
    file. At the restart that is corruption, not a torn tail: counted, the damaged file kept,
    no vote with the cut log (with the leader down the two others form no view), and once the
    leader is back the range is repaired from the others."""
    from firebreak.kimberlite import storage
    from firebreak.lab.backend import save_state

    with _processes_lab(tmp_path, 65) as be:
        _leader_writes(be, "len", [f"l{k}" for k in range(60)])
        leader, victim = be.resolve("leader"), be.resolve("backup")
        (other,) = {r["name"] for r in be.state()["replicas"]} - {leader, victim}
        wait(lambda: (s := _status(be, victim)) and s["commit"] == 60, 10, "the victim at 60")
        st = be.state()
        m = next(r for r in st["replicas"] if r["name"] == victim)
        be.fault("stop", victim)
        storage.corrupt_length(m["data_dir"], 31)
        damaged = (Path(m["data_dir"]) / "log.dat").read_bytes()
        be.fault("stop", leader)
        st = be.state()
        be._spawn(st, victim)  # the victim alone: heal would bring the leader back too
        save_state(st, be.dir)
        m = next(r for r in st["replicas"] if r["name"] == victim)
        assert be._wait_health(m) is None
        assert metric(m["metrics_url"], "vsr_checksum_failures_total") > 0
        assert (Path(m["data_dir"]) / "log.dat.corrupt-op31").read_bytes() == damaged
        journal = Path(m["log"]).read_text()
        assert "checksum mismatch in log entry op=31 found at start-up" in journal
        assert "torn" not in journal
        # Fenced: the other backup's view changes fail one after another (no vote from it).
        view0 = _status(be, other)["view"]
        wait(lambda: (s := _status(be, other)) and s["view"] >= view0 + 2, 15, "view changes")
        s, o = _status(be, victim), _status(be, other)
        assert s["status"] != 0 and s["corrupt_from"] == 31 and s["op"] == 30, s
        assert o["status"] != 0, o
        assert be.heal()["failed"] == {}
        wait(lambda: all_normal_same_commit(be), 20, "the repair")
        assert "state transfer repaired the log from op" in Path(m["log"]).read_text()
        code, data = http_json(m["api_url"] + "/api/read?stream=len&local=1")
        assert code == 200 and data["events"] == [f"l{k}" for k in range(60)]
        assert storage.scan(Path(m["data_dir"]) / "log.dat").corrupt == []


def test_acknowledged_last_record_damaged_at_restart_is_counted_and_repaired(tmp_path) -> None:
    """Issue 11: a backup's last record, PrepareOK'd above its lazily written commit hint, with
    both its length (past the end of the file) and its body damaged. It was taken for a torn
    tail and cut (a WARNING, nothing counted, no evidence). The replica acknowledged it: at the
    restart it is corruption, counted, the damaged file kept, and repaired from the others."""
    from firebreak.kimberlite import storage

    with _processes_lab(tmp_path, 66) as be:
        _leader_writes(be, "last", [f"e{k}" for k in range(20)])
        victim = be.resolve("backup")
        wait(lambda: (s := _status(be, victim)) and s["commit"] == 20, 10, "the victim at 20")
        m = next(r for r in be.state()["replicas"] if r["name"] == victim)
        be.fault("stop", victim)
        data = Path(m["data_dir"])
        storage.save_commit_hint(data, 18)  # the hint is written lazily: it may lag
        start, length = storage.record_spans(data / "log.dat")[-1]
        storage.corrupt_length(data, 20)
        storage.damage_body(data / "log.dat", start, length)
        damaged = (data / "log.dat").read_bytes()
        assert be.heal()["failed"] == {}
        m = next(r for r in be.state()["replicas"] if r["name"] == victim)
        assert be._wait_health(m) is None
        line = "checksum mismatch in log entry op=20 found at start-up"
        journal = wait(lambda: line in (j := Path(m["log"]).read_text()) and j, 5, "the ERROR")
        assert "torn" not in journal
        assert metric(m["metrics_url"], "vsr_checksum_failures_total") > 0
        assert (data / "log.dat.corrupt-op20").read_bytes() == damaged
        wait(lambda: all_normal_same_commit(be), 20, "the repair")
        assert storage.scan(data / "log.dat").corrupt == []
        code, local = http_json(m["api_url"] + "/api/read?stream=last&local=1", timeout=2)
        assert code == 200 and local["events"] == [f"e{k}" for k in range(20)], local


def _run_workload_with_reads(be, acks: int = 40, reads: int = 40) -> None:
    """A fresh workload history: writes and linearizable reads until enough of both."""
    d = be.dir / "workload"
    workload.reset(be.dir)
    workload.start(be.dir, rate=30, streams=2, workers=2, read_period=0.05)
    try:
        wait(
            lambda: (
                len(workload._read_jsonl(d / "acks.jsonl")) >= acks
                and len(workload._read_jsonl(d / "reads.jsonl")) >= reads
            ),
            30,
            f"{acks} acks and {reads} reads",
        )
    finally:
        workload.stop(be.dir)


def _set_read_fault(be, name: str, mode: str | None) -> None:
    if mode:
        be.fault("bad-reads", name, mode)
    else:
        be.heal()
    wait(lambda: (_status(be, name) or {}).get("read_fault") == mode, 5, f"read fault {mode}")


BAD_READS = [(None, None), ("stale", "missing_ack"), ("reorder", "not_prefix")]


@pytest.mark.parametrize(("mode", "kind"), BAD_READS)
def test_history_checker_catches_a_leader_serving_bad_reads(tmp_path, mode, kind) -> None:
    """Issue 11: the checker verifies the recorded history, not only the end state. A leader
    serving stale or reordered streams (a test-only fault, healed before the final read-back,
    so the end state is clean) is caught: reads that miss acknowledged writes, or that are not
    a prefix of the final order. Without the fault the same run passes, writes acknowledged."""
    with _processes_lab(tmp_path, 72) as be:
        leader = be.resolve("leader")
        if mode:
            _set_read_fault(be, leader, mode)
        try:
            _run_workload_with_reads(be)
        finally:
            _set_read_fault(be, leader, None)
        wait(lambda: all_normal_same_commit(be), 20, "convergence")
        res = workload.check(be.dir, per_replica=True)
    # the end state alone (all the check looked at before) finds nothing wrong in any run
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert res["unexpected"] == 0 and res["duplicated"] == 0 and res["reads"] >= 40, res
    assert res["per_replica"]["ok"], res["per_replica"]
    if mode is None:
        assert res["ok"] and res["history_violations"] == 0, res
    else:
        assert res["ok"] is False and kind in {v["kind"] for v in res["violations"]}, res
        assert {v["replica"] for v in res["violations"]} == {leader}, res


def test_per_replica_comparison_catches_a_backup_serving_bad_local_reads(tmp_path) -> None:
    """A backup whose local reads are reordered diverges from the others; one whose local
    reads are frozen stays behind while the others move on. Healed, all agree."""
    with _processes_lab(tmp_path, 72) as be:
        streams = ["cmp-a", "cmp-b"]
        for s in streams:
            _leader_writes(be, s, [f"{s}-{k}" for k in range(5)])
        wait(lambda: all_normal_same_commit(be), 20, "convergence")
        backup = be.resolve("backup")
        found = {}
        for mode, finding in (("reorder", "diverged"), ("stale", "behind")):
            _set_read_fault(be, backup, mode)
            try:
                if mode == "stale":  # frozen at its first read, then the others move on
                    assert workload.compare_replicas(be.dir, streams, timeout=0)["ok"]
                    _leader_writes(be, streams[0], ["after-freeze"])
                found[mode] = workload.compare_replicas(be.dir, streams, timeout=2)
            finally:
                _set_read_fault(be, backup, None)
            assert not found[mode]["ok"] and found[mode][finding], found
            assert backup in str(found[mode][finding]), found
            assert found[mode]["unreadable"] == {}, found
        healed = workload.compare_replicas(be.dir, streams, timeout=10)
    assert healed["ok"] and set(healed["events"].values()) == {11}, healed


def test_a_cut_off_leader_serves_no_stale_read(tmp_path) -> None:
    """Found by the history checker (issue 11, FM-002's fault): a leader cut off from the
    others stays Normal in its old view and answered reads from its own state, without the
    write the new view's leader had acknowledged since (missing_ack, went_back). A read is
    linearizable only if the current view orders it: it goes through the log."""
    with _processes_lab(tmp_path, 72) as be:
        old = _leader_writes(be, "cut", ["before"])
        be.fault("partition", old["name"])
        others = [r for r in be.state()["replicas"] if r["name"] != old["name"]]

        def new_leader():
            sts = [_status(be, r["name"]) for r in others]
            return next((s for s in sts if s and s["is_primary"] and s["status"] == 0), None)

        lead = wait(new_leader, 20, "a new leader among the others")
        lm = next(r for r in others if r["name"] == lead["replica"])
        code, ack = http_json(
            lm["api_url"] + "/api/write", "POST", {"stream": "cut", "event": "after"}
        )
        assert code == 200 and ack["acknowledged"], ack
        assert _status(be, old["name"])["is_primary"], "the old leader still believes it leads"
        code, got = http_json(old["api_url"] + "/api/read?stream=cut", timeout=10)
        assert code != 200 or "after" in got["events"], f"stale read after the ack: {got}"
        be.heal()
        wait(lambda: all_normal_same_commit(be), 20, "convergence after the heal")
        code, got = http_json(old["api_url"] + "/api/read?stream=cut", timeout=10)
        assert code == 200 and got["events"] == ["before", "after"], got
