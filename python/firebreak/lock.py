"""The remediation locks on this controller: who holds them, and the operator's release.

The lock itself (format, liveness, atomic takeover) is the collection's
``plugins/module_utils/remediation_lock.py``, the code the ``remediation_lock`` module runs.
A release is refused while the holder lives; when its owner file names an incident whose
record exists, the release is appended to that record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firebreak.collection import module_utils
from firebreak.runner import FirebreakError

impl = module_utils("remediation_lock")
LockHeld = impl.LockHeld
DEFAULT_STALE_AFTER = 3600
LOCK_DIR_ENV = "FIREBREAK_LOCK_DIR"


@dataclass
class LockInfo:
    path: str
    owner: dict[str, Any] | None  # None: no owner file
    status: str  # alive or gone
    why: str


def default_lock_dir() -> Path:
    """$FIREBREAK_LOCK_DIR, else the roles' default (firebreak_lock_dir)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or impl.DEFAULT_LOCK_DIR)


def resolve(cluster_or_path: str, lock_dir: str | os.PathLike[str] | None = None) -> Path:
    """A lock path (``.../<cluster>.lock``) as given, else the cluster's lock in ``lock_dir``."""
    if cluster_or_path.endswith(".lock") and os.sep in cluster_or_path:
        return Path(cluster_or_path)
    try:
        return Path(impl.lock_path(str(lock_dir or default_lock_dir()), cluster_or_path))
    except impl.LockError as exc:
        raise FirebreakError(str(exc)) from None


def describe(path: Path, stale_after: int = DEFAULT_STALE_AFTER) -> LockInfo:
    try:
        owner = impl.read_owner(str(path))
        status, why = impl.holder_status(str(path), owner, stale_after)
    except impl.LockError as exc:
        raise FirebreakError(str(exc)) from None
    return LockInfo(str(path), owner, status, why)


def held(lock_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    root = Path(lock_dir or default_lock_dir())
    return sorted(p for p in root.glob("*.lock") if p.is_dir()) if root.is_dir() else []


def release(
    path: Path, stale_after: int = DEFAULT_STALE_AFTER, operator: str | None = None
) -> tuple[dict[str, Any], str | None]:
    """Release a lock whose holder is gone: (its owner record, the incident record the release
    was appended to, or None). LockHeld while the holder lives, FirebreakError on bad input."""
    try:
        owner, why = impl.release_gone(str(path), stale_after)
    except impl.LockHeld:
        raise
    except impl.LockError as exc:
        raise FirebreakError(str(exc)) from None
    return owner, _record_release(path, owner, why, operator)


def _record_release(
    path: Path, owner: dict[str, Any], why: str, operator: str | None
) -> str | None:
    from firebreak.record import append_file, load_document, record_file

    incident_id, incident_dir = owner.get("incident_id"), owner.get("incident_dir")
    if not incident_id or not incident_dir:
        return None
    record = record_file(incident_dir, incident_id)
    if not record.is_file():
        return None
    event = {
        "type": "action",
        "phase": "record",
        "action": "remediation_lock_release",
        "target": owner.get("cluster"),
        "outcome": "released by the operator, holder gone",
        "detail": {"lock": str(path), "holder": owner, "why": why, "operator": operator},
        "run_id": owner.get("run_id"),
    }
    append_file(
        incident_dir,
        incident_id,
        load_document(record).get("cluster"),
        events_by_host={"controller": [event]},
    )
    return str(record)
