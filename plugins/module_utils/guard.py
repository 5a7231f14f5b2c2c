# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The quorum guard's decision: pure, no I/O, standard library only.

``quorum_decision(metrics, hosts, out_of_service, ...)`` decides from a vsr_metrics result
whether the cluster keeps a quorum of healthy replicas without ``out_of_service``, says why
every other replica does or does not count, and applies an operator's explicit override.
Invalid input raises ``VsrInputError`` naming it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.firebreak.incident.plugins.module_utils.vsr import (
    NORMAL,
    VsrInputError,
    _as_int,
    _is_int,
    _split_result,
    quorum_size,
)

JOINT = 1
OVERRIDE_HINT = (
    "to act anyway, on the record: -e firebreak_override_quorum_guard='<why>' "
    "-e firebreak_override_quorum_guard_confirm=true"
)


def _pairs(hosts, count):
    if not isinstance(hosts, (list, tuple)) or len(hosts) != count:
        raise VsrInputError(
            "hosts must list [inventory host, vsr_replica_name] for each of the %d endpoints, "
            "got %r" % (count, hosts)
        )
    out = []
    for item in hosts:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not item[0]:
            raise VsrInputError("hosts: each item must be [host, replica name], got %r" % (item,))
        out.append((str(item[0]), None if item[1] in (None, "") else str(item[1])))
    return out


def _row(host, name, replica):
    label = replica.get("replica")
    return {
        "host": host,
        "name": name or replica.get("name"),
        "label": None if label in (None, "") else str(label),
        "reachable": bool(replica.get("reachable")),
        "error": replica.get("error"),
        "status": replica.get("status"),
        "status_name": replica.get("status_name") if replica.get("reachable") else "Unreachable",
        "view": replica.get("view"),
        "commit": replica.get("commit"),
        "checksum_failures": replica.get("checksum_failures"),
        "reconfig_state": replica.get("reconfig_state"),
        "config_size": replica.get("config_size"),
        "is_leader": bool(replica.get("expected_leader")),
    }


def _reasons(row, top_view, reference, max_lag, shared_labels):
    """Why ``row`` does not count (empty: it counts)."""
    if not row["reachable"]:
        return ["unreachable: %s" % (row["error"] or "no answer")]
    reasons = []
    if row["label"] is None:
        reasons.append("its exposition has no replica label, so which replica answers is unknown")
    elif row["label"] != row["name"]:
        reasons.append("its endpoint reports replica %s, not %s" % (row["label"], row["name"]))
    elif row["label"] in shared_labels:
        reasons.append("another inventory host reaches the same replica")
    if row["status"] != NORMAL:
        reasons.append("status %s" % (row["status_name"] or "metric missing"))
    if not _is_int(row["view"]):
        reasons.append("view metric missing")
    elif top_view is not None and row["view"] < top_view:
        reasons.append("in view %d, behind view %d" % (row["view"], top_view))
    if not _is_int(row["commit"]):
        reasons.append("commit metric missing")
    elif reference is None:
        reasons.append("no reference commit to compare with")
    elif reference - row["commit"] > max_lag:
        reasons.append(
            "%d ops behind commit %d (most %d)" % (reference - row["commit"], reference, max_lag)
        )
    if not _is_int(row["checksum_failures"]):
        reasons.append("checksum failures metric missing")
    elif row["checksum_failures"] > 0:
        reasons.append("%d checksum failures" % row["checksum_failures"])
    if row["reconfig_state"] == JOINT:
        reasons.append("in Joint (a reconfiguration in progress)")
    return reasons


def _identity(rows):
    """Refusals for hosts that reach the same replica or a replica not theirs; the shared labels."""
    refusals, by_label = [], {}
    for row in rows:
        if row["reachable"] and row["label"] is not None:
            by_label.setdefault(row["label"], []).append(row["host"])
    shared = set(label for label, hosts in by_label.items() if len(hosts) > 1)
    for label in sorted(shared):
        refusals.append(
            "hosts %s reach the same replica %s (its replica label)"
            % (", ".join(by_label[label]), label)
        )
    for row in rows:
        if row["reachable"] and row["label"] is not None and row["label"] != row["name"]:
            refusals.append(
                "host %s is vsr_replica_name %s in the inventory, but its endpoint reports "
                "replica %s" % (row["host"], row["name"], row["label"])
            )
    return refusals, shared


def _size(cluster, rows):
    """(n, note): the larger of the inventory's count and the replicas' vsr_config_size."""
    listed = _as_int("the replica count", cluster.get("replica_count"), minimum=1)
    sizes = sorted(set(r["config_size"] for r in rows if _is_int(r["config_size"])))
    n = max([listed, *sizes])
    if not sizes or sizes == [listed]:
        return n, None
    return n, (
        "the replicas report vsr_config_size %s, the inventory lists %d: deciding for %d "
        "(quorum %d)" % ("/".join(str(s) for s in sizes), listed, n, quorum_size(n))
    )


