"""`firebreak rehearse` end to end on a containers lab of its own (private net and lab dir)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from firebreak import paths
from firebreak.record import verify_file

pytestmark = pytest.mark.rehearsal

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
ROOT = Path(__file__).resolve().parents[2]
NOTHING_LEFT = {"containers": [], "mounts": [], "processes": [], "network": []}
NET = 93  # this test's own 127.0.93.i published addresses


def _lab_containers(lab_dir: Path) -> list[str]:
    """Containers of the lab kept in LAB_DIR (label firebreak.lab.dir), running or not."""
    out = subprocess.run(
        [
            "podman",
            "ps",
            "-a",
            "--filter",
            f"label=firebreak.lab.dir={lab_dir.resolve()}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def _rehearse(
    failure_mode: str,
    tmp_path: Path,
    *options: str,
    net: int = NET,
    passed: bool = True,
) -> dict:
    """`firebreak rehearse FM --json` on this test's own net; its record, evidence and lab go
    to the state dir (this test run's own, see tests/conftest.py) unless options say else."""
    proc = subprocess.run(
        [
            FIREBREAK,
            "rehearse",
            failure_mode,
            "--json",
            "--net",
            str(net),
            "--timeout",
            "600",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # private data dirs die with tmp_path
    )
    result = json.loads(proc.stdout)
    if passed:
        assert proc.returncode == 0 and result["status"] == "passed", (result, proc.stderr[-2000:])
    else:
        assert proc.returncode == 1 and result["status"] == "failed", (result, proc.stderr[-2000:])
    return result


def _source_tree_entries() -> set[str]:
    """What git sees in the checkout (untracked and ignored included), but the build dir
    (pytest's basetemp lives there) and Python's bytecode caches."""
    out = subprocess.run(
        ["git", "-C", ROOT, "status", "--porcelain", "--ignored", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        line[3:]
        for line in out.splitlines()
        if not line[3:].startswith("build/") and "__pycache__" not in line
    }


def _lab_leftovers(lab_dir: Path) -> dict[str, list[str]]:
    """Containers, mounts and processes of the lab in LAB_DIR; the rehearsal network."""
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if str(lab_dir) in line
    ]
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(lab_dir).encode() in (p / "cmdline").read_bytes():
                    procs.append(p.name)
            except OSError:
                continue
    nets = subprocess.run(
        ["podman", "network", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        "containers": _lab_containers(lab_dir),
        "mounts": mounts,
        "processes": procs,
        "network": [n for n in nets if n == "firebreak-rehearse"],
    }


def test_rehearse_runs_every_step_records_it_and_leaves_no_lab(tmp_path):
    lab_dir = tmp_path / "lab"
    result = _rehearse(
        "fm005_replica_crash", tmp_path, "--lab-dir", str(lab_dir), "--incident-dir", str(tmp_path)
    )
    steps = [s["name"] for s in result["steps"]]
    assert steps == [
        "lab up",
        "inventory",
        "workload",
        "inject",
        "detect",
        "remediate",
        "verify",
        "lab down",
    ], result
    assert all(s["status"] == "ok" for s in result["steps"]), result
    record = Path(result["record_path"])
    assert verify_file(record).ok
    document = json.loads(record.read_text())
    # The injection time is the fault start: MTTD is measured, not guessed.
    assert document["milestones"]["fault_started"] == result["fault_started_at"]
    assert document["metrics"]["mttd_seconds"] is not None
    assert document["state"] == "resolved" and document["metrics"]["mttr_seconds"] > 0
    postmortem = Path(result["report_path"]).read_text()
    assert result["incident_id"] in postmortem and "[TO BE FILLED: " in postmortem
    assert _lab_containers(lab_dir) == []


def test_rehearse_fm003_repairs_a_held_corruption_and_keeps_the_damaged_bytes(tmp_path):
    """`make demo`'s rehearsal. Its lab holds repairs (`lab up --hold-repair`): the corrupted
    replica waits, fenced, so the runbook's repair is what heals it, and the log segment kept
    as evidence (beside the record, in <incident dir>/evidence) holds the damaged entry."""
    from firebreak.kimberlite import storage

    before = _source_tree_entries()
    result = _rehearse("fm003", tmp_path)  # as `make demo` runs it: every default
    incidents = paths.incidents_dir()
    assert Path(result["record_path"]).parent == incidents, result["record_path"]
    lab_dir = paths.labs_dir() / result["incident_id"]
    document = json.loads(Path(result["record_path"]).read_text())
    acts = [e.get("action") for e in document["timeline"]]
    assert {"replica_isolate", "state_transfer", "replica_rejoin", "cluster_verified"} <= set(
        acts
    ), acts
    folders = list((incidents / "evidence" / result["incident_id"]).iterdir())
    assert len(folders) == 1, folders
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (folders[0] / "SHA256SUMS").read_text().splitlines()
    )
    kept = folders[0] / "segments" / "log.dat"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == sums["segments/log.dat"]
    damaged = storage.scan(kept).corrupt
    assert damaged, "the kept log segment holds no damaged entry: the replica repaired itself"
    journal = (folders[0] / "journal.txt").read_text()
    assert f"checksum mismatch in log entry op={damaged[0]}" in journal
    assert "repair held for the operator" in journal
    assert _lab_containers(lab_dir) == []
    assert _lab_leftovers(lab_dir) == NOTHING_LEFT
    assert not lab_dir.exists()
    # Nothing landed in the source tree, and the collection built after it holds only the
    # collection's own files (scripts/build-collection checks every member).
    assert _source_tree_entries() == before
    build = subprocess.run(
        [sys.executable, ROOT / "scripts" / "build-collection", "--output-path", tmp_path / "dist"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    with tarfile.open(build.stdout.strip()) as tar:
        names = {m.name for m in tar.getmembers()}
    assert not {n for n in names if "incident" in n.split("/")[0] or "REH-" in n}, names
    assert result["incident_id"] not in str(names)


def test_a_rehearsal_failing_at_lab_up_leaves_nothing_and_says_why(tmp_path):
    """The second replica's published port is taken: `lab up` fails after it has made the
    network, the first container and the loop-mounted disks. The rehearsal names the step and
    the reason, and takes down everything that was made."""
    net = NET + 1
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((f"127.0.{net}.2", 8080))
        busy.listen()
        result = _rehearse("fm005", tmp_path, net=net, passed=False)
    assert result["error"].startswith("step 'lab up' failed"), result["error"]
    assert (
        f"127.0.{net}.2:8080" in result["error"] and "address already in use" in result["error"]
    ), result["error"]
    assert [s["name"] for s in result["steps"]] == ["lab up", "lab down"], result["steps"]
    lab_dir = paths.labs_dir() / result["incident_id"]
    assert _lab_leftovers(lab_dir) == NOTHING_LEFT
    assert not lab_dir.exists()


sys.path.insert(0, str(ROOT / ".collections"))
from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    failure_modes,
)

# FM-003 and FM-005 have their own rehearsal tests above; every other runbook of the registry
# is rehearsed here by its registry entry alone (fault, lab options, rehearsal vars).
OWN_TESTS = ("fm003_corruption", "fm005_replica_crash")
OTHER_RUNBOOKS = sorted(r for r in failure_modes.runbooks().values() if r not in OWN_TESTS)


@pytest.mark.parametrize("role", OTHER_RUNBOOKS)
def test_every_runbook_heals_its_registry_fault_under_the_workload(role, tmp_path):
    lab_dir = tmp_path / "lab"
    result = _rehearse(role, tmp_path, "--lab-dir", str(lab_dir), "--incident-dir", str(tmp_path))
    steps = {s["name"]: s for s in result["steps"]}
    assert all(s["status"] == "ok" for s in result["steps"]), result
    # Triage named this failure mode (the cause), and the runbook acted on it.
    detected = steps["detect"]["detail"]
    assert detected["failure_mode"] == failure_modes.get(role)["id"], detected
    document = json.loads(Path(result["record_path"]).read_text())
    plan = next(e for e in document["timeline"] if e.get("action") == f"{role}_plan")
    assert plan["decision"] == "allow", plan
    verified = next(e for e in document["timeline"] if e.get("action") == "cluster_verified")
    assert all(verified["detail"]["checks"].values()), verified  # all Normal, one view, level
    check = steps["verify"]["detail"]["workload"]
    assert check["acknowledged"] > 0 and check["lost"] == 0, check
    assert document["state"] == "resolved"
    assert _lab_leftovers(lab_dir) == NOTHING_LEFT
