# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seed 000's escalation paths and comms cadence, as due times computed from a record.

``due(severity, milestones)`` lists who must be brought in and when: the response time of the
severity, the secondary on-call after 15 minutes without an acknowledgement, the escalation
engineer after 30, the manager on-call at once for a SEV1, the technical escalation when a
SEV1 is not mitigated in 30 minutes or a SEV2 in 2 hours, level 3 after a 4-hour outage and the
executive escalation of a SEV1 open for more than 2 hours. Each item is ``met`` when the
milestone that makes it unnecessary came before it was due (an acknowledgement, a
mitigation; the resolution meets them all), else ``open``; ``status_at(item, now)`` tells an
open item ``pending`` from ``overdue``. ``updates(severity, milestones)`` gives the comms
cadence: an update every 15 minutes for SEV1 and SEV2 while the incident is open.

Who the roles are (names, phones) is configuration, not here: the wrapper maps ``to`` to the
contacts table. Pure, standard library only; times are RFC 3339 UTC strings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from datetime import datetime, timedelta, timezone

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
# Seed 000, "Incident Severity Levels": response time; SEV4 is the next business day.
RESPONSE_MINUTES = {"SEV1": 15, "SEV2": 30, "SEV3": 120}
# Seed 000, "Incident Update (Every 15 minutes)"; the initial notification is for SEV1/SEV2.
UPDATE_MINUTES = {"SEV1": 15, "SEV2": 15}
BUSINESS_DAY_START_HOUR = 9  # UTC: when "next business day" begins

ALL = SEVERITIES
# (id, to, minutes after detection, milestone that makes it unnecessary, severities, seed)
POLICY = (
    (
        "secondary",
        "secondary on-call",
        15,
        "acknowledged",
        ALL,
        "Secondary On-Call: backup if primary unavailable (15-minute timeout)",
    ),
    (
        "escalation_engineer",
        "escalation engineer",
        30,
        "acknowledged",
        ALL,
        "Escalation Engineer: senior engineer for complex issues (30-minute timeout)",
    ),
    (
        "manager",
        "manager on-call",
        0,
        None,
        ("SEV1",),
        "Manager On-Call: executive escalation for SEV1 incidents",
    ),
    (
        "level2_sev1",
        "senior engineer / subject matter expert",
        30,
        "mitigated",
        ("SEV1",),
        "Level 1 escalates if unable to resolve within 30 minutes (SEV1)",
    ),
    (
        "level2_sev2",
        "senior engineer / subject matter expert",
        120,
        "mitigated",
        ("SEV2",),
        "Level 1 escalates if unable to resolve within 2 hours (SEV2)",
    ),
    (
        "level3",
        "engineering manager / architect",
        240,
        "mitigated",
        ("SEV1", "SEV2"),
        "Level 2 escalates on a > 4 hour outage",
    ),
    (
        "executive",
        "VP engineering",
        120,
        "resolved",
        ("SEV1",),
        "Executive escalation: SEV1 incident > 2 hours",
    ),
)


class EscalationError(ValueError):
    """Bad input: the message names it."""


def _parse(value, what):
    if not isinstance(value, str):
        raise EscalationError("%s must be an RFC 3339 UTC time, not %r" % (what, value)) from None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EscalationError("%s must be an RFC 3339 UTC time, not %r" % (what, value)) from None
    if parsed.tzinfo is None:
        raise EscalationError("%s %r has no time zone" % (what, value))
    return parsed.astimezone(timezone.utc)


def _fmt(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def next_business_day(dt):
    """The start of the next business day (Monday to Friday) after ``dt``."""
    day = dt + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day.replace(hour=BUSINESS_DAY_START_HOUR, minute=0, second=0, microsecond=0)


def _milestones(milestones):
    if not isinstance(milestones, dict):
        raise EscalationError("milestones must be a dict, not %r" % (milestones,))
    out = {}
    for key, value in milestones.items():
        out[key] = None if value is None else _parse(value, "milestone %s" % key)
    return out


def _item(ident, to, due_at, unless, ms, because):
    """Met when its milestone, or the resolution (nobody is paged for a resolved incident),
    came at or before the due time; an on-call timeout is met by the mitigation too (the
    primary's own response, ``response``, is not: a person still owes it)."""
    milestones = [unless, "resolved"]
    if unless == "acknowledged" and ident != "response":
        milestones.append("mitigated")  # restored without a page: nobody else is paged for it
    reached = [ms.get(m) for m in milestones if m and ms.get(m) is not None]
    reached = [t for t in reached if t <= due_at]
    met_at = min(reached) if reached else None
    met = met_at is not None
    return {
        "id": ident,
        "to": to,
        "due": _fmt(due_at),
        "unless": unless,
        "because": because,
        "status": "met" if met else "open",
        "met_at": _fmt(met_at) if met else None,
    }


def due(severity, milestones):
    """The escalations of an incident of ``severity`` detected at ``milestones['detected']``;
    [] before detection or without a severity (a healthy triage)."""
    if severity in (None, "", "none"):
        return []
    if severity not in SEVERITIES:
        raise EscalationError(
            "severity must be one of %s, not %r" % (", ".join(SEVERITIES), severity)
        )
    ms = _milestones(milestones)
    detected = ms.get("detected")
    if detected is None:
        return []
    if severity in RESPONSE_MINUTES:
        respond = detected + timedelta(minutes=RESPONSE_MINUTES[severity])
        why = "Response time for %s: < %d minutes" % (severity, RESPONSE_MINUTES[severity])
    else:
        respond, why = next_business_day(detected), "Response time for SEV4: next business day"
    out = [_item("response", "primary on-call", respond, "acknowledged", ms, why)]
    for ident, to, minutes, unless, severities, because in POLICY:
        if severity in severities:
            at = detected + timedelta(minutes=minutes)
            out.append(_item(ident, to, at, unless, ms, because))
    return sorted(out, key=lambda i: (i["due"], i["id"]))


def status_at(item, now):
    """``met``, ``overdue`` (open and due at or before ``now``) or ``pending``."""
    if item["status"] == "met":
        return "met"
    return "overdue" if _parse(item["due"], "due") <= _parse(now, "now") else "pending"


def updates(severity, milestones, until=None):
    """The comms cadence: ``{every_minutes, due: [times]}`` of the updates due from detection
    to the resolution (or to ``until`` while the incident is open); None when the severity
    has no scheduled updates."""
    minutes = UPDATE_MINUTES.get(severity)
    if not minutes:
        return None
    ms = _milestones(milestones)
    detected = ms.get("detected")
    if detected is None:
        return None
    end = ms.get("resolved") or (_parse(until, "until") if until else None)
    step, times = timedelta(minutes=minutes), []
    at = detected + step
    if end is not None:
        while at <= end and len(times) < 10000:
            times.append(_fmt(at))
            at += step
    return {
        "every_minutes": minutes,
        "due": times,
        "next": None if ms.get("resolved") else _fmt(at),
    }
