"""Run the collection's playbooks through ansible-runner and return what every task did.

One private data dir per run, ``<runs dir>/<UTC time>-<run id>`` (the runs dir is
``$FIREBREAK_RUNS_DIR``, default ``<tmp>/firebreak-runs``; the newest ``$FIREBREAK_KEEP_RUNS``,
default 20, are kept), ``quiet``, ``suppress_env_files``, a timeout, and an event handler that
turns runner events into typed results.

What is private: the runs dir is the user's own, mode 0700 (created so; one that is a symlink,
not the user's, or open to group or others is refused before anything is written), and so is
every run dir. Extra vars (which can carry passwords) go to ``<run dir>/vars/extra_vars.json``
(0600, in a 0700 dir), passed as ``-e @file`` so that ansible-runner's ``artifacts/<id>/command``
holds the path and never the values; the file is removed when the run ends. A run holds a lock
on its run dir while it lives: a wrapper killed with SIGKILL cannot remove its file, and the
next run removes the ``vars`` dir of every run dir that nobody holds any more.

A run stopped on its timeout or cancelled never reaches its roles' ``always:`` (lock release,
record phase): the wrapper appends a ``run_killed`` note to its incident record, with the tasks
it saw finish, those cut off, and the remediation lock the run leaves (docs/record.md).
"""

from __future__ import annotations

import collections
import configparser
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner

from firebreak.collection import module_utils

_lock_impl = module_utils("remediation_lock")

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"
# Where short names resolve; FIREBREAK_PLAYBOOK_DIR points elsewhere (tests, a site's copy).
PLAYBOOK_DIR = REPO_ROOT / "playbooks"
COLLECTION_PREFIX = "firebreak.incident."
RUN_MARKER_ENV = _lock_impl.RUN_MARKER_ENV  # inherited by every process of a run; see _sweep()
RUNS_DIR_ENV = "FIREBREAK_RUNS_DIR"
KEEP_RUNS_ENV = "FIREBREAK_KEEP_RUNS"
DEFAULT_KEEP_RUNS = 20
VARS_DIR = "vars"  # in a run dir: the extra-vars file, while the run lives
PHASES = (
    "preflight",
    "diagnose",
    "decide",
    "act",
    "verify",
    "record",
    "inject",
    "detect",
    "remediate",
    "workload",
)
STATUSES = ("successful", "failed", "timeout", "canceled")
RUN_DIR_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{32}$")
RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


class FirebreakError(Exception):
    """An error the CLI reports on one line (exit 2)."""


class PlaybookNotFound(FirebreakError):
    pass


class InventoryNotFound(FirebreakError):
    pass


@dataclass
class TaskResult:
    host: str
    play: str | None
    role: str | None
    task: str
    action: str | None
    phase: str | None
    status: str  # ok, changed, failed, unreachable, skipped
    changed: bool
    failed: bool
    ignored: bool  # failed under ignore_errors
    message: str | None
    duration: float | None
    start: str | None
    end: str | None
    result: dict[str, Any]  # the values the module returned (internal _ansible_* keys dropped)


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class RunResult:
    run_id: str
    playbook: str
    status: str  # successful, failed, timeout, canceled
    rc: int | None
    started_at: str
    finished_at: str
    duration: float
    check: bool
    stats: dict[str, HostStats]
    tasks: list[TaskResult]
    private_data_dir: str
    error: str | None = None  # what ansible-playbook printed when it failed before any task
    leftover_killed: list[int] = field(default_factory=list)
    record_path: str | None = None

    @property
    def failed_tasks(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.failed and not t.ignored]

    @property
    def unreachable_hosts(self) -> list[str]:
        return sorted({t.host for t in self.tasks if t.status == "unreachable"})

    @property
    def all_unreachable(self) -> bool:
        """True when hosts were contacted and none of them answered."""
        hosts = {t.host for t in self.tasks}
        return bool(hosts) and hosts == set(self.unreachable_hosts)

    def facts(self, name: str, host: str | None = None) -> Any:
        """The last value a task set for fact `name` (set_fact / ansible_facts), or None."""
        value = None
        for task in self.tasks:
            if host is not None and task.host != host:
                continue
            facts = task.result.get("ansible_facts")
            if isinstance(facts, dict) and name in facts:
                value = facts[name]
        return value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_tasks"] = [asdict(t) for t in self.failed_tasks]
        data["unreachable_hosts"] = self.unreachable_hosts
        return data


