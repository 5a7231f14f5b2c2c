# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""FM-006 Commit Lag: restart the lagging backup (state transfer if it does not catch up).

Seed 000, scenario 1 (a slow backup). A lagging leader is not a slow backup (scenario 2, the
application blocking, or 3, the network): the runbook escalates it to a person. More lagging
replicas than the cluster can lose, or no quorum of healthy others, is refused."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.firebreak.incident.plugins.module_utils.runbook import (
    option,
    refuse_many,
    refuse_quorum,
    refuse_unknown,
)


def _lag(row):
    op, commit = row.get("op"), row.get("commit")
    if isinstance(op, int) and isinstance(commit, int):
        return op - commit
    return None


def plan(t, options):
    max_lag = option(options, "max_lag", 10, int, minimum=0)
    finding = t.finding("FM-006")
    lagging = list(finding.get("replicas") or [])
    # The most behind first: that is the one the restart is for.
    lagging.sort(key=lambda n: -(_lag(t.row(n)) or 0))
    row = t.row(lagging[0]) if lagging else {}
    others_ok = t.healthy_others(lagging, max_lag)
    out = {
        "lagging": lagging,
        "lags": dict((n, _lag(t.row(n))) for n in lagging),
        "evidence": list(finding.get("evidence") or []),
        "others_ok": others_ok,
        "target": row.get("host", ""),
        "target_name": row.get("name", ""),
    }
    names = ", ".join(lagging)
    if not lagging:
        suffix = " (triage: %s %s)" % (t.failure_mode, t.name) if t.failure_mode != "none" else ""
        out.update(
            action="none",
            decision="skip",
            message="no replica's commit lags (op - commit within the limit on every "
            "replica); FM-006 has nothing to do%s" % suffix,
        )
    elif row.get("name") == t.leader:
        out.update(
            action="escalate_leader",
            decision="deny",
            message="FM-006 escalates: the leader %s itself lags (op - commit %s): not a slow "
            "backup but a blocked application command or the network (seed 000 FM-006 "
            "scenarios 2 and 3); a restart would cost a view change and hide it. Find the slow "
            "command in the leader's logs" % (row.get("name"), out["lags"].get(row.get("name"))),
        )
    elif len(lagging) > t.tolerable_losses():
        out.update(
            refuse_many(
                "FM-006",
                t,
                lagging,
                "lag",
                "restarting one would stop the cluster. Look for the common cause (network, "
                "the leader's disk) first",
            )
        )
    elif not out["target"]:
        out.update(refuse_unknown("FM-006", names, "lags"))
    elif len(others_ok) < t.quorum:
        out.update(
            refuse_quorum(
                "FM-006", t, out["target_name"], others_ok, "a restart would stop the cluster"
            )
        )
    else:
        out.update(
            action="restart",
            decision="allow",
            out_of_service=[out["target"]],
            message="restart the lagging backup %s (op - commit %s) after reading its CPU, disk "
            "and network; state transfer if it does not catch up; the others keep a quorum "
            "(%s)" % (out["target_name"], out["lags"][out["target_name"]], ", ".join(others_ok)),
        )
    return out
