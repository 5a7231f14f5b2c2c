"""Live progress for people: one line per task result, as it finishes."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TextIO

from firebreak.runner import TaskResult

_LABELS = {
    "ok": "ok",
    "changed": "changed",
    "failed": "FAILED",
    "unreachable": "UNREACHABLE",
    "skipped": "skipped",
}


class ProgressPrinter:
    """Pass as `on_task` to run_playbook: `HH:MM:SS phase host task status (duration)`."""

    def __init__(self, stream: TextIO | None = None, show_skipped: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.show_skipped = show_skipped

    def __call__(self, task: TaskResult) -> None:
        if task.status == "skipped" and not self.show_skipped:
            return
        self.stream.write(format_line(task) + "\n")
        self.stream.flush()


def format_line(task: TaskResult, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%H:%M:%S")
    label = _LABELS.get(task.status, task.status)
    if task.ignored:
        label += " (ignored)"
    took = f" {task.duration:.1f}s" if task.duration is not None else ""
    line = f"{stamp}  {task.phase or '-':<10} {task.host:<16} {task.task}  {label}{took}"
    if task.failed and task.message:
        line += f": {task.message.splitlines()[0][:200]}"
    return line
