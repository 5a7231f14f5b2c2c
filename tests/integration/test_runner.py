"""The wrapper against real ansible-playbook runs (localhost, connection local)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from firebreak import runner
from firebreak.runner import FirebreakError, InventoryNotFound, PlaybookNotFound, run_playbook

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _private_data_dirs_under_tmp_path(tmp_path, monkeypatch):
    """Each run's private data dir lands in pytest's tmp_path, not in /tmp for ever."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"


def _pids_with_cmdline(marker: str, *more: str) -> list[int]:
    """PIDs whose command line holds `marker` (and every one of `more`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if all(m.encode() in cmdline for m in (marker, *more)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_successful_run_carries_the_module_return_values():
    seen = []
    result = run_playbook(PLAYBOOKS / "selftest_ok.yml", inventory=INVENTORY, on_task=seen.append)
    assert (result.status, result.rc) == ("successful", 0)
    assert [t.task for t in seen] == [t.task for t in result.tasks]
    echo, fact, stat = result.tasks
    assert echo.action == "ansible.builtin.command" and echo.host == "localhost"
    assert echo.result["stdout"] == "selftest-marker-42" and echo.result["rc"] == 0
    assert fact.result["ansible_facts"] == {"selftest_answer": 18}
    assert result.facts("selftest_answer") == 18
    assert stat.result["stat"]["exists"] and len(stat.result["stat"]["checksum"]) == 64
    assert all(t.duration is not None and t.duration >= 0 for t in result.tasks)
    assert result.stats["localhost"].ok == 3 and result.stats["localhost"].failures == 0
    assert not any(k.startswith("_ansible") for t in result.tasks for k in t.result)


def test_a_failing_task_surfaces_host_task_and_message():
    result = run_playbook(PLAYBOOKS / "selftest_fail.yml", inventory=INVENTORY)
    assert result.status == "failed" and result.rc == 2
    (failed,) = result.failed_tasks
    assert failed.host == "localhost"
    assert failed.task == "Selftest | a task that fails with a known message"
    assert failed.message == "selftest failure message 7f3a"
    assert failed.action == "ansible.builtin.fail"
    assert "never reached" not in [t.task for t in result.tasks]
    assert result.stats["localhost"].failures == 1


def test_a_run_over_its_timeout_comes_back_as_timeout_and_leaves_nothing_running():
    marker = f"fb-timeout-{uuid.uuid4().hex}"
    t0 = time.monotonic()
    result = run_playbook(
        PLAYBOOKS / "selftest_sleep.yml",
        inventory=INVENTORY,
        timeout=3,
        extra_vars={"selftest_marker": marker, "selftest_sleep_seconds": 300},
    )
    elapsed = time.monotonic() - t0
    assert result.status == "timeout"
    assert elapsed < 20, f"took {elapsed:.1f}s to stop a run with a 3 s timeout"
    # The sleeping module child and the ansible workers (which setsid) are gone.
    time.sleep(0.5)
    assert _pids_with_cmdline(marker) == []
    assert runner._processes_with_marker(result.run_id) == []
    assert result.leftover_killed, "the sleep was running; something must have been killed"
    # The killed module's AnsiballZ payload dir stays in the run's own temp dir (pruned with
    # the run dir), not in the machine's /tmp.
    assert list(Path(result.private_data_dir, "tmp").glob("ansible_*_payload_*")), (
        "the killed command module left no payload dir in the run's temp dir"
    )


def test_a_canceled_run_comes_back_as_canceled_and_leaves_nothing_running():
    marker = f"fb-cancel-{uuid.uuid4().hex}"
    cancel = threading.Event()
    timer = threading.Timer(2.0, cancel.set)
    timer.start()
    try:
        result = run_playbook(
            PLAYBOOKS / "selftest_sleep.yml",
            inventory=INVENTORY,
            cancel=cancel,
            extra_vars={"selftest_marker": marker},
        )
    finally:
        timer.cancel()
    assert result.status == "canceled"
    time.sleep(0.5)
    assert _pids_with_cmdline(marker) == []


def test_check_mode_and_tags_reach_ansible_playbook():
    result = run_playbook(PLAYBOOKS / "selftest_ok.yml", inventory=INVENTORY, check=True)
    assert result.status == "successful" and result.check
    command = next(t for t in result.tasks if t.action == "ansible.builtin.command")
    assert command.status in ("skipped", "ok")  # command skips in check mode
    result = run_playbook(PLAYBOOKS / "selftest_ok.yml", inventory=INVENTORY, tags=["nothing"])
    assert result.status == "successful" and result.tasks == []


def test_playbook_names_resolve_by_path_short_name_and_fqcn():
    path = runner.REPO_ROOT / "playbooks" / "record_selftest.yml"
    assert runner.resolve_playbook("record_selftest") == path
    assert runner.resolve_playbook("firebreak.incident.record_selftest") == path
    assert runner.resolve_playbook(str(path)) == path
    with pytest.raises(PlaybookNotFound, match="unknown playbook 'fm999_nothing'"):
        run_playbook("fm999_nothing", inventory=INVENTORY)
    with pytest.raises(PlaybookNotFound):
        runner.resolve_playbook("../etc/passwd")


def test_a_missing_inventory_is_an_error_before_anything_runs(tmp_path):
    with pytest.raises(InventoryNotFound, match="inventory not found"):
        run_playbook(PLAYBOOKS / "selftest_ok.yml", inventory=tmp_path / "none.yml")


def test_an_unreachable_host_is_reported_as_such():
    result = run_playbook(
        PLAYBOOKS / "selftest_ping.yml", inventory=PLAYBOOKS / "inventory" / "unreachable.yml"
    )
    assert result.status == "failed"
    assert result.unreachable_hosts == ["replica-unreachable"] and result.all_unreachable
    assert result.stats["replica-unreachable"].unreachable == 1


def test_the_run_uses_the_repository_ansible_cfg_and_the_venv_ansible_playbook():
    result = run_playbook(PLAYBOOKS / "selftest_ok.yml", inventory=INVENTORY)
    command = next(Path(result.private_data_dir, "artifacts").glob("*/command")).read_text()
    assert str(runner.ANSIBLE_CFG) in command
    assert f'"cwd": "{runner.REPO_ROOT}"' in command
    assert str(Path(runner.ansible_playbook_binary()).parent) in command


def test_run_artifacts_are_kept_in_the_runs_dir_newest_first(tmp_path, monkeypatch):
    """Each run's artifacts under $FIREBREAK_RUNS_DIR; only the newest $FIREBREAK_KEEP_RUNS."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("FIREBREAK_RUNS_DIR", str(runs))
    monkeypatch.setenv("FIREBREAK_KEEP_RUNS", "2")
    runs.mkdir(mode=0o700)
    stray = runs / "notes-kept-by-an-operator"
    stray.mkdir()
    done = [run_playbook(PLAYBOOKS / "selftest_ping.yml", inventory=INVENTORY) for _ in range(3)]
    assert all(r.status == "successful" for r in done), [r.status for r in done]
    kept = sorted(p for p in runs.iterdir() if p != stray)
    assert [Path(r.private_data_dir) for r in done[1:]] == kept
    assert all(p.name.endswith(r.run_id) for p, r in zip(kept, done[1:], strict=True))
    assert next(kept[-1].glob("artifacts/*/job_events/*.json"), None) is not None
    assert stray.is_dir(), "a dir that is not a run's was pruned"

    monkeypatch.setenv("FIREBREAK_KEEP_RUNS", "many")
    with pytest.raises(FirebreakError, match="FIREBREAK_KEEP_RUNS"):
        run_playbook(PLAYBOOKS / "selftest_ping.yml", inventory=INVENTORY)
    assert sorted(p for p in runs.iterdir() if p != stray) == kept


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _tree(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob("*"))


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ("world-writable", "is open to group or others (mode 0777)"),
        ("group-readable", "is open to group or others (mode 0750)"),
        ("symlink", "is a symlink"),
        ("foreign", "is owned by uid"),
        ("file", "is not a directory"),
    ],
)
def test_a_runs_root_that_is_not_private_is_refused_and_nothing_is_written(
    tmp_path, monkeypatch, shape, words
):
    """$FIREBREAK_RUNS_DIR (or the default) that another user could read, replace or own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root = tmp_path / "runs"
    if shape == "symlink":
        root.symlink_to(elsewhere)
    elif shape == "file":
        root.write_text("")
    else:
        root.mkdir()
        os.chmod(root, {"world-writable": 0o777, "group-readable": 0o750}.get(shape, 0o700))
    if shape == "foreign":
        if os.geteuid() == 0:
            os.chown(root, 65534, 65534)
        else:
            root = Path("/")  # not ours (and not writable: nothing can land there either)
    monkeypatch.setenv(runner.RUNS_DIR_ENV, str(root))
    before = _tree(tmp_path)
    with pytest.raises(FirebreakError) as refused:
        run_playbook(PLAYBOOKS / "selftest_ok.yml", inventory=INVENTORY, extra_vars={"pw": "x"})
    message = str(refused.value)
    assert words in message and str(root) in message, message
    assert runner.RUNS_DIR_ENV in message  # says how to choose another one
    assert _tree(tmp_path) == before  # no run dir, no extra-vars file, anywhere


def test_extra_vars_are_written_0600_in_the_run_dir_and_removed_after(tmp_path, monkeypatch):
    canary = f"CANARY-{uuid.uuid4().hex}"
    root = tmp_path / "runs"  # missing: the run creates it, private
    monkeypatch.setenv(runner.RUNS_DIR_ENV, str(root))
    seen: dict = {}

    def look(_task):
        """While the play runs: the file its command line names with -e @."""
        if seen:
            return
        (command,) = root.glob("*/artifacts/*/command")
        argv = json.loads(command.read_text())["command"]
        path = Path(argv[argv.index("-e") + 1].removeprefix("@"))
        seen.update(path=path, text=path.read_text(), modes=[_mode(path), _mode(path.parent)])

    result = run_playbook(
        PLAYBOOKS / "selftest_ok.yml",
        inventory=INVENTORY,
        extra_vars={"selftest_secret": canary},
        on_task=look,
    )
    assert result.status == "successful"
    run_dir = Path(result.private_data_dir)
    assert canary in seen["text"], "not the file that carried the extra vars"
    assert seen["path"].is_relative_to(run_dir), f"{seen['path']} is outside {run_dir}"
    assert seen["modes"] == [0o600, 0o700]
    assert (_mode(run_dir), _mode(root)) == (0o700, 0o700)
    assert not seen["path"].exists(), "the extra-vars file outlived its run"


FIREBREAK = str(Path(sys.executable).parent / "firebreak")


def test_a_killed_wrapper_leaves_no_extra_vars_file_outside_its_run_dir(tmp_path):
    """kill -9 of `firebreak run` mid-play: the secret stays in the private run dir only."""
    canary, marker = f"CANARY-{uuid.uuid4().hex}", f"fb-kill9-{uuid.uuid4().hex}"
    shared = tmp_path / "shared-tmp"  # the wrapper's TMPDIR: what /tmp is for a real run
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if k != runner.RUNS_DIR_ENV}
    proc = subprocess.Popen(
        [
            *(FIREBREAK, "run", str(PLAYBOOKS / "selftest_sleep.yml"), "-i", str(INVENTORY)),
            *("-e", f"selftest_marker={marker} selftest_secret={canary}"),
        ],
        env={**env, "TMPDIR": str(shared)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dirs: list[Path] = []
    try:
        deadline = time.monotonic() + 60
        while not _pids_with_cmdline(marker, "time.sleep"):  # the play is in its sleeping task
            assert proc.poll() is None, f"firebreak run exited {proc.returncode} before the play"
            assert time.monotonic() < deadline, "the play never reached its sleeping task"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        root = shared / "firebreak-runs"  # the default runs root, under TMPDIR
        run_dirs = [p for p in root.glob("*") if runner.RUN_DIR_RE.match(p.name)]
        for run_dir in run_dirs:  # ansible-playbook outlives its killed wrapper
            runner._sweep(run_dir.name.rsplit("-", 1)[1])
    (run_dir,) = run_dirs
    outside = [p for p in _holding(shared, canary) if not p.is_relative_to(run_dir)]
    assert outside == [], f"the secret was left outside the run dir: {outside}"
    # what the killed wrapper could not remove is its extra-vars file, private
    (left,) = _holding(shared, canary)
    assert left.name == "extra_vars.json" and left.parent.parent == run_dir
    assert (_mode(left), _mode(left.parent)) == (0o600, 0o700)
    assert (_mode(run_dir), _mode(run_dir.parent)) == (0o700, 0o700)
    # the next run removes it: nobody holds the killed run's lock any more
    proc = subprocess.run(
        [FIREBREAK, "run", str(PLAYBOOKS / "selftest_ping.yml"), "-i", str(INVENTORY)],
        env={**env, "TMPDIR": str(shared)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _holding(shared, canary) == []
    assert run_dir.is_dir()  # the artifacts stay, to be pruned as usual


def _holding(directory: Path, secret: str) -> list[Path]:
    """The files under `directory` whose bytes hold `secret`."""
    return [p for p in directory.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
