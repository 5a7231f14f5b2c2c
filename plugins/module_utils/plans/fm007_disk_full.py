# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""FM-007 Disk Full: find what fills the replica's disk, free only what is safe (a checkpoint,
then the rotated log segments it covers; never the live log), start the replica if it stopped.

Nothing is taken out of service: the cleanup leaves a running replica running, and starting a
stopped one brings it back, so the quorum guard has nothing to check. The act itself refuses
when nothing is safe to free (a person adds capacity)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.firebreak.incident.plugins.module_utils.runbook import (
    option,
    refuse_unknown,
)


def plan(t, options):
    used_limit = option(options, "used_percent", 90, int, minimum=1)
    finding = t.finding("FM-007")
    full = list(finding.get("replicas") or [])
    row = t.row(full[0]) if full else {}
    stopped = bool(row) and row.get("unit_active_state") != "active"
    out = {
        "full": full,
        "evidence": list(finding.get("evidence") or []),
        "target": row.get("host", ""),
        "target_name": row.get("name", ""),
        "replica_stopped": stopped,
        "used_percent_limit": used_limit,
    }
    if not full:
        suffix = " (triage: %s %s)" % (t.failure_mode, t.name) if t.failure_mode != "none" else ""
        out.update(
            action="none",
            decision="skip",
            message="no replica's disk is full; FM-007 has nothing to free%s" % suffix,
        )
    elif not out["target"]:
        out.update(refuse_unknown("FM-007", ", ".join(full), "has a full disk"))
    else:
        steps = ["list what fills it"]
        if not stopped:
            steps.append("write a checkpoint")
        steps.append(
            "remove the rotated log segments the latest checkpoint covers (never the live log)"
        )
        if stopped:
            steps.append("start it (it stopped)")
        rest = (" (then %s, one run each)" % ", ".join(full[1:])) if full[1:] else ""
        out.update(
            action="cleanup",
            decision="allow",
            message="free %s's disk%s: %s; evidence: %s"
            % (out["target_name"], rest, ", ".join(steps), "; ".join(out["evidence"])),
        )
    return out
