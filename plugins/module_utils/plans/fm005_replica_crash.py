# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""FM-005 Single Replica Crash: restart the one crashed replica, once, or say why not.

Refuses (FM-001) when more than one replica is down or the others hold no quorum; escalates
when the crashed run's journal points to another failure mode (corruption, a full disk,
hardware) that a restart would hide."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.firebreak.incident.plugins.module_utils.runbook import (
    PlanInputError,
    option,
    refuse_unknown,
)

ERROR_LINE = re.compile(r"error|critical|fatal|panic|traceback|killed|oom|status=", re.I)
DEFAULT_NOT_A_PROCESS_CRASH = {
    "fm003_corruption": "checksum mismatch",
    "fm007_disk_full": "no space left on device|ENOSPC",
    "hardware": "I/O error|EIO|read-only file system|machine check|hardware error",
}


def crash_reason(row):
    """How systemd saw the main process end."""
    if not row:
        return ""
    return "unit %s/%s, result %s, main process %s status %s" % tuple(
        "?" if row.get(k) is None else row.get(k)
        for k in (
            "unit_active_state",
            "unit_sub_state",
            "unit_result",
            "unit_exit_code",
            "unit_exit_status",
        )
    )


def _points_to(row, patterns):
    """Which of ``patterns`` the crashed run's journal matches (only that run's lines: an
    earlier incident's lines must not decide this one)."""
    text = "\n".join(list(row.get("run_excerpt") or []) + list(row.get("run_tail") or []))
    out = []
    for key in sorted(patterns):
        try:
            if re.search(patterns[key], text, re.I):
                out.append(key)
        except re.error as e:
            raise PlanInputError("not_a_process_crash[%s]: bad pattern: %s" % (key, e)) from e
    return out


def plan(t, options):
    patterns = option(options, "not_a_process_crash", DEFAULT_NOT_A_PROCESS_CRASH)
    if not isinstance(patterns, dict):
        raise PlanInputError("option not_a_process_crash must map a name to a pattern")
    option(options, "watch_seconds", 900, int, minimum=0)
    option(options, "watch_interval", 3, int, minimum=1)
    down = t.down
    normal = t.normal()
    row = t.row(down[0]) if len(down) == 1 else {}
    reason = crash_reason(row)
    matched = _points_to(row, patterns) if row else []
    lines = [ln for ln in (row.get("run_tail") or []) if ERROR_LINE.search(ln)][-10:]
    out = {
        "down": down,
        "normal": normal,
        "has_quorum": t.has_quorum,
        "crash_reason": reason,
        "crash_lines": lines,
        "points_to": matched,
    }
    if not down:
        suffix = ""
        if t.failure_mode not in ("none", "FM-005"):
            suffix = " (triage: %s %s, see runbook %s)" % (
                t.failure_mode,
                t.name,
                t.raw.get("runbook", "none"),
            )
        out.update(
            action="none",
            decision="skip",
            message="no replica is down (%d of %d units active and answering); FM-005 has "
            "nothing to restart%s" % (t.n, t.n, suffix),
        )
        return out
    if len(down) > 1 or not t.has_quorum:
        out.update(
            action="refuse_fm001",
            decision="deny",
            severity="SEV1",
            message="FM-005 refuses: %d of %d replicas are down (%s) and %d are Normal (%s) "
            "where the quorum is %d: this is not a single replica crash but FM-001 Quorum Lost "
            "(SEV1). Follow the FM-001 runbook (restore at least one replica immediately); "
            "FM-005 restarts nothing"
            % (len(down), t.n, ", ".join(down), len(normal), ", ".join(normal) or "none", t.quorum),
        )
        return out
    out.update(target=row.get("host", ""), target_name=down[0])
    if not out["target"]:
        out.update(refuse_unknown("FM-005", down[0], "is down"))
        return out
    if matched:
        out.update(
            action="escalate",
            decision="deny",
            message="FM-005 escalates: %s crashed (%s) and its journal points to %s, which a "
            "restart would hide; follow that runbook" % (down[0], reason, ", ".join(matched)),
        )
        return out
    out.update(
        action="restart",
        decision="allow",
        out_of_service=[row.get("host", "")],
        message="restart %s once: %s; the others keep a quorum (%d Normal of %d, quorum %d)"
        % (down[0], reason, len(normal), t.n, t.quorum),
    )
    return out
