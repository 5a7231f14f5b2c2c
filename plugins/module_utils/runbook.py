# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The runbook engine's decisions: pure, no I/O, standard library only.

``plan(failure_mode, triage, options)`` is what a runbook does, to which replica, or why it
refuses, with the operator's message. Each failure mode's own plan is the function ``plan`` of
``module_utils/plans/<slug>.py`` (the registry's slug); this module holds what every plan
shares: reading triage's replica table, the quorum arithmetic and the shape of a plan.

A plan is a dict:

- ``failure_mode``, ``runbook``: the registry's id and role;
- ``action``: the plan's own verb (``none``, ``restart``, ``repair``, ``refuse_quorum``, ...);
- ``decision``: ``allow`` (the act phase runs, behind the lock and the quorum guard), ``skip``
  (nothing to do) or ``deny`` (the run refuses or escalates, and changes nothing);
- ``target``/``target_name``: the inventory host and the replica name it acts on ('' if none);
- ``out_of_service``: the hosts the act phase takes out of service (the quorum guard's input);
- ``severity``: the record's severity ('' when skipped); ``message``: what the operator reads;
- anything else the failure mode's role reads (``detail``).

``outcome(plan, failed, escalated, check_mode)`` is the record's state at the end of a run.
Invalid input raises ``PlanInputError`` naming it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible_collections.firebreak.incident.plugins.module_utils import failure_modes
from ansible_collections.firebreak.incident.plugins.module_utils.vsr import quorum_size

DECISIONS = ("allow", "skip", "deny")
_PLANS = "ansible_collections.firebreak.incident.plugins.module_utils.plans."


class PlanInputError(ValueError):
    """The triage result or the options given to a plan are not usable."""


def plan(failure_mode, triage, options=None):
    """The plan of ``failure_mode`` (an id, slug or number) for ``triage``
    (``firebreak_triage``) with the runbook's ``options``."""
    entry = failure_modes.get(failure_mode)
    if not entry["role"]:
        raise PlanInputError("%s has no runbook yet, so it has no plan" % entry["id"])
    module = importlib.import_module(_PLANS + entry["role"])
    view = Triage(triage)
    result = module.plan(view, dict(options or {}))
    return finish(entry, view, result)


def finish(entry, view, result):
    """Check a plan function's result and add what every plan carries."""
    if result.get("decision") not in DECISIONS:
        raise PlanInputError(
            "plan of %s: decision must be one of %s, got %r"
            % (entry["id"], ", ".join(DECISIONS), result.get("decision"))
        )
    out = {
        "failure_mode": entry["id"],
        "runbook": entry["role"],
        "target": "",
        "target_name": "",
        "out_of_service": [],
        "severity": entry["severity"],
        "n": view.n,
        "quorum": view.quorum,
        "triage": "%s %s" % (view.failure_mode, view.name),
    }
    out.update(result)
    if out["decision"] == "skip":
        out["severity"] = ""
    return out


def outcome(plan_result, failed=False, escalated=False, check_mode=False):
    """The incident state a run of ``plan_result`` leaves in the record."""
    decision = plan_result.get("decision")
    if decision == "deny" or escalated:
        return "escalated"
    if decision != "allow":
        return ""
    if failed or check_mode:
        return "investigating"
    return "mitigated"


class Triage(object):
    """Read-only accessors over ``firebreak_triage`` (roles/triage: its ``replicas`` table)."""

    def __init__(self, triage):
        if not isinstance(triage, dict) or not isinstance(triage.get("replicas"), list):
            raise PlanInputError(
                "the plan needs firebreak_triage (the triage role's result, with its replicas "
                "table), got %r" % (type(triage).__name__,)
            )
        self.raw = triage
        self.replicas = [r for r in triage["replicas"] if isinstance(r, dict)]
        names = [r.get("name") for r in self.replicas]
        if len(set(names)) != len(names) or None in names:
            raise PlanInputError("triage replicas need unique names, got %r" % (names,))
        self.n = _int(triage.get("n"), len(self.replicas))
        self.quorum = _int(triage.get("quorum"), quorum_size(max(self.n, 1)))
        self.has_quorum = bool(triage.get("has_quorum"))
        self.leader = triage.get("leader") or ""
        self.view = triage.get("view")
        self.down = list(triage.get("down") or [])
        self.failure_mode = triage.get("failure_mode") or "none"
        self.name = triage.get("name") or "Healthy"
        self.findings = list(triage.get("findings") or [])

    def row(self, name):
        for r in self.replicas:
            if r.get("name") == name:
                return r
        return {}

    def finding(self, fm_id):
        for f in self.findings:
            if f.get("fm") == fm_id:
                return f
        return {}

    def normal(self):
        return [r["name"] for r in self.replicas if r.get("status") == 0]

    def healthy_others(self, exclude, max_lag):
        """Replicas outside ``exclude`` that are Normal in the highest view with a known
        commit within ``max_lag`` of the reference: the ones that carry a quorum. A missing
        commit (None) or lag never counts as caught up."""
        views = [r.get("view") for r in self.replicas if isinstance(r.get("view"), int)]
        top = max(views) if views else None
        out = []
        for r in self.replicas:
            if r["name"] in exclude or r.get("status") != 0:
                continue
            lag = r.get("lag")
            if not isinstance(lag, int) or isinstance(lag, bool) or lag > max_lag:
                continue
            if top is not None and r.get("view") != top:
                continue
            out.append(r["name"])
        return out

    def tolerable_losses(self):
        return self.n - self.quorum


def _int(value, default):
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def refuse_unknown(fm_id, names, what):
    """The refusal every plan shares: the replica it would act on is no inventory host."""
    return {
        "action": "refuse_unknown",
        "decision": "deny",
        "message": "%s refuses: %s %s but no inventory host of the group is that replica; "
        "check vsr_replica_name in the inventory" % (fm_id, names, what),
    }


def refuse_many(fm_id, t, affected, what, then):
    """The refusal when more replicas are affected than the cluster can lose (``t``: Triage):
    ``what`` they are ("report corruption"), ``then`` what acting on one would do and what to
    do instead."""
    return {
        "action": "refuse_many",
        "decision": "deny",
        "message": "%s refuses: %d of %d replicas %s (%s), more than the %d the cluster can "
        "lose; %s"
        % (fm_id, len(affected), t.n, what, ", ".join(affected), t.tolerable_losses(), then),
    }


def refuse_quorum(fm_id, t, without, others_ok, then):
    """The refusal when, without ``without``, fewer than a quorum of the others are Normal and
    caught up (``others_ok``); ``then`` is what acting would do."""
    return {
        "action": "refuse_quorum",
        "decision": "deny",
        "message": "%s refuses: without %s only %d replicas are Normal and caught up (%s), "
        "quorum %d of %d: %s"
        % (fm_id, without, len(others_ok), ", ".join(others_ok) or "none", t.quorum, t.n, then),
    }


def option(options, key, default, kind=None, choices=None, minimum=None):
    """An option of the runbook, checked: its type, its choices, its minimum."""
    value = options.get(key, default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            value = value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise PlanInputError("option %s must be true or false, got %r" % (key, value))
    elif kind is int:
        try:
            value = int(value)
        except (TypeError, ValueError) as e:
            raise PlanInputError("option %s must be an integer, got %r" % (key, value)) from e
        if minimum is not None and value < minimum:
            raise PlanInputError("option %s must be >= %d, got %d" % (key, minimum, value))
    if choices is not None and value not in choices:
        raise PlanInputError(
            "option %s must be one of %s, got %r" % (key, ", ".join(choices), value)
        )
    return value
