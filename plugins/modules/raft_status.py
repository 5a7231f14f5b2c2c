#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: raft_status
short_description: Read the state of a Raft cluster (etcd v3, Grey Distributed) from its members
version_added: 0.1.0
description:
  - Asks every endpoint, concurrently, for its Raft state and reports one record per member
    (reachable, id, name, leader seen, term, index, applied index, db size, alarms, error)
    and a summary of the cluster (members, reachable, quorum size, has_quorum, leader,
    leaders seen, term agreement, index lag).
  - Never changes anything. An endpoint that cannot be read is data (RV(members[].reachable)
    false and RV(members[].error) saying why), not a failure. Only invalid options fail.
  - For O(flavor=etcd) (v3 JSON gateway, etcd 3.4 and later), each endpoint gets
    C(POST /v3/maintenance/status), C(POST /v3/cluster/member/list),
    C(POST /v3/maintenance/alarm) with C({"action":"GET"}) (only when the member has a
    leader, as it needs one to answer), C(GET /health) and C(GET) O(metrics_path). Ids are shown
    in hex as C(etcdctl) shows them (the gateway sends them as decimal strings).
  - For O(flavor=grey), each endpoint gets C(GET /v1/consensus/status) (Grey Distributed's
    coordinator API, port 8080 in the seed runbook), which is expected to answer this JSON
    (ids are strings; numbers may be strings; C(leader_id) is read as C(leader), C(peers)
    as C(members), C(id) as C(node_id)).
  - 'Example answer: C({"node_id": "coord-0", "state": "leader", "leader": "coord-0",
    "term": 7, "commit_index": 1042, "applied_index": 1040, "last_log_index": 1042,
    "quorum_satisfied": true, "members": [{"node_id": "coord-0", "address": "10.0.0.1:8080",
    "state": "leader", "voter": true, "match_index": 1042}]}).'
  - C(state) is one of V(leader), V(follower), V(candidate), V(learner); C(leader) is null
    or empty when the node knows no leader; C(voter=false) marks a non-voting member.
