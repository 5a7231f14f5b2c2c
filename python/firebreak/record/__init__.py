"""The incident record: one versioned, schema-validated, hash-chained JSON document per
incident. Format and the roles' fact convention: docs/record.md."""

from firebreak.record.chain import GENESIS_HASH, SCHEMA_VERSION, RecordError
from firebreak.record.io import (
    append_file,
    load,
    load_document,
    record_file,
    verify_document,
    verify_file,
)
from firebreak.record.model import (
    Evidence,
    IncidentRecord,
    Metrics,
    Milestones,
    Problem,
    TimelineEntry,
    VerifyResult,
)

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "Evidence",
    "IncidentRecord",
    "Metrics",
    "Milestones",
    "Problem",
    "RecordError",
    "TimelineEntry",
    "VerifyResult",
    "append_file",
    "load",
    "load_document",
    "record_file",
    "verify_document",
    "verify_file",
]
