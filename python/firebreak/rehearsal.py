"""Rehearsals: lab up, workload, inject, detect, remediate, verify, report, lab down.

A registry maps each failure mode to its runbook playbook and the lab fault that provokes it.
The lab is driven through its Python API (what ``firebreak lab ...`` runs), the runbooks through
:func:`firebreak.runner.run_playbook`; everything lands in one incident record, whose fault
start is the injection time (so MTTD is measured, not guessed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firebreak import paths, runner
from firebreak.collection import module_utils
from firebreak.comms import CommsError, render
from firebreak.record import RecordError, load
from firebreak.record import io as record_io
from firebreak.runner import FirebreakError, PlaybookNotFound, RunResult, TaskResult, utc_now

TRIAGE_PLAYBOOK = "triage"


@dataclass(frozen=True)
class Rehearsal:
    failure_mode: str  # the runbook's short name, e.g. fm003_corruption
    faults: tuple[tuple[str, ...], ...]  # `firebreak lab fault ...` argv, in order
    severity: str  # seed 000's severity for this failure mode
    description: str
    extra_vars: dict[str, Any] = field(default_factory=dict)
    lab_options: tuple[str, ...] = ()  # `firebreak lab up` options this rehearsal needs

    @property
    def playbook(self) -> str:
        return self.failure_mode

    @property
    def fm(self) -> str:
        """FM-003 for fm003_corruption, as triage reports it."""
        return "FM-" + self.failure_mode.split("_")[0][2:]


failure_modes = module_utils("failure_modes")


def _rehearsal(entry: dict[str, Any]) -> Rehearsal:
    """A registry entry as a rehearsal (``firebreak lab fault KIND --replica TARGET [ARG]``,
    FAULT_KINDS in firebreak.lab.backend)."""
    return Rehearsal(
        entry["slug"],
        tuple(tuple(fault) for fault in entry["fault"]),
        entry["severity"],
        entry["description"],
        extra_vars=dict(entry.get("rehearsal_vars") or {}),
        lab_options=tuple(entry["lab_options"]),
    )


# Seed 000's failure mode catalog, from the failure-mode registry (module_utils/failure_modes).
REGISTRY: dict[str, Rehearsal] = {
    r.failure_mode: r for r in (_rehearsal(e) for e in failure_modes.REGISTRY)
}


@dataclass
class Step:
    name: str
    status: str  # ok, failed
    started_at: str
    finished_at: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RehearsalResult:
    failure_mode: str
    incident_id: str
    status: str  # passed, failed, canceled (SIGINT/SIGTERM: the lab still comes down)
    steps: list[Step]
    record_path: str | None = None
    fault_started_at: str | None = None
    error: str | None = None  # why the rehearsal failed (the first failed step)
    report_path: str | None = None  # the post-mortem draft rendered from the record


def lookup(name: str) -> Rehearsal:
    short = name.removeprefix(runner.COLLECTION_PREFIX)
    if short in REGISTRY:
        return REGISTRY[short]
    by_number = [r for r in REGISTRY.values() if r.failure_mode.split("_")[0] == short.lower()]
    if len(by_number) == 1:
        return by_number[0]
    raise FirebreakError(f"unknown failure mode {name!r}; known: {', '.join(REGISTRY)}")


# Findings that must be gone after any remediation, whatever was rehearsed: quorum lost,
# view change stuck, corruption, a replica down. Latency (FM-004) is measured over the
# histograms' lifetime, so a loaded rehearsal machine may still show it; it is reported in the
# record but does not fail the rehearsal of another failure mode.
BLOCKING_MODES = failure_modes.blocking_ids()
WARM_UP_OPS = 20
WARM_UP_SECONDS = 60


def _found_modes(triage: dict[str, Any]) -> set[str]:
    """Every failure mode triage found: its verdict and each of its findings."""
    found = {f.get("fm") for f in triage.get("findings") or [] if isinstance(f, dict)}
    found.add(triage.get("failure_mode"))
    return {m for m in found if m and m != "none"}


def lab_available() -> bool:
    return importlib.util.find_spec("firebreak.lab.cli") is not None


# A rehearsal's containers lab: rh-replica-i on network firebreak-rehearse, 127.0.31.i.
REHEARSAL_PREFIX = "rh-"
# Triage looks for the injected fault this many times, this many seconds apart.
DETECT_ATTEMPTS = 3
DETECT_PAUSE_SECONDS = 5
REHEARSAL_NETWORK = "firebreak-rehearse"
REHEARSAL_NET = 31


def lab(*args: str, d: Path) -> dict[str, Any]:
    """What `firebreak lab ARGS` answers for the lab in ``d`` (its JSON when it prints JSON,
    else {"output": text}), done in this process through firebreak.lab's own functions.

    What the lab prints on the way (image builds, reclaimed stale labs) is kept out of the
    rehearsal's output, as the CLI's was; a failure is a FirebreakError in the lab's words."""
    from firebreak.lab import cli as lab_cli  # imported when used: the lab may be missing

    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):
            parsed = lab_cli.parse(list(args))
            return _as_answer(_LAB_CALLS[_lab_call_key(parsed)](lab_cli, parsed, d))
    except (Exception, SystemExit) as exc:  # what would have ended the CLI, whatever it is
        why = _lab_error(lab_cli, said, exc)
        raise FirebreakError(f"lab {' '.join(args)} failed: {why}") from exc