options:
  flavor:
    description:
      - Which API the endpoints speak.
    type: str
    choices: [ etcd, grey ]
    default: etcd
  endpoints:
    description:
      - The client endpoints of the members, one per member, as V(host:port) or a URL
        (V(http://10.0.0.1:2379), V(https://etcd-1:2379)). A path in a URL is kept as a
        prefix (for a reverse proxy); the API paths are added after it.
      - Each endpoint must appear once.
    type: list
    elements: str
    required: true
  metrics_path:
    description:
      - Path of the Prometheus metrics (O(flavor=etcd) only; C(etcd_server_has_leader),
        C(etcd_server_leader_changes_seen_total) are read from it).
    type: str
    default: /metrics
  timeout:
    description:
      - Seconds allowed for each HTTP request in total (connect, request, headers and body).
        An endpoint that accepts the connection and never answers is given up after this.
      - Must be greater than 0. Name resolution is not covered by this bound.
    type: float
    default: 5.0
  ca_path:
    description:
      - A PEM file of CA certificates to verify V(https) endpoints with, instead of the
        system's trust store.
    type: path
    aliases: [ ca_cert ]
attributes:
  check_mode:
    support: full
    description:
      - Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description:
      - Returns no diff.
  platform:
    platforms: posix
    support: full
    description:
      - Runs wherever the endpoints can be reached over HTTP(S).
notes:
  - has_quorum is quorum as far as it can be seen from where the module runs; a member
    that cannot be read does not count, even if its peers can reach it.
  - Each HTTP request is bounded by O(timeout). An etcd endpoint that does not answer
    C(maintenance/status) is not asked anything else, so a dead member costs one O(timeout).
  - The etcd requests are built here (C(POST) with a JSON body); C(GET) requests go through
    the collection's shared endpoint reader.
seealso:
  - name: etcd v3 JSON gateway
    description: The HTTP/JSON mapping of etcd's gRPC API.
    link: https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/
author:
  - Firebreak maintainers (@firebreak)
extends_documentation_fragment:
  - firebreak.incident.endpoints
"""

EXAMPLES = r"""
- name: Read the etcd cluster
  firebreak.incident.raft_status:
    endpoints:
      - 10.0.0.1:2379
      - 10.0.0.2:2379
      - 10.0.0.3:2379
    timeout: 3
  register: raft

- name: The cluster has a quorum and a single leader
  ansible.builtin.assert:
    that:
      - raft.cluster.has_quorum
      - raft.cluster.leaders_seen_count == 1
      - raft.cluster.term_agreement
    fail_msg: >-
      quorum {{ raft.cluster.has_quorum }}
      ({{ raft.cluster.reachable }}/{{ raft.cluster.members }} reachable,
      {{ raft.cluster.quorum_size }} needed),
      leaders seen {{ raft.cluster.leaders_seen }},
      unreachable {{ raft.cluster.unreachable }}

# Seed 002 (Grey Distributed): "If quorum is maintained, let Raft handle recovery".
- name: Check consensus status on the coordinators
  firebreak.incident.raft_status:
    flavor: grey
    endpoints: "{{ groups['coordinators'] | map('regex_replace', '$', ':8080') | list }}"
  register: grey

- name: Quorum is maintained, let Raft handle recovery
  ansible.builtin.debug:
    msg: "leader {{ grey.cluster.leader }} in term {{ grey.cluster.max_term }}"
  when: grey.cluster.has_quorum

- name: etcd over TLS with a client certificate
  firebreak.incident.raft_status:
    endpoints: [https://etcd-1:2379, https://etcd-2:2379, https://etcd-3:2379]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
"""

RETURN = r"""
flavor:
  description: The flavor read.
  returned: always
  type: str
  sample: etcd
members:
  description: One record per endpoint, in the order of O(endpoints).
  returned: always
  type: list
  elements: dict
  contains:
    endpoint:
      description: The endpoint as given.
      type: str
      sample: 10.0.0.1:2379
    url:
      description: The base URL requests were sent to.
      type: str
      sample: http://10.0.0.1:2379
    reachable:
      description: Whether its status could be read.
      type: bool
      sample: true
    id:
      description:
        - Member id (etcd, hex as etcdctl shows it; Grey, its node_id). For an unreachable
          etcd member it is taken from the member list when its client URL is listed there.
      type: str
      sample: 8e9e05c52164694d
    name:
      description: Member name.
      type: str
      sample: etcd-1
    state:
      description: Raft role reported (Grey only; etcd does not report it).
      type: str
      sample: follower
    is_leader:
      description: Whether this member is the leader it reports.
      type: bool
      sample: false
    leader:
      description: The leader id this member reports (null when it knows none).
      type: str
      sample: 91bc3c398fb3c146
    term:
      description: Raft term (etcd C(raftTerm)).
      type: int
      sample: 2
    index:
      description: Raft index (etcd C(raftIndex); Grey C(commit_index)).
      type: int
      sample: 1042
    applied_index:
      description: Applied index (etcd C(raftAppliedIndex); Grey C(applied_index)).
      type: int
      sample: 1042
    db_size:
      description: Backend database size in bytes (etcd C(dbSize)).
      type: int
      sample: 20480
    db_size_in_use:
      description: Bytes of the backend in use (etcd C(dbSizeInUse)).
      type: int
      sample: 16384
    version:
      description: Server version (etcd).
      type: str
      sample: 3.4.23
    health:
      description: etcd C(/health) answer (null when it could not be read).
      type: bool
      sample: true
    has_leader:
      description: etcd metric C(etcd_server_has_leader) (1 or 0; null when not read).
      type: int
      sample: 1
    leader_changes_seen:
      description: etcd metric C(etcd_server_leader_changes_seen_total).
      type: int
      sample: 1
    quorum_satisfied:
      description: Grey C(quorum_satisfied) as this member reports it.
      type: bool
      sample: true
    is_learner:
      description: Whether this member is a non-voting learner.
      type: bool
      sample: false
    alarms:
      description: Alarms raised for this member (etcd C(NOSPACE), C(CORRUPT)).
      type: list
      elements: str
      sample: []
    errors:
      description:
        - Other problems the member reported (etcd status C(errors) such as
          V(etcdserver no leader)) and requests after the status that failed.
      type: list
      elements: str
      sample: ["etcdserver: no leader"]
    error:
      description: Why the member could not be read (null when it could).
      type: str
      sample: "maintenance/status: connection refused"
cluster:
  description: The cluster as seen from the members that answered.
  returned: always
  type: dict
  contains:
    members:
      description: Members in the cluster's membership (or the number of endpoints when no
        member could tell).
      type: int
      sample: 3
    voters:
      description: Voting members (learners excluded).
      type: int
      sample: 3
    endpoints:
      description: Endpoints asked.
      type: int
      sample: 3
    reachable:
      description: Endpoints whose status could be read.
      type: int
      sample: 2
    unreachable:
      description: Endpoints that could not be read.
      type: list
      elements: str
      sample: [10.0.0.3:2379]
    quorum_size:
      description: Votes needed, a strict majority of the voters.
      type: int
      sample: 2
    has_quorum:
      description:
        - At least RV(cluster.quorum_size) reachable voters report the same leader in the
          highest term seen (and that leader, when Grey and reachable, does not report
          C(quorum_satisfied=false)).
      type: bool
      sample: true
    leader:
      description: The leader most members report in the highest term (null when none or a tie).
      type: str
      sample: 91bc3c398fb3c146
    leader_name:
      description: Its name, when known.
      type: str
      sample: etcd-2
    leaders_seen:
      description: Distinct leader ids reported by the members.
      type: list
      elements: str
      sample: [91bc3c398fb3c146]
    leaders_seen_count:
      description: How many; more than 1 is a split or stale view (split brain shows here).
      type: int
      sample: 1
    leader_claims:
      description: Ids of the members that say they are the leader.
      type: list
      elements: str
      sample: [91bc3c398fb3c146]
    terms:
      description: Distinct terms reported.
      type: list
      elements: int
      sample: [2]
    term_agreement:
      description: Every reachable member reports the same term (null when none answered).
      type: bool
      sample: true
    max_term:
      description: Highest term reported.
      type: int
      sample: 2
    max_index_lag:
      description: Highest minus lowest index among reachable members.
      type: int
      sample: 0
    max_apply_lag:
      description: Largest index minus applied index of a single member.
      type: int
      sample: 0
    alarms:
      description: Alarms in the cluster, as C(member_id) and C(alarm).
      type: list
      elements: dict
      sample: [{"member_id": "8e9e05c52164694d", "alarm": "NOSPACE"}]
    healthy:
      description:
        - Every endpoint answered, quorum, exactly one leader seen and claimed, terms agree,
          no alarm.
      type: bool
      sample: true
member_list:
  description: The membership as reported by the first member that answered (etcd member
    list, Grey members); empty when none did.
  returned: always
  type: list
  elements: dict
  sample:
    - {"id": "8e9e05c52164694d", "name": "etcd-1", "peer_urls": ["http://10.0.0.1:2380"],
       "client_urls": ["http://10.0.0.1:2379"], "is_learner": false}
"""

import json  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.firebreak.incident.plugins.module_utils.endpoints import (  # noqa: E402
    EndpointError,
    FetchOptions,
    endpoints_argument_spec,
    fetch_url,
    looks_like_html,
    normalize_endpoints,
)
from ansible_collections.firebreak.incident.plugins.module_utils.raft import (  # noqa: E402
    ETCD_METRICS,
    FLAVORS,
    RaftParseError,
    apply_status,
    load_json,
    name_members,
    new_member,
    parse_etcd_alarms,
    parse_etcd_health,
    parse_etcd_members,
    parse_etcd_status,
    parse_grey_status,
    parse_prometheus,
    summarise_cluster,
)

GREY_STATUS_PATH = "/v1/consensus/status"


def post_json(url, payload, options, endpoint):
    """POST a JSON body (etcd's gateway wants POST) with the shared fetcher; never raises.
    An error answer's gateway message ({"error": ...}) is added to the result's error."""
    result = fetch_url(url, options, endpoint, method="POST", json_body=payload)
    if not result.ok and result.status:
        result.error = "HTTP %d %s%s" % (result.status, result.reason, _gateway_error(result))
    return result


def _gateway_error(result):
    """The message of an etcd gateway error body ({"error": ..., "code": ...}), if any."""
    try:
        doc = json.loads(result.body or "")
    except ValueError:
        return ""
    if isinstance(doc, dict) and (doc.get("error") or doc.get("message")):
        return ": %s" % (doc.get("error") or doc.get("message"))
    return ""


def _json_answer(result, what):
    """The JSON object of a successful answer, or RaftParseError saying what went wrong."""
    if not result.ok:
        raise RaftParseError("%s: %s" % (what, result.error))
    if looks_like_html(result):
        raise RaftParseError(
            "%s: answered HTML (content-type %s), not JSON: the wrong port, or a proxy or login "
            "page?" % (what, result.content_type)
        )
    return load_json(result.body, what)


def read_etcd(endpoint, base, options, metrics_path):
    member = new_member(endpoint, base)
    view = {"member_list": None, "alarms": []}
    try:
        status = parse_etcd_status(
            _json_answer(post_json(base + "/v3/maintenance/status", {}, options, endpoint),
                         "maintenance/status")
        )  # fmt: skip
    except RaftParseError as e:
        member["error"] = str(e)
        return member, view
    apply_status(member, status, "etcd")

    try:
        view["member_list"] = parse_etcd_members(
            _json_answer(post_json(base + "/v3/cluster/member/list", {}, options, endpoint),
                         "cluster/member/list")
        )  # fmt: skip
    except RaftParseError as e:
        member["errors"].append(str(e))
    if status["leader"]:
        # Alarm GET goes through Raft: without a leader it would only wait for the timeout.
        try:
            view["alarms"] = parse_etcd_alarms(
                _json_answer(
                    post_json(base + "/v3/maintenance/alarm", {"action": "GET"}, options,
                              endpoint),
                    "maintenance/alarm",
                )
            )  # fmt: skip
        except RaftParseError as e:
            member["errors"].append(str(e))
        for alarm in view["alarms"]:
            if alarm["member_id"] == member["id"] and alarm["alarm"] not in member["alarms"]:
                member["alarms"].append(alarm["alarm"])

    health = fetch_url(base + "/health", options, endpoint)
    member["health"] = parse_etcd_health(health.status, health.body)
    if member["health"] is None and health.status != 503:
        member["errors"].append("health: %s" % (health.error or "no health in the answer"))

    metrics = fetch_url(base + metrics_path, options, endpoint)
    if metrics.ok and not looks_like_html(metrics):
        try:
            values = parse_prometheus(metrics.body, ETCD_METRICS)
        except RaftParseError as e:
            member["errors"].append(str(e))
            values = {}
        member["has_leader"] = values.get("has_leader")
        member["leader_changes_seen"] = values.get("leader_changes_seen")
    else:
        member["errors"].append("metrics: %s" % (metrics.error or "answered HTML"))

    return member, view


def read_grey(endpoint, base, options):
    member = new_member(endpoint, base)
    view = {"member_list": None, "alarms": []}
    try:
        result = fetch_url(base + GREY_STATUS_PATH, options, endpoint)
        status = parse_grey_status(_json_answer(result, "consensus/status"))
    except RaftParseError as e:
        member["error"] = str(e)
        return member, view
    apply_status(member, status, "grey")
    view["member_list"] = status["members"]
    return member, view


def main():
    argument_spec = endpoints_argument_spec(default_path="/metrics")
    argument_spec["ca_path"] = dict(type="path", aliases=["ca_cert"])
    argument_spec.update(flavor=dict(type="str", default="etcd", choices=list(FLAVORS)))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params

    try:
        options = FetchOptions.from_params(p)
        # normalize with "/" so that host:port becomes the base URL the API paths go after
        bases = [u.rstrip("/") for u in normalize_endpoints(p["endpoints"], path="/",
                                                            scheme=p["scheme"])]  # fmt: skip
        if not p["metrics_path"].startswith("/"):
            raise EndpointError(
                "metrics_path must start with '/', got %r" % p["metrics_path"], "metrics_path"
            )
        if any(b.startswith("https:") for b in bases):
            options.ssl_context()  # unusable certificate files fail here, once
    except EndpointError as e:
        module.fail_json(msg=str(e), option=e.option)

    def read(pair):
        endpoint, base = pair
        if p["flavor"] == "etcd":
            return read_etcd(endpoint, base, options, p["metrics_path"])
        return read_grey(endpoint, base, options)

    pairs = list(zip(p["endpoints"], bases))
    workers = max(1, min(options.concurrency, len(pairs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = list(pool.map(read, pairs))

    members = [member for member, _view in answers]
    member_list = next((v["member_list"] for _m, v in answers if v["member_list"]), None)
    alarms = next((v["alarms"] for _m, v in answers if v["alarms"]), [])
    name_members(members, member_list, p["flavor"])
    cluster = summarise_cluster(members, member_list, alarms)

    module.exit_json(
        changed=False,
        flavor=p["flavor"],
        members=members,
        cluster=cluster,
        member_list=member_list or [],
    )


if __name__ == "__main__":
    main()
