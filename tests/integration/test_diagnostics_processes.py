"""The diagnostics role for real: playbooks/diagnostics.yml (and triage with
``triage_diagnostics``) against a processes lab on 127.0.75.x.

A healthy lab under the workload: every replica Normal in one view, the leader named by the
view and by its Prepare rate alike, every replica reaching every other over TCP and the VSR
protocol, real resource figures, the unit and its journal honestly unavailable (processes have
no systemd unit). Check mode gives the same verdicts and writes nothing; a run with an incident
id records the diagnosis. A killed replica fails its health and the matrix names who cannot
reach it (TCP refused); a partitioned one (simulated in processes mode: TCP still connects)
shows in the protocol column both ways. The diagnosis reports; it never fails the play.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from firebreak import runner
from firebreak.lab import workload
from processes_lab import admin_status, all_normal_same_commit, member, processes_lab, wait

pytestmark = pytest.mark.lab

NET = 75
NAMES = ["replica-1", "replica-2", "replica-3"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("diagnostics-lab")
    with processes_lab(d, NET) as be:
        yield be


@pytest.fixture
def loaded(lab):
    """The lab under the workload (the Prepare rate names the leader only while it writes);
    healed, Normal and level again afterwards."""
    workload.start(lab.dir, rate=20, streams=2)
    try:
        time.sleep(1)
        yield lab
    finally:
        workload.stop(lab.dir)
        lab.heal()
        _wait_level(lab, "every replica Normal with equal commits after the test")


def _wait_level(be, what: str) -> None:
    """Every replica Normal in one view with equal commits (a loaded machine: up to 60 s);
    the replicas' status, view and commit in the error otherwise."""
    try:
        wait(lambda: all_normal_same_commit(be), 60, what, pause=0.25)
    except AssertionError as e:
        seen = [(m["name"], admin_status(m)) for m in be.state()["replicas"]]
        brief = [(n, s and (s["status"], s["view"], s["commit"])) for n, s in seen]
        raise AssertionError(f"{e}; replicas (status, view, commit): {brief}") from None


def _diagnose(be, tmp_path: Path, **kw) -> tuple[runner.RunResult, dict]:
    run = runner.run_playbook(
        "diagnostics", inventory=be.inventory(), incident_dir=tmp_path / "incidents", **kw
    )
    assert run.status == "successful", (run.error, [(t.task, t.message) for t in run.failed_tasks])
    # The only change a run may report is the record's append on the controller (an id given).
    changed = [(t.task, t.action) for t in run.tasks if t.changed]
    assert all(a == "firebreak.incident.incident_record" for _, a in changed), changed
    diag = run.facts("diagnostics")
    assert diag, "no diagnostics fact"
    return run, diag


def _checks(diag: dict, check: str, verdict: str | None = None) -> list[dict]:
    return [
        c
        for c in diag["checks"]
        if c["check"] == check and (verdict is None or c["verdict"] == verdict)
    ]


# Figures of the whole machine's kernel (its load, its TCP retransmits and drops: processes
# share it with whatever else runs) move between two runs; they are compared by availability.
MACHINE_WIDE = ("tcp_retransmits", "interface_drops")


def _verdicts(diag: dict) -> dict:
    """(check, replica, peer) -> verdict; for the machine-wide figures, whether they were read."""
    return {
        (c["check"], c["replica"], c.get("peer")): (
            c["value"] is not None
            if c["procedure"] == "resources" or c["check"] in MACHINE_WIDE
            else c["verdict"]
        )
        for c in diag["checks"]
    }


def _files(d: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in d.rglob("*")} if d.exists() else {}


