"""The seed's "Replace Failed Replica" procedure on the containers lab, for real.

Three systemd containers (``rcf-replica-i``, network ``firebreak-lab-rcf``, host addresses
``127.0.36.i``, lab dir in a tmp dir) under a workload that must lose nothing:

1. ``kimberlite-admin reconfig remove replica-2`` run inside replica-1's container;
2. watch ``vsr_reconfig_state`` on ``http://replica-1:9090/metrics`` (from inside the cluster)
   until Stable (0), with one joint and one stable configuration op executed;
3. decommission replica-2 (``lab reconfig remove replica-2``: it is already out, so its unit and
   container are stopped, its disk kept) and provision replica-4 (``add_replica``);
4. ``kimberlite-admin reconfig add replica-4 --address replica-4:8080:9090 --wait 60`` inside
   replica-1;
5. replica-4's ``vsr_commit_number`` equals the leader's; the workload lost nothing; the
   inventory lists replica-4 in ``kimberlite_vsr``.

Then the lab CLI path end to end: ``lab reconfig remove replica-3`` (decommissions it) and
``lab reconfig add replica-5`` (provisions it first). Needs root and podman; fails loudly,
never skips, when podman cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from firebreak.lab import cli, workload
from firebreak.lab.backend import http_json
from firebreak.lab.containers import ContainersBackend

pytestmark = pytest.mark.rehearsal

NET = 36
PREFIX = "rcf-"
NETWORK = "firebreak-lab-rcf"


def _require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: the containers lab cannot run", pytrace=False)
    res = subprocess.run(["podman", "info"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.fail(f"podman cannot run: {res.stderr.strip()}", pytrace=False)


@pytest.fixture(scope="module")
def be(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    _require_podman()
    d = tmp_path_factory.mktemp("containers-reconfig-lab")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIREBREAK_LAB_DIR", str(d))
    backend = ContainersBackend(d)
    failed_before = request.session.testsfailed
    try:
        t0 = time.monotonic()
        backend.up(
            replicas=3,
            net=NET,
            network=NETWORK,
            name_prefix=PREFIX,
            scrub_interval_s=2.0,
            checkpoint_interval=50,
        )
        print(f"lab up (3 containers) in {time.monotonic() - t0:.1f}s")
        yield backend
    finally:
        try:
            workload.stop(d)
            if request.session.testsfailed > failed_before:
                _print_journals(request, backend)
        finally:
            lab_id = backend.lab.lab_id
            backend.down()
            mp.undo()
            left = subprocess.run(
                ["podman", "ps", "-a", "-q", "--filter", f"label=firebreak.lab.id={lab_id}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            assert not left, f"containers left behind: {left}"


def _print_journals(request: pytest.FixtureRequest, be: ContainersBackend) -> None:
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    lab = be.lab
    lab._load_state()
    out = []
    for r in lab.replica_names():
        text = f"\n===== journalctl -u kimberlite-vsr on {lab.container(r)} =====\n"
        try:
            text += lab.journal(r, 300)
        except Exception as exc:
            text += f"(no journal: {exc})"
        out.append(text)
    for dec in lab.decommissioned:
        text = f"\n===== {dec['name']} (decommissioned), saved journal =====\n"
        j = dec.get("journal")
        text += Path(j).read_text()[-20000:] if j and Path(j).exists() else "(none saved)"
        out.append(text)
    wl = lab.lab_dir / "workload" / "workload.log"
    if wl.exists():
        out.append(f"\n===== workload.log =====\n{wl.read_text()[-5000:]}")
    for text in out:
        if tr is not None:
            tr.write_line(text)
        else:
            print(text)


def _until(pred, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _entry(be: ContainersBackend, name: str) -> dict:
    return next(r for r in be.state()["replicas"] if r["name"] == name)


def _status(be: ContainersBackend, name: str) -> dict | None:
    try:
        code, s = http_json(_entry(be, name)["api_url"] + "/admin/status", timeout=2)
    except (OSError, StopIteration):
        return None
    return s if code == 200 else None


def _metrics_in_cluster(be: ContainersBackend, via: str, of: str) -> dict[str, float]:
    """``curl -s http://<of>:9090/metrics`` run inside ``via``'s container (by name, as the
    seed's watch commands do)."""
    from firebreak.lab.containers import parse_metrics

    res = be.lab.exec(via, "curl", "-sS", "-f", "-m", "5", f"http://{of}:9090/metrics")
    assert res.returncode == 0, f"curl {of}:9090/metrics in {via}: {res.stderr}"
    return parse_metrics(res.stdout)


