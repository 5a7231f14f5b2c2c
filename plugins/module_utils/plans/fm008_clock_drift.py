# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""FM-008 Clock Drift: read the drifted replica's time-sync daemon, then the seed's scenario.

The role reads, on every host and before the plan (read-only, check mode too), the daemon's
unit (``systemctl show``) and its status (``kimberlite-timesync status --json``: offset,
state, sources); they reach the plan as the option ``timesync`` (``{host: {unit, status}}``,
the registered results). Seed 000 FM-008:

- scenario 1, the daemon stopped: restart it (nothing out of service) and wait for the offset
  to converge below the alert threshold;
- scenario 2, no source reachable: a person (the network team); the run escalates;
- scenario 3, the clock jumped (an offset beyond what the daemon slews): force a time sync,
  which can break consensus, so only with ``confirm_step`` (the operator's decision, on the
  record), and with the others keeping a quorum (the replica is out of service for the guard).

A running daemon that reaches its source and slews a small offset is waited for; one that
reports the clock in sync while the replica measures a drift against its peers escalates.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.firebreak.incident.plugins.module_utils import failure_modes
from ansible_collections.firebreak.incident.plugins.module_utils.host_reads import (
    unit_properties,
)
from ansible_collections.firebreak.incident.plugins.module_utils.runbook import (
    PlanInputError,
    option,
    refuse_many,
    refuse_quorum,
    refuse_unknown,
)

DEFAULT_STEP_THRESHOLD_MS = 1000.0


def _offset(row):
    value = row.get("clock_offset_ms")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_timesync(reads):
    """What a host's registered reads (``unit``, ``status``) say about its time-sync daemon:
    ``read`` (False, with ``error``, when they say nothing usable), ``active``, ``unit_state``,
    ``offset_ms``, ``state``, ``sources``, ``reachable`` (source names), ``step_threshold_ms``."""
    reads = reads if isinstance(reads, dict) else {}
    unit = unit_properties(reads.get("unit") or {})
    status = reads.get("status") or {}
    out = {"read": False, "unit_state": unit.get("ActiveState") or "unknown"}
    out["active"] = out["unit_state"] == "active"
    if status.get("unreachable") or (reads.get("unit") or {}).get("unreachable"):
        return dict(out, error="host unreachable")
    try:
        data = json.loads(status.get("stdout") or "")
    except ValueError:
        data = None
    if status.get("rc") != 0 or not isinstance(data, dict):
        why = (status.get("stderr") or status.get("msg") or "no answer").strip()
        return dict(out, error="time-sync status unreadable (rc %s): %s" % (status.get("rc"), why))
    offset = data.get("offset_ms")
    if not isinstance(offset, (int, float)) or isinstance(offset, bool):
        return dict(out, error="time-sync status has no offset_ms: %r" % (data,))
    sources = [s for s in data.get("sources") or [] if isinstance(s, dict)]
    out.update(
        read=True,
        offset_ms=offset,
        state=data.get("state") or "",
        sources=sources,
        reachable=[s.get("name") for s in sources if s.get("reachable")],
        unreachable=[
            "%s: %s" % (s.get("name"), s.get("error")) for s in sources if not s.get("reachable")
        ],
        step_threshold_ms=float(data.get("step_threshold_ms") or DEFAULT_STEP_THRESHOLD_MS),
    )
    return out


def plan(t, options):
    max_lag = option(options, "max_lag", 10, int, minimum=0)
    confirm = option(options, "confirm_step", False, bool)
    reads = options.get("timesync") or {}
    if not isinstance(reads, dict):
        raise PlanInputError("option timesync must be {host: {unit, status}}, got %r" % (reads,))
    alert = failure_modes.thresholds()["clock_offset_alert_ms"]
    finding = t.finding("FM-008")
    drifted = list(finding.get("replicas") or [])
    # The most drifted first: that is the one this run is for.
    drifted.sort(key=lambda n: -abs(_offset(t.row(n)) or 0))
    row = t.row(drifted[0]) if drifted else {}
    out = {
        "drifted": drifted,
        "offsets": dict((n, _offset(t.row(n))) for n in drifted),
        "evidence": list(finding.get("evidence") or []),
        "target": row.get("host", ""),
        "target_name": row.get("name", ""),
        "alert_ms": alert,
        "confirm_step": confirm,
    }
    if not drifted:
        suffix = " (triage: %s %s)" % (t.failure_mode, t.name) if t.failure_mode != "none" else ""
        out.update(
            action="none",
            decision="skip",
            message="no replica's clock is off beyond tolerance; FM-008 has nothing to do%s"
            % suffix,
        )
        return out
    if not out["target"]:
        out.update(refuse_unknown("FM-008", ", ".join(drifted), "drifts"))
        return out
    ts = read_timesync(reads.get(out["target"]))
    out["timesync"] = ts
    out.update(_scenario(t, out, ts, confirm, max_lag))
    return out


