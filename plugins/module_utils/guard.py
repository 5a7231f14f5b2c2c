# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The quorum guard's decision: pure, no I/O, standard library only.

``quorum_decision(metrics, hosts, out_of_service, ...)`` decides from a vsr_metrics result
whether the cluster keeps a quorum of healthy replicas without ``out_of_service``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.firebreak.incident.plugins.module_utils.vsr import (
    NORMAL,
    VsrInputError,
    _as_int,
    _split_result,
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


def quorum_decision(metrics, hosts, out_of_service, max_lag=10, action="remediation"):
    """The guard's result for taking ``out_of_service`` (hosts or replica names) out."""
    cluster, replicas = _split_result(metrics, "quorum_decision input")
    pairs = _pairs(hosts, len(replicas))
    max_lag = _as_int("max_lag", max_lag, minimum=0)
    names = [str(name) for name in (out_of_service or [])]
    leader = cluster.get("expected_leader")
    entry = next((r for r in replicas if r.get("name") == leader and r.get("reachable")), None)
    if cluster.get("expected_leader_normal") and entry:
        reference = entry.get("commit") or 0
    else:
        reference = cluster.get("max_commit") or 0
    rows = []
    for (host, name), r in zip(pairs, replicas):
        rows.append(
            dict(
                r,
                host=host,
                name=name or r.get("name"),
                lag=reference - (r.get("commit") or 0) if r.get("reachable") else None,
            )
        )
    out = [r for r in rows if r["name"] in names]
    out += [r for r in rows if r["host"] in names and r not in out]
    others = [r for r in rows if r not in out]
    ok = [r for r in others if r.get("status") == NORMAL and r["lag"] <= max_lag]
    not_ok = [
        {
            "name": r["name"],
            "status": r.get("status_name") if r.get("reachable") else "Unreachable",
            "lag": r["lag"],
            "reachable": r.get("reachable"),
            "error": r.get("error"),
        }
        for r in others
        if r not in ok
    ]
    quorum = cluster.get("quorum_size")
    return {
        "allowed": len(ok) >= quorum,
        "action": action,
        "out_of_service": [r["name"] for r in out],
        "n": cluster.get("replica_count"),
        "quorum": quorum,
        "others": [r["name"] for r in others],
        "others_ok": [r["name"] for r in ok],
        "others_not_ok": not_ok,
        "leader": leader,
        "reference_commit": reference,
        "max_lag": max_lag,
    }
