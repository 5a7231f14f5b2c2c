# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a replica's host said, turned into triage's per-replica columns. Pure: triage's
diagnose phase reads the unit (``systemctl show``), the journal (``journalctl -o json``) and
``kimberlite-admin status``; this reads their results (Ansible's registered dicts).

The journal's lines are counted twice: over the window read (``journal_*``) and over the unit's
current run only (``run_*``: entries of its present invocation), so that corruption a restart
already dealt with is not counted again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import time

# Columns of the unit's properties (systemctl show) in the table.
UNIT_COLUMNS = (
    ("unit_active_state", "ActiveState"),
    ("unit_sub_state", "SubState"),
    ("unit_result", "Result"),
    ("unit_exit_code", "ExecMainCode"),
    ("unit_exit_status", "ExecMainStatus"),
    ("unit_restarts", "NRestarts"),
    ("unit_main_pid", "MainPID"),
    ("unit_invocation", "InvocationID"),
    ("unit_active_since", "ActiveEnterTimestamp"),
    ("unit_inactive_since", "InactiveEnterTimestamp"),
)
EXCERPT_LINES = 20
TAIL_LINES = 15


class HostReadsError(ValueError):
    """Input that is not what triage's diagnose registers."""


def unit_properties(result):
    """``Key=Value`` lines of ``systemctl show`` (a registered result) as a dict."""
    props = {}
    for line in (result or {}).get("stdout_lines") or []:
        key, sep, value = line.partition("=")
        if sep and key:
            props[key] = value
    return props


def _journal_line(entry):
    """``<UTC time> <message>`` of a journal entry (JSON); a binary message is said so."""
    try:
        seconds = int(int(entry.get("__REALTIME_TIMESTAMP") or 0) / 1000000)
    except (TypeError, ValueError):
        seconds = 0
    message = entry.get("MESSAGE")
    if not isinstance(message, str):
        message = "(binary message)"
    return "%s %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)), message)


def journal_lines(result, invocation):
    """``(window, run)``: the journal's lines (``journalctl -o json``, a registered result), and
    those of the unit's current run (its ``invocation``; none when that is unknown). Lines that
    are not JSON objects (a truncated read) are left out."""
    window, run = [], []
    for raw in (result or {}).get("stdout_lines") or []:
        if not raw.lstrip().startswith("{"):
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        line = _journal_line(entry)
        window.append(line)
        ids = (entry.get("_SYSTEMD_INVOCATION_ID", ""), entry.get("INVOCATION_ID", ""))
        if invocation and invocation in ids:
            run.append(line)
    return window, run


def admin_status(result):
    """``kimberlite-admin status --json`` (a registered result) as a dict; {} when it failed."""
    result = result or {}
    out = result.get("stdout") or ""
    if result.get("rc", 1) != 0 or not out.lstrip().startswith("{"):
        return {}
    try:
        status = json.loads(out)
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def _count(lines, pattern):
    return len([line for line in lines if re.search(pattern, line, re.IGNORECASE)])


def _journal_columns(window, run, patterns):
    any_pattern = "|".join(patterns.values())
    return {
        "journal_checksum_lines": _count(window, patterns["checksum"]),
        "journal_panic_lines": _count(window, patterns["panic"]),
        "journal_oom_lines": _count(window, patterns["oom"]),
        "run_checksum_lines": _count(run, patterns["checksum"]),
        "journal_excerpt": [x for x in window if re.search(any_pattern, x, re.I)][-EXCERPT_LINES:],
        "journal_tail": window[-TAIL_LINES:],
        "run_excerpt": [x for x in run if re.search(any_pattern, x, re.I)][-EXCERPT_LINES:],
        "run_tail": run[-TAIL_LINES:],
    }


def host_row(replica, reads, patterns):
    """Triage's table row of one replica: its snapshot row (``replica``) with what its host
    said. ``reads`` holds the registered results ``unit``, ``journal``, ``admin`` (each may be
    missing: the host was not read); ``patterns`` the regular expressions ``checksum``,
    ``panic``, ``oom`` (searched case-insensitively)."""
    missing = [k for k in ("checksum", "panic", "oom") if k not in (patterns or {})]
    if missing:
        raise HostReadsError("journal patterns lack %s" % ", ".join(missing))
    for key, pattern in patterns.items():
        try:
            re.compile(pattern)
        except re.error as e:
            raise HostReadsError("journal pattern %s (%r): %s" % (key, pattern, e)) from None
    reads = reads or {}
    unit_result = reads.get("unit") or {}
    unit = unit_properties(unit_result)
    window, run = journal_lines(reads.get("journal"), unit.get("InvocationID"))
    admin = admin_status(reads.get("admin"))
    row = dict(replica)
    row["host_reachable"] = not unit_result.get("unreachable", False)
    row["host_state_read"] = "stdout_lines" in unit_result
    row.update((column, unit.get(prop)) for column, prop in UNIT_COLUMNS)
    row.update(_journal_columns(window, run, patterns))
    row.update(
        admin_status=admin, isolated=admin.get("isolated"), corrupt_from=admin.get("corrupt_from")
    )
    return row


def host_table(replicas, reads_by_host, patterns):
    """Triage's per-replica table: ``host_row`` of every snapshot row, its reads found by its
    ``host`` in ``reads_by_host``."""
    if not isinstance(replicas, list) or not isinstance(reads_by_host, dict):
        raise HostReadsError(
            "needs the snapshot's replicas (a list) and the reads by host (a dict)"
        )
    return [host_row(r, reads_by_host.get(r.get("host")), patterns) for r in replicas]
