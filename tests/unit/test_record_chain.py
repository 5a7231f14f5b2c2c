"""The incident record's hash chain and schema (pure logic, no processes)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from pathlib import Path

import pytest
from firebreak.record import chain as record_chain
from firebreak.record import io as record_io
from firebreak.record.chain import GENESIS_HASH, RecordError
from firebreak.record.schema import schema_errors

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _events(host: str = "replica-2") -> dict[str, list[dict]]:
    return {
        host: [
            {
                "type": "observation",
                "phase": "diagnose",
                "action": "read_metrics",
                "target": host,
                "outcome": "checksum_failures",
                "at": "2026-02-05T14:33:00Z",
                "detail": {"vsr_checksum_failures_total": 3},
            },
            {
                "type": "guard",
                "phase": "decide",
                "action": "quorum_guard",
                "target": host,
                "decision": "allow",
                "at": "2026-02-05T14:34:00Z",
            },
            {
                "type": "action",
                "phase": "act",
                "action": "replica_stop",
                "target": host,
                "outcome": "stopped",
                "at": "2026-02-05T14:35:00Z",
            },
        ]
    }


def _record() -> dict:
    record = record_chain.new_record("INC-1", "lab", now="2026-02-05T14:32:00.000Z")
    record_chain.append(
        record,
        events_by_host={
            "localhost": [{"type": "state", "outcome": "detected", "at": "2026-02-05T14:32:00Z"}]
        },
        severity="SEV1",
        failure_mode="fm003_corruption",
        fault_started_at="2026-02-05T14:30:00Z",
        now="2026-02-05T14:32:00.000Z",
    )
    record_chain.append(
        record,
        events_by_host=_events(),
        evidence_by_host={
            "replica-2": [
                {
                    "kind": "metric_snapshot",
                    "phase": "before",
                    "target": "replica-2",
                    "at": "2026-02-05T14:33:01Z",
                    "data": {"vsr_checksum_failures_total": 3},
                }
            ]
        },
        state="resolved",
        now="2026-02-05T15:12:00.000Z",
    )
    return record


def test_the_python_package_uses_the_collections_chain_code():
    assert Path(record_chain.chain.__file__) == REPO / "plugins/module_utils/incident_record.py"


def test_genesis_is_the_documented_constant():
    label = "firebreak.incident record genesis v1"
    assert hashlib.sha256(label.encode()).hexdigest() == GENESIS_HASH
    assert _record()["timeline"][0]["prev_hash"] == GENESIS_HASH


def test_a_fresh_record_verifies_and_matches_the_schema():
    record = _record()
    assert schema_errors(record) == []
    assert record_chain.verify(record) == []
    assert [e["seq"] for e in record["timeline"]] == list(range(len(record["timeline"])))
    for prev, entry in zip(record["timeline"], record["timeline"][1:], strict=False):
        assert entry["prev_hash"] == prev["hash"]
    assert record["chain"]["head"] == record["timeline"][-1]["hash"]


def test_milestones_mttd_and_mttr():
    record = _record()
    assert record["milestones"] == {
        "fault_started": "2026-02-05T14:30:00.000Z",
        "detected": "2026-02-05T14:32:00.000Z",
        "acknowledged": None,
        "mitigated": None,
        "resolved": "2026-02-05T15:12:00.000Z",
    }
    assert record["metrics"] == {"mttd_seconds": 120.0, "mttr_seconds": 2400.0}
    assert (record["state"], record["severity"], record["failure_mode"]) == (
        "resolved",
        "SEV1",
        "fm003_corruption",
    )


def _first_problem(record: dict) -> dict:
    problems = record_chain.verify(record)
    assert problems, "tampering went unnoticed"
    return problems[0]


def test_editing_one_byte_of_an_entry_names_that_entry():
    record = _record()
    record["timeline"][4]["target"] = "replica-3"
    problem = _first_problem(record)
    assert problem["seq"] == 4 and "edited" in problem["reason"]


def test_editing_an_entry_and_its_hash_is_caught_by_the_next_link():
    record = _record()
    entry = record["timeline"][2]
    entry["outcome"] = "SEV4"
    entry["hash"] = record_chain.entry_hash(entry)
    problem = _first_problem(record)
    assert problem["seq"] == 3 and "prev_hash" in problem["reason"]


def test_editing_the_last_entry_is_caught():
    record = _record()
    record["timeline"][-1]["outcome"] = "mitigated"
    assert _first_problem(record)["seq"] == len(record["timeline"]) - 1


def test_reordering_entries_is_caught():
    record = _record()
    timeline = record["timeline"]
    timeline[3], timeline[4] = timeline[4], timeline[3]
    assert _first_problem(record)["index"] == 3


def test_deleting_an_entry_is_caught():
    record = _record()
    del record["timeline"][2]
    problem = _first_problem(record)
    assert problem["index"] == 2 and "deleted" in problem["reason"]


def test_deleting_the_last_entry_is_caught():
    record = _record()
    record["timeline"].pop()
    assert "head" in _first_problem(record)["reason"]


def test_editing_evidence_is_caught():
    record = _record()
    record["evidence"][0]["data"]["vsr_checksum_failures_total"] = 0
    assert "evidence ev-0001 was edited" in _first_problem(record)["reason"]


def test_escalations_and_updates_are_derived_into_the_record():
    record = _record()  # SEV1 detected 14:32, resolved 15:12, never acknowledged
    items = {i["id"]: i for i in record["escalation"]}
    assert items["manager"]["due"] == "2026-02-05T14:32:00.000Z"
    assert items["secondary"]["status"] == "open"  # due 14:47, nobody acknowledged
    assert items["executive"]["status"] == "met"  # resolved before the 2 hours
    assert record["updates"]["due"] == ["2026-02-05T14:47:00.000Z", "2026-02-05T15:02:00.000Z"]
    assert record["updates"]["next"] is None


def test_a_record_written_before_escalation_existed_still_verifies():
    record = _record()
    del record["escalation"], record["updates"]
    assert record_chain.verify(record) == []


def test_editing_a_summary_field_outside_the_chain_is_caught():
    record = _record()
    record["escalation"][0]["status"] = "met"
    assert "escalation" in _first_problem(record)["reason"]
    record = _record()
    record["severity"] = "SEV4"
    assert "severity" in _first_problem(record)["reason"]
    record = _record()
    record["metrics"]["mttr_seconds"] = 1
    assert "metrics" in _first_problem(record)["reason"]


def test_identical_run_once_events_from_every_host_are_recorded_once():
    event = {"type": "note", "detail": {"text": "once"}, "at": "2026-02-05T14:40:00Z"}
    record = record_chain.new_record("INC-2", "lab")
    added = record_chain.append(
        record, events_by_host={"r1": [event], "r2": [event], "r3": [dict(event)]}
    )
    assert len(added) == 1 and added[0]["host"] is None
    added = record_chain.append(
        record, events_by_host={"r2": [{"type": "note", "at": event["at"]}]}
    )
    assert added[0]["host"] == "r2"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "action", "targett": "x"}, "unknown key"),
        ({"type": "explode"}, "not one of"),
        ({"type": "state", "outcome": "panicking"}, "state event outcome"),
        ({"type": "severity", "outcome": "P1"}, "severity event outcome"),
        ({"type": "action", "at": "2026-02-05T14:40:00"}, "no time zone"),
        ({"type": "action", "at": "yesterday"}, "ISO-8601"),
    ],
)
def test_bad_events_are_refused_with_a_clear_message(event, message):
    with pytest.raises(RecordError, match=message):
        record_chain.append(record_chain.new_record("INC-3", "lab"), events_by_host={"h": [event]})


def test_the_schema_rejects_a_malformed_record():
    record = _record()
    bad = copy.deepcopy(record)
    bad["severity"] = "P1"
    del bad["timeline"][0]["hash"]
    errors = schema_errors(bad)
    assert any(e.startswith("severity") for e in errors)
    assert any(e.startswith("timeline/0") for e in errors)
    assert not record_io.verify_document(bad).ok


def test_append_to_file_continues_the_chain_and_refuses_a_tampered_file(tmp_path):
    _record, first, created = record_chain.append_to_file(
        str(tmp_path / "INC-4.json"), "INC-4", "lab", events_by_host=_events(), state="detected"
    )
    assert created and len(first) == 4
    _record_after, second, created = record_chain.append_to_file(
        str(tmp_path / "INC-4.json"), "INC-4", "lab", state="resolved"
    )
    assert not created and second[0]["prev_hash"] == first[-1]["hash"]
    assert record_io.verify_file(tmp_path / "INC-4.json").ok
    path = tmp_path / "INC-4.json"
    data = json.loads(path.read_text())
    data["timeline"][1]["decision"] = "deny"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="refusing to append"):
        record_chain.append_to_file(str(path), "INC-4", "lab", state="escalated")
    with pytest.raises(RecordError, match="holds incident"):
        record_chain.append_to_file(str(path), "INC-5", "lab")


def test_concurrent_appends_all_land_on_one_valid_chain(tmp_path):
    path = str(tmp_path / "INC-6.json")

    def writer(n: int) -> None:
        for i in range(10):
            record_chain.append_to_file(
                path,
                "INC-6",
                "lab",
                events_by_host={f"h{n}": [{"type": "note", "detail": {"text": f"{n}-{i}"}}]},
            )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = record_io.verify_file(path)
    assert result.ok and result.entries == 40


def test_an_id_that_is_not_a_file_name_is_refused(tmp_path):
    with pytest.raises(RecordError):
        record_chain.record_path(str(tmp_path), "../escape")


# ----------------------------------------------------------------------------- event order
# The stamps of the demo record in issue 11: replica_stop by now() with sub-seconds, the
# replica_start after it by strftime to the whole second ("00:43:26.000Z"). When both fell in
# the same second, the start sorted before the stop.
DEMO_STOP = "2026-02-06T00:43:25.976123Z"
DEMO_START_SAME_SECOND = "2026-02-06T00:43:25Z"
DEMO_START_NEXT_SECOND = "2026-02-06T00:43:26.000Z"


def _act(action: str, at: str, target: str = "replica-2") -> dict:
    return {"type": "action", "phase": "act", "action": action, "target": target, "at": at}


ORDER_CASES = [
    pytest.param(
        {
            "replica-2": [
                _act("replica_stop", DEMO_STOP),
                _act("replica_start", DEMO_START_NEXT_SECOND),
            ]
        },
        [("replica-2", "replica_stop"), ("replica-2", "replica_start")],
        id="demo-stamps-next-second",
    ),
    pytest.param(
        {
            "replica-2": [
                _act("replica_stop", DEMO_STOP),
                _act("replica_start", DEMO_START_SAME_SECOND),
            ]
        },
        [("replica-2", "replica_stop"), ("replica-2", "replica_start")],
        id="same-second-mixed-precision-keeps-emission-order",
    ),
    pytest.param(
        {
            "replica-2": [
                _act("replica_stop", DEMO_STOP),
                _act("replica_start", DEMO_START_SAME_SECOND),
                _act("replica_back", "2026-02-06T00:43:25.990Z"),
            ]
        },
        [
            ("replica-2", "replica_stop"),
            ("replica-2", "replica_start"),
            ("replica-2", "replica_back"),
        ],
        id="same-second-three-events-keep-emission-order",
    ),
    pytest.param(
        {
            "replica-3": [
                _act("read_metrics", "2026-02-06T00:43:24.500000Z", "replica-3"),
                _act("replica_back", "2026-02-06T00:43:26.200000Z", "replica-3"),
            ],
            "replica-2": [
                _act("replica_stop", DEMO_STOP),
                _act("replica_start", DEMO_START_SAME_SECOND),
            ],
        },
        [
            ("replica-3", "read_metrics"),
            ("replica-2", "replica_stop"),
            ("replica-2", "replica_start"),
            ("replica-3", "replica_back"),
        ],
        id="two-hosts-one-with-mixed-precision",
    ),
    pytest.param(
        {
            "replica-1": [
                _act("a", "2026-02-06T00:43:25.100100Z", "replica-1"),
                _act("c", "2026-02-06T00:43:25.100300Z", "replica-1"),
            ],
            "replica-2": [
                _act("b", "2026-02-06T00:43:25.100200Z"),
                _act("d", "2026-02-06T00:43:25.100400Z"),
            ],
        },
        [("replica-1", "a"), ("replica-2", "b"), ("replica-1", "c"), ("replica-2", "d")],
        id="two-hosts-interleaved-within-one-millisecond",
    ),
]


@pytest.mark.parametrize(("events", "expected"), ORDER_CASES)
def test_the_timeline_is_in_the_order_things_happened(events, expected):
    record = record_chain.new_record("INC-7", "lab", now="2026-02-06T00:44:00.000Z")
    added = record_chain.append(record, events_by_host=events, now="2026-02-06T00:44:00.000Z")
    assert [(e["host"], e["action"]) for e in added] == expected
    assert [e["seq"] for e in record["timeline"]] == list(range(len(expected)))
    assert all(TIME_FORMAT.fullmatch(e["at"]) for e in added), [e["at"] for e in added]


@pytest.mark.parametrize(("events", "expected"), ORDER_CASES)
def test_the_merge_does_not_depend_on_the_order_of_the_hosts(events, expected):
    def timeline(by_host: dict) -> list[dict]:
        record = record_chain.new_record("INC-8", "lab", now="2026-02-06T00:44:00.000Z")
        record_chain.append(record, events_by_host=by_host, now="2026-02-06T00:44:00.000Z")
        return record["timeline"]

    assert timeline(events) == timeline(dict(reversed(list(events.items()))))


TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
CLOCK = "now(utc=true, fmt='%Y-%m-%dT%H:%M:%S.%fZ')"
STAMP_LINE = re.compile(r"""^\s*['"]?at['"]?\s*:\s*(.*)$""")


