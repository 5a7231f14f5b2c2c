"""The `firebreak` console script, run as people and machines run it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from firebreak import paths
from processes_lab import clean_up, leftover_pids

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"
FIREBREAK = str(Path(sys.executable).parent / "firebreak")
PROGRESS = re.compile(r"^\d\d:\d\d:\d\d  \S+\s+localhost\s+.+  (ok|changed|FAILED)", re.M)


def running(marker: str) -> bool:
    """Whether the selftest's sleeping task with `marker` is alive (read from /proc: `ps`
    truncates long command lines when its output is not a terminal)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if marker.encode() in cmdline and b"time.sleep" in cmdline:
                    return True
            except OSError:
                continue
    return False


@pytest.fixture(autouse=True)
def _private_data_dirs_under_tmp_path(tmp_path, monkeypatch):
    """The runs' private data dirs land in pytest's tmp_path, not in /tmp for ever."""
    scratch = tmp_path / "runs"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))


def firebreak(*args: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        [FIREBREAK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_run_prints_one_line_per_task_then_a_summary():
    proc = firebreak("run", str(PLAYBOOKS / "selftest_ok.yml"), "-i", str(INVENTORY))
    assert proc.returncode == 0, proc.stderr
    lines = PROGRESS.findall(proc.stdout)
    assert len(lines) == 3
    assert "successful (rc 0)" in proc.stdout
    assert re.search(r"^localhost\s+3\s+0\s+0\s+0\s+0$", proc.stdout, re.M)


def test_run_json_is_silent_and_complete():
    proc = firebreak("run", str(PLAYBOOKS / "selftest_ok.yml"), "-i", str(INVENTORY), "--json")
    assert proc.returncode == 0, proc.stderr
    assert not PROGRESS.search(proc.stdout)
    data = json.loads(proc.stdout)
    assert data["status"] == "successful" and data["rc"] == 0
    assert data["tasks"][0]["result"]["stdout"] == "selftest-marker-42"
    assert data["stats"]["localhost"]["ok"] == 3


def test_a_failed_run_names_host_task_and_message_and_exits_1():
    proc = firebreak("run", str(PLAYBOOKS / "selftest_fail.yml"), "-i", str(INVENTORY))
    assert proc.returncode == 1
    assert (
        "FAILED localhost: Selftest | a task that fails with a known message: "
        "selftest failure message 7f3a"
    ) in proc.stdout


def test_a_run_over_its_timeout_exits_3():
    marker = f"fb-cli-timeout-{uuid.uuid4().hex}"
    proc = firebreak(
        "run",
        str(PLAYBOOKS / "selftest_sleep.yml"),
        "-i",
        str(INVENTORY),
        "--timeout",
        "2",
        "-e",
        f"selftest_marker={marker}",
        "--json",
    )
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["status"] == "timeout"
    assert not running(marker)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", str(PLAYBOOKS / "selftest_ok.yml"), "-i", "/nonexistent/hosts.yml"],
            "inventory not found",
        ),
        (["run", "fm999_nothing", "-i", str(INVENTORY)], "unknown playbook 'fm999_nothing'"),
        (
            [
                "run",
                str(PLAYBOOKS / "selftest_ping.yml"),
                "-i",
                str(PLAYBOOKS / "inventory" / "unreachable.yml"),
            ],
            "cannot reach the cluster",
        ),
        (["rehearse", "fm999"], "unknown failure mode"),
        (
            ["run", str(PLAYBOOKS / "selftest_ok.yml"), "-i", str(INVENTORY), "-e", "novalue"],
            "is not key=value",
        ),
    ],
)
def test_setup_errors_exit_2_with_one_line(args, message):
    proc = firebreak(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stderr.startswith("firebreak: error: ")


def test_rehearse_without_the_runbook_is_a_clear_error(tmp_path):
    proc = firebreak("rehearse", "fm003", env={"FIREBREAK_PLAYBOOK_DIR": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no runbook for fm003_corruption: playbooks/fm003_corruption.yml is missing" in (
        proc.stderr
    )


def test_the_lab_group_is_there_or_says_it_is_not():
    proc = firebreak("lab", "--help")
    if importlib.util.find_spec("firebreak.lab.cli") is not None:
        assert proc.returncode == 0
    else:
        assert proc.returncode == 2 and "lab not available" in proc.stderr


def test_a_secret_extra_var_never_reaches_artifacts_record_or_output(tmp_path):
    canary = f"CANARY-{uuid.uuid4().hex}"
    incident_dir = tmp_path / "incidents"
    scratch = tmp_path / "tmp"  # the run's temporary files (TMPDIR), to check what remains
    scratch.mkdir()
    outputs, data_dirs = [], []
    for json_flag in ([], ["--json"]):
        proc = firebreak(
            "run",
            str(PLAYBOOKS / "selftest_secret.yml"),
            "-i",
            str(INVENTORY),
            "-e",
            f"selftest_secret={canary}",
            "--incident-id",
            "INC-SECRET",
            "--incident-dir",
            str(incident_dir),
            *json_flag,
            env={"TMPDIR": str(scratch)},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs += [proc.stdout, proc.stderr]
        if json_flag:
            data = json.loads(proc.stdout)
            data_dirs.append(Path(data["private_data_dir"]))
            digest = hashlib.sha256(canary.encode()).hexdigest()
            assert any(t["result"].get("msg") == digest for t in data["tasks"]), (
                "the secret did not reach the play"
            )
            hidden = [t for t in data["tasks"] if "censored" in json.dumps(t["result"])]
            assert len(hidden) >= 2
        else:
            data_dirs.append(Path(re.search(r"artifacts: (\S+)", proc.stdout).group(1)))
    record = incident_dir / "INC-SECRET.json"
    assert record.is_file()
    checked = 0
    for root in [*data_dirs, incident_dir]:
        for path in root.rglob("*"):
            if path.is_file():
                checked += 1
                assert canary.encode() not in path.read_bytes(), f"secret leaked into {path}"
    assert checked > 20
    for text in outputs:
        assert canary not in text
    # the extra-vars file that carried the secret is gone; the private data dirs stay
    assert [p.name for p in scratch.iterdir()] == ["firebreak-runs"]
    runs = list((scratch / "firebreak-runs").iterdir())
    assert len(runs) == 2 and set(data_dirs) <= set(runs), (runs, data_dirs)


@pytest.fixture(scope="module")
def record_file(tmp_path_factory):
    incident_dir = tmp_path_factory.mktemp("incidents")
    runs = tmp_path_factory.mktemp("runs")
    for state in ("detected", "resolved"):
        proc = firebreak(
            "run",
            str(PLAYBOOKS / "selftest_incident.yml"),
            "-i",
            str(INVENTORY),
            "--json",
            "--incident-id",
            "INC-CLI",
            "--incident-dir",
            str(incident_dir),
            "-e",
            f"firebreak_incident_state={state} firebreak_severity=SEV2",
            env={"TMPDIR": str(runs)},
        )
        assert proc.returncode == 0, proc.stderr
    return incident_dir / "INC-CLI.json"


def test_record_verify_accepts_an_untouched_record(record_file):
    proc = firebreak("record", "verify", str(record_file))
    assert proc.returncode == 0 and proc.stdout.startswith("OK ")
    data = json.loads(firebreak("record", "verify", str(record_file), "--json").stdout)
    assert data["ok"] and data["entries"] > 8


def _tampered(record_file: Path, tmp_path: Path, change) -> Path:
    data = json.loads(record_file.read_text())
    change(data["timeline"])
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(data, indent=2))
    return out


def _flip_a_byte(timeline):
    entry = timeline[3]
    entry["at"] = entry["at"][:-2] + chr(ord(entry["at"][-2]) ^ 1) + "Z"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_flip_a_byte, "entry #3: entry #3 "),
        (lambda t: t.insert(2, t.pop(5)), "entry #5: entry #5 "),
        (lambda t: t.pop(4), "entry #5: entry #5 "),
        (lambda t: t.pop(), "chain.head"),
    ],
    ids=["edit-a-byte", "reorder", "delete", "truncate"],
)
def test_record_verify_names_the_first_bad_entry(record_file, tmp_path, change, expected):
    proc = firebreak("record", "verify", str(_tampered(record_file, tmp_path, change)))
    assert proc.returncode == 1
    assert proc.stderr.startswith("TAMPERED ") and expected in proc.stderr


