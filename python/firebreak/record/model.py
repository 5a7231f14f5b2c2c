"""Typed view of an incident record (the JSON document stays the source of truth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: str
    type: str
    phase: str | None
    host: str | None
    action: str | None
    target: str | None
    decision: str | None
    outcome: str | None
    detail: dict[str, Any]
    run_id: str | None
    prev_hash: str
    hash: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimelineEntry:
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Evidence:
    id: str
    kind: str
    phase: str | None
    host: str | None
    target: str | None
    at: str
    summary: str | None
    data: Any

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Milestones:
    fault_started: str | None = None
    detected: str | None = None
    acknowledged: str | None = None
    mitigated: str | None = None
    resolved: str | None = None


@dataclass(frozen=True)
class Metrics:
    mttd_seconds: float | None = None  # detected - fault_started (when the fault start is known)
    mttr_seconds: float | None = None  # resolved - detected


@dataclass(frozen=True)
class IncidentRecord:
    schema_version: int
    id: str
    cluster: str
    failure_mode: str | None
    severity: str | None
    state: str | None
    created_at: str
    updated_at: str
    milestones: Milestones
    metrics: Metrics
    evidence: list[Evidence]
    timeline: list[TimelineEntry]
    head: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentRecord:
        return cls(
            schema_version=data["schema_version"],
            id=data["id"],
            cluster=data["cluster"],
            failure_mode=data.get("failure_mode"),
            severity=data.get("severity"),
            state=data.get("state"),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            milestones=Milestones(**(data.get("milestones") or {})),
            metrics=Metrics(**(data.get("metrics") or {})),
            evidence=[Evidence.from_dict(e) for e in data.get("evidence", [])],
            timeline=[TimelineEntry.from_dict(e) for e in data.get("timeline", [])],
            head=data["chain"]["head"],
            raw=data,
        )

    def evidence_by_id(self) -> dict[str, Evidence]:
        return {e.id: e for e in self.evidence}


@dataclass(frozen=True)
class Problem:
    index: int | None
    seq: int | None
    reason: str


@dataclass(frozen=True)
class VerifyResult:
    path: str
    ok: bool
    entries: int
    head: str | None
    problems: list[Problem]

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None
