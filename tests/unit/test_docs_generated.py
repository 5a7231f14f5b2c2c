"""docs/failure-modes.md and the runbooks' playbooks are generated from the registry; a stale or
missing copy, or a runbook playbook the registry does not know, fails here."""

from __future__ import annotations

import pytest
import yaml
from firebreak import docs

pytestmark = pytest.mark.unit


def test_the_generated_files_are_current():
    assert docs.main(["--check"]) == 0, "run: .venv/bin/python -m firebreak.docs"


@pytest.fixture
def private(tmp_path, monkeypatch):
    """docs' outputs moved to ``tmp_path``, written once."""
    monkeypatch.setattr(docs, "DOC", tmp_path / "failure-modes.md")
    monkeypatch.setattr(docs, "FIDELITY", tmp_path / "seed-fidelity.md")
    monkeypatch.setattr(docs, "PLAYBOOKS", tmp_path / "playbooks")
    (tmp_path / "playbooks").mkdir()
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
    return tmp_path


def test_the_check_catches_a_stale_doc(private):
    doc = private / "failure-modes.md"
    doc.write_text(docs.render().replace("SEV1", "SEV2", 1), encoding="utf-8")
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0


def test_the_check_catches_a_stale_fidelity_table(private):
    table = private / "seed-fidelity.md"
    table.write_text(docs.render_fidelity().replace("| missing |", "| automated |", 1))
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and table.read_text() == docs.render_fidelity()


def test_the_check_catches_a_stale_or_missing_playbook(private, capsys):
    book = private / "playbooks" / "fm005_replica_crash.yml"
    book.write_text(book.read_text().replace("fm005_replica_crash", "fm005_typo"))
    assert docs.main(["--check"]) == 1
    book.unlink()
    assert docs.main(["--check"]) == 1
    assert "fm005_replica_crash.yml is stale" in capsys.readouterr().err
    assert docs.main([]) == 0 and book.is_file()


def test_a_playbook_without_a_runbook_fails_the_check(private, capsys):
    orphan = private / "playbooks" / "fm099_gone.yml"
    orphan.write_text("---\n")
    assert docs.main(["--check"]) == 1 and docs.main([]) == 1
    assert "fm099_gone.yml has no runbook in the registry" in capsys.readouterr().err
    orphan.unlink()
    (private / "playbooks" / "triage.yml").write_text("---\n")  # not a runbook's: left alone
    assert docs.main(["--check"]) == 0


def test_every_runbook_has_its_playbook_running_its_role():
    books = {p.name: p for p in docs.generated() if p.parent == docs.PLAYBOOKS}
    runbooks = {e["role"]: e for e in docs.failure_modes.REGISTRY if e["role"]}
    assert set(books) == {f"{r}.yml" for r in runbooks} and runbooks
    for role, entry in runbooks.items():
        (play,) = yaml.safe_load(books[f"{role}.yml"].read_text())
        assert play["name"] == f"{entry['id']} {entry['name']}"
        assert play["roles"] == [{"role": f"firebreak.incident.{role}"}]
        assert play["gather_facts"] is False


def test_every_failure_mode_and_step_is_in_the_doc():
    text = docs.render()
    for entry in docs.failure_modes.REGISTRY:
        assert f"| {entry['id']} | {entry['name']} | {entry['severity']} |" in text
        for step in entry["steps"]:
            assert docs._cell(step["text"]) in text
