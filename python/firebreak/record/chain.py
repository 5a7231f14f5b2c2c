"""The hash chain, loaded from the collection's module_utils (one implementation for both).

The collection's ``plugins/module_utils/incident_record.py`` is standard-library only; the
wrapper loads it with ``firebreak.collection.module_utils``.
"""

from __future__ import annotations

from firebreak.collection import module_utils

chain = module_utils("incident_record")

GENESIS_HASH: str = chain.GENESIS_HASH
GENESIS_LABEL: str = chain.GENESIS_LABEL
SCHEMA_VERSION: int = chain.SCHEMA_VERSION
SEVERITIES: tuple[str, ...] = chain.SEVERITIES
STATES: tuple[str, ...] = chain.STATES
ENTRY_TYPES: tuple[str, ...] = chain.ENTRY_TYPES
EVIDENCE_KINDS: tuple[str, ...] = chain.EVIDENCE_KINDS
ENTRY_FIELDS: tuple[str, ...] = chain.ENTRY_FIELDS
EVIDENCE_FIELDS: tuple[str, ...] = chain.EVIDENCE_FIELDS
RecordError = chain.RecordError
canonical_json = chain.canonical_json
entry_hash = chain.entry_hash
sha256_of = chain.sha256_of
new_record = chain.new_record
append = chain.append
append_to_file = chain.append_to_file
verify = chain.verify
derive = chain.derive
record_path = chain.record_path
utc_now = chain.utc_now
parse_time = chain.parse_time
load_json = chain.load
save_json = chain.save
dumps = chain.dumps
