"""Rehearsals: lab up, workload, inject, detect, remediate, verify, report, lab down.

A registry maps each failure mode to its runbook playbook and the lab fault that provokes it.
The lab is driven through its CLI (``firebreak lab ... --json``), the runbooks through
:func:`firebreak.runner.run_playbook`; everything lands in one incident record, whose fault
start is the injection time (so MTTD is measured, not guessed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
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
    status: str  # passed, failed
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
REHEARSAL_NETWORK = "firebreak-rehearse"
REHEARSAL_NET = 31


def lab(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    """`firebreak lab ARGS`: its JSON answer when it prints JSON, else {"output": text}."""
    cmd = [sys.executable, "-m", "firebreak.cli", "lab", *args]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        try:  # a JSON answer (e.g. a failed workload check) says more than its last line
            summary = json.loads(proc.stdout)
        except ValueError:
            summary = None
        if isinstance(summary, dict):
            brief = {k: v for k, v in summary.items() if not k.endswith("_events")}
            raise FirebreakError(f"lab {' '.join(args)} failed: {json.dumps(brief)}")
        raise FirebreakError(f"lab {' '.join(args)} failed: {_lab_error(proc)}")
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        return {"output": proc.stdout.strip()}
    return answer if isinstance(answer, dict) else {"output": answer}


def _lab_error(proc: subprocess.CompletedProcess) -> str:
    """The lab CLI's own error (its ``lab: ...`` message, whole), not its output's last line."""
    text = (proc.stderr or "").strip()
    start = text.rfind("\nlab: ")
    why = text[start + 1 :] if start >= 0 else text if text.startswith("lab: ") else ""
    if not why:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit {proc.returncode}"
    why = why.removeprefix("lab: ")
    return why if len(why) <= 4000 else why[:4000] + " [...]"


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
) -> RehearsalResult:
    """Run one rehearsal end to end. Preconditions are checked before the lab starts.

    The lab runs in containers mode by default: the runbooks act through systemd and journald,
    as in production, and refuse the processes mode's bare processes at preflight."""
    rehearsal = lookup(name)
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

    incident_id = f"REH-{rehearsal.failure_mode}-{uuid.uuid4().hex[:8]}"
    # A lab of its own (FIREBREAK_LAB_DIR / FIREBREAK_LAB_NET), never someone else's.
    own_lab_dir = lab_dir is None  # <state dir>/labs/<incident id>: removed after lab down
    the_lab_dir = Path(lab_dir) if lab_dir else paths.labs_dir() / incident_id
    lab_env = {"FIREBREAK_LAB_DIR": str(the_lab_dir)}
    if net is not None:
        lab_env["FIREBREAK_LAB_NET"] = str(net)
    result = RehearsalResult(rehearsal.failure_mode, incident_id, "failed", [])

    def step(step_name: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        started = utc_now()
        try:
            detail = action()
        except FirebreakError as exc:
            done = Step(step_name, "failed", started, utc_now(), {"error": str(exc)})
            result.steps.append(done)
            if on_step:
                on_step(done)
            raise FirebreakError(f"step {step_name!r} failed: {exc}") from exc
        done = Step(step_name, "ok", started, utc_now(), detail)
        result.steps.append(done)
        if on_step:
            on_step(done)
        return detail

    def run(playbook: str, inventory: str, record: bool = True, **extra: Any) -> RunResult:
        outcome = runner.run_playbook(
            playbook,
            inventory=inventory,
            incident_id=incident_id if record else None,
            incident_dir=incident_dir,
            extra_vars={"firebreak_fault_started_at": result.fault_started_at or "", **extra},
            on_task=on_task,
            timeout=timeout,
        )
        if record and outcome.record_path:
            result.record_path = outcome.record_path
        if outcome.status != "successful":
            failed = outcome.failed_tasks[:1]
            why = f"{failed[0].host}: {failed[0].task}: {failed[0].message}" if failed else ""
            raise FirebreakError(f"{playbook} {outcome.status} {why}".strip())
        return outcome

    try:
        up_args = ("up", "--mode", mode) + (() if net is None else ("--net", str(net)))
        if mode == "containers":
            # Names of its own, apart from a `firebreak lab up` lab's (replica-i, firebreak-lab):
            # a rehearsal never takes over the operator's lab, and the leftovers of a killed
            # rehearsal are found (reclaimed, or named as still up) by the next one.
            up_args += ("--name-prefix", REHEARSAL_PREFIX, "--network", REHEARSAL_NETWORK)
            if net is None:
                up_args += ("--net", str(REHEARSAL_NET))
        up_args += rehearsal.lab_options
        step("lab up", lambda: lab(*up_args, env=lab_env))
        inventory = step("inventory", lambda: lab("inventory", env=lab_env))["output"]

        def workload() -> dict[str, Any]:
            # A fault is injected into a cluster with history: every replica has committed
            # some acknowledged writes first (a corruption needs a committed entry to hit).
            started = lab("workload", "start", env=lab_env)
            deadline = time.monotonic() + WARM_UP_SECONDS
            while True:
                rows = lab("status", "--json", env=lab_env).get("output") or []
                commits = [r.get("commit") for r in rows if isinstance(r, dict)]
                if commits and all(isinstance(c, int) and c >= WARM_UP_OPS for c in commits):
                    return {**started, "commits_before_fault": commits}
                if time.monotonic() > deadline:
                    raise FirebreakError(
                        f"workload: replicas did not commit {WARM_UP_OPS} ops within "
                        f"{WARM_UP_SECONDS} s (commits {commits})"
                    )
                time.sleep(0.5)

        step("workload", workload)

        def inject() -> dict[str, Any]:
            result.fault_started_at = utc_now()
            return {"faults": [lab("fault", *argv, env=lab_env) for argv in rehearsal.faults]}

        step("inject", inject)

        def detect() -> dict[str, Any]:
            triage = (
                run(TRIAGE_PLAYBOOK, inventory, firebreak_incident_state="detected").facts(
                    "firebreak_triage"
                )
                or {}
            )
            found = _found_modes(triage)
            if rehearsal.fm not in found and rehearsal.playbook != triage.get("runbook"):
                raise FirebreakError(
                    f"triage found {sorted(found) or 'nothing'}, not {rehearsal.fm}"
                )
            return {"failure_mode": triage.get("failure_mode"), "severity": triage.get("severity")}

        step("detect", detect)
        step(
            "remediate",
            lambda: {"run": run(rehearsal.playbook, inventory, **rehearsal.extra_vars).status},
        )

        def verify() -> dict[str, Any]:
            # Read-only check, not a new detection: it must not reopen or re-grade the
            # incident in its record (the resolution below carries its summary).
            triage = run(TRIAGE_PLAYBOOK, inventory, record=False).facts("firebreak_triage") or {}
            left = _found_modes(triage) & ({rehearsal.fm} | BLOCKING_MODES)
            if left:
                raise FirebreakError(f"still {sorted(left)} after remediation")
            # Stop writing first: a write acknowledged after its stream was read back would
            # look lost.
            lab("workload", "stop", env=lab_env)
            # the history too, and every replica's own copy (the repaired one's included)
            check = lab("workload", "check", "--json", "--per-replica", env=lab_env)
            if not check.get("ok", False):
                raise FirebreakError(f"workload check failed: {check}")
            # The rehearsal driver is the responder here: it declares the incident resolved,
            # through the same chain code the record phase uses.
            record_io.append_file(
                incident_dir,
                incident_id,
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
            return {"triage": triage.get("summary"), "workload": check}

        step("verify", verify)
        result.status = "passed"
    except FirebreakError as exc:
        # Preconditions were checked above (exit 2); from here on it is the rehearsal failing.
        result.error = str(exc)
    finally:
        # Whatever happened, and however far it got (a failed `lab up` included), nothing of
        # the lab stays behind unless asked: replicas, workload, containers, network, mounts.
        if not keep_lab:
            try:
                step("lab down", lambda: lab("down", "--dir", str(the_lab_dir), env=lab_env))
                if own_lab_dir:
                    shutil.rmtree(the_lab_dir, ignore_errors=True)
            except FirebreakError as exc:
                result.status = "failed"
                result.error = result.error or str(exc)
    record = Path(incident_dir) / f"{incident_id}.json"
    if record.is_file():
        result.record_path = str(record)
        try:
            report = Path(incident_dir) / f"{incident_id}.postmortem.md"
            report.write_text(render(load(record), "postmortem", "md"), encoding="utf-8")
            result.report_path = str(report)
        except (RecordError, CommsError) as exc:
            result.status, result.error = "failed", result.error or f"report: {exc}"
    return result
