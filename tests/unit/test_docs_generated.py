"""docs/failure-modes.md is generated from the registry; a stale copy fails here."""

from __future__ import annotations

import pytest
from firebreak import docs

pytestmark = pytest.mark.unit


def test_the_failure_modes_doc_is_current():
    assert docs.main(["--check"]) == 0, "run: .venv/bin/python -m firebreak.docs"


def test_the_check_catches_a_stale_doc(tmp_path, monkeypatch):
    stale = tmp_path / "failure-modes.md"
    stale.write_text(docs.render().replace("SEV1", "SEV2", 1), encoding="utf-8")
    monkeypatch.setattr(docs, "DOC", stale)
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0


def test_every_failure_mode_and_step_is_in_the_doc():
    text = docs.render()
    for entry in docs.failure_modes.REGISTRY:
        assert f"| {entry['id']} | {entry['name']} | {entry['severity']} |" in text
        for step in entry["steps"]:
            assert docs._cell(step["text"]) in text
