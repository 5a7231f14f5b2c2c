"""Render seed 000's communication templates from an incident record.

Only what the record holds is stated; what only a person knows (incident commander, war room,
affected users, root cause narrative...) is left as ``[TO BE FILLED: ...]``, never invented.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2

from firebreak.collection import module_utils
from firebreak.record.chain import parse_time
from firebreak.record.model import IncidentRecord, TimelineEntry

TEMPLATES = ("initial", "update", "resolution", "postmortem")
FORMATS = ("md", "txt")
UPDATE_INTERVAL = timedelta(minutes=15)
failure_modes = module_utils("failure_modes")

# Seed 000, "Incident Severity Levels".
SEVERITY_IMPACT = {
    "SEV1": "Complete service outage",
    "SEV2": "Degraded service",
    "SEV3": "Partial degradation",
    "SEV4": "Minor issue",
}
# Seed 000, "Failure Mode Catalog": from the failure-mode registry.
FAILURE_MODES = {int(e["id"][3:]): e["name"] for e in failure_modes.REGISTRY}
STATUS_LABEL = {
    None: "Investigating",
    "detected": "Investigating",
    "acknowledged": "Investigating",
    "investigating": "Investigating",
    "mitigating": "Mitigating",
    "mitigated": "Monitoring",
    "resolved": "Resolved",
    "escalated": "Escalated",
}


class CommsError(Exception):
    pass


def to_fill(what: str) -> str:
    return f"[TO BE FILLED: {what}]"


def failure_mode_title(failure_mode: str | None) -> str | None:
    if not failure_mode:
        return None
    match = re.match(r"^fm-?0*(\d+)", failure_mode, re.IGNORECASE)
    if match and int(match.group(1)) in FAILURE_MODES:
        number = int(match.group(1))
        return f"FM-{number:03d} {FAILURE_MODES[number]} ({failure_mode})"
    return failure_mode


def hhmm(value: str | None) -> str | None:
    return parse_time(value).strftime("%H:%M") if value else None


def hhmmss(value: str | None) -> str | None:
    return parse_time(value).strftime("%H:%M:%S") if value else None


def day_time(value: str | None) -> str | None:
    return parse_time(value).strftime("%Y-%m-%d %H:%M UTC") if value else None


def human_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} seconds"
    minutes, sec = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} minutes" + (f" {sec} s" if sec else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def describe(entry: TimelineEntry) -> str:
    """One line, built only from the entry's fields."""
    where = f" on {entry.target}" if entry.target else ""
    on_host = f" [{entry.host}]" if entry.host else ""
    if entry.type == "fault":
        text = "Fault started" + where
    elif entry.type == "state":
        text = f"Incident state: {entry.outcome}"
    elif entry.type == "severity":
        text = f"Severity set to {entry.outcome}"
    elif entry.type == "classification":
        text = f"Failure mode classified: {failure_mode_title(entry.outcome)}"
    elif entry.type == "observation":
        text = f"Observed {entry.action or 'state'}{where}" + (
            f": {entry.outcome}" if entry.outcome else ""
        )
    elif entry.type == "guard":
        text = f"Guard {entry.action or ''}{where}: {entry.decision or 'no decision recorded'}"
    elif entry.type == "action":
        text = f"{entry.action or 'action'}{where}" + (
            f": {entry.outcome}" if entry.outcome else ""
        )
    elif entry.type == "evidence":
        text = f"Evidence {entry.detail.get('evidence_id')} ({entry.outcome}){where}"
    elif entry.type == "task":
        text = f"Task for {entry.target or 'a person'}: {entry.detail.get('text', '')}"
    elif entry.type == "run":
        text = f"Playbook run {entry.detail.get('playbook', '')}: {entry.outcome or ''}".strip()
    else:
        text = str(entry.detail.get("text") or entry.action or entry.type)
    phase = f"{entry.phase}: " if entry.phase else ""
    return f"{phase}{text}{on_host}"


def build_context(record: IncidentRecord, now: datetime | None = None) -> dict[str, Any]:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    ms = record.milestones
    # Chain order is append order; people read by time (sort is stable for equal times).
    timeline = sorted(
        (
            {"at": e.at, "time": hhmmss(e.at), "text": describe(e), "entry": e}
            for e in record.timeline
        ),
        key=lambda t: parse_time(t["at"]),
    )
    actions = [t for t in timeline if t["entry"].type == "action"]
    guards = [t for t in timeline if t["entry"].type == "guard"]
    # Steps only a person can take (the seed's wording, from the failure-mode registry).
    tasks = [
        {"text": t["entry"].detail.get("text"), "owner": t["entry"].target, "status": "Not Started"}
        for t in timeline
        if t["entry"].type == "task"
    ]
    observations = [t for t in timeline if t["entry"].type == "observation"]
    verification = [
        t
        for t in timeline
        if t["entry"].phase == "verify" and t["entry"].type in ("observation", "action", "guard")
    ]
    targets = sorted({e.target for e in record.timeline if e.target})
    evidence = [
        {
            "id": ev.id,
            "kind": ev.kind,
            "phase": ev.phase,
            "host": ev.host,
            "target": ev.target,
            "time": day_time(ev.at),
            "summary": ev.summary,
        }
        for ev in record.evidence
    ]
    return {
        "record": record,
        "id": record.id,
        "cluster": record.cluster,
        "service": f"cluster {record.cluster}",
        "severity": record.severity or to_fill("severity (none recorded)"),
        "severity_impact": SEVERITY_IMPACT.get(record.severity or ""),
        "state": record.state,
        "status": STATUS_LABEL.get(record.state, record.state),
        "failure_mode": failure_mode_title(record.failure_mode),
        "fault_started": day_time(ms.fault_started),
        "detected": day_time(ms.detected),
        "detected_hhmm": hhmm(ms.detected),
        "acknowledged": day_time(ms.acknowledged),
        "mitigated": day_time(ms.mitigated),
        "resolved": day_time(ms.resolved),
        "resolved_hhmm": hhmm(ms.resolved),
        "mttd": human_duration(record.metrics.mttd_seconds),
        "mttr": human_duration(record.metrics.mttr_seconds),
        "generated": now.strftime("%Y-%m-%d %H:%M UTC"),
        "generated_date": now.strftime("%Y-%m-%d"),
        "next_update": (now + UPDATE_INTERVAL).strftime("%H:%M UTC"),
        "timeline": timeline,
        "actions": actions,
        "guards": guards,
        "tasks": tasks,
        "observations": observations,
        "verification": verification,
        "targets": targets,
        "evidence": evidence,
        "head": record.head,
        "entries": len(record.timeline),
        "fill": to_fill,
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("firebreak.comms", "templates"),
        undefined=jinja2.StrictUndefined,  # a missing field is an error, not a blank
        autoescape=False,  # noqa: S701 - plain text and Markdown, never HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(
    record: IncidentRecord, template: str, fmt: str = "md", now: datetime | None = None
) -> str:
    if template not in TEMPLATES:
        raise CommsError(f"unknown template {template!r}; one of {', '.join(TEMPLATES)}")
    if fmt not in FORMATS:
        raise CommsError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if template == "resolution" and record.state != "resolved":
        raise CommsError(
            f"incident {record.id} is {record.state or 'without a state'}, not resolved: "
            "the resolution notice needs a resolved record"
        )
    context = build_context(record, now)
    return _environment().get_template(f"{template}.{fmt}.j2").render(context)