def _reference(cluster, rows):
    """(reference commit or None, refusal or None): the leader's commit when it is Normal,
    else the highest commit reported."""
    leader = next((r for r in rows if r["is_leader"] and r["reachable"]), None)
    if leader is not None and cluster.get("expected_leader_normal"):
        if _is_int(leader["commit"]):
            return leader["commit"], None
        return None, (
            "the leader %s has its commit metric missing: nobody counts as caught up"
            % leader["name"]
        )
    commits = [r["commit"] for r in rows if r["reachable"] and _is_int(r["commit"])]
    if commits:
        return max(commits), None
    return None, "no replica reports a commit number: nobody counts as caught up"


def _override(result, override):
    """Apply an operator's override to a denial: both a reason and the confirmation."""
    override = override or {}
    reason = str(override.get("reason") or "").strip()
    confirm = override.get("confirm") is True
    if result["allowed"] or not (reason or override.get("confirm")):
        return
    if reason and confirm:
        result["decision"] = "override"
        result["override"] = {
            "reason": reason,
            "by": str(override.get("by") or "unknown"),
            "overrode": result["message"],
        }
        result["message"] = "quorum_guard overridden by %s (%s); it had refused: %s" % (
            result["override"]["by"],
            reason,
            result["message"],
        )
        return
    missing = []
    if not reason:
        missing.append("a non-empty reason (firebreak_override_quorum_guard)")
    if not confirm:
        missing.append("the confirmation (firebreak_override_quorum_guard_confirm=true)")
    result["message"] += " The override was not accepted: it needs %s." % " and ".join(missing)


def _out_of_service_names(out_of_service):
    if isinstance(out_of_service, (str, bytes)) or not isinstance(out_of_service, (list, tuple)):
        raise VsrInputError("out_of_service must be a list of hosts or replica names")
    return [str(name) for name in out_of_service]


def _unmatched(names, rows):
    """Refusals for out-of-service names that match no replica."""
    return [
        "out of service %s matches no replica of this cluster (hosts %s)"
        % (name, ", ".join(r["host"] for r in rows))
        for name in names
        if not any(name in (r["host"], r["name"], r["label"]) for r in rows)
    ]


def _joint(rows):
    """The refusal for replicas in Joint (a reconfiguration in progress), as a list."""
    joint = [r["name"] for r in rows if r["reachable"] and r["reconfig_state"] == JOINT]
    if not joint:
        return []
    return ["a reconfiguration in progress: %s in Joint (vsr_reconfig_state 1)" % ", ".join(joint)]


def _top_view(rows):
    """The highest view of a reachable Normal replica, or None."""
    normal_views = [
        r["view"] for r in rows if r["reachable"] and r["status"] == NORMAL and _is_int(r["view"])
    ]
    return max(normal_views) if normal_views else None


def _judge_others(others, top_view, reference, max_lag, shared):
    """(names that count, [why each other one does not count])."""
    ok, not_ok = [], []
    for row in others:
        reasons = _reasons(row, top_view, reference, max_lag, shared)
        if reasons:
            not_ok.append(
                {
                    "name": row["name"],
                    "host": row["host"],
                    "status": row["status_name"],
                    "lag": reference - row["commit"]
                    if reference is not None and _is_int(row["commit"])
                    else None,
                    "reachable": row["reachable"],
                    "error": row["error"],
                    "reasons": reasons,
                }
            )
        else:
            ok.append(row["name"])
    return ok, not_ok


