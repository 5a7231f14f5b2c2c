"""`firebreak rehearse` end to end on a containers lab of its own (private net and lab dir)."""

from __future__ import annotations

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


def test_rehearse_runs_every_step_records_it_and_leaves_no_lab(tmp_path):
    lab_dir = tmp_path / "lab"
    proc = subprocess.run(
        [
            FIREBREAK,
            "rehearse",
            "fm005_replica_crash",
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