class _LabRefused(Exception):
    """A `lab` command's non-zero exit with its answer (what the CLI printed)."""


def _lab_call_key(args: Any) -> str:
    return f"workload {args.action}" if args.lab_cmd == "workload" else args.lab_cmd


def _lab_up(lab_cli: Any, args: Any, d: Path) -> dict[str, Any]:
    refusal = lab_cli.up_refusal(args)
    if refusal:
        raise _LabRefused(refusal)
    return {"output": lab_cli.up_line(lab_cli.up(args, d))}


def _lab_workload_check(lab_cli: Any, args: Any, d: Path) -> dict[str, Any]:
    result = lab_cli.workload.check(d, per_replica=args.per_replica)
    if not result["ok"]:  # the CLI's exit 1: its JSON answer, less the events it lists
        brief = {k: v for k, v in _as_answer(result).items() if not k.endswith("_events")}
        raise _LabRefused(json.dumps(brief))
    return result


def _lab_workload_start(lab_cli: Any, args: Any, d: Path) -> dict[str, Any]:
    pid = lab_cli.workload.start(d, rate=args.rate, streams=args.streams, readers=args.readers)
    return {"output": lab_cli.workload_started_line(pid)}


# The `lab` commands a rehearsal runs and what each answers (as `firebreak lab ... [--json]`).
_LAB_CALLS: dict[str, Callable[[Any, Any, Path], Any]] = {
    "up": _lab_up,
    "inventory": lambda cli, _args, d: {"output": str(cli.current_backend(d).inventory())},
    "status": lambda cli, _args, d: cli.current_backend(d).status(),
    "fault": lambda cli, args, d: cli.current_backend(d).fault(*cli.fault_request(args)),
    "workload start": _lab_workload_start,
    "workload stop": lambda cli, _args, d: {
        "output": "workload stopped" if cli.workload.stop(d) else "workload not running"
    },
    "workload check": _lab_workload_check,
    "down": lambda cli, _args, d: {"output": cli.down_line(d, cli.take_down(d))},
}


def _as_answer(value: Any) -> dict[str, Any]:
    """``value`` as the CLI's JSON gave it: a dict, else {"output": value}."""
    answer = json.loads(json.dumps(value))
    return answer if isinstance(answer, dict) else {"output": answer}


def _lab_error(lab_cli: Any, said: io.StringIO, exc: BaseException) -> str:
    """The lab's own error (its LabError's message, whole), else the last line the CLI's exit
    would have shown."""
    if isinstance(exc, _LabRefused):
        return str(exc)
    if isinstance(exc, lab_cli.LabError):
        why = str(exc)
    elif isinstance(exc, SystemExit) and isinstance(exc.code, str):
        why = exc.code
    elif isinstance(exc, SystemExit):  # argparse's: usage, then the error
        lines = said.getvalue().strip().splitlines()
        why = lines[-1] if lines else f"exit {exc.code}"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return why if len(why) <= 4000 else why[:4000] + " [...]"


def _lab_up_args(rehearsal: Rehearsal, mode: str, net: int | None) -> tuple[str, ...]:
    """`lab up` options of the rehearsal's own lab."""
    up_args = ("up", "--mode", mode) + (() if net is None else ("--net", str(net)))
    if mode == "containers":
        # Names of its own, apart from a `firebreak lab up` lab's (replica-i, firebreak-lab):
        # a rehearsal never takes over the operator's lab, and the leftovers of a killed
        # rehearsal are found (reclaimed, or named as still up) by the next one.
        up_args += ("--name-prefix", REHEARSAL_PREFIX, "--network", REHEARSAL_NETWORK)
        if net is None:
            up_args += ("--net", str(REHEARSAL_NET))
    return up_args + rehearsal.lab_options


