"""Triage results (``firebreak_triage``) for the plan tables: 3- and 5-replica clusters built
row by row, as roles/triage's decide step shapes them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import (
    failure_modes,
    runbook,
    vsr,
)

PlanInputError = runbook.PlanInputError
__all__ = ["PlanInputError", "failure_modes", "runbook", "vsr"]

ACTIVE = {
    "unit_active_state": "active",
    "unit_sub_state": "running",
    "unit_result": "success",
    "unit_exit_code": "0",
    "unit_exit_status": "0",
}
CRASHED = {
    "unit_active_state": "failed",
    "unit_sub_state": "failed",
    "unit_result": "signal",
    "unit_exit_code": "killed",
    "unit_exit_status": "9",
}


def row(i: int, **changes: Any) -> dict[str, Any]:
    """Replica i (1-based), Normal in view 0, commit 100, its unit active."""
    out = {
        "host": f"host-{i}",
        "name": f"replica-{i}",
        "reachable": True,
        "status": 0,
        "status_name": "Normal",
        "view": 0,
        "op": 100,
        "commit": 100,
        "lag": 0,
        "checksum_failures": 0,
        "run_checksum_lines": 0,
        "corrupt_from": None,
        "host_state_read": True,
        "run_tail": [],
        "run_excerpt": [],
        **ACTIVE,
    }
    out.update(changes)
    return out


def down(i: int, **changes: Any) -> dict[str, Any]:
    """Replica i crashed: unit failed, metrics unreachable."""
    return row(
        i,
        reachable=False,
        status=None,
        status_name="Unreachable",
        view=None,
        op=None,
        commit=None,
        lag=None,
        **{**CRASHED, **changes},
    )


def triage(rows: list[dict[str, Any]], findings: list[dict] | None = None, **extra: Any) -> dict:
    n = len(rows)
    quorum = n // 2 + 1
    normal = [r for r in rows if r["status"] == 0]
    views = [r["view"] for r in rows if isinstance(r["view"], int)]
    view = max(views) if views else 0
    out = {
        "failure_mode": "none",
        "name": "Healthy",
        "runbook": "none",
        "n": n,
        "quorum": quorum,
        "has_quorum": len(normal) >= quorum,
        "view": view,
        "leader": f"replica-{view % n + 1}",
        "down": [
            r["name"] for r in rows if r["unit_active_state"] != "active" or not r["reachable"]
        ],
        "findings": findings or [],
        "replicas": rows,
    }
    out.update(extra)
    return out


def cluster(n: int = 3, **by_index: dict[str, Any]) -> list[dict[str, Any]]:
    """n rows; ``r2=down(2)`` or ``r2={...changes}`` replace or change replica 2."""
    rows = []
    for i in range(1, n + 1):
        given = by_index.get(f"r{i}")
        if given is None:
            rows.append(row(i))
        elif "name" in given:
            rows.append(given)
        else:
            rows.append(row(i, **given))
    return rows


def plan(fm: str, t: dict, **options: Any) -> dict:
    return runbook.plan(fm, t, options)
