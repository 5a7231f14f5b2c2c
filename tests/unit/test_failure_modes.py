"""The failure-mode registry and the classification that reads it (table-driven, no I/O)."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import failure_modes as fmr
from ansible_collections.firebreak.incident.plugins.module_utils import vsr

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ the registry itself
def test_registry_is_sound_and_complete():
    assert fmr.validate() == []
    assert [e["id"] for e in fmr.REGISTRY] == [f"FM-{i:03d}" for i in range(1, 9)]


@pytest.mark.parametrize(
    "breakage, complaint",
    [
        (lambda r: r[1].update(rehearsal_net=r[0]["rehearsal_net"]), "rehearsal_net"),
        (lambda r: r[1].update(id="FM-001"), "listed twice"),
        (lambda r: r[2].update(severity="SEV9"), "severity"),
        (lambda r: r[2].update(role="corruption"), "must be its slug"),
        (lambda r: r[4].update(role="fm003_corruption"), "must be its slug"),
        (lambda r: r[4].update(slug="fm003_crash"), "slug"),
        (lambda r: r[3]["steps"][0].update(handling="maybe"), "handling"),
        (lambda r: r[3]["steps"][4].update(handling="automated"), "nothing does it"),
        (lambda r: r[3].update(explained_by=["FM-099"]), "explained_by"),
        (lambda r: r[3].update(explained_by=["FM-004"]), "explained_by"),
        (lambda r: r[5]["thresholds"].update(clock_offset_ms=1), "threshold 'clock_offset_ms'"),
        (lambda r: r[6].update(fault=[]), "no lab fault"),
        (lambda r: r[2].pop("summary"), "needs a summary"),
    ],
)
def test_validate_names_each_breakage(breakage, complaint):
    registry = copy.deepcopy(list(fmr.REGISTRY))
    breakage(registry)
    problems = fmr.validate(registry)
    assert problems and any(complaint in p for p in problems), problems


@pytest.mark.parametrize(
    "name, fm",
    [
        ("FM-003", "FM-003"),
        ("fm003", "FM-003"),
        ("fm-5", "FM-005"),
        ("fm003_corruption", "FM-003"),
        ("fm005_replica_crash", "FM-005"),
        (7, "FM-007"),
    ],
)
def test_get_by_any_name(name, fm):
    assert fmr.get(name)["id"] == fm


@pytest.mark.parametrize("name", ["FM-009", "fm3x", "corruption", "", None, True, 0])
def test_get_unknown_lists_the_known(name):
    with pytest.raises(fmr.UnknownFailureMode, match="known: FM-001"):
        fmr.get(name)


def test_entries_cannot_be_changed_through_get():
    fmr.get("FM-003")["thresholds"]["checksum_failures"] = 99
    assert fmr.get("FM-003")["thresholds"]["checksum_failures"] == 0


def test_classification_reads_the_registry():
    assert fmr.thresholds() == vsr.DEFAULT_THRESHOLDS
    for entry in fmr.REGISTRY:
        assert vsr.FAILURE_MODES[entry["id"]] == (entry["name"], entry["severity"])
    assert fmr.runbooks() and all(fmr.get(fm)["slug"] == r for fm, r in fmr.runbooks().items())


def test_tasks_for_people_carry_the_seed_wording_and_an_owner():
    tasks = fmr.tasks_for_people("FM-005")
    assert tasks[0] == {
        "failure_mode": "FM-005",
        "text": "Scenario 2, hardware failure: replace the hardware, provision a new replica",
        "owner": "hardware on-call",
    }
    assert [t["owner"] for t in tasks] == ["hardware on-call", "on-call engineer", "SRE team"]
    # what the runbook does itself is no task for a person
    assert all("restart the replica, monitor" not in t["text"] for t in tasks)


# ------------------------------------------------------------------ classification
def _replica(name, **values):
    row = {
        "name": name,
        "reachable": True,
        "status": 0,
        "view": 4,
        "op": 500,
        "commit": 500,
        "checksum_failures": 0,
        "clock_offset_ms": 1.0,
    }
    row.update(values)
    return row


def _cluster(*replicas, **previous):
    return {"cluster": {"replica_count": len(replicas)}, "replicas": list(replicas)}


SLOW = {"client_latency_p95_ms": 180.0, "prepare_latency_p95_ms": 90.0}
DOWN = {"reachable": False, "status": None, "view": None, "op": None, "commit": None}

# name: (replicas, expected verdict, expected targets, findings that must be present)
CASES = {
    "latency alone is FM-004": (
        [_replica("r1", **SLOW), _replica("r2", **SLOW), _replica("r3")],
        "FM-004",
        ["r1", "r2"],
        ["FM-004"],
    ),
    "a killed leader explains the latency": (
        [_replica("r1", **DOWN), _replica("r2", view=5, **SLOW), _replica("r3", view=5, **SLOW)],
        "FM-005",
        ["r1"],
        ["FM-004", "FM-005"],
    ),
    "a full disk explains the latency": (
        [_replica("r1", **SLOW), _replica("r2", filesystem_used_percent=96.0), _replica("r3")],
        "FM-007",
        ["r2"],
        ["FM-004", "FM-007"],
    ),
    "a skewed clock (300 ms) explains the latency": (
        [_replica("r1", **SLOW), _replica("r2", clock_offset_ms=300.0), _replica("r3")],
        "FM-008",
        ["r2"],
        ["FM-004", "FM-008"],
    ),
    "corruption beats latency and lag": (
        [_replica("r1", **SLOW), _replica("r2", checksum_failures=3), _replica("r3")],
        "FM-003",
        ["r2"],
        ["FM-003", "FM-004"],
    ),
    "a crash explains the lag": (
        [_replica("r1", **DOWN), _replica("r2"), _replica("r3", commit=300)],
        "FM-005",
        ["r1"],
        ["FM-005", "FM-006"],
    ),
    "lag alone is FM-006": (
        [_replica("r1"), _replica("r2"), _replica("r3", commit=300)],
        "FM-006",
        ["r3"],
        ["FM-006"],
    ),
    "all in ViewChange with a quorum answering is FM-002": (
        [_replica("r1", status=1), _replica("r2", status=1), _replica("r3", status=1)],
        "FM-002",
        ["r1", "r2", "r3"],
        ["FM-002"],
    ),
    "ViewChange with only one answering is FM-001": (
        [_replica("r1", status=1), _replica("r2", **DOWN), _replica("r3", **DOWN)],
        "FM-001",
        ["r1", "r2", "r3"],
        ["FM-001", "FM-002"],
    ),
    "five replicas, two down, quorum kept: no FM-001": (
        [_replica(f"r{i}") for i in (1, 2, 3)] + [_replica("r4", **DOWN), _replica("r5", **DOWN)],
        "none",
        [],
        [],
    ),
    "healthy": ([_replica("r1"), _replica("r2"), _replica("r3")], "none", [], []),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_verdict_names_the_cause(name):
    replicas, fm, targets, present = CASES[name]
    result = vsr.classify(_cluster(*copy.deepcopy(replicas)))
    assert result["overall"]["failure_mode"] == fm
    assert result["overall"]["targets"] == targets
    assert sorted(f["fm"] for f in result["findings"]) == present
    assert result["overall"]["runbook"] == fmr.runbook(fm) if fm != "none" else "none"
    for finding in result["findings"]:
        if finding["fm"] != fm and fm != "none" and finding["fm"] in ("FM-004", "FM-006"):
            assert fm in finding["explained_by"]  # the symptom stays, marked as explained


def test_the_symptom_stays_in_the_evidence():
    replicas = CASES["a killed leader explains the latency"][0]
    result = vsr.classify(_cluster(*copy.deepcopy(replicas)))
    latency = next(f for f in result["findings"] if f["fm"] == "FM-004")
    assert latency["explained_by"] == ["FM-005"]
    assert any("p95 180 ms" in e for e in latency["evidence"])


# The seed's alert thresholds sit below the failure modes': an alert fires, no finding.
ALERTS = {
    "commit lag 60 ops: alert, not FM-006": (
        {"commit": 440},
        "VsrCommitLag",
        None,
    ),
    "commit lag 50 ops: nothing (more than 50)": ({"commit": 450}, None, None),
    "commit lag 120 ops: alert and FM-006": ({"commit": 380}, "VsrCommitLag", "FM-006"),
    "disk 85 %: alert, not FM-007": ({"filesystem_used_percent": 85.0}, "VsrDiskFull", None),
    "disk 79 %: nothing": ({"filesystem_used_percent": 79.0}, None, None),
    "disk 91 %: alert and FM-007": ({"filesystem_used_percent": 91.0}, "VsrDiskFull", "FM-007"),
    "clock 150 ms: alert, not FM-008": ({"clock_offset_ms": -150.0}, "VsrClockDrift", None),
    "clock 100 ms: nothing (more than 100)": ({"clock_offset_ms": 100.0}, None, None),
    "clock 250 ms: alert and FM-008": ({"clock_offset_ms": 250.0}, "VsrClockDrift", "FM-008"),
}


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_thresholds_of_the_seed(name):
    values, alert, fm = ALERTS[name]
    result = vsr.classify(_cluster(_replica("r1"), _replica("r2", **values), _replica("r3")))
    fired = [a["alert"] for a in result["alerts"]]
    assert fired == ([alert] if alert else [])
    if alert:
        assert result["alerts"][0]["replica"] == "r2"
    assert [f["fm"] for f in result["findings"]] == ([fm] if fm else [])
    # severity from the signals: a warning alone is the seed's SEV4, a failure mode its own
    overall = result["overall"]
    expected = fmr.get(fm)["severity"] if fm else ("SEV4" if alert else "none")
    assert overall["severity"] == expected
    assert overall["name"] == (fmr.get(fm)["name"] if fm else "Warnings" if alert else "Healthy")
    assert overall["targets"] == (["r2"] if alert else [])
    assert overall["failure_mode"] == (fm or "none") and overall["runbook"] == fmr.runbook(fm)


@pytest.mark.parametrize("climb, fires", [(1, False), (2, True)])
def test_view_changes_per_hour_alert(climb, fires):
    # 1 view in 15 minutes is 4 an hour (no alert); 2 is 8 an hour (more than 5).
    now = _cluster(_replica("r1", view=4 + climb), _replica("r2", view=4 + climb), _replica("r3"))
    before = _cluster(_replica("r1"), _replica("r2"), _replica("r3"))
    now["collected_at"], before["collected_at"] = 1000.0 + 900, 1000.0
    result = vsr.classify(now, previous=before)
    assert ("VsrViewChangeStorm" in [a["alert"] for a in result["alerts"]]) is fires


def test_threshold_overrides_include_the_alert_ones():
    result = vsr.classify(
        _cluster(_replica("r1"), _replica("r2", commit=490), _replica("r3")), commit_lag_alert=5
    )
    assert [a["alert"] for a in result["alerts"]] == ["VsrCommitLag"]
    with pytest.raises(vsr.VsrInputError, match="unknown threshold"):
        vsr.classify(_cluster(_replica("r1")), commit_lag_alrt=5)


ROOT = Path(__file__).resolve().parents[2]


def test_every_runbook_role_is_in_the_registry_and_back():
    on_disk = sorted(p.name for p in (ROOT / "roles").glob("fm[0-9][0-9][0-9]_*"))
    assert on_disk == sorted(fmr.runbooks().values())
    for role in on_disk:
        assert (ROOT / "playbooks" / f"{role}.yml").is_file(), role


@pytest.mark.parametrize("role", sorted(fmr.runbooks().values()))
def test_molecule_scenarios_use_the_registry_network(role):
    """A scenario is a few lines: its name is its failure mode, and the one base config takes
    the network (and the fault, and the rehearsal's vars) from the registry by that name."""
    scenario = ROOT / "molecule" / role / "molecule.yml"
    text = scenario.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 10 and not re.search(r"127\.0\.\d+", text), scenario
    base = (ROOT / ".config" / "molecule" / "config.yml").read_text(encoding="utf-8")
    assert not re.search(r"127\.0\.\d+\.", base), "the base config hard-codes a network"
    assert "127.0.${FIREBREAK_MOLECULE_NET}." in base
    # scripts/molecule exports the registry's network; prepare refuses any other.
    prepare = (ROOT / "molecule" / "_shared" / "prepare.yml").read_text(encoding="utf-8")
    assert "== molecule_failure_mode.rehearsal_net | string" in prepare
    assert '["rehearsal_net"]' in (ROOT / "scripts" / "molecule").read_text(encoding="utf-8")


# ------------------------------------------------------------------ the verdict filter
from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.firebreak.incident.plugins.filter import vsr as vsr_filters  # noqa: E402


def test_the_verdict_filter_gives_sev4_for_warnings_alone_and_the_cause_otherwise():
    warn = vsr.classify(_cluster(_replica("r1"), _replica("r2", commit=440), _replica("r3")))
    top = vsr_filters.vsr_verdict(warn["findings"], alerts=warn["alerts"])
    assert (top["fm"], top["severity"], top["name"], top["replicas"]) == (
        "none",
        "SEV4",
        "Warnings",
        ["r2"],
    )
    assert top["evidence"] == ["VsrCommitLag on r2: 60 (> 50)"]
    lag = vsr.classify(_cluster(_replica("r1"), _replica("r2", commit=380), _replica("r3")))
    assert vsr_filters.vsr_verdict(lag["findings"], alerts=lag["alerts"])["fm"] == "FM-006"
    assert vsr_filters.vsr_verdict([], alerts=[]) == {} and vsr_filters.vsr_verdict([]) == {}
    with pytest.raises(AnsibleFilterError, match="alerts must be"):
        vsr_filters.vsr_verdict([], alerts=[{"nope": 1}])