def _check_preconditions(rehearsal: Rehearsal) -> None:
    """FirebreakError (a setup error) when a runbook or the lab is missing."""
    try:
        runner.resolve_playbook(rehearsal.playbook)
    except PlaybookNotFound as exc:
        raise FirebreakError(
            f"no runbook for {rehearsal.failure_mode}: playbooks/{rehearsal.playbook}.yml is "
            "missing"
        ) from exc
    try:
        runner.resolve_playbook(TRIAGE_PLAYBOOK)
    except PlaybookNotFound as exc:
        raise FirebreakError("no triage runbook: playbooks/triage.yml is missing") from exc
    if not lab_available():
        raise FirebreakError("lab not available: firebreak.lab.cli is not installed")


@dataclass
class _Rehearsing:
    """One rehearsal under way: its lab, its record, the steps done so far."""

    rehearsal: Rehearsal
    incident_dir: str | Path
    lab_dir: Path
    result: RehearsalResult
    on_task: Callable[[TaskResult], None] | None
    on_step: Callable[[Step], None] | None
    timeout: float
    cancel: threading.Event | None = None
    inventory: str = ""

    def canceled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def step(
        self, step_name: str, action: Callable[[], dict[str, Any]], cleanup: bool = False
    ) -> dict[str, Any]:
        """Run one step and note it; a step after a cancel is refused, unless it cleans up."""
        if self.canceled() and not cleanup:
            raise FirebreakError(f"canceled before step {step_name!r}")
        started = utc_now()
        try:
            detail = action()
        except FirebreakError as exc:
            self._done(Step(step_name, "failed", started, utc_now(), {"error": str(exc)}))
            raise FirebreakError(f"step {step_name!r} failed: {exc}") from exc
        self._done(Step(step_name, "ok", started, utc_now(), detail))
        return detail

    def _done(self, done: Step) -> None:
        self.result.steps.append(done)
        if self.on_step:
            self.on_step(done)

    def lab(self, *args: str) -> dict[str, Any]:
        return lab(*args, d=self.lab_dir)

    def run(self, playbook: str, record: bool = True, **extra: Any) -> RunResult:
        outcome = runner.run_playbook(
            playbook,
            inventory=self.inventory,
            incident_id=self.result.incident_id if record else None,
            incident_dir=self.incident_dir,
            extra_vars={"firebreak_fault_started_at": self.result.fault_started_at or "", **extra},
            on_task=self.on_task,
            timeout=self.timeout,
            cancel=self.cancel,
        )
        if record and outcome.record_path:
            self.result.record_path = outcome.record_path
        if outcome.status != "successful":
            failed = outcome.failed_tasks[:1]
            why = f"{failed[0].host}: {failed[0].task}: {failed[0].message}" if failed else ""
            raise FirebreakError(f"{playbook} {outcome.status} {why}".strip())
        return outcome

    def workload(self) -> dict[str, Any]:
        # A fault is injected into a cluster with history: every replica has committed
        # some acknowledged writes first (a corruption needs a committed entry to hit).
        started = self.lab("workload", "start")
        deadline = time.monotonic() + WARM_UP_SECONDS
        while True:
            rows = self.lab("status", "--json").get("output") or []
            commits = [r.get("commit") for r in rows if isinstance(r, dict)]
            if commits and all(isinstance(c, int) and c >= WARM_UP_OPS for c in commits):
                return {**started, "commits_before_fault": commits}
            if time.monotonic() > deadline:
                raise FirebreakError(
                    f"workload: replicas did not commit {WARM_UP_OPS} ops within "
                    f"{WARM_UP_SECONDS} s (commits {commits})"
                )
            time.sleep(0.5)

    def inject(self) -> dict[str, Any]:
        self.result.fault_started_at = utc_now()
        return {"faults": [self.lab("fault", *argv) for argv in self.rehearsal.faults]}

    def detect(self) -> dict[str, Any]:
        # A fault can take a moment to show (a lag grows, a disk fills): triage again, up to
        # DETECT_ATTEMPTS times, as an on-call engineer would look again.
        fm, found = self.rehearsal.fm, set()
        for attempt in range(DETECT_ATTEMPTS):
            if attempt:
                time.sleep(DETECT_PAUSE_SECONDS)
            triage = (
                self.run(TRIAGE_PLAYBOOK, firebreak_incident_state="detected").facts(
                    "firebreak_triage"
                )
                or {}
            )
            found = _found_modes(triage)
            if fm in found or self.rehearsal.playbook == triage.get("runbook"):
                return {
                    "failure_mode": triage.get("failure_mode"),
                    "severity": triage.get("severity"),
                    "triage_runs": attempt + 1,
                }
        raise FirebreakError(
            f"triage found {sorted(found) or 'nothing'}, not {fm} ({DETECT_ATTEMPTS} looks)"
        )

    def remediate(self) -> dict[str, Any]:
        return {"run": self.run(self.rehearsal.playbook, **self.rehearsal.extra_vars).status}

    def verify(self) -> dict[str, Any]:
        # Read-only check, not a new detection: it must not reopen or re-grade the
        # incident in its record (the resolution below carries its summary).
        triage = self.run(TRIAGE_PLAYBOOK, record=False).facts("firebreak_triage") or {}
        left = _found_modes(triage) & ({self.rehearsal.fm} | BLOCKING_MODES)
        if left:
            raise FirebreakError(f"still {sorted(left)} after remediation")
        # Stop writing first: a write acknowledged after its stream was read back would
        # look lost.
        self.lab("workload", "stop")
        # the history too, and every replica's own copy (the repaired one's included)
        check = self.lab("workload", "check", "--json", "--per-replica")
        if not check.get("ok", False):
            raise FirebreakError(f"workload check failed: {check}")
        self.declare_resolved(triage)
        return {"triage": triage.get("summary"), "workload": check}

    def declare_resolved(self, triage: dict[str, Any]) -> None:
        """The rehearsal driver is the responder here: it declares the incident resolved,
        through the same chain code the record phase uses."""
        record_io.append_file(
            self.incident_dir,
            self.result.incident_id,
            "",
            events_by_host={
                "localhost": [
                    {
                        "type": "state",
                        "outcome": "resolved",
                        "phase": "verify",
                        "detail": {"by": "firebreak rehearse", "triage": triage.get("summary")},
                    }
                ]
            },
        )

    def take_lab_down(self, own_lab_dir: bool) -> None:
        try:
            self.step("lab down", lambda: self.lab("down"), cleanup=True)
            if own_lab_dir:
                shutil.rmtree(self.lab_dir, ignore_errors=True)
        except FirebreakError as exc:
            self.result.status = "failed"
            self.result.error = self.result.error or str(exc)

    def write_report(self) -> None:
        """The record's path and its post-mortem draft, when the record exists."""
        incident_id = self.result.incident_id
        record = Path(self.incident_dir) / f"{incident_id}.json"
        if not record.is_file():
            return
        self.result.record_path = str(record)
        try:
            report = Path(self.incident_dir) / f"{incident_id}.postmortem.md"
            report.write_text(render(load(record), "postmortem", "md"), encoding="utf-8")
            self.result.report_path = str(report)
        except (RecordError, CommsError) as exc:
            self.result.status = "failed"
            self.result.error = self.result.error or f"report: {exc}"


