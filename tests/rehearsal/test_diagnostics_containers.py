"""The diagnostics role on systemd containers: what the processes lab cannot show.

A lab of its own (containers ``dg-replica-i``, network ``firebreak-diag``, host addresses
``127.0.76.i``; never the shared rehearsal lab): the unit read by ``systemctl`` (active
(running)), the unit's journal read (a real count of error lines), and what a container may
not read said so, never 0: its kernel log (dmesg refused, no kernel messages in its journal)
and ping (the lab's containers lack CAP_NET_RAW, the ping binary cannot even be executed). A
killed replica's unit is ``failed`` and its port refused from both others; a real partition
(nftables drops the VSR port's TCP) shows as TCP failing both ways in the matrix, and only
between the partitioned replica and the others.
"""

from __future__ import annotations

import pytest
from firebreak import runner
from firebreak.lab import workload
from shared_lab import left_behind, snapshot_lab

pytestmark = pytest.mark.rehearsal

NAMES = ["replica-1", "replica-2", "replica-3"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with snapshot_lab(
        tmp_path_factory, "diagnostics", net=76, network="firebreak-diag", name_prefix="dg-"
    ) as lab:
        yield lab
    assert not left_behind(lab), f"containers left behind: {left_behind(lab)}"


@pytest.fixture
def healed(lab):
    yield lab
    lab.heal()
    lab.wait_ready(timeout=90)


def _diagnose(lab, tmp_path) -> dict:
    run = runner.run_playbook(
        "diagnostics", inventory=lab.inventory_path(), incident_dir=tmp_path / "incidents"
    )
    assert run.status == "successful", (run.error, [(t.task, t.message) for t in run.failed_tasks])
    assert not [t.task for t in run.tasks if t.changed]
    return run.facts("diagnostics")


def _checks(diag: dict, check: str) -> dict:
    return {(c["replica"], c.get("peer")): c for c in diag["checks"] if c["check"] == check}


def test_units_journals_and_ping_are_read_on_real_hosts(lab, tmp_path) -> None:
    workload.start(lab.lab_dir, rate=20, streams=2)
    try:
        diag = _diagnose(lab, tmp_path)
    finally:
        workload.stop(lab.lab_dir)
    units = _checks(diag, "unit_active")
    assert {c["value"] for c in units.values()} == {"active (running)"}, units
    assert {c["verdict"] for c in units.values()} == {"pass"}
    errors = _checks(diag, "errors_last_hour")
    assert all(isinstance(c["value"], int) for c in errors.values()), errors
    assert {c["verdict"] for c in _checks(diag, "checksum_lines_last_day").values()} == {"pass"}
    oom = _checks(diag, "oom_kills")
    for c in oom.values():  # a container's kernel log: read, or said unreadable; never a guess
        assert (c["value"] is None) == ("unreadable" in (c["note"] or "")), c
    lead = diag["procedures"]["leader"]
    assert lead["agree"] is True and lead["by_view"] == lead["by_prepare_rate"], lead
    assert {c["verdict"] for c in _checks(diag, "tcp_connect").values()} == {"pass"}
    pings = _checks(diag, "ping_rtt")
    assert len(pings) == 6
    for c in pings.values():  # iputils-ping is in the image; where it may not run, it says why
        assert c["value"] is not None or c["note"], c
        assert c["value"] is None or c["value"] < 5.0, c
    print({k: (c["value"], c["note"]) for k, c in pings.items()}, oom)


def test_a_killed_replica_is_a_failed_unit_nobody_reaches(healed, tmp_path) -> None:
    victim = "replica-3"
    healed.fault("kill", victim)
    diag = _diagnose(healed, tmp_path)
    unit = _checks(diag, "unit_active")[(victim, None)]
    assert unit["verdict"] == "fail" and unit["value"] != "active (running)", unit
    tcp = _checks(diag, "tcp_connect")
    for other in ("replica-1", "replica-2"):
        assert tcp[(other, victim)]["verdict"] == "fail", tcp[(other, victim)]
        assert "refused" in tcp[(other, victim)]["note"].lower()
    assert diag["verdicts"]["health"] == "fail"


def test_a_real_partition_cuts_tcp_both_ways_not_icmp(healed, tmp_path) -> None:
    victim = "replica-2"
    healed.fault("partition", victim)
    diag = _diagnose(healed, tmp_path)
    tcp = _checks(diag, "tcp_connect")
    for other in ("replica-1", "replica-3"):
        assert tcp[(other, victim)]["verdict"] == "fail", tcp[(other, victim)]
        assert tcp[(victim, other)]["verdict"] == "fail", tcp[(victim, other)]
    assert tcp[("replica-1", "replica-3")]["verdict"] == "pass"
    cut = {(x["from"], x["to"]) for x in diag["procedures"]["network"]["not_reaching"]}
    assert {(victim, "replica-1"), ("replica-1", victim)} <= cut
