"""`lab reset`'s pure parts: when a lab counts as reset, the options it applies, the CLI."""

from __future__ import annotations

import argparse

import pytest
from firebreak.lab import backend, cli, workload
from firebreak.lab.backend import LabError, unsettled, with_options

pytestmark = pytest.mark.unit


def _row(status=0, view=3, commit=40, **extra) -> dict:
    return {"status": status, "status_name": "Normal", "view": view, "commit": commit, **extra}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ({"r1": _row(), "r2": _row(), "r3": _row()}, {}),
        (
            {"r1": _row(), "r2": {"error": "timed out"}, "r3": _row()},
            {"r2": "not answering (timed out)"},
        ),
        ({"r1": _row(), "r2": {}, "r3": _row()}, {"r2": "not answering (no status)"}),
        (
            {"r1": _row(), "r2": _row(status=2, status_name="Recovering"), "r3": _row()},
            {"r2": "status Recovering"},
        ),
        (
            {"r1": _row(view=4), "r2": _row(view=3), "r3": _row(view=4)},
            {"r2": "Normal in view 3, others in view 4"},
        ),
        (
            {"r1": _row(commit=41), "r2": _row(), "r3": _row(commit=41)},
            {"r2": "commit 40, highest 41"},
        ),
        ({"r1": _row(slow_commit_ms=200), "r2": _row()}, {"r1": "slow_commit_ms 200"}),
        ({"r1": _row(), "r2": _row(isolated=True)}, {"r2": "isolated"}),
        ({"r1": _row(corrupt_from=7), "r2": _row()}, {"r1": "corrupt from op 7"}),
        ({"r1": _row(slow_commit_ms=0, isolated=False, corrupt_from=None)}, {}),
    ],
)
def test_unsettled_names_each_replica_not_reset(rows, expected) -> None:
    assert unsettled(rows) == expected


def test_wait_settled_names_the_replica_it_cannot_reach() -> None:
    # 127.0.0.1:9 (discard): nothing answers there, so the replica is "not answering".
    members = [{"name": "replica-1", "api_url": "http://127.0.0.1:9"}]
    with pytest.raises(LabError, match=r"^replica-1: not answering"):
        backend.wait_settled(members, timeout=0)
    with pytest.raises(LabError, match="no replicas"):
        backend.wait_settled([], timeout=0)


def test_with_options_replaces_the_options_and_keeps_the_rest() -> None:
    cfg = backend.replica_config("lab", [], "replica-1", "/d", scrub_interval_s=3600, hold_repair=1)
    out = with_options(cfg, {"checkpoint_interval": 20})
    assert out["checkpoint_interval"] == 20
    assert out["scrub_interval_s"] == 5  # back to the default
    assert "hold_repair" not in out  # an option without a default goes away
    assert {k: out[k] for k in ("cluster", "replica", "data_dir")} == {
        "cluster": "lab",
        "replica": "replica-1",
        "data_dir": "/d",
    }
    assert with_options(cfg, {"scrub_interval_s": 3600, "hold_repair": 1}) == cfg


def test_config_options_refuses_unknown_keys() -> None:
    assert backend.config_options(None) == {}
    assert backend.config_options({"scrub_interval_s": 2}) == {"scrub_interval_s": 2}
    with pytest.raises(LabError, match="not replica config keys: scrub_interval"):
        backend.config_options({"scrub_interval": 2})


def _parse(*argv: str) -> argparse.Namespace:
    return cli.parse(list(argv))


def test_reset_cli_changes_only_the_options_given() -> None:
    state = {"replica_opts": {"scrub_interval_s": 2, "checkpoint_interval": 20}}
    assert cli.reset_options(_parse("reset"), state) is None
    ns = _parse("reset", "--scrub-interval", "3600", "--timeout", "30", "--json")
    assert (ns.timeout, ns.json) == (30, True)
    assert cli.reset_options(ns, state) == {"scrub_interval_s": 3600, "checkpoint_interval": 20}
    assert cli.reset_options(_parse("reset", "--checkpoint-interval", "50"), None) == {
        "checkpoint_interval": 50
    }
    line = cli.reset_line(
        {
            "normal": ["replica-1", "replica-2", "replica-3"],
            "view": 2,
            "commit": 118,
            "restarted": [],
            "config": {"scrub_interval_s": 2},
            "seconds": 4.2,
        }
    )
    assert line == (
        "lab reset in 4.2s: 3 Normal in view 2, commit 118; restarted none; "
        'options {"scrub_interval_s": 2}'
    )


def test_reset_is_refused_by_a_backend_without_it(tmp_path) -> None:
    class Bare(backend.Backend):
        mode = "bare"
        up = down = status = inventory = fault = heal = replica_pids = None

    with pytest.raises(LabError, match="reset is not supported in bare mode"):
        Bare(tmp_path).reset()


def test_a_reset_workload_history_writes_streams_of_its_own(tmp_path) -> None:
    (tmp_path / "workload").mkdir()
    first = workload._history(tmp_path)
    assert workload._history(tmp_path) == first  # the same history until reset
    workload.reset(tmp_path)
    assert not (tmp_path / "workload" / "history").exists()
    assert workload._history(tmp_path) != first
