"""`firebreak rehearse` end to end on a containers lab of its own (private net and lab dir)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from firebreak.record import verify_file

pytestmark = pytest.mark.rehearsal

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
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


def _rehearse(failure_mode: str, lab_dir: Path, tmp_path: Path) -> dict:
    """`firebreak rehearse FM --json` on this test's own net, lab dir and incident dir."""
    proc = subprocess.run(
        [
            FIREBREAK,
            "rehearse",
            failure_mode,
            "--json",
            "--net",
            str(NET),
            "--lab-dir",
            str(lab_dir),
            "--incident-dir",
            str(tmp_path),
            "--timeout",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # private data dirs die with tmp_path
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["status"] == "passed", (result, proc.stderr[-2000:])
    return result


def test_rehearse_runs_every_step_records_it_and_leaves_no_lab(tmp_path):
    lab_dir = tmp_path / "lab"
    result = _rehearse("fm005_replica_crash", lab_dir, tmp_path)
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
    from firebreak.lab import storage

    lab_dir = tmp_path / "lab"
    result = _rehearse("fm003", lab_dir, tmp_path)
    document = json.loads(Path(result["record_path"]).read_text())
    acts = [e.get("action") for e in document["timeline"]]
    assert {"replica_isolate", "state_transfer", "replica_rejoin", "cluster_verified"} <= set(
        acts
    ), acts
    folders = list((tmp_path / "evidence" / result["incident_id"]).iterdir())
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