def _scenario(t, out, ts, confirm, max_lag):
    """The seed's scenario for the target's daemon ``ts`` (read_timesync)."""
    name, measured = out["target_name"], out["offsets"][out["target_name"]]
    rest = (
        (" (then %s, one run each)" % ", ".join(out["drifted"][1:])) if out["drifted"][1:] else ""
    )
    if not ts["read"]:
        return _deny(
            "refuse_unread",
            "FM-008 refuses: %s's clock is %s ms off but its time-sync daemon cannot be read "
            "(%s); check it by hand (systemctl status, chronyc sources)"
            % (name, measured, ts["error"]),
        )
    jump = abs(ts["offset_ms"]) > ts["step_threshold_ms"]
    if ts["active"] and not ts["reachable"]:
        return _deny(
            "escalate_network",
            "FM-008 escalates to the network team (seed scenario 2): %s's time-sync daemon "
            "runs but reaches none of its sources (%s); its clock stays %s ms off until the "
            "network to the time servers is fixed or other servers are configured"
            % (name, "; ".join(ts["unreachable"]) or "none configured", ts["offset_ms"]),
        )
    if jump:
        return _step(t, out, ts, confirm, max_lag)
    if not ts["active"]:
        return {
            "action": "restart_timesync",
            "decision": "allow",
            "message": "restart %s's time-sync daemon (it is %s; seed scenario 1) and wait until "
            "the replica's offset (%s ms) is below %s ms; the replica keeps running%s"
            % (name, ts["unit_state"], measured, out["alert_ms"], rest),
        }
    if abs(ts["offset_ms"]) <= out["alert_ms"]:
        return _deny(
            "escalate_unexplained",
            "FM-008 escalates: %s's time-sync daemon reports its clock %s ms from its source "
            "(%s) but the replica measures %s ms against its peers: a person compares the "
            "peers' clocks and the daemon's sources"
            % (name, ts["offset_ms"], ts["state"], measured),
        )
    return {
        "action": "wait_slew",
        "decision": "allow",
        "message": "%s's time-sync daemon runs and reaches %s: it is slewing the %s ms offset; "
        "wait until it is below %s ms (nothing is changed)%s"
        % (name, ", ".join(ts["reachable"]), ts["offset_ms"], out["alert_ms"], rest),
    }


def _step(t, out, ts, confirm, max_lag):
    """Seed scenario 3: a jump beyond what the daemon slews; the step is the operator's."""
    name = out["target_name"]
    restart = not ts["active"]
    if restart:
        what = "restart %s's stopped time-sync daemon, then step its clock by %s ms at once"
    else:
        what = "step %s's clock by %s ms at once"
    what = what % (name, -ts["offset_ms"])
    if not confirm:
        return _deny(
            "refuse_step",
            "FM-008 refuses (seed scenario 3, the clock jumped): %s's clock is %s ms off, "
            "beyond the %s ms its time-sync daemon slews. The remedy is to %s, which CAN BREAK "
            "CONSENSUS (timestamps jump on a running replica). To decide it, re-run with -e "
            "fm008_clock_drift_confirm_step=true (recorded as the operator's decision)"
            % (name, ts["offset_ms"], ts["step_threshold_ms"], what),
        )
    if len(out["drifted"]) > t.tolerable_losses():
        return refuse_many(
            "FM-008",
            t,
            out["drifted"],
            "drift",
            "stepping their clocks could disturb more replicas than the cluster can lose; look "
            "for the common cause (the time servers) first",
        )
    others_ok = t.healthy_others([name], max_lag)
    if len(others_ok) < t.quorum:
        return refuse_quorum(
            "FM-008", t, name, others_ok, "a step on %s could stop the cluster" % name
        )
    return {
        "action": "restart_and_step" if restart else "step",
        "decision": "allow",
        "out_of_service": [out["target"]],
        "message": "WARNING: %s (confirmed by the operator: fm008_clock_drift_confirm_step); "
        "stepping a replica's clock can break consensus; the others keep a quorum (%s)"
        % (what, ", ".join(others_ok)),
    }


def _deny(action, message):
    return {"action": action, "decision": "deny", "message": message}
