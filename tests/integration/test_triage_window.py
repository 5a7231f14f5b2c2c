"""The triage role's rate window, for real: playbooks/triage.yml against a processes lab.

The leader's outbound protocol sends are slowed (the lab's `latency` fault) after thousands of
fast writes, so the replicas' lifetime latency quantiles stay fast while every commit from then
on is slow. A one-read triage sees the lifetime p95; the default triage (two reads, the window
between them) sees the slow commits and flags FM-004.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from firebreak import runner
from firebreak.lab import workload
from firebreak.lab.backend import http_json
from firebreak.lab.processes import ProcessesBackend

pytestmark = pytest.mark.lab

NET = 48
SLOW_MS = 150


def _p95s(triage: dict) -> list[float]:
    """The client-latency p95 figures FM-004's evidence quotes (empty: no FM-004 finding)."""
    out = []
    for finding in triage.get("findings") or []:
        if finding.get("fm") == "FM-004":
            for line in finding.get("evidence") or []:
                m = re.search(r"client_latency\S* p95 ([0-9.]+) ms", line)
                if m:
                    out.append(float(m.group(1)))
    return out


def test_latency_is_judged_over_the_window_not_the_replicas_lifetime(tmp_path) -> None:
    be = ProcessesBackend(tmp_path / "lab")
    try:
        be.up(replicas=3, net=NET)
        leader = be.resolve("leader")
        api = next(r for r in be.state()["replicas"] if r["name"] == leader)["api_url"]

        def write(k: int) -> int:
            body = {"stream": f"fast-{k % 4}", "event": f"e{k}"}
            return http_json(api + "/api/write", "POST", body, timeout=10)[0]

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert set(pool.map(write, range(1500))) == {200}
        be.fault("latency", leader, str(SLOW_MS))
        inventory = be.inventory()
        incidents = tmp_path / "incidents"

        once = runner.run_playbook(
            "triage",
            inventory=inventory,
            incident_dir=incidents,
            extra_vars={"triage_rate_window": False},
        )
        assert once.status == "successful", once.failed_tasks
        lifetime = _p95s(once.facts("firebreak_triage") or {})
        assert all(p < SLOW_MS for p in lifetime), lifetime

        workload.start(be.dir, rate=4, streams=2, workers=2)
        try:
            windowed = runner.run_playbook("triage", inventory=inventory, incident_dir=incidents)
        finally:
            workload.stop(be.dir)
        assert windowed.status == "successful", windowed.failed_tasks
        triage = windowed.facts("firebreak_triage") or {}
        p95 = _p95s(triage)
        assert p95 and max(p95) >= SLOW_MS, triage.get("findings")
        evidence = next(f for f in triage["findings"] if f["fm"] == "FM-004")["evidence"]
        assert any("over" in line for line in evidence), evidence
    finally:
        be.down()
