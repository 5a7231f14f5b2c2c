# -*- coding: utf-8 -*-
# Copyright: (c) 2025, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure Raft logic for firebreak.incident.raft_status: parsers and cluster arithmetic.

No I/O here. The module fetches; these functions turn what each member answered into one
record per member (``new_member``) and one summary of the cluster (``summarise_cluster``).

Two flavours are read:

- etcd v3 through its JSON gateway (3.4 answers uint64 values as decimal strings, and ids
  as decimal strings too; ids are shown in hex, as etcdctl does);
- Grey Distributed's ``GET /v1/consensus/status`` (shape documented in the module and in
  ``parse_grey_status``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.firebreak.incident.plugins.module_utils.prometheus_text import (
    PrometheusTextError,
    parse_samples,
)

FLAVORS = ("etcd", "grey")

# Metrics read from etcd's /metrics (unlabelled samples only).
ETCD_METRICS = {
    "etcd_server_has_leader": "has_leader",
    "etcd_server_is_leader": "is_leader",
    "etcd_server_leader_changes_seen_total": "leader_changes_seen",
    "etcd_server_proposals_committed_total": "proposals_committed",
    "etcd_server_proposals_applied_total": "proposals_applied",
    "etcd_server_proposals_pending": "proposals_pending",
    "etcd_mvcc_db_total_size_in_bytes": "db_size",
}

_ALARM_IN_ERROR = re.compile(r"memberID:\s*(\d+)\s+alarm:\s*([A-Z_]+)")


