# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""FM-003 Data Corruption: repair the one corrupted replica from the others, or say why not.

Refuses when more replicas are corrupted than the cluster can lose (no clean quorum to repair
from), when the others would not keep a quorum without the target, and when a wipe is asked
for without its confirmation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.firebreak.incident.plugins.module_utils.runbook import (
    PlanInputError,
    option,
    refuse_many,
    refuse_quorum,
    refuse_unknown,
)

REPAIRS = ("auto", "state_transfer", "wipe")


def plan(t, options):
    repair = option(options, "repair", "auto", choices=REPAIRS)
    confirm_wipe = option(options, "confirm_wipe", False, bool)
    max_lag = option(options, "max_lag", 10, int, minimum=0)
    data_dir = option(options, "data_dir", "/var/lib/kimberlite")
    if not isinstance(data_dir, str) or len(data_dir.rstrip("/")) < 2:
        raise PlanInputError(
            "option data_dir must be the replica's data directory, got %r" % data_dir
        )
    finding = t.finding("FM-003")
    targets = list(finding.get("replicas") or [])
    row = t.row(targets[0]) if targets else {}
    others_ok = t.healthy_others(targets, max_lag)
    out = {
        "targets": targets,
        "target": row.get("host", ""),
        "target_name": row.get("name", ""),
        "target_was_leader": bool(row) and row.get("name") == t.leader,
        "leader": t.leader,
        "view": t.view,
        "repair": repair,
        "wipe_confirmed": confirm_wipe,
        "evidence": list(finding.get("evidence") or []),
        "checksum_failures": row.get("checksum_failures") or 0,
        "journal_checksum_lines": row.get("run_checksum_lines") or 0,
        "corrupt_from": row.get("corrupt_from"),
        "others_ok": others_ok,
    }
    _decide(t, out, targets, repair, confirm_wipe)
    return out


def _decide(t, out, targets, repair, confirm_wipe):
    names, others_ok = ", ".join(targets), out["others_ok"]
    if not targets:
        suffix = " (triage: %s %s)" % (t.failure_mode, t.name) if t.failure_mode != "none" else ""
        out.update(
            action="none",
            decision="skip",
            message="no replica reports a checksum failure in its current run; FM-003 has "
            "nothing to repair%s" % suffix,
        )
    elif len(targets) > t.tolerable_losses():
        out.update(
            refuse_many(
                "FM-003",
                t,
                targets,
                "report corruption",
                "repairing one would leave no quorum of clean replicas to repair from. "
                "Escalate (SEV1, FM-001 rules apply)",
            )
        )
    elif not out["target"]:
        out.update(refuse_unknown("FM-003", names, "reports corruption"))
    elif len(others_ok) < t.quorum:
        out.update(
            refuse_quorum(
                "FM-003", t, names, others_ok, "isolating it would stop the cluster. Escalate"
            )
        )
    elif repair == "wipe" and not confirm_wipe:
        out.update(
            action="refuse_wipe",
            decision="deny",
            message="FM-003 refuses: fm003_corruption_repair=wipe would wipe the data directory "
            "of %s and resync it from scratch, and the wipe is not confirmed "
            "(fm003_corruption_confirm_wipe=false). Nothing was touched. Re-run with "
            "-e fm003_corruption_confirm_wipe=true once the wipe is approved" % names,
        )
    else:
        how = "wipe and resync" if repair == "wipe" else "state transfer"
        lead = " (the leader: a view change comes first)" if out["target_was_leader"] else ""
        out.update(
            action="repair",
            decision="allow",
            out_of_service=[out["target"]],
            message="repair %s%s: isolate, preserve evidence, stop, check the quorum without it, "
            "%s, rejoin; evidence: %s" % (targets[0], lead, how, "; ".join(out["evidence"])),
        )
