"""`firebreak rehearse` end to end on a lab of its own (processes mode, a private net/dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from firebreak.record import verify_file

pytestmark = pytest.mark.lab

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
NET = 93  # this test's own 127.0.93.i addresses


def _lab_processes(marker: str) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                out.append(cmdline)
    return out


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
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)
    steps = [s["name"] for s in result["steps"]]
    # Whatever triage concludes, the lab came up, was loaded and faulted, and went down again.
    assert steps[:5] == ["lab up", "inventory", "workload", "inject", "detect"], result
    assert steps[-1] == "lab down" and result["steps"][-1]["status"] == "ok"
    assert (proc.returncode == 0) == (result["status"] == "passed")
    if result["status"] == "failed":
        assert result["error"]
    record = Path(result["record_path"])
    assert verify_file(record).ok
    document = json.loads(record.read_text())
    # The injection time is the fault start: MTTD is measured, not guessed.
    assert document["milestones"]["fault_started"] == result["fault_started_at"]
    assert document["metrics"]["mttd_seconds"] is not None
    if result["status"] == "passed":
        assert document["state"] == "resolved" and document["metrics"]["mttr_seconds"] > 0
    postmortem = Path(result["report_path"]).read_text()
    assert result["incident_id"] in postmortem and "[TO BE FILLED: " in postmortem
    assert _lab_processes(str(lab_dir)) == [] and _lab_processes(f"127.0.{NET}.") == []