def quorum_decision(
    metrics, hosts, out_of_service, max_lag=10, action="remediation", override=None
):
    """The guard's decision on taking ``out_of_service`` (hosts or replica names) out.

    ``metrics``: the vsr_metrics result of the cluster (endpoints in inventory order);
    ``hosts``: [inventory host, vsr_replica_name] per endpoint; ``override``: the operator's
    ``{reason, confirm, by}``. Returns allowed (the quorum verdict), decision (allow, deny or
    override), n, quorum, the others and why each one not counted does not count
    (others_not_ok[].reasons), refusals of the whole decision, notes, message and summary.
    """
    cluster, replicas = _split_result(metrics, "quorum_decision input")
    pairs = _pairs(hosts, len(replicas))
    max_lag = _as_int("max_lag", max_lag, minimum=0)
    names = _out_of_service_names(out_of_service)
    rows = [_row(host, name, r) for (host, name), r in zip(pairs, replicas)]

    refusals, shared = _identity(rows)
    refusals.extend(_unmatched(names, rows))
    n, size_note = _size(cluster, rows)
    quorum = quorum_size(n)
    refusals.extend(_joint(rows))
    reference, missing = _reference(cluster, rows)
    if missing:
        refusals.append(missing)
    top_view = _top_view(rows)

    out = [r for r in rows if set(names) & set((r["host"], r["name"], r["label"]))]
    others = [r for r in rows if r not in out]
    ok, not_ok = _judge_others(others, top_view, reference, max_lag, shared)
    allowed = not refusals and len(ok) >= quorum
    result = {
        "allowed": allowed,
        "decision": "allow" if allowed else "deny",
        "action": action,
        "out_of_service": [r["name"] for r in out],
        "n": n,
        "inventory_n": cluster.get("replica_count"),
        "quorum": quorum,
        "others": [r["name"] for r in others],
        "others_ok": ok,
        "others_not_ok": not_ok,
        "leader": cluster.get("expected_leader"),
        "view": top_view,
        "reference_commit": reference,
        "max_lag": max_lag,
        "refusals": refusals,
        "notes": [size_note] if size_note else [],
    }
    result["counts"] = "n=%d, quorum=%d, %d of %d others Normal and caught up (%s)%s" % (
        n,
        quorum,
        len(ok),
        len(others),
        ", ".join(ok) or "none",
        "".join("; " + text for text in refusals + result["notes"]),
    )
    result["summary"] = "%s: %s" % (action, result["counts"])
    result["message"] = _message(result)
    _override(result, override)
    return result


def _message(result):
    taking = ", ".join(result["out_of_service"]) or "nothing"
    if result["allowed"]:
        return 'quorum_guard allows "%s" taking %s out of service: %s' % (
            result["action"],
            taking,
            result["counts"],
        )
    parts = [
        'quorum_guard refuses "%s" taking %s out of service: n=%d, quorum=%d, %d of the %d '
        "others are Normal, in view %s and within %d ops of commit %s (%s)"
        % (
            result["action"],
            taking,
            result["n"],
            result["quorum"],
            len(result["others_ok"]),
            len(result["others"]),
            result["view"],
            result["max_lag"],
            "unknown" if result["reference_commit"] is None else result["reference_commit"],
            ", ".join(result["others_ok"]) or "none",
        )
    ]
    if result["others_not_ok"]:
        parts.append(
            "not counted: "
            + "; ".join(
                "%s (%s)" % (r["name"], ", ".join(r["reasons"])) for r in result["others_not_ok"]
            )
        )
    parts.extend(result["refusals"] + result["notes"])
    return "; ".join(parts) + "; " + OVERRIDE_HINT + "."


GUARD_DECISION_HELP = (
    "a guard decision is the dict a guard returns, e.g. quorum_guard's quorum_guard_result: "
    "{decision: allow|override, ...}"
)


def act_authority(guard_decision=None, force=False, force_reason=None):
    """What lets a destructive step that runs on its own act: a guard's decision or the
    operator's explicit, reasoned choice. Returns ``(authority, problem)``: ``authority`` is
    what the result records (decision, source and the guard's own words), ``problem`` the
    refusal as a message (None when the step may act).

    A guard decision is a dict with ``decision`` ``allow`` or ``override`` (an override carries
    the operator's ``override.reason``, as quorum_guard records it); ``deny`` or anything else
    refuses. ``force`` needs ``force_reason`` and excludes a guard decision (a force is not a
    way past a guard's deny: the guard has its own override, on its record)."""
    if force and guard_decision is not None:
        return None, "give either guard_decision or force, not both"
    if force:
        reason = str(force_reason or "").strip()
        if not reason:
            return None, "force=true needs force_reason: why the operator acts without a guard"
        return {"decision": "force", "source": "operator", "reason": reason}, None
    if guard_decision is None:
        return None, (
            "refusing to act without a guard decision: pass guard_decision (%s) or, as an "
            "operator's choice on the record, force=true with force_reason" % GUARD_DECISION_HELP
        )
    if not isinstance(guard_decision, dict):
        return None, "guard_decision must be a dict (%s), got %r" % (
            GUARD_DECISION_HELP,
            guard_decision,
        )
    decision = guard_decision.get("decision")
    said = guard_decision.get("message") or guard_decision.get("summary")
    if decision == "deny":
        return None, "the guard denied: %s" % (said or "no message")
    if decision not in ("allow", "override"):
        return None, "guard_decision.decision must be allow or override, got %r (%s)" % (
            decision,
            GUARD_DECISION_HELP,
        )
    if decision == "allow" and guard_decision.get("allowed", True) is not True:
        return None, "guard_decision says allow but allowed is %r" % (guard_decision["allowed"],)
    override = guard_decision.get("override") or {}
    if decision == "override" and not str(override.get("reason") or "").strip():
        return None, "guard_decision is an override without its reason (override.reason)"
    authority = {"decision": decision, "source": "guard", "message": said}
    for key in ("action", "at", "override"):
        if guard_decision.get(key) is not None:
            authority[key] = guard_decision[key]
    return authority, None
