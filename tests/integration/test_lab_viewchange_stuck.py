"""The lab's viewchange-stuck fault (FM-002) in processes mode, for real: on every replica, all
stay in ViewChange with the view climbing and nothing commits; triage names FM-002 (SEV2), not
FM-001; a restart clears a replica's fault, and once every replica is restarted in turn (the
seed's remedy) the cluster commits again with every acknowledged write still there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from firebreak import runner
from firebreak.lab.backend import http_json
from processes_lab import processes_lab

pytestmark = pytest.mark.lab

NET = 71  # 127.0.71.i: this test's own addresses
REPLICAS = ("replica-1", "replica-2", "replica-3")


def _rows(be) -> dict[str, dict]:
    out = {}
    for m in be.state()["replicas"]:
        try:
            out[m["name"]] = http_json(m["api_url"] + "/admin/status", timeout=1)[1]
        except OSError as exc:
            out[m["name"]] = {"error": str(exc)}
    return out


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout}s")


def test_viewchange_stuck_everywhere_is_fm002_and_restarts_in_turn_heal_it(tmp_path):
    with processes_lab(tmp_path / "lab", NET) as be:
        api = be.state()["replicas"][0]["api_url"]
        acked = []
        for k in range(10):
            code, resp = http_json(api + "/api/write", "POST", {"stream": "vcs", "event": f"e{k}"})
            assert code == 200 and resp["acknowledged"], resp
            acked.append(resp["op"])
        for r in REPLICAS:
            be.fault("viewchange-stuck", r)

        def stuck():
            rows = _rows(be)
            ok = all(r.get("status") == 1 and r.get("viewchange_stuck") for r in rows.values())
            return rows if ok else None

        first = _until(stuck, 15, "every replica in ViewChange")
        views = {n: r["view"] for n, r in first.items()}
        later = _until(
            lambda: (
                (rows := stuck()) and all(rows[n]["view"] > v for n, v in views.items()) and rows
            ),
            30,
            "the view climbing on every replica",
        )
        assert all(r["status"] == 1 for r in later.values())

        run = runner.run_playbook(
            "triage", inventory=Path(be.inventory()), incident_dir=tmp_path / "inc"
        )
        assert run.status == "successful", [(t.task, t.message) for t in run.failed_tasks]
        triage = run.facts("firebreak_triage")
        assert (triage["failure_mode"], triage["severity"]) == ("FM-002", "SEV2"), triage[
            "findings"
        ]
        assert any("ViewChange" in e for e in triage["evidence"])

        # the seed's remedy: every replica restarted in turn, each back before the next
        for r in REPLICAS:
            be.restart(r)
            assert _rows(be)[r].get("viewchange_stuck") is False  # a restart cleared it

        def settled():
            rows = _rows(be)
            commits = {r.get("commit") for r in rows.values()}
            return all(r.get("status") == 0 for r in rows.values()) and len(commits) == 1 and rows

        _until(settled, 60, "every replica Normal with equal commits")
        code, resp = http_json(api + "/api/write", "POST", {"stream": "vcs", "event": "after"})
        assert code == 200 and resp["acknowledged"], resp
        code, read = http_json(api + "/api/read?stream=vcs", timeout=10)
        assert code == 200 and set(acked) <= set(read["ops"]), read  # lost = 0 of 10 acked


def test_the_fault_is_refused_on_a_replica_that_is_down(tmp_path):
    with processes_lab(tmp_path / "lab", NET) as be:  # the first test took its lab down
        be.fault("kill", "replica-2")
        with pytest.raises(Exception, match="replica-2"):
            be.fault("viewchange-stuck", "replica-2")