def utc_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def resolve_playbook(name: str | os.PathLike[str]) -> Path:
    """A path, a short name (fm003_corruption) or an FQCN (firebreak.incident.fm003_corruption)."""
    text = os.fspath(name)
    candidate = Path(text).expanduser()
    if candidate.suffix in (".yml", ".yaml") or os.sep in text:
        if candidate.is_file():
            return candidate.resolve()
        raise PlaybookNotFound(f"playbook not found: {text}")
    short = text.removeprefix(COLLECTION_PREFIX)
    playbook_dir = Path(os.environ.get("FIREBREAK_PLAYBOOK_DIR") or PLAYBOOK_DIR)
    if not re.fullmatch(r"[A-Za-z0-9_]+", short):
        raise PlaybookNotFound(f"unknown playbook {text!r}: not a path, short name or FQCN")
    for suffix in (".yml", ".yaml"):
        path = playbook_dir / f"{short}{suffix}"
        if path.is_file():
            return path
    known = ", ".join(sorted(p.stem for p in playbook_dir.glob("*.y*ml"))) or "none"
    raise PlaybookNotFound(
        f"unknown playbook {text!r} (no {playbook_dir.name}/{short}.yml; known: {known})"
    )


def default_inventory() -> str | None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ANSIBLE_CFG)
    value = parser.get("defaults", "inventory", fallback=None)
    if not value:
        return None
    return str((REPO_ROOT / value).resolve()) if not os.path.isabs(value) else value


def resolve_inventory(inventory: str | os.PathLike[str] | None) -> str:
    """The inventory path to pass, checked to exist (a 'host1,host2,' list passes as is)."""
    if inventory is None:
        configured = default_inventory()
        if configured is None or not os.path.exists(configured):
            raise InventoryNotFound(
                f"no inventory: pass -i INVENTORY (ansible.cfg names {configured}, which does "
                "not exist)"
            )
        return configured
    text = os.fspath(inventory)
    if "," in text:
        return text
    if not os.path.exists(text):
        raise InventoryNotFound(f"inventory not found: {text}")
    return str(Path(text).resolve())


def ansible_playbook_binary() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if not found:
        raise FirebreakError("ansible-playbook not found beside the Python or on PATH")
    return found


def _phase(role: str | None, task_path: str | None, task: str) -> str | None:
    """The role's phase: the task file (roles/x/tasks/diagnose.yml -> diagnose), else a phase
    word in the task name ('fm003 | diagnose | read metrics')."""
    if task_path:
        path = task_path.rsplit(":", 1)[0]
        parts = Path(path).parts
        stem = Path(path).stem
        if "tasks" in parts and stem != "main":
            return stem
    for segment in (s.strip().lower() for s in task.split("|")):
        if segment in PHASES:
            return segment
    return None


def _clean_result(res: Any) -> dict[str, Any]:
    if not isinstance(res, dict):
        return {}
    return {k: v for k, v in res.items() if not k.startswith("_ansible") and k != "invocation"}


def _message(res: dict[str, Any], status: str) -> str | None:
    if status == "ok" or status == "changed":
        return res.get("msg") if isinstance(res.get("msg"), str) else None
    for key in ("msg", "stderr", "reason", "exception"):
        value = res.get(key)
        if value:
            return value if isinstance(value, str) else json.dumps(value)
    if res.get("results"):
        for item in res["results"]:
            if isinstance(item, dict) and item.get("failed"):
                return _message(_clean_result(item), status)
    return None