def _admin(be: ContainersBackend, via: str, *argv: str, timeout: float = 120):
    res = be.lab.exec(via, "kimberlite-admin", *argv, timeout=timeout)
    assert res.returncode == 0, (
        f"kimberlite-admin {' '.join(argv)} in {via}: {res.stdout}{res.stderr}"
    )
    return json.loads(res.stdout)


def _converged(be: ContainersBackend, members: list[str]):
    sts = [_status(be, n) for n in members]
    if any(s is None or s["status"] != 0 or not s["member"] for s in sts):
        return False
    if len({(s["view"], s["op"], s["commit"]) for s in sts}) != 1:
        return False
    return {s["replica"]: s for s in sts}


def _inventory_hosts(be: ContainersBackend) -> dict:
    inv = yaml.safe_load(be.inventory().read_text())
    return inv["all"]["children"]["kimberlite_vsr"]["hosts"]


def test_replace_failed_replica(be: ContainersBackend, capsys: pytest.CaptureFixture) -> None:
    t_start = time.monotonic()
    lab = be.lab
    workload.start(be.dir, rate=30, streams=3, workers=3)
    time.sleep(1.5)
    m0 = _metrics_in_cluster(be, "replica-1", "replica-1")
    joint0, stable0 = m0["vsr_reconfig_joint_total"], m0["vsr_reconfig_stable_total"]
    assert m0["vsr_reconfig_state"] == 0

    # 1. remove the failed replica, from replica-1 (the seed's `ssh replica-1 ...`)
    out = _admin(be, "replica-1", "reconfig", "remove", "replica-2")
    assert out["reconfig"] == "joint", out

    # 2. watch vsr_reconfig_state on replica-1 until Stable, one joint and one stable op executed
    m1 = _until(
        lambda: (
            (m := _metrics_in_cluster(be, "replica-1", "replica-1"))["vsr_reconfig_state"] == 0
            and m["vsr_reconfig_stable_total"] >= stable0 + 1
            and m
        ),
        30,
        "replica-1's vsr_reconfig_state back to 0 (Stable)",
    )
    assert m1["vsr_reconfig_joint_total"] == joint0 + 1, m1
    assert m1["vsr_reconfig_stable_total"] == stable0 + 1, m1
    journal = lab.journal("replica-1", 2000)
    joint_at = journal.index("reconfig: Joint")
    assert journal.index("reconfig: Stable", joint_at) > joint_at
    s1 = _status(be, "replica-1")
    assert s1["configuration"] == ["replica-1", "replica-3"], s1
    _until(
        lambda: (s := _status(be, "replica-2")) and s["member"] is False,
        15,
        "replica-2 to know it is no longer a member",
    )
    t_removed = time.monotonic() - t_start

    # 3a. decommission replica-2: `lab reconfig remove` on a replica already removed only
    # stops it (unit and container), keeping its disk for evidence
    assert cli.main(["reconfig", "remove", "replica-2"]) == 0
    dec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert dec["already_removed"] and dec["decommissioned"]["container_state"] == "exited", dec
    assert lab.container_state("replica-2") == "exited"
    assert os.path.ismount(dec["decommissioned"]["host_data_dir"])
    assert "replica-2" not in _inventory_hosts(be)
    assert "replica-2" not in [r["name"] for r in be.state()["replicas"]]

    # 3b. provision replica-4: empty disk, config with the cluster's replicas and itself
    t0 = time.monotonic()
    new = be.add_replica("replica-4")
    t_provision = time.monotonic() - t0
    assert new["host"] == "replica-4" and new["api_url"] == f"http://127.0.{NET}.4:8080", new
    assert lab.unit_state("replica-4") == "active"
    cfg = json.loads(lab.exec("replica-4", "cat", "/etc/kimberlite/replica.json").stdout)
    assert cfg["replica"] == "replica-4" and cfg["bind_host"] == "0.0.0.0"
    assert cfg["members"] == ["replica-1", "replica-2", "replica-3"], cfg
    assert [r["name"] for r in cfg["replicas"]] == [f"replica-{i}" for i in (1, 2, 3, 4)]
    assert cfg["checkpoint_interval"] == 50 and cfg["scrub_interval_s"] == 2.0, cfg
    s4 = _status(be, "replica-4")
    assert s4["member"] is False and s4["status_name"] == "Recovering", s4
    hosts = _inventory_hosts(be)
    assert set(hosts) == {"replica-1", "replica-3", "replica-4"}, hosts
    assert hosts["replica-4"]["ansible_host"] == f"{PREFIX}replica-4"
    assert hosts["replica-4"]["vsr_api_url"] == f"http://127.0.{NET}.4:8080"

    # 4. add it, from replica-1, and wait for Stable
    out = _admin(
        be,
        "replica-1",
        "reconfig",
        "add",
        "replica-4",
        "--address",
        "replica-4:8080:9090",
        "--wait",
        "60",
    )
    assert out["reconfig"] == "joint" and out["stable"] is True, out
    assert "replica-4" in out["new"], out
    m2 = _metrics_in_cluster(be, "replica-1", "replica-1")
    assert m2["vsr_reconfig_state"] == 0
    assert m2["vsr_reconfig_joint_total"] == joint0 + 2, m2
    assert m2["vsr_reconfig_stable_total"] == stable0 + 2, m2
    members = ["replica-1", "replica-3", "replica-4"]

    # 5. replica-4 synced: Normal, a member, its commit number the leader's
    workload.stop(be.dir)
    sts = _until(lambda: _converged(be, members), 45, "replica-4 to catch up")
    leader = be.resolve("leader")
    assert sts["replica-4"]["configuration"] == members, sts["replica-4"]
    c4 = _metrics_in_cluster(be, "replica-1", "replica-4")["vsr_commit_number"]
    cl = _metrics_in_cluster(be, "replica-1", leader)["vsr_commit_number"]
    assert c4 == cl == sts[leader]["commit"], (c4, cl, sts)
    assert _metrics_in_cluster(be, "replica-1", "replica-4")["vsr_replica_status"] == 0

    # 6. nothing acknowledged was lost
    res = workload.check(be.dir)
    assert res["acknowledged"] > 0, res
    assert res["acknowledged"] > 0 and res["lost"] == 0, res
    assert res["duplicated"] == 0 and res["unexpected"] == 0, res
    print(
        f"removed replica-2 in {t_removed:.1f}s, provisioned replica-4 in {t_provision:.1f}s, "
        f"whole procedure {time.monotonic() - t_start:.1f}s; workload "
        f"{ {k: res[k] for k in ('attempted', 'acknowledged', 'lost')} }"
    )


