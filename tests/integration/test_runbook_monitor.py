"""The runbook skeleton's monitor after a repair (seed 000: "Monitor for 15 minutes"), run for
real against a processes lab: a stable cluster passes and the record says the watch was
shortened; a replica down during the watch fails the run with the regression named."""

from __future__ import annotations

from pathlib import Path

import pytest
from firebreak.runner import run_playbook
from processes_lab import processes_lab

pytestmark = pytest.mark.lab

NET = 73  # 127.0.73.i: this test's own addresses
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "runbook_monitor.yml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with processes_lab(tmp_path_factory.mktemp("monitor-lab"), NET) as be:
        yield be


def _monitor(be, seconds: int):
    inventory = Path(be.inventory())
    assert "firebreak_monitor_seconds: 2" in inventory.read_text()  # a lab shortens the watch
    result = run_playbook(
        PLAYBOOK, inventory=inventory, extra_vars={"firebreak_monitor_seconds": seconds}
    )
    events = result.facts("runbook_record_events") or []
    return result, [e for e in events if e["action"] == "cluster_monitored"]


def test_a_stable_cluster_is_watched_for_the_whole_time_and_the_shortening_recorded(lab):
    result, (event,) = _monitor(lab, 3)
    assert result.status == "successful", [(t.task, t.message) for t in result.failed_tasks]
    assert event["outcome"].startswith("stable for ")
    assert "shortened from the seed's 900 s" in event["outcome"]
    detail = event["detail"]
    assert float(detail["watched_seconds"]) >= 3 and detail["shortened"] in (True, "True")
    assert detail["regressed"] in (False, "False") and detail["seed_seconds"] == 900


def test_a_replica_down_during_the_watch_fails_the_run(lab):
    lab.fault("kill", "replica-2")
    try:
        result, (event,) = _monitor(lab, 30)
        assert result.status == "failed"
        assert event["outcome"].startswith("regressed after ")
        assert float(event["detail"]["watched_seconds"]) < 30  # it stopped at the regression
        (failed,) = [t for t in result.failed_tasks if "regression" in t.task]
        assert "FM-005 regressed while monitored" in failed.message
    finally:
        lab.heal()
