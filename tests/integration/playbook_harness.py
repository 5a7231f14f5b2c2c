"""Module calls as a real playbook, run through the project's wrapper (firebreak.runner).

``run_tasks(tasks, workdir)`` writes one play (localhost, ``connection: local``, the venv's
Python) into the test's tmp dir and runs it with ``firebreak.runner.run_playbook``: ansible-runner,
the checkout's ansible.cfg, a private data dir. Every task is registered with ``ignore_errors``,
so one failing call does not stop the others; what each module returned is read from the
runner's task results (its events), never from a file the play writes. ``results[name]`` is
the module's values plus ``failed`` (from the runner's task status, see ``_returned``).

A task is a dict:

- ``name``: unique, letters, digits and ``_`` (it names the registered variable too);
- ``module``: the FQCN (or pass ``module=`` to ``run_tasks`` as the default);
- ``args``: the module's arguments;
- ``check_mode``: run this task in check mode;
- ``timed``: the test asserts on the task's wall time, ``PlaybookRun.seconds[name]``, the
  duration the runner reports for the task;
- ``filter``: a filter (FQCN) the play applies to the registered result in a ``set_fact``
  task right after it; the value is ``PlaybookRun.filtered[name]``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firebreak.runner import RunResult, TaskResult, run_playbook

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TASK_KEYS = {"name", "module", "args", "check_mode", "timed", "filter"}
_FILTERED_FACT = "harness_filtered_"


@dataclass
class PlaybookRun:
    run: RunResult  # the wrapper's typed result: status, stats, every task
    results: dict[str, dict[str, Any]]  # task name -> the values the module returned, + failed
    tasks: dict[str, TaskResult]  # task name -> the runner's task result
    filtered: dict[str, Any] = field(default_factory=dict)  # task name -> filter(result)
    seconds: dict[str, float] = field(default_factory=dict)  # timed task -> its duration
    output: str = ""  # all text the run left in its artifacts (events, their stdout, command)
    playbook: Path | None = None
    artifacts: Path | None = None  # the run's private data dir, moved into the test's tmp dir


def _check(tasks: list[Mapping[str, Any]], module: str | None) -> None:
    seen: set[str] = set()
    for task in tasks:
        unknown = set(task) - _TASK_KEYS
        if unknown:
            raise ValueError(f"task {task.get('name')!r}: unknown keys {sorted(unknown)}")
        name = task.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"task name {name!r}: letters, digits and _ only")
        if name in seen:
            raise ValueError(f"task name {name!r} given twice")
        seen.add(name)
        if not (task.get("module") or module):
            raise ValueError(f"task {name!r}: no module")


def build_play(tasks: list[Mapping[str, Any]], module: str | None = None) -> list[dict]:
    """The playbook (a list of one play) for these tasks."""
    _check(tasks, module)
    play_tasks: list[dict[str, Any]] = []
    for task in tasks:
        name = task["name"]
        entry: dict[str, Any] = {
            "name": name,
            task.get("module") or module: dict(task.get("args") or {}),
            "register": f"r_{name}",
            "ignore_errors": True,
        }
        if task.get("check_mode"):
            entry["check_mode"] = True
        play_tasks.append(entry)
        if task.get("filter"):
            play_tasks.append(
                {
                    "name": f"{name} | filter",
                    "ansible.builtin.set_fact": {
                        f"{_FILTERED_FACT}{name}": f"{{{{ r_{name} | {task['filter']} }}}}"
                    },
                }
            )
    return [
        {
            "name": "harness",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "tasks": play_tasks,
        }
    ]


def _artifact_text(directory: Path) -> str:
    parts = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def _describe(run: RunResult, output: str) -> str:
    failed = [f"{t.task}: {t.message}" for t in run.failed_tasks]
    return (
        f"playbook {run.playbook}: status {run.status} (rc {run.rc}), error {run.error!r}, "
        f"failed tasks {failed}\n{output[-4000:]}"
    )


def _returned(task: TaskResult) -> dict[str, Any]:
    """What the module returned, as a registered variable shows it: Ansible drops ``failed``
    and ``skipped`` from the result it hands to callbacks; they come back from the event's
    kind (runner_on_failed, runner_on_skipped), as the runner reports it."""
    values = dict(task.result)
    values["failed"] = task.failed
    if task.status == "skipped":
        values["skipped"] = True
    return values


def run_tasks(
    tasks: Iterable[Mapping[str, Any]],
    workdir: Path,
    *,
    module: str | None = None,
    timeout: float = 300,
) -> PlaybookRun:
    """Run the tasks on localhost through firebreak.runner; fail loudly when the run did not
    complete (every task is ignore_errors: a module failure is data, not a run failure)."""
    tasks = list(tasks)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    play = build_play(tasks, module)
    index = len(list(workdir.glob("harness-play-*.yml")))
    playbook = workdir / f"harness-play-{index}.yml"
    playbook.write_text(json.dumps(play, indent=1), encoding="utf-8")

    run = run_playbook(playbook, inventory="localhost,", timeout=timeout)

    # Keep the run's private data dir (artifacts, job events) with the test's other files.
    artifacts = workdir / f"harness-run-{index}"
    shutil.move(run.private_data_dir, artifacts)
    output = _artifact_text(artifacts)
    if run.status != "successful":
        raise AssertionError(_describe(run, output))

    by_name: dict[str, TaskResult] = {}
    for result in run.tasks:
        if result.task in by_name:
            raise AssertionError(f"task {result.task!r} reported twice: {_describe(run, output)}")
        by_name[result.task] = result
    missing = [t["name"] for t in tasks if t["name"] not in by_name]
    if missing:
        raise AssertionError(f"no result for tasks {missing}: {_describe(run, output)}")

    for task in tasks:
        wanted, action = task.get("module") or module, by_name[task["name"]].action
        if action != wanted:
            raise AssertionError(f"task {task['name']!r} ran {action!r}, not {wanted!r}")
    names = [t["name"] for t in tasks]
    results = {name: _returned(by_name[name]) for name in names}
    filtered: dict[str, Any] = {}
    for task in tasks:
        if task.get("filter"):
            step = by_name.get(f"{task['name']} | filter")
            fact = f"{_FILTERED_FACT}{task['name']}"
            if step is None or step.failed or fact not in step.result.get("ansible_facts", {}):
                raise AssertionError(
                    f"filter of {task['name']!r} gave nothing: {_describe(run, output)}"
                )
            filtered[task["name"]] = step.result["ansible_facts"][fact]
    seconds: dict[str, float] = {}
    for task in tasks:
        if task.get("timed"):
            duration = by_name[task["name"]].duration
            if duration is None:
                raise AssertionError(f"the runner reported no duration for {task['name']!r}")
            seconds[task["name"]] = duration
    return PlaybookRun(
        run=run,
        results=results,
        tasks={name: by_name[name] for name in names},
        filtered=filtered,
        seconds=seconds,
        output=output,
        playbook=playbook,
        artifacts=artifacts,
    )
