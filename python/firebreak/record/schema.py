"""The record's JSON Schema (draft 2020-12), shipped as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

SCHEMA_FILE = "incident_record.schema.json"


@cache
def schema() -> dict[str, Any]:
    text = resources.files("firebreak.record").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def schema_errors(document: Any) -> list[str]:
    """Every schema violation, as 'path: message', in document order."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]
