"""The hash chain, loaded from the collection's module_utils (one implementation for both).

The collection's ``plugins/module_utils/incident_record.py`` is standard-library only, so the
wrapper loads it by file path from the repository root (an editable install or a checkout) or,
failing that, imports it from an installed ``firebreak.incident`` collection.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_MODULE_NAME = "firebreak._incident_record_chain"
REPO_ROOT = Path(__file__).resolve().parents[3]
MODULE_UTILS = REPO_ROOT / "plugins" / "module_utils" / "incident_record.py"


def _load() -> ModuleType:
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    if MODULE_UTILS.is_file():
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, MODULE_UTILS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(
            "ansible_collections.firebreak.incident.plugins.module_utils.incident_record"
        )
    except ImportError as exc:  # pragma: no cover - only outside a checkout
        raise ImportError(
            f"the firebreak.incident collection is neither at {REPO_ROOT} nor installed: {exc}"
        ) from exc


chain = _load()

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
