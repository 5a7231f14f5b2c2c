"""Suite-wide rules: every test carries exactly one tier marker."""

from __future__ import annotations

import pytest

TIERS = ("unit", "lab", "rehearsal")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: needs exactly one of the markers {TIERS}, has {tiers or 'none'}"
            )
