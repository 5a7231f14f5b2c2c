"""The seed-fidelity table (docs/seed-fidelity.md): every step of seed 000, how it is handled,
and by what; a step that claims to be automated names something that exists."""

from __future__ import annotations

import argparse

import pytest
from firebreak import cli, fidelity
from firebreak.collection import REPO_ROOT

pytestmark = pytest.mark.unit


def _commands() -> set[str]:
    parser = cli.build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(subs[0].choices)


def test_the_table_is_sound():
    assert fidelity.problems() == []


def test_every_by_names_something_that_exists():
    commands = _commands()
    for section in fidelity.fidelity():
        for step in section["steps"]:
            by = step.get("by")
            if not by:
                continue
            if by.startswith("firebreak "):
                assert by.split()[1] in commands, (section["id"], step["text"], by)
            else:
                assert (REPO_ROOT / by).exists(), (section["id"], step["text"], by)


def test_the_seed_is_covered_in_its_order():
    ids = [s["id"] for s in fidelity.fidelity()]
    assert ids[:5] == ["overview", "phase1", "phase2", "phase3", "phase4"]
    assert ids[5:13] == [f"FM-{i:03d}" for i in range(1, 9)]
    assert ids[-3:] == ["comms", "postmortem", "escalation"]
    assert len(ids) == len(set(ids))
    total = fidelity.counts()
    assert sum(total.values()) == sum(len(s["steps"]) for s in fidelity.fidelity()) > 150


def test_a_runbook_role_handles_its_own_automated_steps():
    (fm3,) = [s for s in fidelity.catalog_sections() if s["id"] == "FM-003"]
    assert {st["by"] for st in fm3["steps"] if st["handling"] in ("automated", "guarded")} <= {
        "roles/fm003_corruption"
    }


@pytest.mark.parametrize(
    "step, complaint",
    [
        ({"text": "x", "handling": "automated", "owner": "o"}, "nothing does it"),
        ({"text": "x", "handling": "guarded", "owner": "o", "by": None}, "nothing does it"),
        ({"text": "x", "handling": "maybe", "owner": "o"}, "handling 'maybe'"),
        ({"text": "x", "handling": "person", "owner": ""}, "no owner"),
    ],
)
def test_a_bad_step_is_named(step, complaint):
    (problem,) = fidelity.problems([{"id": "s", "steps": [step]}])
    assert complaint in problem and "s: 'x'" in problem


def test_a_failure_mode_without_a_runbook_cannot_claim_its_steps():
    # FM-004 has no role: a step marked automated without `by` would claim work nobody does
    sections = fidelity.catalog_sections()
    fm4 = next(s for s in sections if s["id"] == "FM-004")
    fm4["steps"][0] = dict(fm4["steps"][0], handling="automated")
    fm4["steps"][0].pop("by", None)
    fm4["steps"][0]["by"] = None
    assert any("FM-004" in p and "nothing does it" in p for p in fidelity.problems(sections))