def test_every_role_stamps_its_events_from_one_sub_second_clock():
    """An event's `at` is now() with sub-seconds, or a variable; never strftime or a literal."""
    bad = []
    for path in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = STAMP_LINE.match(line)
            if not match:
                continue
            value = match.group(1)
            if (
                "strftime" in value
                or re.search(r"\d{2}Z", value)
                or ("now(" in value and CLOCK not in value)
            ):
                bad.append(f"{path.relative_to(REPO)}:{number}: {value}")
    assert bad == []


def test_a_run_s_conclusions_come_after_what_it_saw():
    """Issue 11: the record's own sequence is the order things happened. The fault's start
    first, the run's observations and actions, then what it concluded (classification, tasks,
    severity, stamped when the run appends them), then the state."""
    record = record_chain.new_record("INC-9", "lab", now="2026-02-06T00:40:00.000Z")
    events = {
        "replica-1": [
            {
                "type": "observation",
                "at": "2026-02-06T00:44:01.100Z",
                "phase": "diagnose",
                "action": "triage",
                "outcome": "FM-005",
            },
            {
                "type": "action",
                "at": "2026-02-06T00:44:05.200Z",
                "phase": "act",
                "action": "replica_start",
                "outcome": "started",
            },
        ]
    }
    record_chain.append(
        record,
        events_by_host=events,
        failure_mode="fm005_replica_crash",
        severity="SEV3",
        state="mitigated",
        fault_started_at="2026-02-06T00:43:59.000Z",
        tasks=[
            {"failure_mode": "FM-005", "text": "Replace the hardware", "owner": "hardware on-call"}
        ],
        now="2026-02-06T00:44:09.000Z",
    )
    kinds = [e["type"] if e["type"] != "action" else e["action"] for e in record["timeline"]]
    assert kinds == [
        "fault",
        "observation",
        "replica_start",
        "classification",
        "task",
        "severity",
        "state",
    ], kinds
    stamps = [e["at"] for e in record["timeline"]]
    assert stamps == sorted(stamps), stamps
