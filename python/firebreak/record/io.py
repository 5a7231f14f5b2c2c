"""Read, check and extend incident records on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firebreak.record import chain
from firebreak.record.model import IncidentRecord, Problem, VerifyResult
from firebreak.record.schema import schema_errors


def load_document(path: str | Path) -> dict[str, Any]:
    return chain.load_json(str(path))


def load(path: str | Path) -> IncidentRecord:
    """A record that passes verification, typed; RecordError otherwise."""
    document = load_document(path)
    result = verify_document(document, str(path))
    if not result.ok:
        raise chain.RecordError(f"{path}: {result.problems[0].reason}")
    return IncidentRecord.from_dict(document)


def verify_document(document: Any, path: str = "-") -> VerifyResult:
    """Schema first (a structural problem makes the chain meaningless), then the chain."""
    problems = [Problem(None, None, f"schema: {msg}") for msg in schema_errors(document)]
    if not problems:
        problems = [Problem(p["index"], p["seq"], p["reason"]) for p in chain.verify(document)]
    timeline = document.get("timeline") if isinstance(document, dict) else None
    head = (document.get("chain") or {}).get("head") if isinstance(document, dict) else None
    return VerifyResult(
        path=path,
        ok=not problems,
        entries=len(timeline) if isinstance(timeline, list) else 0,
        head=head,
        problems=problems,
    )


def verify_file(path: str | Path) -> VerifyResult:
    try:
        document = load_document(path)
    except chain.RecordError as exc:
        return VerifyResult(str(path), False, 0, None, [Problem(None, None, str(exc))])
    return verify_document(document, str(path))


def record_file(incident_dir: str | Path, incident_id: str) -> Path:
    return Path(chain.record_path(str(incident_dir), incident_id))


def append_file(
    incident_dir: str | Path,
    incident_id: str,
    cluster: str,
    **changes: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Append to (or create) a record the way the collection's module does: same code."""
    path = record_file(incident_dir, incident_id)
    record, added, _created = chain.append_to_file(str(path), incident_id, cluster, **changes)
    return record, added