def test_lab_cli_reconfig_remove_then_add(
    be: ContainersBackend, capsys: pytest.CaptureFixture
) -> None:
    lab = be.lab
    # remove through the lab (admin API of a member, wait Stable, then decommission)
    assert cli.main(["reconfig", "remove", "replica-3", "--wait", "30"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stable"] == ["replica-1", "replica-4"], out
    assert out["decommissioned"]["container_state"] == "exited", out
    assert lab.container_state("replica-3") == "exited"
    assert Path(out["decommissioned"]["journal"]).read_text().count("reconfig: Stable") >= 1
    # the remaining two still commit
    code, resp = http_json(
        _entry(be, "replica-1")["api_url"] + "/api/write",
        "POST",
        {"stream": "cli", "event": "after-remove"},
        timeout=10,
    )
    assert code == 200 and resp["acknowledged"], resp

    # add a new one through the lab: it provisions replica-5 first
    assert cli.main(["reconfig", "add", "replica-5", "--wait", "60"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stable"] == ["replica-1", "replica-4", "replica-5"], out
    members = ["replica-1", "replica-4", "replica-5"]
    sts = _until(lambda: _converged(be, members), 45, "replica-5 to catch up")
    assert sts["replica-5"]["configuration"] == members
    code, data = http_json(_entry(be, "replica-5")["api_url"] + "/api/read?stream=cli&local=1")
    assert code == 200 and data["events"] == ["after-remove"], data
    assert set(_inventory_hosts(be)) == set(members)
    st = be.state()
    assert [d["name"] for d in st["decommissioned"]] == ["replica-2", "replica-3"]
    rows = {r["name"]: r for r in be.status()}
    assert set(rows) == set(members)
    assert all(r["member"] and r["unit_state"] == "active" for r in rows.values()), rows
    # `lab heal` leaves decommissioned replicas stopped
    be.heal()
    assert lab.container_state("replica-2") == "exited"
    assert lab.container_state("replica-3") == "exited"
