"""The runbooks for real: ansible-playbook against the containers lab, one lab for the module.

Cases (the FM-003 / FM-005 contract): a corrupted backup repaired with its evidence, `--check`
first changing nothing (data directory hashes), a second run changing nothing; corruption on the
leader (view change first); a wipe needed but not confirmed (refused, untouched, recorded); a
single crash restarted; two crashes refused naming FM-001; a second concurrent remediation
refused by the lock.

The lab has names of its own (containers ``rbk-replica-i``, network ``firebreak-lab-runbooks``,
host addresses ``127.0.38.i``) so that it never collides with another lab on the machine. It is
shared by the tests, which run in file order; each test leaves the cluster healthy (a fixture
checks it, healing what a refused test left down) so that the next one starts from a clean
state. On a failure the journals of every replica are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.containers import REPO_ROOT, ContainerLab

pytestmark = pytest.mark.rehearsal

REPLICAS = ["replica-1", "replica-2", "replica-3"]
PLAYBOOK = Path(REPO_ROOT) / ".venv" / "bin" / "ansible-playbook"
PLAYBOOKS = Path(REPO_ROOT) / "playbooks"
RUN_TIMEOUT = 600


# ----------------------------------------------------------------------------- lab fixture
@contextlib.contextmanager
def snapshot_lab(tmp_path_factory: pytest.TempPathFactory, name: str, **options):
    """A module's own containers lab (``options``: net, network, name_prefix, config_extra).

    The replicas run the source bind-mounted from the host: a snapshot taken now keeps every
    restart of the module on the same code, whatever is edited meanwhile. Whatever happens,
    its workload stops and the lab comes down."""
    source = tmp_path_factory.mktemp(f"{name}-source") / "python"
    shutil.copytree(
        Path(REPO_ROOT) / "python",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    lab_dir = options.pop("lab_dir", None) or tmp_path_factory.mktemp(f"{name}-lab")
    lab = ContainerLab(lab_dir, replicas=len(REPLICAS), source_dir=source, **options)
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab up in {time.monotonic() - t0:.1f}s")
        yield lab
    finally:
        with contextlib.suppress(Exception):
            workload.stop(lab.lab_dir)
        lab.down()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with snapshot_lab(
        tmp_path_factory,
        "runbooks",
        net=38,
        network="firebreak-lab-runbooks",
        name_prefix="rbk-",
        config_extra={"scrub_interval_s": 2},
    ) as lab:
        yield lab


@pytest.fixture
def work(lab: ContainerLab, tmp_path: Path, request: pytest.FixtureRequest):
    """Per test: its own incident/lock/evidence dirs; a healthy cluster before and after."""
    _heal_and_settle(lab)
    dirs = {name: tmp_path / name for name in ("incidents", "locks", "evidence")}
    failed_before = request.session.testsfailed
    yield dirs
    if request.session.testsfailed > failed_before:
        for r in REPLICAS:
            print(f"----- journal of {r}\n{lab.journal(r, 80)}")
    with contextlib.suppress(Exception):
        workload.stop(lab.lab_dir)
    _heal_and_settle(lab)


def _heal_and_settle(lab: ContainerLab, timeout: float = 90) -> None:
    """Start whatever is down, then wait for three Normal replicas in one view, commits level."""
    lab.heal()
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = _cluster(lab)
        level = len(set(last["views"])) == 1 and len(set(last["commits"])) == 1
        if last["normal"] == len(REPLICAS) and level:
            return
        time.sleep(0.5)
    raise AssertionError(f"lab did not settle: {last}")


def _cluster(lab: ContainerLab) -> dict:
    out = {"normal": 0, "views": [], "commits": [], "checksum": [], "by": {}}
    for r in REPLICAS:
        try:
            m = lab.metrics(r, timeout=2)
        except OSError:
            out["by"][r] = None
            continue
        out["by"][r] = m
        out["normal"] += int(m.get("vsr_replica_status", -1) == 0)
        out["views"].append(int(m.get("vsr_view_number", -1)))
        out["commits"].append(int(m.get("vsr_commit_number", -1)))
        out["checksum"].append(int(m.get("vsr_checksum_failures_total", 0)))
    return out


def _leader(lab: ContainerLab) -> str:
    c = _cluster(lab)
    view = max(c["views"])
    return REPLICAS[view % len(REPLICAS)]


def _backup(lab: ContainerLab) -> str:
    leader = _leader(lab)
    return next(r for r in reversed(REPLICAS) if r != leader)


def _write(lab: ContainerLab, n: int = 40) -> None:
    import urllib.request

    for i in range(n):
        req = urllib.request.Request(
            f"{lab.api_url(REPLICAS[0])}/api/write",
            data=json.dumps({"stream": "seed", "event": f"e{i}"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200


def _wait_detected(lab: ContainerLab, replica: str, timeout: float = 30) -> None:
    """Until the replica counts the corruption (its scrubber tours every 2 s here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _cluster(lab)["by"].get(replica) or {}
        if m.get("vsr_checksum_failures_total", 0) > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{replica} never counted the injected corruption")


def _settle_quiet(lab: ContainerLab, timeout: float = 60) -> None:
    """Until nothing moves: every replica Normal (the corrupted one repaired itself) and level."""
    deadline = time.monotonic() + timeout
    prev = None
    while time.monotonic() < deadline:
        c = _cluster(lab)
        snap = (c["normal"], tuple(c["views"]), tuple(c["commits"]))
        if c["normal"] == len(REPLICAS) and len(set(c["commits"])) == 1 and snap == prev:
            time.sleep(1.5)  # a commit hint is written at most every 0.5 s
            return
        prev = snap
        time.sleep(1)
    raise AssertionError(f"lab never went quiet: {_cluster(lab)}")


def _data_hashes(lab: ContainerLab) -> dict[str, str]:
    """SHA-256 of every file of every replica's data directory, read from the host side."""
    import hashlib

    out = {}
    for r in REPLICAS:
        root = lab.data_path(r)
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[f"{r}/{p.relative_to(root)}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- ansible
class Run:
    def __init__(self, rc: int, out: str, err: str, seconds: float) -> None:
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds
        try:
            self.data = json.loads(out[out.index("{") :]) if "{" in out else {}
        except ValueError:
            self.data = {}

    def results(self):
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                for host, res in task.get("hosts", {}).items():
                    yield task["task"]["name"], host, res

    def host_changes(self) -> list[tuple[str, str]]:
        """Changed tasks that ran on a replica host (not delegated to the controller)."""
        out = []
        for name, host, res in self.results():
            delegated = (res.get("_ansible_delegated_vars") or {}).get("ansible_host")
            if res.get("changed") and delegated not in ("localhost", "127.0.0.1"):
                out.append((name, host))
        return out

    def failures(self) -> list[str]:
        return [
            f"{host}: {name}: {res.get('msg')}"
            for name, host, res in self.results()
            if res.get("failed") and not res.get("_ansible_ignore_errors")
        ]

    def fact(self, key: str):
        value = None
        for _name, _host, res in self.results():
            facts = res.get("ansible_facts") or {}
            if key in facts:
                value = facts[key]
        return value

    def __repr__(self) -> str:
        tail = self.err[-2000:]
        return f"rc={self.rc} in {self.seconds:.0f}s; failures: {self.failures()}\n{tail}"


def run_playbook(
    lab: ContainerLab, dirs: dict, name: str, *extra: str, check: bool = False, incident="INC-T"
) -> Run:
    argv = [
        str(PLAYBOOK),
        str(PLAYBOOKS / f"{name}.yml"),
        "-i",
        str(lab.inventory_path()),
        "-e",
        f"firebreak_incident_id={incident}",
        "-e",
        f"firebreak_incident_dir={dirs['incidents']}",
        "-e",
        f"firebreak_lock_dir={dirs['locks']}",
        "-e",
        f"firebreak_evidence_dir={dirs['evidence']}",
        *[a for x in extra for a in ("-e", x)],
    ]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    proc = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    print(f"{name}{' --check' if check else ''} {' '.join(extra)}: rc={run.rc} {run.seconds:.0f}s")
    return run


def record(dirs: dict, incident: str = "INC-T") -> dict:
    return json.loads((dirs["incidents"] / f"{incident}.json").read_text())


def actions(rec: dict) -> list[str]:
    return [e["action"] for e in rec["timeline"] if e.get("action")]


# ----------------------------------------------------------------------------- FM-003
def test_fm003_check_first_then_repair_then_nothing(lab: ContainerLab, work: dict) -> None:
    """--check changes nothing (hashes); the repair keeps evidence; a second run changes nothing."""
    _write(lab)
    target = _backup(lab)
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    time.sleep(2)
    lab.fault("corrupt", target)
    _wait_detected(lab, target)
    workload.stop(lab.lab_dir)
    _settle_quiet(lab)

    before = _data_hashes(lab)
    check = run_playbook(lab, work, "fm003_corruption", check=True)
    assert check.rc == 0, check
    assert check.fact("runbook_plan")["action"] == "repair", check
    assert check.host_changes() == [], check.host_changes()
    assert _data_hashes(lab) == before, "--check changed a data directory"
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
    import hashlib

    for rel, digest in sums.items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest, rel
    recorded = {i["data"]["sha256"] for i in rec["evidence"] if i["kind"] == "file_hash"}
    assert set(sums.values()) <= recorded
    st = repair.fact("state_transfer_result")
    assert st["observed_status_3"] and st["caught_up"], st

    c = _cluster(lab)
    assert c["normal"] == 3 and len(set(c["views"])) == 1 and sum(c["checksum"]) == 0, c
    again = run_playbook(lab, work, "fm003_corruption")
    assert again.rc == 0, again
    assert again.fact("runbook_plan")["action"] == "none"
    assert again.host_changes() == [], again.host_changes()


def test_fm003_corruption_on_the_leader(lab: ContainerLab, work: dict) -> None:
    _write(lab, 20)
    leader = _leader(lab)
    lab.fault("corrupt", leader)
    _wait_detected(lab, leader)
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
    assert _cluster(lab)["normal"] == 3


def test_fm003_wipe_not_confirmed_is_refused(lab: ContainerLab, work: dict) -> None:
    _write(lab, 20)
    target = _backup(lab)
    lab.fault("corrupt", target)
    _wait_detected(lab, target)
    _settle_quiet(lab)
    before = _data_hashes(lab)
    run = run_playbook(lab, work, "fm003_corruption", "fm003_corruption_repair=wipe")
    assert run.rc != 0
    assert any("not confirmed" in f for f in run.failures()), run
    assert _data_hashes(lab) == before, "a refused wipe touched a data directory"
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
    _write(lab, 20)
    backups = [r for r in REPLICAS if r != _leader(lab)]
    for r in backups:
        lab.fault("corrupt", r)
    for r in backups:
        _wait_detected(lab, r)
    plan = _refused_untouched(lab, work, "refuse_many", REPLICAS)
    assert sorted(plan["targets"]) == sorted(backups), plan
    assert "more than the 1 the cluster can lose" in plan["message"], plan["message"]
    for r in backups:  # no counted checksum failure left behind for the next test
        lab.systemctl(r, "restart", "kimberlite-vsr", check=True)


def test_fm003_refuses_without_a_quorum_of_others(lab, work) -> None:
    """One backup corrupted, the other down: without the target only the leader is Normal, so
    isolating the target would stop the cluster (refuse_quorum)."""
    _write(lab, 20)
    leader = _leader(lab)
    target, other = [r for r in REPLICAS if r != leader]
    lab.fault("corrupt", target)
    _wait_detected(lab, target)
    lab.fault("kill", other)
    plan = _refused_untouched(lab, work, "refuse_quorum", [leader, target])
    assert plan["target_name"] == target and plan["others_ok"] == [leader], plan
    lab.systemctl(target, "restart", "kimberlite-vsr", check=True)


# ----------------------------------------------------------------------------- FM-005
def test_fm005_single_crash_restarted_then_nothing(lab: ContainerLab, work: dict) -> None:
    target = _backup(lab)
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
    leader = _leader(lab)
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
    first_target, second_target = [r for r in REPLICAS if r != _leader(lab)]
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
