"""Suite-wide rules: every test carries exactly one tier marker."""

from __future__ import annotations

import os

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
