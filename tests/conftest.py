"""Suite-wide rules: every test carries one tier marker; the summary gives each tier's time."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

TIERS = ("unit", "lab", "rehearsal")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: needs exactly one of the markers {TIERS}, has {tiers or 'none'}"
            )


@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory):
    """Records, evidence and labs of a test run go to a state dir of its own, never the
    operator's (``firebreak.paths``); processes the tests start inherit it."""
    before = os.environ.get("FIREBREAK_STATE_DIR")
    os.environ["FIREBREAK_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        os.environ.pop("FIREBREAK_STATE_DIR", None)
    else:
        os.environ["FIREBREAK_STATE_DIR"] = before


# tier -> [seconds (setup + call + teardown, shared fixtures' set-up included), tests]
_TIER_TIME: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tier = next((t for t in TIERS if t in report.keywords), None)
    if tier is None:
        return
    _TIER_TIME[tier][0] += report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _TIER_TIME[tier][1] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    """Time per tier, beside --durations' slowest tests: where the suite's minutes go."""
    if not _TIER_TIME:
        return
    terminalreporter.section("time per tier (setup + call + teardown)")
    for tier in TIERS:
        if tier in _TIER_TIME:
            seconds, tests = _TIER_TIME[tier]
            terminalreporter.write_line(f"{tier:<10} {seconds:8.1f} s  {tests:5d} tests")
