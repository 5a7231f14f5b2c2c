"""Fault dispatch by table in both lab backends, and the slow-commit fault's wiring (no lab)."""

from __future__ import annotations

import argparse
import inspect

import pytest
from firebreak.collection import module_utils
from firebreak.lab import backend, cli
from firebreak.lab.containers import ContainerLab
from firebreak.lab.processes import ProcessesBackend

pytestmark = pytest.mark.unit

failure_modes = module_utils("failure_modes")
KINDS = [k for k in backend.FAULT_KINDS if k != "heal"]
TABLES = {"processes": ProcessesBackend.FAULT_HANDLERS, "containers": ContainerLab.FAULT_HANDLERS}


@pytest.mark.parametrize("mode", sorted(TABLES))
@pytest.mark.parametrize("kind", KINDS)
def test_every_fault_kind_has_a_handler(mode, kind) -> None:
    handler = TABLES[mode].get(kind)
    assert handler is not None, f"{mode}: no handler for {kind}"
    # a method of the backend's class, taking (self, ...) and the fault's argument last
    params = list(inspect.signature(handler).parameters)
    assert params[0] == "self" and params[-1] in ("arg", "_arg"), (mode, kind, params)


@pytest.mark.parametrize("mode", sorted(TABLES))
def test_tables_hold_only_known_kinds(mode) -> None:
    extra = set(TABLES[mode]) - set(KINDS)
    # processes mode has one test-only fault the CLI does not offer
    assert extra == ({"bad-reads"} if mode == "processes" else set())
    with pytest.raises(TypeError):
        TABLES[mode]["kill"] = None  # read-only: a handler is added in the source, once


def test_an_unknown_kind_is_refused_before_the_lab_is_touched(tmp_path) -> None:
    # no lab in tmp_path: the kind is checked first, and the message lists the known kinds
    with pytest.raises(backend.LabError, match=r"unknown fault 'melt'.*slow-commit"):
        ProcessesBackend(tmp_path).fault("melt", "backup")
    with pytest.raises(backend.LabError, match=r"unknown fault 'melt'.*slow-commit"):
        ContainerLab(tmp_path, name_prefix="unit-").fault("melt", "replica-1")


def _parse(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    cli.add_parser(sub)
    return ap.parse_args(["lab", *argv])


def test_cli_offers_slow_commit_with_its_argument() -> None:
    ns = _parse("fault", "slow-commit", "--replica", "backup", "150")
    target, *rest = ns.replica
    assert (ns.kind, target, ns.arg or rest[0]) == ("slow-commit", "backup", "150")


@pytest.mark.parametrize(
    ("arg", "ms"), [(None, backend.DEFAULT_SLOW_COMMIT_MS), ("", 200), ("50", 50), (75, 75)]
)
def test_slow_commit_argument(arg, ms) -> None:
    assert backend.slow_commit_ms(arg) == ms


@pytest.mark.parametrize("arg", ["0", "-5", "fast", "1.5"])
def test_slow_commit_bad_argument(arg) -> None:
    with pytest.raises(backend.LabError, match="slow-commit"):
        backend.slow_commit_ms(arg)


def test_registry_faults_are_lab_faults_and_fm006_slows_a_backup() -> None:
    for entry in failure_modes.all_modes():
        for argv in entry["fault"]:
            assert argv[0] in backend.FAULT_KINDS, (entry["id"], argv)
            assert argv[1] == "--replica", (entry["id"], argv)
    fm006 = failure_modes.get("FM-006")
    assert fm006["fault"] == [["slow-commit", "--replica", "backup", "200"]]
    # rehearsal.py runs `lab fault <argv>`: the CLI parses it as target backup, argument 200
    ns = _parse("fault", *fm006["fault"][0])
    assert (ns.kind, ns.replica) == ("slow-commit", ["backup", "200"])