def rehearse(
    name: str,
    incident_dir: str | Path,
    *,
    on_task: Callable[[TaskResult], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    timeout: float = 900,
    keep_lab: bool = False,
    lab_dir: str | Path | None = None,
    net: int | None = None,
    mode: str = "containers",
    cancel: threading.Event | None = None,
) -> RehearsalResult:
    """Run one rehearsal end to end. Preconditions are checked before the lab starts.

    Setting ``cancel`` (the CLI sets it on SIGINT and SIGTERM) stops the runbook's playbook
    run and the steps after it; the lab comes down as after any failure, status ``canceled``.

    The lab runs in containers mode by default: the runbooks act through systemd and journald,
    as in production, and refuse the processes mode's bare processes at preflight."""
    rehearsal = lookup(name)
    _check_preconditions(rehearsal)
    incident_id = f"REH-{rehearsal.failure_mode}-{uuid.uuid4().hex[:8]}"
    # A lab of its own, never someone else's.
    own_lab_dir = lab_dir is None  # <state dir>/labs/<incident id>: removed after lab down
    the_lab_dir = Path(lab_dir) if lab_dir else paths.labs_dir() / incident_id
    result = RehearsalResult(rehearsal.failure_mode, incident_id, "failed", [])
    r = _Rehearsing(rehearsal, incident_dir, the_lab_dir, result, on_task, on_step, timeout, cancel)
    try:
        r.step("lab up", lambda: r.lab(*_lab_up_args(rehearsal, mode, net)))
        r.inventory = r.step("inventory", lambda: r.lab("inventory"))["output"]
        for step_name, action in (
            ("workload", r.workload),
            ("inject", r.inject),
            ("detect", r.detect),
            ("remediate", r.remediate),
            ("verify", r.verify),
        ):
            r.step(step_name, action)
        result.status = "passed"
    except FirebreakError as exc:
        # Preconditions were checked above (exit 2); from here on it is the rehearsal failing.
        result.error = str(exc)
        if r.canceled():
            result.status = "canceled"
    finally:
        # Whatever happened, and however far it got (a failed `lab up` included), nothing of
        # the lab stays behind unless asked: replicas, workload, containers, network, mounts.
        if not keep_lab:
            r.take_lab_down(own_lab_dir)
    r.write_report()
    return result