def test_a_healthy_lab_passes_with_real_figures(loaded, tmp_path) -> None:
    leader = loaded.resolve("leader")
    t0 = time.monotonic()
    _, diag = _diagnose(loaded, tmp_path)
    seconds = time.monotonic() - t0
    assert diag["verdicts"]["health"] == "unavailable", diag["failing"]  # only the unit is
    assert {c["verdict"] for c in _checks(diag, "status_normal")} == {"pass"}
    assert _checks(diag, "same_view")[0]["verdict"] == "pass"
    assert _checks(diag, "commit_spread")[0]["value"] <= 10
    units = _checks(diag, "unit_active")
    assert {c["verdict"] for c in units} == {"unavailable"}
    assert all("no systemd unit" in c["note"] for c in units)

    lead = diag["procedures"]["leader"]
    assert lead["by_view"] == leader and lead["by_prepare_rate"] == leader, lead
    assert lead["agree"] is True and lead["verdict"] == "pass"
    assert lead["prepare_rates"][leader] > 0

    matrix = diag["procedures"]["network"]["matrix"]
    assert sorted(matrix) == NAMES
    for src, row in matrix.items():
        assert sorted(row) == [n for n in NAMES if n != src]
        for dst, cell in row.items():
            assert cell["tcp_ok"] is True and cell["tcp_ms"] > 0, (src, dst, cell)
            assert cell["address"] == f"127.0.{NET}.{dst[-1]}:8080"
            assert cell["protocol_reachable"] is True, (src, dst, cell)
    assert diag["procedures"]["network"]["not_reaching"] == []

    logs = diag["procedures"]["logs"]["replicas"]["replica-1"]
    assert logs["errors_last_hour"] is None and "no systemd unit" in logs["journal_unavailable"]
    oom = _checks(diag, "oom_kills")[0]
    assert (oom["value"] is None) == ("unreadable" in (oom["note"] or "")), oom

    res = diag["procedures"]["resources"]["replicas"]["replica-1"]
    assert 0 <= res["cpu_percent"] <= 100 and res["cores"] == len(os.sched_getaffinity(0))
    st = os.statvfs(member(loaded, "replica-1")["data_dir"])
    assert abs(res["disk_free_percent"] - 100.0 * st.f_bavail / st.f_blocks) < 1.0
    assert res["disk_ios"] is not None and res["window_s"] >= 1.0
    print(f"diagnostics playbook on a healthy processes lab: {seconds:.1f} s")


def test_check_mode_gives_the_same_verdicts_and_writes_nothing(loaded, tmp_path) -> None:
    incidents = tmp_path / "incidents"
    before = _files(loaded.dir / "replicas") | _files(incidents)
    checked_run, checked = _diagnose(loaded, tmp_path, check=True, incident_id="INC-DIAG-CHECK")
    assert checked_run.check
    assert not (incidents / "INC-DIAG-CHECK.json").exists()
    assert not incidents.exists() or not any(incidents.rglob("*"))
    _, plain = _diagnose(loaded, tmp_path)
    assert _verdicts(checked) == _verdicts(plain)
    assert [(c["check"], c["replica"]) for c in checked["checks"]] == [
        (c["check"], c["replica"]) for c in plain["checks"]
    ]
    # The replicas' own files move (their logs, their data): nothing else was written.
    after = _files(loaded.dir / "replicas") | _files(incidents)
    assert set(after) - set(before) <= {p for p in after if "/data/" in p or p.endswith(".log")}


def test_an_incident_id_records_the_diagnosis_as_evidence(loaded, tmp_path) -> None:
    _, diag = _diagnose(loaded, tmp_path, incident_id="INC-DIAG-REC")
    record = json.loads((tmp_path / "incidents" / "INC-DIAG-REC.json").read_text())
    summaries = [e["summary"] for e in record["evidence"]]
    for procedure in ("health", "leader", "network", "logs", "resources"):
        want = f"diagnostics {procedure}: {diag['verdicts'][procedure]}"
        assert want in summaries, summaries
    observed = [e for e in record["timeline"] if e.get("action") == "diagnostics"]
    assert observed and observed[0]["outcome"] == diag["overall"]