class _Collector:
    """The event handler: events in, TaskResults and stats out."""

    def __init__(self, on_task: Callable[[TaskResult], None] | None) -> None:
        self.on_task = on_task
        self.tasks: list[TaskResult] = []
        self.started: list[tuple[str, str]] = []  # (host, task) of every runner_on_start
        self.stats: dict[str, HostStats] = {}
        self.lines: collections.deque[str] = collections.deque(maxlen=200)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        res = data.get("res")
        if isinstance(res, dict) and ("censored" in res or res.get("_ansible_no_log")):
            # ansible-core 2.19 keeps `exception` in a no_log result and prints its message
            # ("[ERROR]: Task failed: Action failed: <msg>") to stdout: the secret would reach
            # the event's stdout. The structured result is censored; the text goes too.
            event["stdout"] = f"{kind}: [{data.get('host')}] (output hidden: no_log)"
        for line in (event.get("stdout") or "").splitlines():
            if line.strip():
                self.lines.append(line.strip())
        if kind == "runner_on_start":
            self.started.append((data.get("host") or "?", data.get("task") or "?"))
        elif kind in RESULT_EVENTS:
            self._task(RESULT_EVENTS[kind], data)
        elif kind == "playbook_on_stats":
            self._stats(data)
        return True  # keep the event in the artifacts

    def _task(self, status: str, data: dict[str, Any]) -> None:
        res = _clean_result(data.get("res"))
        changed = bool(res.get("changed"))
        failed = status in ("failed", "unreachable")
        if status == "ok" and changed:
            status = "changed"
        duration = data.get("duration")
        task_name = data.get("task") or data.get("task_action") or "?"
        result = TaskResult(
            host=data.get("host") or "?",
            play=data.get("play"),
            role=data.get("role") or None,
            task=task_name,
            action=data.get("resolved_action") or data.get("task_action"),
            phase=_phase(data.get("role"), data.get("task_path"), task_name),
            status=status,
            changed=changed,
            failed=failed,
            ignored=bool(data.get("ignore_errors")) and status == "failed",
            message=_message(res, status),
            duration=float(duration) if duration is not None else None,
            start=data.get("start"),
            end=data.get("end"),
            result=res,
        )
        self.tasks.append(result)
        if self.on_task is not None:
            self.on_task(result)

    def _stats(self, data: dict[str, Any]) -> None:
        keys = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failures",
            "dark": "unreachable",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        for src, dst in keys.items():
            for host, count in (data.get(src) or {}).items():
                setattr(self.stats.setdefault(host, HostStats()), dst, int(count))


def _processes_with_marker(run_id: str) -> list[int]:
    """PIDs of live processes whose environment carries this run's marker."""
    return _lock_impl.processes_with_env(RUN_MARKER_ENV, run_id, (os.getpid(),))


