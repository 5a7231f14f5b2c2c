"""The lab's containers mode for real: three systemd containers running the VSR replica.

Needs root, podman (runc + cgroupfs, see docs) and the lab image (built on first use, cached by
recipe: ``scripts/build-lab-image``). Fails loudly, never skips, when podman cannot run.
The lab here uses its own names (``fbr-replica-i``, network ``firebreak-lab-rehearsal``,
host addresses ``127.0.32.i``) so that it never collides with a lab someone has up.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from firebreak.lab.containers import REPO_ROOT, ContainerLab

pytestmark = pytest.mark.rehearsal

REPLICAS = ["replica-1", "replica-2", "replica-3"]
ANSIBLE = Path(REPO_ROOT) / ".venv" / "bin" / "ansible"


def _source_dir() -> Path | None:
    # Development knob: run this module against another firebreak source tree.
    env = os.environ.get("FIREBREAK_REHEARSAL_SOURCE")
    return Path(env) if env else None


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    lab = ContainerLab(
        tmp_path_factory.mktemp("containers-lab"),
        replicas=len(REPLICAS),
        net=32,
        network="firebreak-lab-rehearsal",
        name_prefix="fbr-",
        source_dir=_source_dir(),
    )
    failed_before = request.session.testsfailed
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab up (3 containers) in {time.monotonic() - t0:.1f}s")
        yield lab
    finally:
        try:
            if request.session.testsfailed > failed_before or not _all_running(lab):
                _print_journals(request, lab)
        finally:
            lab.down()
            left = subprocess.run(
                ["podman", "ps", "-a", "-q", "--filter", f"label=firebreak.lab.id={lab.lab_id}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            assert not left, f"containers left behind: {left}"


@pytest.fixture
def healed(lab: ContainerLab):
    """For fault tests: whatever a failing test left injected is healed before the next one."""
    yield lab
    if lab.faults:
        lab.heal()
        lab.wait_ready(timeout=60)


def _all_running(lab: ContainerLab) -> bool:
    return all(lab.container_state(r) == "running" for r in REPLICAS)


def _print_journals(request: pytest.FixtureRequest, lab: ContainerLab) -> None:
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    for r in REPLICAS:
        text = f"\n===== journalctl -u kimberlite-vsr on {lab.container(r)} =====\n"
        try:
            text += lab.journal(r, 300)
        except Exception as exc:
            text += f"(no journal: {exc})"
        if tr is not None:
            tr.write_line(text)
        else:
            print(text)


def _http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _until(pred, timeout: float, interval: float = 0.5, what: str = "condition"):
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


def _commit(lab: ContainerLab, r: str) -> float:
    return lab.metrics(r).get("vsr_commit_number", -1.0)


def _leader(lab: ContainerLab) -> str:
    for r in REPLICAS:
        try:
            status, body = _http("GET", f"{lab.api_url(r)}/admin/status", timeout=2)
        except (OSError, urllib.error.URLError):
            continue
        if status == 200:
            return json.loads(body)["leader"]
    raise AssertionError("no replica answers /admin/status")


def test_units_active_in_three_systemd_containers(lab: ContainerLab) -> None:
    for r in REPLICAS:
        assert lab.container_state(r) == "running"
        pid1 = lab.exec(r, "cat", "/proc/1/comm").stdout.strip()
        assert pid1 == "systemd", f"{r}: PID 1 is {pid1!r}"
        for unit in ("kimberlite-vsr", "kimberlite-timesync"):
            res = lab.exec(r, "systemctl", "is-active", unit)
            assert res.stdout.strip() == "active", f"{r} {unit}: {res.stdout}{res.stderr}"
        cfg = json.loads(lab.exec(r, "cat", "/etc/kimberlite/replica.json").stdout)
        assert cfg["replica"] == r
        mounts = lab.exec(r, "findmnt", "-n", "-o", "FSTYPE", "/var/lib/kimberlite").stdout
        assert mounts.strip() == "ext4", f"{r}: data dir is not the loop-mounted ext4: {mounts}"


def test_journal_has_startup_lines(lab: ContainerLab) -> None:
    for r in REPLICAS:

        def seen(r=r):
            j = lab.exec(r, "journalctl", "--no-pager", "-u", "kimberlite-vsr").stdout
            return "Replica started" in j and "Entering Normal status" in j

        _until(seen, 30, what=f"startup lines in {r}'s journal")


def test_seed_smoke_test_by_name(lab: ContainerLab) -> None:
    # The seed's step 11, run from inside the cluster (replica-2) with replica-1 by name.
    write = [
        "curl",
        "-sS",
        "-f",
        "-m",
        "10",
        "-X",
        "POST",
        "http://replica-1:8080/api/write",
        "-d",
        '{"stream":"test","event":"recovery-test"}',
    ]
    res = _until(
        lambda: (r := lab.exec("replica-2", *write)).returncode == 0 and r,
        45,
        interval=1,
        what="POST /api/write on replica-1",
    )
    read = lab.exec(
        "replica-2", "curl", "-sS", "-f", "-m", "10", "http://replica-1:8080/api/read?stream=test"
    )
    assert read.returncode == 0, read.stderr
    assert "recovery-test" in read.stdout, f"write answered {res.stdout!r}; read {read.stdout!r}"


def test_ansible_inventory_reaches_every_replica(lab: ContainerLab) -> None:
    inv = lab.inventory_path()
    res = subprocess.run(
        [
            str(ANSIBLE),
            "-i",
            str(inv),
            "kimberlite_vsr",
            "-m",
            "ansible.builtin.command",
            "-a",
            "systemctl is-active kimberlite-vsr",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for r in REPLICAS:
        assert f"{r} | CHANGED | rc=0" in res.stdout, res.stdout
    assert res.stdout.count("\nactive") + res.stdout.startswith("active") == len(REPLICAS)


@pytest.mark.usefixtures("healed")
def test_partition_isolated_replica_cannot_commit(lab: ContainerLab) -> None:
    # Isolate a backup; the leader keeps a majority with the other backup.
    primary = _leader(lab)
    isolated = next(r for r in reversed(REPLICAS) if r != primary)
    lab.fault("partition", isolated)
    try:
        before = _commit(lab, isolated)
        # The majority side still commits.
        ok = _until(
            lambda: (
                (
                    s := _http(
                        "POST",
                        f"{lab.api_url(primary)}/api/write",
                        b'{"stream":"partition","event":"majority"}',
                    )
                )[0]
                == 200
                and s
            ),
            30,
            interval=1,
            what=f"a write through {primary}",
        )
        _until(lambda: _commit(lab, primary) > before, 15, what=f"{primary}'s commit to advance")
        # The isolated replica cannot get a write committed, nor learn of the new commits.
        try:
            status, body = _http(
                "POST",
                f"{lab.api_url(isolated)}/api/write",
                b'{"stream":"partition","event":"minority"}',
                timeout=8,
            )
        except (OSError, urllib.error.URLError) as exc:
            status, body = None, str(exc)
        assert status != 200, f"{isolated} committed while partitioned: {body} (majority: {ok})"
        time.sleep(2)
        assert _commit(lab, isolated) <= before, f"{isolated}'s commit advanced while partitioned"
    finally:
        lab.heal()
    # Healed: the isolated replica catches up.
    _until(
        lambda: _commit(lab, isolated) >= _commit(lab, primary),
        45,
        interval=1,
        what=f"{isolated} to catch up after heal",
    )


@pytest.mark.usefixtures("healed")
def test_node_faults_are_real_and_heal(lab: ContainerLab) -> None:
    environ = "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value kimberlite-vsr)/environ"
    # clock-skew: only replica-1's process runs under libfaketime, 5 s ahead: the offset of its
    # time-sync daemon (kimberlite-timesync), stopped by the fault (FM-008 scenario 1).
    lab.fault("clock-skew", "replica-1", 5000)
    lab.wait_ready(timeout=30, replicas=["replica-1"])
    env = lab.exec("replica-1", "sh", "-c", environ).stdout
    offset_file = "/var/lib/kimberlite-timesync/offset"
    assert f"FAKETIME_TIMESTAMP_FILE={offset_file}" in env and "libfaketime" in env, env
    assert lab.exec("replica-1", "cat", offset_file).stdout.strip() == "+5.000"
    assert lab.systemctl("replica-1", "is-active", "kimberlite-timesync").stdout.strip() != "active"
    skewed = lab.exec(
        "replica-1",
        "sh",
        "-c",
        "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 FAKETIME=+5.000 "
        "date +%s; date +%s",
    ).stdout.split()
    assert int(skewed[0]) - int(skewed[1]) >= 4, skewed
    # kill: systemd sees the replica die and, Restart=no, leaves it down (FM-005).
    lab.fault("kill", "replica-3")
    time.sleep(2)
    show = lab.exec(
        "replica-3", "systemctl", "show", "-p", "ActiveState,Result", "kimberlite-vsr"
    ).stdout
    assert "ActiveState=failed" in show and "Result=signal" in show, show
    # pause: the main process is stopped (state T) while the unit stays active.
    lab.fault("pause", "replica-2")
    assert lab._is_stopped("replica-2")
    assert lab.unit_state("replica-2") == "active"
    healed = lab.heal()["healed"]
    assert "start" in healed["replica-3"] and "pause" in healed["replica-2"], healed
    assert "clock-skew" in healed["replica-1"], healed
    lab.wait_ready(timeout=60)
    assert not lab._is_stopped("replica-2")
    env = lab.exec("replica-1", "sh", "-c", environ).stdout
    assert "FAKETIME" not in env, env
    assert lab.systemctl("replica-1", "is-active", "kimberlite-timesync").stdout.strip() == "active"


def _write(lab: ContainerLab, r: str, event: str, timeout: float = 8) -> int | None:
    try:
        status, _ = _http(
            "POST",
            f"{lab.api_url(r)}/api/write",
            json.dumps({"stream": "faults", "event": event}).encode(),
            timeout=timeout,
        )
    except (OSError, urllib.error.URLError):
        return None
    return status


@pytest.mark.usefixtures("healed")
def test_data_clock_latency_faults_are_real_and_heal(lab: ContainerLab) -> None:
    lab.wait_ready(timeout=60)
    leader = _leader(lab)
    damaged_r, skewed_r = (r for r in REPLICAS if r != leader)
    for i in range(10):
        assert _write(lab, leader, f"e{i}") == 200
    # corrupt: bits flipped in a backup's log.dat (host side of the bind mount); its scrubber
    # finds the checksum mismatch.
    assert lab.fault("corrupt", damaged_r)["op"] >= 1
    _until(
        lambda: lab.metrics(damaged_r).get("vsr_checksum_failures_total", 0) >= 1,
        20,
        what=f"{damaged_r}'s scrubber to report the corruption",
    )
    # clock-skew: the other backup's wall clock runs 3 s ahead of its peers', as its metric says.
    lab.fault("clock-skew", skewed_r, 3000)
    lab.wait_ready(timeout=30, replicas=[skewed_r])
    _until(
        lambda: (
            _write(lab, leader, "tick") == 200
            and lab.metrics(skewed_r).get("vsr_clock_offset_ms", 0) > 2000
        ),
        30,
        what=f"{skewed_r}'s vsr_clock_offset_ms to show the skew",
    )
    # latency: the leader's protocol sends are delayed, so a write takes at least that long.
    assert _leader(lab) == leader
    assert lab.fault("latency", leader, 300)["applied"]
    t0 = time.monotonic()
    assert _write(lab, leader, "slow") == 200
    assert time.monotonic() - t0 >= 0.3
    # disk-full: the backup's loop-mounted data dir fills; it fails stop (and stays down).
    lab.fault("disk-full", damaged_r)
    df = lab.exec(damaged_r, "df", "--output=avail", "-B1", "/var/lib/kimberlite").stdout
    assert int(df.split()[-1]) < 64 * 1024, df
    _until(
        lambda: _write(lab, leader, "fill") and lab.unit_state(damaged_r) == "failed",
        30,
        what=f"{damaged_r} to fail stop on ENOSPC",
    )
    assert "No space left on device" in lab.journal(damaged_r, 50)
    healed = lab.heal()["healed"]
    assert {"disk-full", "start"} <= set(healed[damaged_r]), healed
    assert "clock-skew" in healed[skewed_r] and "latency" in healed[leader], healed
    lab.wait_ready(timeout=60)
    assert _write(lab, leader, "healed") == 200
    _until(
        lambda: _commit(lab, damaged_r) >= _commit(lab, leader),
        45,
        what=f"{damaged_r} to catch up after heal",
    )


def test_lab_backend_interface_over_the_running_lab(lab: ContainerLab) -> None:
    # What `firebreak lab status|inventory|fault` use: the Backend reads <lab>/state.json.
    from firebreak.lab.backends import current_backend

    be = current_backend(lab.lab_dir)
    assert be.mode == "containers"
    rows = {r["name"]: r for r in be.status()}
    assert set(rows) == set(REPLICAS)
    for r in REPLICAS:
        row = rows[r]
        assert row["container_state"] == "running" and row["unit_state"] == "active", row
        assert row["status_name"] == "Normal" and row["pid"], row
        assert row["metrics"]["vsr_replica_status"] == 0, row
    leader = be.resolve("leader")
    assert rows[leader]["is_primary"], rows
    pids = be.replica_pids()
    assert all(pids[r] for r in REPLICAS), pids
    with open(f"/proc/{pids[leader]}/cmdline", "rb") as fh:
        assert b"firebreak.kimberlite.replica" in fh.read()
    inv = be.inventory()
    assert inv == lab.lab_dir / "inventory.yml" and "containers.podman.podman" in inv.read_text()