def test_a_killed_replica_fails_health_and_nobody_reaches_it(loaded, tmp_path) -> None:
    victim = loaded.resolve("backup")
    loaded.fault("kill", victim)
    wait(lambda: admin_status(member(loaded, victim)) is None, 10, f"{victim} down")
    _, diag = _diagnose(loaded, tmp_path)
    assert diag["verdicts"]["health"] == "fail" and diag["overall"] == "fail"
    status = {c["replica"]: c for c in _checks(diag, "status_normal")}
    assert status[victim]["verdict"] == "fail" and status[victim]["value"] == "unreachable"
    assert "refused" in status[victim]["note"]
    assert {n for n, c in status.items() if c["verdict"] == "pass"} == set(NAMES) - {victim}
    refused = _checks(diag, "tcp_connect", "fail")
    assert sorted((c["replica"], c["peer"]) for c in refused) == sorted(
        (n, victim) for n in NAMES if n != victim
    )
    assert all("Connection refused" in c["note"] for c in refused)
    cut = {(x["from"], x["to"]) for x in diag["procedures"]["network"]["not_reaching"]}
    assert {(n, victim) for n in NAMES if n != victim} <= cut
    assert diag["procedures"]["leader"]["prepare_rates"][victim] is None


def test_a_partitioned_replica_shows_in_the_protocol_column(loaded, tmp_path) -> None:
    victim = loaded.resolve("backup")
    others = [n for n in NAMES if n != victim]
    loaded.fault("partition", victim)

    def cut_off() -> bool:
        s = admin_status(member(loaded, victim)) or {}
        peers = s.get("peers") or {}
        return bool(peers) and not any(peers.get(n, {}).get("reachable") for n in others)

    wait(cut_off, 15, f"{victim} cut off from {others}")
    _, diag = _diagnose(loaded, tmp_path)
    proto = {(c["replica"], c["peer"]) for c in _checks(diag, "protocol_reachable", "fail")}
    assert {(victim, n) for n in others} <= proto, diag["failing"]
    # simulated in processes mode: the replicas drop the traffic, TCP still connects
    assert not [
        c for c in _checks(diag, "tcp_connect", "fail") if victim in (c["replica"], c["peer"])
    ]
    cut = diag["procedures"]["network"]["not_reaching"]
    assert {(victim, n) for n in others} <= {(x["from"], x["to"]) for x in cut}
    assert diag["verdicts"]["network"] == "fail"


def test_triage_runs_the_procedures_only_when_asked(lab, tmp_path) -> None:
    _wait_level(lab, "a quiet, level lab")
    inventory = lab.inventory()
    t0 = time.monotonic()
    plain = runner.run_playbook("triage", inventory=inventory, incident_dir=tmp_path / "i")
    plain_s = time.monotonic() - t0
    t0 = time.monotonic()
    both = runner.run_playbook(
        "triage",
        inventory=inventory,
        incident_dir=tmp_path / "i",
        incident_id="INC-DIAG-TRIAGE",
        extra_vars={"triage_diagnostics": True},
    )
    both_s = time.monotonic() - t0
    assert plain.status == both.status == "successful", both.failed_tasks
    assert plain.facts("diagnostics") is None
    assert not [t for t in plain.tasks if t.role == "diagnostics" and t.status != "skipped"]
    diag = both.facts("diagnostics")
    assert diag and diag["verdicts"]["health"] in ("pass", "unavailable"), diag["failing"]
    assert both.facts("firebreak_triage")["failure_mode"] == "none"
    # the procedures' evidence joins the triage's in the triage's record (the convention)
    record = json.loads((tmp_path / "i" / "INC-DIAG-TRIAGE.json").read_text())
    summaries = [e["summary"] for e in record["evidence"]]
    assert any(x.startswith("triage table") for x in summaries), summaries
    assert f"diagnostics network: {diag['verdicts']['network']}" in summaries, summaries
    print(f"triage {plain_s:.1f} s; with triage_diagnostics {both_s:.1f} s")


def test_an_undescribed_replica_is_refused_before_anything_is_read(tmp_path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    kimberlite_vsr:\n      hosts:\n"
        "        replica-1:\n          vsr_metrics_url: http://127.0.75.9:9090\n"
        "          ansible_connection: local\n"
    )
    run = runner.run_playbook("diagnostics", inventory=inventory, incident_dir=tmp_path / "i")
    assert run.status == "failed"
    failed = run.failed_tasks
    assert [t.task for t in failed] == [
        "Preflight | the replica group exists and every replica is described"
    ]
    assert "vsr_replica_name" in failed[0].message and "1 host(s)" in failed[0].message
    assert not [t for t in run.tasks if t.action == "firebreak.incident.host_diagnostics"]