def test_a_byte_edited_in_the_file_itself_is_caught(record_file, tmp_path):
    raw = record_file.read_bytes()
    offset = raw.index(b'"replica_stop"') + 3
    edited = tmp_path / "edited.json"
    edited.write_bytes(raw[:offset] + bytes([raw[offset] ^ 1]) + raw[offset + 1 :])
    proc = firebreak("record", "verify", str(edited))
    assert proc.returncode == 1 and "was edited" in proc.stderr


@pytest.mark.parametrize("template", ["initial", "update", "resolution", "postmortem"])
@pytest.mark.parametrize("fmt", ["md", "txt"])
def test_report_renders_a_real_record(record_file, template, fmt):
    proc = firebreak("report", str(record_file), "--template", template, "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert "INC-CLI" in proc.stdout and "[TO BE FILLED: " in proc.stdout


def test_report_refuses_a_tampered_record(record_file, tmp_path):
    proc = firebreak("report", str(_tampered(record_file, tmp_path, _flip_a_byte)))
    assert proc.returncode == 1 and "was edited" in proc.stderr


@pytest.mark.parametrize(
    ("severity", "code"), [("SEV1", 11), ("SEV2", 12), ("SEV3", 13), ("SEV4", 14), ("none", 0)]
)
def test_triage_prints_the_table_and_exits_by_severity(severity, code):
    env = {"FIREBREAK_PLAYBOOK_DIR": str(PLAYBOOKS / "triage_fixture")}
    proc = firebreak(
        "triage",
        "-i",
        str(INVENTORY),
        "-e",
        json.dumps({"triage_fixture_severity": severity}),
        env=env,
    )
    assert proc.returncode == code, proc.stderr
    assert re.search(
        r"^replica\s+status\s+view\s+op\s+commit\s+lag\s+checksum failures$", proc.stdout, re.M
    )
    assert re.search(r"^replica-2\s+state_transfer\s+4\s+118\s+117\s+3\s+3$", proc.stdout, re.M)
    if severity == "none":
        assert "suspected failure mode: none (healthy)" in proc.stdout
    else:
        assert (
            "suspected failure mode: FM-003 Data Corruption Detected (runbook fm003_corruption)"
        ) in proc.stdout
        assert "evidence: replica-2 vsr_checksum_failures_total=3" in proc.stdout
    proc = firebreak(
        "triage",
        "-i",
        str(INVENTORY),
        "--json",
        "-e",
        json.dumps({"triage_fixture_severity": severity}),
        env=env,
    )
    data = json.loads(proc.stdout)
    assert proc.returncode == code and data["exit_code"] == code and data["error"] is None


def test_triage_without_a_triage_playbook_is_a_clear_error(tmp_path):
    proc = firebreak("triage", "-i", str(INVENTORY), env={"FIREBREAK_PLAYBOOK_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "unknown playbook 'triage'" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_cancels_the_run_and_leaves_nothing_running(sig):
    marker = f"fb-cli-sigint-{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [
            FIREBREAK,
            "run",
            str(PLAYBOOKS / "selftest_sleep.yml"),
            "-i",
            str(INVENTORY),
            "-e",
            f"selftest_marker={marker}",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not running(marker):
            assert time.monotonic() < deadline, "the sleep task never started"
            time.sleep(0.2)
        proc.send_signal(sig)
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # cancel it the way a person would, then give up
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert proc.returncode == 130
    assert json.loads(out)["status"] == "canceled"
    assert not running(marker)


def test_sigterm_to_a_rehearsal_takes_its_lab_and_workload_down():
    """A rehearsal stopped by SIGTERM (systemd, AWX, a CI timeout) cleans up as after a failure:
    no replica, node exporter or workload process of its lab, no lab dir; it says canceled."""
    before = set(paths.labs_dir().glob("REH-*")) if paths.labs_dir().exists() else set()
    proc = subprocess.Popen(
        [FIREBREAK, "rehearse", "fm005", "--mode", "processes", "--net", "97"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lab_dirs: set[Path] = set()
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("== workload: ok"):
                break
        assert seen and seen[-1].startswith("== workload: ok"), "".join(seen)
        lab_dirs = set(paths.labs_dir().glob("REH-*")) - before
        assert len(lab_dirs) == 1 and leftover_pids(next(iter(lab_dirs))), lab_dirs
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for d in lab_dirs:  # whatever the outcome, nothing of it stays for the next test
            clean_up(d)
    assert proc.returncode == 130, (out, err)
    assert "rehearsal fm005_replica_crash: canceled (" in out, out
    (lab_dir,) = lab_dirs
    assert leftover_pids(lab_dir) == [] and not lab_dir.exists()


def test_run_shows_the_escalations_with_the_contacts_table(tmp_path):
    contacts = tmp_path / "contacts.yml"
    contacts.write_text("manager on-call:\n  name: Bob Johnson\n  phone: +1-555-0100\n")
    proc = firebreak(
        "run",
        str(PLAYBOOKS / "selftest_incident.yml"),
        "-i",
        str(INVENTORY),
        "--incident-id",
        "INC-ESC",
        "--incident-dir",
        str(tmp_path),
        "-e",
        "firebreak_severity=SEV1 firebreak_incident_state=detected",
        env={"FIREBREAK_CONTACTS": str(contacts)},
    )
    assert proc.returncode == 0, proc.stderr
    # a SEV1 pages the manager at the detection: overdue as soon as it is shown, once
    assert proc.stdout.count("ESCALATE now") >= 1
    assert "manager on-call (Bob Johnson, +1-555-0100)" in proc.stdout
    assert re.search(r"^escalation \d\d:\d\d UTC  pending\s+secondary on-call", proc.stdout, re.M)
    assert proc.stdout.count("ESCALATE now") == len(set(re.findall(r"ESCALATE now.*", proc.stdout)))


def test_run_refuses_a_bad_contacts_table_before_it_starts(tmp_path):
    contacts = tmp_path / "contacts.yml"
    contacts.write_text("- not a table\n")
    proc = firebreak(
        "run",
        str(PLAYBOOKS / "selftest_ok.yml"),
        "-i",
        str(INVENTORY),
        env={"FIREBREAK_CONTACTS": str(contacts)},
    )
    assert proc.returncode == 2 and "contacts table" in proc.stderr
    assert not PROGRESS.findall(proc.stdout)  # nothing ran