class RaftParseError(ValueError):
    """An answer that is not what the flavour's API returns (HTML, bad JSON, wrong shape)."""


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def to_int(value, what="value"):
    """An int from an int or a decimal string (etcd's JSON gateway sends uint64 as strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RaftParseError("%s must be an integer, got %r" % (what, value))
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.match(r"^-?\d+$", value.strip()):
        return int(value.strip())
    raise RaftParseError("%s must be an integer, got %r" % (what, value))


def etcd_hex_id(value):
    """etcd member/cluster id (decimal string or int) as etcdctl shows it: lowercase hex.

    0 (no leader) and missing values give None.
    """
    number = to_int(value, "etcd id")
    if not number:
        return None
    return "%x" % number


def load_json(text, what):
    """Parse a JSON object; RaftParseError saying what came instead (HTML, empty, ...)."""
    if text is None or not str(text).strip():
        raise RaftParseError("%s: empty answer, expected JSON" % what)
    head = str(text).lstrip()[:200].lower()
    if head.startswith("<!doctype html") or head.startswith("<html") or "<body" in head:
        raise RaftParseError(
            "%s: answered HTML, not JSON (a proxy or login page, or the wrong port?)" % what
        )
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise RaftParseError("%s: not JSON (%s): %r" % (what, e, str(text)[:80])) from None
    if not isinstance(doc, dict):
        raise RaftParseError("%s: expected a JSON object, got %s" % (what, type(doc).__name__))
    return doc


def new_member(endpoint, url):
    """The record of one endpoint; every key is always present."""
    return {
        "endpoint": endpoint,
        "url": url,
        "reachable": False,
        "id": None,
        "name": None,
        "state": None,
        "is_leader": False,
        "leader": None,
        "term": None,
        "index": None,
        "applied_index": None,
        "db_size": None,
        "db_size_in_use": None,
        "version": None,
        "health": None,
        "has_leader": None,
        "leader_changes_seen": None,
        "quorum_satisfied": None,
        "is_learner": None,
        "alarms": [],
        "errors": [],
        "error": None,
    }


# ---------------------------------------------------------------------------
# etcd v3 JSON gateway
# ---------------------------------------------------------------------------


def parse_etcd_status(doc):
    """Fields of POST /v3/maintenance/status (a dict already parsed from JSON).

    Returns id, cluster_id, leader, term, index, applied_index, db_size, db_size_in_use,
    version, is_learner, alarms (this member's, from ``errors``) and errors (the others).
    """
    header = doc.get("header")
    if not isinstance(header, dict) or "member_id" not in header:
        raise RaftParseError(
            "maintenance/status: no header.member_id; is this an etcd v3 endpoint?"
        )
    member_id = etcd_hex_id(header.get("member_id"))
    errors = doc.get("errors") or []
    if not isinstance(errors, list):
        errors = [str(errors)]
    alarms, other = [], []
    for text in errors:
        match = _ALARM_IN_ERROR.search(str(text))
        if match:
            if etcd_hex_id(match.group(1)) == member_id:
                alarms.append(match.group(2))
        else:
            other.append(str(text).strip())
    leader = etcd_hex_id(doc.get("leader"))
    return {
        "id": member_id,
        "cluster_id": etcd_hex_id(header.get("cluster_id")),
        "leader": leader,
        "is_leader": leader is not None and leader == member_id,
        "term": to_int(doc.get("raftTerm", header.get("raft_term")), "raftTerm"),
        "index": to_int(doc.get("raftIndex"), "raftIndex"),
        "applied_index": to_int(doc.get("raftAppliedIndex"), "raftAppliedIndex"),
        "db_size": to_int(doc.get("dbSize"), "dbSize"),
        "db_size_in_use": to_int(doc.get("dbSizeInUse"), "dbSizeInUse"),
        "version": doc.get("version"),
        "is_learner": bool(doc.get("isLearner", False)),
        "alarms": alarms,
        "errors": other,
    }


def parse_etcd_members(doc):
    """POST /v3/cluster/member/list -> [{id, name, peer_urls, client_urls, is_learner}]."""
    members = doc.get("members")
    if not isinstance(members, list):
        raise RaftParseError("cluster/member/list: no members list")
    out = []
    for m in members:
        if not isinstance(m, dict):
            raise RaftParseError("cluster/member/list: member is not an object: %r" % (m,))
        out.append(
            {
                "id": etcd_hex_id(m.get("ID")),
                # A member added but not started yet has no name.
                "name": m.get("name") or None,
                "peer_urls": list(m.get("peerURLs") or []),
                "client_urls": list(m.get("clientURLs") or []),
                "is_learner": bool(m.get("isLearner", False)),
            }
        )
    out.sort(key=lambda m: (m["name"] or "", m["id"] or ""))
    return out


def parse_etcd_alarms(doc):
    """POST /v3/maintenance/alarm {"action": "GET"} -> [{member_id, alarm}] (empty: {})."""
    alarms = doc.get("alarms") or []
    if not isinstance(alarms, list):
        raise RaftParseError("maintenance/alarm: alarms is not a list")
    out = []
    for a in alarms:
        if isinstance(a, dict) and a.get("alarm") not in (None, "NONE"):
            out.append({"member_id": etcd_hex_id(a.get("memberID")), "alarm": a.get("alarm")})
    return out


def parse_etcd_health(status, body):
    """GET /health: True, False, or None when the answer says nothing usable."""
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "health" in doc:
            return str(doc["health"]).lower() == "true"
    if status == 503:
        return False
    return None


def parse_prometheus(text, wanted):
    """Values of unlabelled samples named in ``wanted`` (name -> key) from a text exposition.

    The text is read by module_utils/prometheus_text.py (so a counter's samples are named with
    ``_total``, as prometheus_client names them); a value written as a whole number is an
    ``int``. Malformed text raises RaftParseError naming the line."""
    try:
        samples = parse_samples(text or "")
    except PrometheusTextError as e:
        raise RaftParseError("metrics: malformed exposition, %s" % e) from None
    values = {}
    for sample in samples:
        if sample.labels or sample.name not in wanted:
            continue
        number = float(sample.value)
        values[wanted[sample.name]] = int(number) if number.is_integer() else number
    return values


def member_for_url(url, member_list):
    """The member of ``member_list`` whose client URLs include ``url`` (scheme://host:port)."""
    wanted = _origin(url)
    for m in member_list or []:
        if wanted in (_origin(u) for u in m.get("client_urls") or []):
            return m
    return None


def _origin(url):
    match = re.match(r"^([a-z]+://[^/]+)", (url or "").strip().lower())
    return match.group(1) if match else (url or "").lower()


# ---------------------------------------------------------------------------
# Grey Distributed /v1/consensus/status
# ---------------------------------------------------------------------------

GREY_STATES = ("leader", "follower", "candidate", "learner", "pre_candidate", "offline")


def parse_grey_status(doc):
    """Fields of Grey Distributed's GET /v1/consensus/status.

    Shape (designed from seed 002's runbook, which reads .leader, .term, .quorum_satisfied,
    .commit_index, .members | length and .members[].match_index)::

        {"node_id": "coord-0", "state": "leader", "leader": "coord-0", "term": 7,
         "commit_index": 1042, "applied_index": 1040, "last_log_index": 1042,
         "quorum_satisfied": true,
         "members": [{"node_id": "coord-0", "address": "10.0.0.1:8080", "state": "leader",
                      "voter": true, "match_index": 1042}, ...]}

    Tolerated variants: ``leader_id`` for ``leader``, ``peers`` for ``members``, ``id`` for
    ``node_id``, numbers as strings; ``leader`` null or "" when none is known.
    """
    node_id = doc.get("node_id", doc.get("id"))
    if node_id in (None, ""):
        raise RaftParseError("consensus/status: no node_id; is this a Grey coordinator?")
    if "term" not in doc:
        raise RaftParseError("consensus/status: no term")
    leader = doc.get("leader", doc.get("leader_id"))
    leader = None if leader in (None, "") else str(leader)
    state = doc.get("state")
    state = str(state).lower() if state is not None else None
    quorum = doc.get("quorum_satisfied")
    if quorum is not None and not isinstance(quorum, bool):
        quorum = str(quorum).lower() in ("true", "1", "yes")
    raw_members = doc.get("members", doc.get("peers"))
    members = None
    if raw_members is not None:
        if not isinstance(raw_members, list):
            raise RaftParseError("consensus/status: members is not a list")
        members = []
        for m in raw_members:
            if not isinstance(m, dict):
                raise RaftParseError("consensus/status: member is not an object: %r" % (m,))
            mid = m.get("node_id", m.get("id"))
            members.append(
                {
                    "id": None if mid is None else str(mid),
                    "name": m.get("name") or (None if mid is None else str(mid)),
                    "address": m.get("address"),
                    "state": m.get("state"),
                    "is_learner": m.get("voter") is False or m.get("state") == "learner",
                    "match_index": to_int(m.get("match_index"), "match_index"),
                }
            )
        members.sort(key=lambda m: m["id"] or "")
    is_leader = state == "leader" or (leader is not None and leader == str(node_id))
    return {
        "id": str(node_id),
        "name": doc.get("name") or str(node_id),
        "state": state,
        "leader": leader if leader is not None else (str(node_id) if is_leader else None),
        "is_leader": is_leader,
        "term": to_int(doc.get("term"), "term"),
        "index": to_int(doc.get("commit_index"), "commit_index"),
        "applied_index": to_int(doc.get("applied_index"), "applied_index"),
        "quorum_satisfied": quorum,
        "is_learner": state == "learner",
        "members": members,
    }


# ---------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------

ETCD_STATUS_FIELDS = (
    "id", "leader", "is_leader", "term", "index", "applied_index", "db_size", "db_size_in_use",
    "version", "is_learner", "alarms", "errors",
)  # fmt: skip
GREY_STATUS_FIELDS = (
    "id", "name", "state", "leader", "is_leader", "term", "index", "applied_index",
    "quorum_satisfied", "is_learner",
)  # fmt: skip


def apply_status(member, status, flavor):
    """Copy a parsed status into a member record and mark it reachable."""
    fields = ETCD_STATUS_FIELDS if flavor == "etcd" else GREY_STATUS_FIELDS
    for key in fields:
        value = status[key]
        member[key] = list(value) if isinstance(value, list) else value
    member["reachable"] = True
    return member


def name_members(members, member_list, flavor):
    """Fill id and name from the membership: names of etcd members (status has none), and
    ids and names of members that could not be read (matched by client URL / address)."""
    for m in members:
        if not member_list:
            return members
        if m.get("reachable"):
            if m.get("name") is None:
                known = next((x for x in member_list if x.get("id") == m.get("id")), None)
                m["name"] = known["name"] if known else None
            continue
        if flavor == "etcd":
            known = member_for_url(m.get("url"), member_list)
        else:
            host_port = _origin(m.get("url")).split("://", 1)[-1]
            known = next(
                (x for x in member_list if (x.get("address") or "").lower() == host_port), None
            )
        if known:
            m["id"], m["name"] = known["id"], known["name"]
            m["is_learner"] = known.get("is_learner")
    return members


def quorum_size(voters):
    """Votes a Raft cluster of ``voters`` voting members needs: a strict majority."""
    return voters // 2 + 1 if voters > 0 else 1


def _majority_leader(with_leader):
    """(leader, its voting backers): the leader most members that report one name in the
    highest term where one is reported; (None, []) on a tie or when none is."""
    if not with_leader:
        return None, []
    top_term = max(m.get("term") or 0 for m in with_leader)
    in_term = [m for m in with_leader if (m.get("term") or 0) == top_term]
    votes = {}
    for m in in_term:
        votes[m["leader"]] = votes.get(m["leader"], 0) + 1
    best = max(votes.values())
    winners = [lid for lid, n in votes.items() if n == best]
    if len(winners) != 1:
        return None, []
    leader = winners[0]
    return leader, [m for m in in_term if m["leader"] == leader and not m.get("is_learner")]


def _all_alarms(members, alarms):
    """The cluster's alarms, then each member's own, once each."""
    all_alarms = list(alarms or [])
    for m in members:
        for a in m.get("alarms") or []:
            entry = {"member_id": m.get("id"), "alarm": a}
            if entry not in all_alarms:
                all_alarms.append(entry)
    return all_alarms


def summarise_cluster(members, member_list=None, alarms=None):
    """One summary from the per-endpoint records (``new_member`` dicts, filled in).

    ``member_list`` is the membership as the cluster reports it (etcd member list, Grey
    members), or None when no member could tell: then every endpoint counts as a voter.

    - quorum_size: strict majority of the voting members (learners do not vote).
    - leader: the leader reported by most reachable members in the highest term where one
      is reported (None on a tie or when none is).
    - has_quorum: at least quorum_size reachable voting members report that same leader in
      that term, and that leader, if it answered, does not say quorum_satisfied false.
      Members that could not be read do not count: this is quorum as far as it can be seen.
    - leaders_seen: distinct leader ids reported; more than one means some members follow
      another leader (a stale or split view): leaders_seen_count > 1.
    - term_agreement: every reachable member reports the same term (None when none answered).
    - max_index_lag: highest minus lowest index among reachable members; max_apply_lag: the
      largest index minus applied index of one member.
    """
    reachable = [m for m in members if m.get("reachable")]
    # the membership as the cluster reports it, else every endpoint
    roster = member_list if member_list else members
    voters = len([m for m in roster if not m.get("is_learner")])
    size = len(roster)
    needed = quorum_size(voters)

    with_leader = [m for m in reachable if m.get("leader")]
    leaders_seen = sorted(set(m["leader"] for m in with_leader))
    leader, backing = _majority_leader(with_leader)
    has_quorum = len(backing) >= needed and not any(
        m.get("id") == leader and m.get("quorum_satisfied") is False for m in reachable
    )

    terms = sorted(set(m.get("term") for m in reachable if m.get("term") is not None))
    term_agreement = None if not reachable else len(terms) == 1
    indexes = [m["index"] for m in reachable if m.get("index") is not None]
    apply_lags = [
        m["index"] - m["applied_index"]
        for m in reachable
        if m.get("index") is not None and m.get("applied_index") is not None
    ]
    claims = sorted(set(m["id"] for m in reachable if m.get("is_leader") and m.get("id")))
    all_alarms = _all_alarms(members, alarms)
    return {
        "members": size,
        "voters": voters,
        "endpoints": len(members),
        "reachable": len(reachable),
        "unreachable": [m.get("endpoint") for m in members if not m.get("reachable")],
        "quorum_size": needed,
        "has_quorum": has_quorum,
        "leader": leader,
        "leader_name": _name_of(leader, members, member_list),
        "leaders_seen": leaders_seen,
        "leaders_seen_count": len(leaders_seen),
        "leader_claims": claims,
        "terms": terms,
        "term_agreement": term_agreement,
        "max_term": terms[-1] if terms else None,
        "max_index_lag": (max(indexes) - min(indexes)) if indexes else None,
        "max_apply_lag": max(apply_lags) if apply_lags else None,
        "alarms": all_alarms,
        "healthy": bool(
            has_quorum
            and len(leaders_seen) == 1
            and len(claims) <= 1
            and term_agreement
            and not all_alarms
            and len(reachable) == len(members)
        ),
    }


def _name_of(member_id, members, member_list):
    if member_id is None:
        return None
    for m in list(member_list or []) + list(members):
        if m.get("id") == member_id and m.get("name"):
            return m["name"]
    return None
