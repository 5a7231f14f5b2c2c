"""Triage's per-replica table from what each host said (module_utils/host_reads.py and the
filter vsr_host_table): the unit's properties, the journal over the window and the current run,
the admin status; hosts not read, binary messages, truncated lines and bad patterns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.filter import vsr as vsr_filters
from ansible_collections.firebreak.incident.plugins.module_utils import host_reads

pytestmark = pytest.mark.unit

PATTERNS = {"checksum": "checksum", "panic": "panic|fatal|traceback", "oom": "out of memory"}
NOW_US = 1796200000 * 1000000  # 2026-12-02T08:26:40Z, in microseconds
RUN, OLD = "inv-now", "inv-before"


def _entry(message, invocation=RUN, offset_s=0, key="_SYSTEMD_INVOCATION_ID"):
    return json.dumps(
        {
            "__REALTIME_TIMESTAMP": str(NOW_US + offset_s * 1000000),
            "MESSAGE": message,
            key: invocation,
        }
    )


def _unit(active="active", invocation=RUN, restarts="0"):
    lines = [
        f"ActiveState={active}",
        "SubState=running" if active == "active" else "SubState=dead",
        "Result=success",
        "ExecMainCode=0",
        "ExecMainStatus=0",
        f"NRestarts={restarts}",
        "MainPID=4242",
        f"InvocationID={invocation}",
        "ActiveEnterTimestamp=Wed 2026-12-02 21:00:00 UTC",
        "InactiveEnterTimestamp=",
        "Description=a=b keeps its second '='",
    ]
    return {"rc": 0, "stdout_lines": lines}


def _journal(*lines):
    return {"rc": 0, "stdout_lines": list(lines)}


def _admin(status=None, rc=0):
    return {"rc": rc, "stdout": json.dumps(status) if status is not None else "connection refused"}


ROW = {"name": "replica-2", "host": "r2", "status_name": "Normal", "commit": 10}


def test_a_healthy_host_has_its_unit_its_journal_and_its_admin_status():
    reads = {
        "unit": _unit(),
        "journal": _journal(_entry("started"), _entry("committed op 10")),
        "admin": _admin({"isolated": False, "corrupt_from": None, "status": "normal"}),
    }
    row = host_reads.host_row(ROW, reads, PATTERNS)
    assert row["name"] == "replica-2" and row["commit"] == 10  # the snapshot's row is kept
    assert (row["host_reachable"], row["host_state_read"]) == (True, True)
    assert row["unit_active_state"] == "active" and row["unit_main_pid"] == "4242"
    assert row["unit_invocation"] == RUN and row["unit_inactive_since"] == ""
    assert row["journal_tail"] == [
        "2026-12-02T08:26:40Z started",
        "2026-12-02T08:26:40Z committed op 10",
    ]
    assert row["run_tail"] == row["journal_tail"]
    assert row["journal_checksum_lines"] == row["run_checksum_lines"] == 0
    assert row["journal_excerpt"] == [] and row["isolated"] is False
    assert row["admin_status"]["status"] == "normal" and row["corrupt_from"] is None


@pytest.mark.parametrize(
    "lines,window,run",
    [
        # corruption in an earlier run is in the window, not in the current run
        ([_entry("checksum mismatch at op 7", OLD), _entry("started")], 1, 0),
        ([_entry("CHECKSUM mismatch at op 7"), _entry("Checksum again")], 2, 2),
        # the invocation may come as INVOCATION_ID (user messages) instead
        ([_entry("checksum mismatch", RUN, key="INVOCATION_ID")], 1, 1),
        ([_entry("checksum mismatch", "")], 1, 0),
        ([], 0, 0),
    ],
)
def test_checksum_lines_are_counted_over_the_window_and_the_current_run(lines, window, run):
    row = host_reads.host_row(ROW, {"unit": _unit(), "journal": _journal(*lines)}, PATTERNS)
    assert (row["journal_checksum_lines"], row["run_checksum_lines"]) == (window, run)
    assert len(row["journal_excerpt"]) == window and len(row["run_excerpt"]) == run


def test_without_a_known_invocation_nothing_counts_as_the_current_run():
    unit = _unit(invocation="")
    row = host_reads.host_row(
        ROW, {"unit": unit, "journal": _journal(_entry("checksum", ""))}, PATTERNS
    )
    assert row["journal_checksum_lines"] == 1 and row["run_checksum_lines"] == 0


def test_panic_oom_binary_and_truncated_lines():
    lines = [
        _entry("Traceback (most recent call last)"),
        _entry("FATAL: gave up"),
        _entry("Out of memory: Killed process 12"),
        json.dumps({"__REALTIME_TIMESTAMP": str(NOW_US), "MESSAGE": [104, 105]}),
        '{"MESSAGE": "truncated',  # a read cut short: left out
        "-- No entries --",
        "[1, 2]",
    ]
    row = host_reads.host_row(ROW, {"unit": _unit(), "journal": _journal(*lines)}, PATTERNS)
    assert (row["journal_panic_lines"], row["journal_oom_lines"]) == (2, 1)
    assert row["journal_tail"][-1] == "2026-12-02T08:26:40Z (binary message)"
    assert len(row["journal_tail"]) == 4 and len(row["journal_excerpt"]) == 3


def test_excerpts_and_tails_keep_the_latest_lines():
    lines = [_entry(f"checksum mismatch {i}", offset_s=i) for i in range(30)]
    row = host_reads.host_row(ROW, {"unit": _unit(), "journal": _journal(*lines)}, PATTERNS)
    assert len(row["journal_excerpt"]) == 20 and row["journal_excerpt"][-1].endswith("29")
    assert len(row["run_tail"]) == 15 and row["run_tail"][0].endswith("mismatch 15")
    assert row["journal_checksum_lines"] == 30


@pytest.mark.parametrize(
    "reads,reachable,read",
    [
        ({}, True, False),  # diagnose did not reach this host's tasks at all
        ({"unit": {"unreachable": True, "msg": "no route"}}, False, False),
        ({"unit": {"skipped": True}}, True, False),
    ],
)
def test_a_host_not_read_has_empty_columns(reads, reachable, read):
    row = host_reads.host_row(ROW, reads, PATTERNS)
    assert (row["host_reachable"], row["host_state_read"]) == (reachable, read)
    assert row["unit_active_state"] is None and row["journal_tail"] == []
    assert row["admin_status"] == {} and row["isolated"] is None


@pytest.mark.parametrize(
    "admin",
    [_admin(None, rc=1), _admin({"isolated": True}, rc=2), {"rc": 0, "stdout": "not json {"}],
)
def test_a_failed_admin_status_reads_as_none(admin):
    row = host_reads.host_row(ROW, {"unit": _unit(), "admin": admin}, PATTERNS)
    assert row["admin_status"] == {} and row["corrupt_from"] is None


def test_the_admin_status_gives_isolated_and_corrupt_from():
    admin = _admin({"isolated": True, "corrupt_from": 7})
    row = host_reads.host_row(ROW, {"unit": _unit(active="failed"), "admin": admin}, PATTERNS)
    assert (row["isolated"], row["corrupt_from"], row["unit_active_state"]) == (True, 7, "failed")


def test_the_table_finds_each_rows_reads_by_its_host():
    rows = [dict(ROW, host="r1", name="replica-1"), dict(ROW, host="r2", name="replica-2")]
    reads = {"r2": {"unit": _unit(active="failed")}}
    table = vsr_filters.vsr_host_table(rows, reads, PATTERNS)
    assert [(r["name"], r["unit_active_state"]) for r in table] == [
        ("replica-1", None),
        ("replica-2", "failed"),
    ]


@pytest.mark.parametrize(
    "rows,reads,patterns,match",
    [
        ({"not": "a list"}, {}, PATTERNS, "a list"),
        ([ROW], [], PATTERNS, "a dict"),
        ([ROW], {}, {"checksum": "x", "panic": "y"}, "lack oom"),
        ([ROW], {}, dict(PATTERNS, panic="(unclosed"), "journal pattern panic"),
    ],
)
def test_bad_input_is_a_clear_error(rows, reads, patterns, match):
    with pytest.raises(AnsibleFilterError, match=match):
        vsr_filters.vsr_host_table(rows, reads, patterns)
