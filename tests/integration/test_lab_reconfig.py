"""Joint-consensus reconfiguration end to end in processes mode (127.0.43.x): the seed's
"Replace Failed Replica" procedure (remove a backup, wait Joint -> Stable, provision replica-4,
add it, wait, verify it caught up) under a workload that must lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from firebreak.lab import cli, workload
from firebreak.lab.backend import http_json
from processes_lab import member, metric, processes_lab, wait

pytestmark = pytest.mark.lab

NET = 43


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIREBREAK_LAB_DIR", str(d))
    try:
        with processes_lab(d, NET, scrub_interval_s=2.0, checkpoint_interval=50) as be:
            yield be
    finally:
        mp.undo()


def _status(be, name: str) -> dict | None:
    try:
        code, s = http_json(member(be, name)["api_url"] + "/admin/status", timeout=1)
        return s if code == 200 else None
    except OSError:
        return None


def _members_converged(be, members: list[str]):
    sts = [_status(be, n) for n in members]
    if any(s is None or s["status"] != 0 or not s["member"] for s in sts):
        return False
    if len({(s["view"], s["op"], s["commit"]) for s in sts}) != 1:
        return False
    return sts


class GaugePoller(threading.Thread):
    """Polls vsr_reconfig_state on one replica as fast as it answers; keeps the distinct runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.seen, self.stop = url, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            v = metric(self.url, "vsr_reconfig_state")
            if v == v and (not self.seen or self.seen[-1] != v):
                self.seen.append(v)


def _write(be, name: str, stream: str, event: str) -> tuple[int, dict]:
    return http_json(
        member(be, name)["api_url"] + "/api/write",
        "POST",
        {"stream": stream, "event": event},
        timeout=10,
    )


def test_replace_failed_replica(lab, capsys) -> None:
    workload.start(lab.dir, rate=30, streams=3, workers=3)
    time.sleep(1.5)
    leader = lab.resolve("leader")
    victim = lab.resolve("backup")
    lm = member(lab, leader)
    joint0 = metric(lm["metrics_url"], "vsr_reconfig_joint_total")
    stable0 = metric(lm["metrics_url"], "vsr_reconfig_stable_total")
    poller = GaugePoller(lm["metrics_url"])
    poller.start()

    # 1. remove the "failed" backup, through the lab CLI (waits for Stable)
    t0 = time.monotonic()
    assert cli.main(["reconfig", "remove", victim, "--wait", "30"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert victim not in out["stable"]
    removed_s = time.monotonic() - t0
    wait(
        lambda: metric(lm["metrics_url"], "vsr_reconfig_stable_total") >= stable0 + 1,
        10,
        "the stable op to execute on the leader",
    )
    poller.stop.set()
    poller.join(5)
    assert metric(lm["metrics_url"], "vsr_reconfig_joint_total") == joint0 + 1
    assert metric(lm["metrics_url"], "vsr_reconfig_state") == 0
    log = Path(lm["log"]).read_text()
    joint_at = log.index("reconfig: Joint")
    assert log.index("reconfig: Stable", joint_at) > joint_at
    remaining = [n for n in out["stable"]]
    assert len(remaining) == 2 and leader in remaining

    # the removed replica keeps serving its status and says it is not a member
    wait(lambda: (s := _status(lab, victim)) and s["member"] is False, 10, "victim not a member")
    vm = member(lab, victim)
    assert metric(vm["metrics_url"], "vsr_config_member") == 0

    # 2. writes still commit with the remaining replicas (a quorum of 2 out of 2)
    for k in range(10):
        code, resp = _write(lab, leader, "after-remove", f"r{k}")
        assert code == 200 and resp["acknowledged"], resp
    wait(lambda: _members_converged(lab, remaining), 10, "the two members to agree")

    # 3. provision replica-4: it runs, not a member, Recovering (takes part in nothing)
    new = lab.add_replica("replica-4")
    assert new["host"] == f"127.0.{NET}.4"
    time.sleep(1.0)
    s4 = _status(lab, "replica-4")
    assert s4 is not None and s4["member"] is False and s4["status_name"] == "Recovering", s4

    # 4. kimberlite-admin reconfig add replica-4 on the leader (joint, then stable)
    lm_now = member(lab, lab.resolve("leader"))
    poller2 = GaugePoller(lm_now["metrics_url"])
    poller2.start()
    admin = subprocess.run(
        [
            sys.executable,
            "-m",
            "firebreak.kimberlite.admin",
            "--host",
            lm_now["host"],
            "--port",
            "8080",
            "reconfig",
            "add",
            "replica-4",
            "--address",
            f"{new['host']}:8080:9090",
            "--wait",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    poller2.stop.set()
    poller2.join(5)
    assert admin.returncode == 0, admin.stdout + admin.stderr
    res = json.loads(admin.stdout)
    assert res["reconfig"] == "joint" and res["stable"] is True, res
    assert "replica-4" in res["new"]
    members = [*remaining, "replica-4"]

    # 5. replica-4 caught up: normal, a member, same commit as the leader
    workload.stop(lab.dir)
    sts = wait(lambda: _members_converged(lab, members), 30, "replica-4 to catch up")
    by_name = {s["replica"]: s for s in sts}
    assert by_name["replica-4"]["commit"] == by_name[lab.resolve("leader")]["commit"]
    assert by_name["replica-4"]["configuration"] == members
    code, data = http_json(new["api_url"] + "/api/read?stream=after-remove&local=1")
    assert code == 200 and data["events"] == [f"r{k}" for k in range(10)]
    assert "reconfig: Stable" in Path(new["log"]).read_text()

    # 6. nothing acknowledged was lost
    res = workload.check(lab.dir)
    assert res["acknowledged"] > 0
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert res["duplicated"] == 0 and res["unexpected"] == 0, res
    print(
        f"removed {victim} in {removed_s:.2f}s; gauge runs {poller.seen} / {poller2.seen}; "
        f"workload {res}"
    )


def test_remove_the_leader_elects_a_member(lab) -> None:
    members = [s for s in (_status(lab, r["name"]) for r in lab.state()["replicas"]) if s]
    members = [s["replica"] for s in members if s["member"]]
    leader = lab.resolve("leader")
    view0 = _status(lab, leader)["view"]
    out = lab.reconfig("remove", leader, wait=30)
    rest = [n for n in members if n != leader]
    assert sorted(out["stable"]) == sorted(rest)

    def new_leader():
        for n in rest:
            s = _status(lab, n)
            if s and s["status"] == 0 and s["is_primary"] and s["view"] > view0:
                return s
        return None

    s = wait(new_leader, 15, "a member to lead a later view")
    assert s["replica"] in rest
    code, resp = _write(lab, s["replica"], "after-leader-removed", "x")
    assert code == 200, resp
    wait(lambda: (t := _status(lab, leader)) and t["member"] is False, 10, "old leader out")
    wait(lambda: _members_converged(lab, rest), 15, "the remaining members to agree")