def _kill_run(run_id: str) -> list[int]:
    killed = []
    for pid in _processes_with_marker(run_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _sweep(run_id: str, attempts: int = 20) -> list[int]:
    """Kill what is left of a run, until nothing carries its marker."""
    killed: list[int] = []
    for _ in range(attempts):
        pids = _kill_run(run_id)
        if not pids:
            break
        killed += pids
        time.sleep(0.05)
    return killed


class _Watchdog:
    """ansible-runner's cancel callback, polled every pexpect_timeout.

    Why not runner's own `timeout`: it SIGKILLs the ansible-playbook process group, but
    ansible-core 2.19 workers call setsid(), so they and the modules they run (a `sleep 300`)
    survive, orphaned, holding the pty open. Every process of the run inherits the
    FIREBREAK_RUN_ID marker in its environment; the watchdog kills them all by that marker."""

    def __init__(self, run_id: str, timeout: float | None, cancel: threading.Event | None):
        self.run_id = run_id
        self.deadline = time.monotonic() + timeout if timeout else None
        self.cancel = cancel
        self.timed_out = False
        self.canceled = False
        self.killed: list[int] = []

    def __call__(self) -> bool:
        if self.timed_out or self.canceled:
            return True
        if self.cancel is not None and self.cancel.is_set():
            self.canceled = True
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        else:
            return False
        self.killed += _sweep(self.run_id)
        return True


def default_runs_dir() -> Path:
    """The runs dir when $FIREBREAK_RUNS_DIR is not set."""
    return Path(tempfile.gettempdir()) / "firebreak-runs"


def runs_dir() -> Path:
    """Where the runs' private data dirs (ansible-runner's artifacts) are kept."""
    env = os.environ.get(RUNS_DIR_ENV)
    return Path(env) if env else default_runs_dir()


def private_runs_dir() -> Path:
    """``runs_dir()``, created 0700 when missing. FirebreakError, before anything is written
    in it, when it is a symlink, not a directory, not the current user's, or open to group
    or others: who can read it reads every run's artifacts, who can write it can swap them."""
    root = runs_dir()
    root.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    info = root.lstat()
    mode = stat.S_IMODE(info.st_mode)
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"is owned by uid {info.st_uid}, not by you (uid {os.geteuid()})"
    elif mode & 0o077:
        problem = f"is open to group or others (mode {mode:04o})"
    if problem:
        raise FirebreakError(
            f"runs dir {root} {problem}: it must be your own private directory (mode 0700); "
            f"fix it, or set {RUNS_DIR_ENV} to another path"
        )
    return root


@contextlib.contextmanager
def _extra_vars_file(run_dir: Path, text: str) -> Iterator[Path]:
    """``<run dir>/vars/extra_vars.json`` (0600, in a 0700 dir) holding ``text`` while the
    run lives, removed after; meanwhile the run holds a lock on its run dir (the kernel drops
    it if the wrapper is killed: see _clear_dead_vars)."""
    lock = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        directory = run_dir / VARS_DIR
        directory.mkdir(mode=0o700)
        try:
            path = directory / "extra_vars.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            yield path
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    finally:
        os.close(lock)


def _clear_dead_vars(root: Path) -> None:
    """Remove the ``vars`` dir of every run dir whose run is gone (nobody holds its lock):
    what a wrapper killed with SIGKILL could not remove itself."""
    for directory in root.glob(f"*/{VARS_DIR}"):
        if not RUN_DIR_RE.match(directory.parent.name):
            continue
        lock = os.open(directory.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(directory, ignore_errors=True)
        except BlockingIOError:
            pass  # a live run
        finally:
            os.close(lock)


def keep_runs() -> int:
    raw = os.environ.get(KEEP_RUNS_ENV, "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_KEEP_RUNS
    except ValueError:
        raise FirebreakError(f"{KEEP_RUNS_ENV} must be a whole number, got {raw!r}") from None


def _prune_runs(root: Path, keep: int, current: Path) -> list[Path]:
    """Remove all but the newest ``keep`` run dirs (by name: they start with their UTC time)."""
    runs = sorted(p for p in root.iterdir() if p.is_dir() and RUN_DIR_RE.match(p.name))
    removed = []
    for old in runs[: max(0, len(runs) - keep)]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    return removed


def _run_variables(
    run_id: str,
    incident_id: str | None,
    incident_dir: str | os.PathLike[str] | None,
    extra_vars: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The run's extra vars: its id, the record convention's, then the caller's (they win)."""
    variables: dict[str, Any] = {"firebreak_run_id": run_id}
    if incident_id:
        variables["firebreak_incident_id"] = incident_id
    if incident_dir:
        variables["firebreak_incident_dir"] = str(Path(incident_dir).resolve())
        # Evidence beside the record it belongs to (the roles' own default, for a bare
        # ansible-playbook run, is <checkout>/evidence); an explicit -e wins.
        variables["firebreak_evidence_dir"] = str(Path(incident_dir).resolve() / "evidence")
    variables.update(extra_vars or {})
    return variables


def _options(tags: Iterable[str] | None, skip_tags: Iterable[str] | None, check: bool) -> list:
    """ansible-playbook's --tags, --skip-tags and --check, as asked."""
    options = []
    if tags:
        options += ["--tags", ",".join(tags)]
    if skip_tags:
        options += ["--skip-tags", ",".join(skip_tags)]
    if check:
        options.append("--check")
    return options


def _run_env(run_id: str, run_tmp: Path, binary_dir: Path) -> dict[str, str]:
    """The environment ansible-playbook runs in."""
    return {
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        "TMPDIR": str(run_tmp),
        RUN_MARKER_ENV: run_id,
        _lock_impl.WRAPPER_PID_ENV: str(os.getpid()),  # named in the remediation lock
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # The venv's ansible-playbook first (runner's `binary=` would switch it to raw mode).
        "PATH": os.pathsep.join([str(binary_dir), os.environ["PATH"]]),
    }


def _status(runner_status: str | None, watchdog: _Watchdog) -> str:
    """The run's status: the watchdog's verdict (timeout, canceled) over runner's."""
    if watchdog.timed_out:
        return "timeout"
    if watchdog.canceled:
        return "canceled"
    return runner_status if runner_status in STATUSES else "failed"


def _record_path(tasks: list[TaskResult]) -> str | None:
    """The incident record the run's last incident_record task wrote, if any."""
    path = None
    for task in tasks:
        if task.action and task.action.endswith("incident_record") and task.result.get("path"):
            path = task.result["path"]
    return path


def run_playbook(
    playbook: str | os.PathLike[str],
    *,
    inventory: str | os.PathLike[str] | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    skip_tags: Iterable[str] | None = None,
    limit: str | None = None,
    check: bool = False,
    timeout: float | None = None,
    incident_id: str | None = None,
    incident_dir: str | os.PathLike[str] | None = None,
    on_task: Callable[[TaskResult], None] | None = None,
    cancel: threading.Event | None = None,
    verbosity: int = 0,
) -> RunResult:
    """Run one playbook; the result says what every task did, on which host, with what values.

    `incident_id` / `incident_dir` set the record convention's firebreak_incident_id /
    firebreak_incident_dir (and firebreak_evidence_dir = <incident_dir>/evidence); every run
    passes its own firebreak_run_id."""
    path = resolve_playbook(playbook)
    inventory_arg = resolve_inventory(inventory)
    run_id = uuid.uuid4().hex
    keep = keep_runs()
    variables = _run_variables(run_id, incident_id, incident_dir, extra_vars)
    variables_text = json.dumps(variables)
    binary_dir = Path(ansible_playbook_binary()).parent
    root = private_runs_dir()
    _clear_dead_vars(root)
    private_data_dir = str(root / f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{run_id}")
    os.mkdir(private_data_dir, 0o700)

    collector = _Collector(on_task)
    watchdog = _Watchdog(run_id, timeout, cancel)
    started_at, t0 = utc_now(), time.monotonic()
    # The run's own temp dir: what a killed module leaves there (AnsiballZ payload dirs of a
    # local task, under a timeout or a cancel) goes with the run dir, never into /tmp for ever.
    run_tmp = Path(private_data_dir) / "tmp"
    run_tmp.mkdir(mode=0o700)
    env = _run_env(run_id, run_tmp, binary_dir)
    with _extra_vars_file(Path(private_data_dir), variables_text) as vars_file:
        runner = _ansible_runner_run(
            private_data_dir,
            path,
            inventory_arg,
            limit,
            ["-e", f"@{vars_file}", *_options(tags, skip_tags, check)],
            env,
            run_id,
            timeout,
            collector,
            watchdog,
            verbosity,
        )
    status = _status(runner.status, watchdog)
    # Async tasks of a finished run are left alone; a stopped run leaves nothing behind.
    leftovers = watchdog.killed + (_sweep(run_id) if status in ("timeout", "canceled") else [])
    finished_at = utc_now()
    result = RunResult(
        run_id=run_id,
        playbook=str(path),
        status=status,
        rc=runner.rc,
        started_at=started_at,
        finished_at=finished_at,
        duration=round(time.monotonic() - t0, 3),
        check=check,
        stats=collector.stats,
        tasks=collector.tasks,
        private_data_dir=private_data_dir,
        leftover_killed=leftovers,
    )
    if status == "failed" and not result.tasks:
        result.error = _error_text(collector.lines)
    _prune_runs(root, keep, Path(private_data_dir))
    result.record_path = _record_path(result.tasks)
    if status in ("timeout", "canceled") and not check:
        _record_kill_or_say_why(result, collector, variables)
    return result


def _ansible_runner_run(
    private_data_dir: str,
    path: Path,
    inventory: str | None,
    limit: str | None,
    cmdline: list[str],
    env: dict[str, str],
    run_id: str,
    timeout: float | None,
    collector: _Collector,
    watchdog: _Watchdog,
    verbosity: int,
) -> Any:
    """ansible_runner.run, quiet, its output and env files suppressed, stopped by the watchdog."""
    return ansible_runner.run(
        private_data_dir=private_data_dir,
        project_dir=str(REPO_ROOT),
        playbook=str(path),
        inventory=inventory,
        limit=limit,
        cmdline=" ".join(_quote(a) for a in cmdline),
        envvars=env,
        ident=run_id,
        quiet=True,
        suppress_env_files=True,
        # Ansible's raw text output stays in the (scrubbed) events only: see _Collector.
        suppress_output_file=True,
        # A backstop only: the watchdog enforces the timeout (see _Watchdog).
        timeout=int(timeout) + 30 if timeout else None,
        # How often runner checks the timeout and the cancel flag (default 5 s).
        settings={"pexpect_timeout": 0.2, "suppress_ansible_output": True},
        event_handler=collector,
        cancel_callback=watchdog,
        verbosity=verbosity or None,
    )


def _record_kill_or_say_why(
    result: RunResult, collector: _Collector, variables: Mapping[str, Any]
) -> None:
    """_record_kill; when the record cannot take it, the result's error says why."""
    from firebreak.record import RecordError

    try:
        _record_kill(result, collector, variables)
    except (RecordError, OSError) as exc:  # the run's own result must still come back
        result.error = f"the kill could not be appended to the incident record: {exc}"


def _record_kill(result: RunResult, collector: _Collector, variables: Mapping[str, Any]) -> None:
    """The run was killed: its roles' `always:` never ran. Append to its incident record what
    the wrapper saw: the tasks that started and finished, those cut off, the lock it leaves."""
    from firebreak import paths
    from firebreak.record import append_file, load_document

    lock = result.facts("remediation_lock_info") or {}
    if result.record_path:
        incident_dir, incident_id = os.path.split(result.record_path[: -len(".json")])
    else:
        incident_id = variables.get("firebreak_incident_id") or lock.get("incident_id")
        incident_dir = variables.get("firebreak_incident_dir") or lock.get("incident_dir")
        incident_dir = incident_dir or str(paths.incidents_dir())
    if not incident_id:
        return
    record = Path(incident_dir) / f"{incident_id}.json"
    cluster = (
        load_document(record).get("cluster")
        if record.is_file()
        else variables.get("firebreak_cluster") or lock.get("cluster") or "lab"
    )
    finished = [(t.host, t.task) for t in result.tasks]
    unfinished = list(collections.Counter(collector.started) - collections.Counter(finished))
    left = None
    if lock.get("path") and os.path.isdir(lock["path"]):
        owner = _lock_impl.read_owner(lock["path"])
        if owner and owner.get("run_id") == lock.get("run_id"):
            left = {"path": lock["path"], "cluster": lock.get("cluster"), "owner": owner}
    text = (
        f"the run was killed ({result.status}) after {result.duration:.1f} s: its always: steps "
        "(lock release, record) did not run"
        + (
            f"; it leaves the lock {left['path']}: `firebreak lock release {left['cluster']}` "
            "once the holder is gone"
            if left
            else ""
        )
    )
    event = {
        "type": "note",
        "at": result.finished_at,
        "action": "run_killed",
        "outcome": result.status,
        "detail": {
            "text": text,
            "playbook": result.playbook,
            "tasks_finished": [f"{t.host}: {t.task} ({t.status})" for t in result.tasks],
            "tasks_cut_off": [f"{h}: {t}" for h, t in unfinished],
            "lock_left": left,
            "processes_killed": len(result.leftover_killed),
        },
        "run_id": result.run_id,
    }
    append_file(incident_dir, incident_id, cluster, events_by_host={"controller": [event]})
    result.record_path = str(record)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _error_text(lines: Iterable[str]) -> str | None:
    """The ERROR! lines ansible-playbook printed (syntax errors, missing roles...)."""
    lines = list(lines)
    errors = [ln for ln in lines if ln.startswith(("ERROR", "[ERROR]"))]
    return (errors or lines[-3:] or [None])[0]
