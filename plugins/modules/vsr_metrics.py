#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vsr_metrics
short_description: Read the metrics of a Viewstamped Replication cluster and summarize its state
version_added: 0.1.0
description:
  - Fetches the Prometheus text exposition of every replica of a VSR cluster concurrently,
    parses it without any third-party library, and returns per replica its status, view,
    op and commit numbers, lags, checksum failures, pending requests, clock offset,
    reconfiguration state and the p95 of the client and prepare latency histograms.
  - Summarizes the cluster - replica count, how many are Normal, the quorum size and whether
    it holds, the view the replicas agree on, the leader that view designates and whether it is
    Normal, the highest commit number.
  - An endpoint that cannot be read (refused, timed out, an HTTP error, an HTML page, a
    malformed exposition) is reported in its replica's O(ignore:replicas[].error); it does not
    fail the module. Invalid options fail the module with a message naming the option and
    the value.
  - With O(node_endpoints), it also reads each replica host's node exporter (Prometheus's
    node_exporter, or anything serving C(node_filesystem_avail_bytes) and
    C(node_filesystem_size_bytes)), so that a replica that fail-stopped on a full disk still has
    its disk figures in its entry, and P(firebreak.incident.vsr_classify#filter) names FM-007
    (Disk Full) rather than FM-005 (a crash).
  - The module only reads; it never changes anything. Feed its result to the
    P(firebreak.incident.vsr_classify#filter) filter to name the failure mode.
author:
  - Firebreak maintainers (@firebreak)
extends_documentation_fragment:
  - firebreak.incident.endpoints
attributes:
  check_mode:
    support: full
    description: The module only reads; in check mode it reads and returns the same result.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Runs on any host with Python 3 that reaches the endpoints (usually localhost).
options:
  node_endpoints:
    description:
      - The node exporter of each replica's host, a list parallel to O(endpoints) (same length,
        same order). An empty string or null means none for that replica.
      - Each is C(host:port) or a URL as in O(endpoints), with the path C(/metrics) when it has
        none (node_exporter's) and the scheme O(scheme).
      - Read concurrently with the replicas, with the same O(timeout), O(concurrency), TLS,
        authentication and redirect rules (credentials go only to the origin of the URL they
        were given for).
      - The filesystem figures read there (roles C(filesystem_avail) and C(filesystem_size) of
        O(metric_names)) go into that replica's O(ignore:replicas[].filesystem_avail_bytes) and
        O(ignore:replicas[].filesystem_used_percent), even when the replica's own endpoint does
        not answer; with figures from both, the lowest available bytes and the highest used
        percentage win.
      - A node endpoint that cannot be read is reported in its replica's
        O(ignore:replicas[].node.error) and O(ignore:replicas[].errors); it never fails the
        module.
    type: list
    elements: raw
  replica_order:
    description:
      - The replicas in configuration order, for the seed's leader rule - the leader of view
        V(v) is the replica at position V(v) modulo the replica count in this list.
      - Each name is matched against a replica's identity (the value of its O(replica_label)
        label), the endpoint as written, or its URL.
      - When omitted, the order of O(endpoints) is the configuration order, and each
        replica's name is its O(replica_label) label, or the endpoint when the exposition has
        none.
      - The replica count (and so the quorum size) is the length of this list when given,
        else the number of endpoints.
    type: list
    elements: str
  replica_label:
    description:
      - The label that carries a replica's identity on the VSR metrics.
    type: str
    default: replica
  metric_names:
    description:
      - The metric names to read, by role. The defaults are the names of the incident
        runbook; map them when another build names its metrics differently.
      - For a counter, a name without C(_total) also finds C(<name>_total).
    type: dict
    suboptions:
      status:
        description: Replica status gauge (0 Normal, 1 ViewChange, 2 Recovering, 3 StateTransfer).
        type: str
        default: vsr_replica_status
      view:
        description: View number gauge.
        type: str
        default: vsr_view_number
      op:
        description: Op number gauge (highest op in the log).
        type: str
        default: vsr_op_number
      commit:
        description: Commit number gauge.
        type: str
        default: vsr_commit_number
      checksum_failures:
        description: Checksum failures counter.
        type: str
        default: vsr_checksum_failures_total
      pending_requests:
        description: Pending client requests gauge.
        type: str
        default: vsr_pending_requests
      clock_offset:
        description: Clock offset gauge, in milliseconds.
        type: str
        default: vsr_clock_offset_ms
      reconfig_state:
        description: Reconfiguration state gauge (0 Stable, 1 Joint).
        type: str
        default: vsr_reconfig_state
      config_size:
        description: Configuration size gauge (members of the configuration the replica runs).
        type: str
        default: vsr_config_size
      client_latency:
        description: Client latency histogram, in milliseconds.
        type: str
        default: vsr_client_latency_ms
      prepare_latency:
        description: Prepare latency histogram, in milliseconds.
        type: str
        default: vsr_prepare_latency_ms
      operations:
        description: Committed operations counter.
        type: str
        default: vsr_operations_total
      filesystem_avail:
        description: Available filesystem bytes gauge, when the endpoint also exposes it.
        type: str
        default: node_filesystem_avail_bytes
      filesystem_size:
        description: Filesystem size gauge, to compute a used percentage.
        type: str
        default: node_filesystem_size_bytes
  return_samples:
    description:
      - Also return every parsed sample of every replica in O(ignore:replicas[].samples).
    type: bool
    default: false
notes:
  - Percentiles follow Prometheus's C(histogram_quantile) - linear interpolation inside the
    bucket that holds the rank, summed over the histogram's label sets. They cover the whole
    life of the replica; give two results to P(firebreak.incident.vsr_classify#filter) to get
    the p95 of the window between them.
  - Reads each endpoint with its own time budget (O(timeout)); at worst the whole run takes
    O(timeout) seconds for every O(concurrency) endpoints, rounded up.
seealso:
  - plugin: firebreak.incident.vsr_classify
    plugin_type: filter
  - plugin: firebreak.incident.vsr_leader
    plugin_type: filter
  - plugin: firebreak.incident.prometheus_samples
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read the three replicas of the lab
  firebreak.incident.vsr_metrics:
    endpoints:
      - 127.0.3.1:9090
      - 127.0.3.2:9090
      - 127.0.3.3:9090
    replica_order: [replica-1, replica-2, replica-3]
    timeout: 2
  register: vsr

- name: Stop when the quorum is gone
  ansible.builtin.assert:
    that: vsr.cluster.has_quorum
    fail_msg: "{{ vsr.cluster.normal_count }} Normal, quorum needs {{ vsr.cluster.quorum_size }}"

- name: Name the failure mode
  ansible.builtin.debug:
    msg: "{{ (vsr | firebreak.incident.vsr_classify).overall }}"

- name: Read the replicas and the node exporter beside each (disk figures of a crashed replica)
  firebreak.incident.vsr_metrics:
    endpoints: "{{ groups['kimberlite_vsr'] | map('extract', hostvars, 'vsr_metrics_url') }}"
    node_endpoints: >-
      {{ groups['kimberlite_vsr'] | map('extract', hostvars)
         | map(attribute='node_metrics_url', default='') }}
    replica_order: "{{ vsr_replica_order }}"
  register: vsr

- name: Another build's metric names, over TLS with basic auth
  firebreak.incident.vsr_metrics:
    endpoints:
      - https://vsr-1.example.com:9443/internal/metrics
      - https://vsr-2.example.com:9443/internal/metrics
      - https://vsr-3.example.com:9443/internal/metrics
    ca_path: /etc/pki/vsr-ca.pem
    url_username: scraper
    url_password: "{{ vault_scraper_password }}"
    metric_names:
      status: kv_vsr_status
      commit: kv_vsr_commit_op
  register: vsr
"""

RETURN = r"""
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
  sample: false
msg:
  description: One line on the cluster.
  returned: always
  type: str
  sample: "3/3 reachable, 3 Normal, quorum 2 kept, view 6, leader replica-1 (Normal)"
urls:
  description: The URLs read, in the order of O(endpoints) (what the module did).
  returned: always
  type: list
  elements: str
  sample: [http://127.0.3.1:9090/metrics]
node_urls:
  description: >-
    The node exporter URLs read, parallel to O(endpoints) (null where a replica has none); an
    empty list without O(node_endpoints).
  returned: always
  type: list
  elements: str
  sample: [http://127.0.3.1:9100/metrics, null, http://127.0.3.3:9100/metrics]
collected_at:
  description: When the reads started, in seconds since the epoch (for rates between two runs).
  returned: always
  type: float
  sample: 1769983842.123
elapsed:
  description: Seconds the reads took in all.
  returned: always
  type: float
  sample: 0.021
metric_names:
  description: The metric names used, by role (the defaults updated with O(metric_names)).
  returned: always
  type: dict
  sample: {status: vsr_replica_status, view: vsr_view_number}
cluster:
  description: The cluster as a whole.
  returned: always
  type: dict
  contains:
    replica_count:
      description: Replicas in the configuration (length of O(replica_order), else of O(endpoints)).
      type: int
      sample: 3
    endpoint_count:
      description: Endpoints read.
      type: int
      sample: 3
    reachable_count:
      description: Replicas whose exposition was read and parsed.
      type: int
      sample: 3
    normal_count:
      description: Reachable replicas in status Normal (0).
      type: int
      sample: 3
    quorum_size:
      description: C(replica_count // 2 + 1).
      type: int
      sample: 2
    has_quorum:
      description: Whether at least C(quorum_size) replicas are reachable and Normal.
      type: bool
      sample: true
    views:
      description: The distinct views of the reachable replicas, sorted.
      type: list
      elements: int
      sample: [6]
    view_agreed:
      description: Whether all reachable replicas report the same view.
      type: bool
      sample: true
    agreed_view:
      description: That view, or null when they differ (or none answered).
      type: int
      sample: 6
    leader_view:
      description: >-
        The view the leader rule is applied to - the agreed view, else the highest view of a
        Normal replica, else the highest view.
      type: int
      sample: 6
    expected_leader:
      description: C(replica_order[leader_view % replica_count]), or null without a view.
      type: str
      sample: replica-1
    expected_leader_reachable:
      description: Whether the expected leader answered.
      type: bool
      sample: true
    expected_leader_normal:
      description: Whether the expected leader answered and is Normal.
      type: bool
      sample: true
    max_commit:
      description: The highest commit number among reachable replicas.
      type: int
      sample: 1040
    min_commit:
      description: The lowest commit number among reachable replicas.
      type: int
      sample: 1038
    max_op:
      description: The highest op number among reachable replicas.
      type: int
      sample: 1042
    replica_order:
      description: The configuration order used for the leader rule.
      type: list
      elements: str
      sample: [replica-1, replica-2, replica-3]
    unmatched_replica_order:
      description: Names of O(replica_order) that matched no endpoint.
      type: list
      elements: str
      sample: []
    unreachable:
      description: Names of the replicas that could not be read.
      type: list
      elements: str
      sample: [replica-3]
    not_normal:
      description: Names of the replicas not reachable and Normal.
      type: list
      elements: str
      sample: [replica-3]
replicas:
  description: One entry per endpoint, in the order of O(endpoints).
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Position in O(endpoints).
      type: int
      sample: 0
    endpoint:
      description: The endpoint as written.
      type: str
      sample: 127.0.3.1:9090
    url:
      description: The URL read.
      type: str
      sample: http://127.0.3.1:9090/metrics
    name:
      description: The replica's identity - its O(replica_label) label, else the endpoint.
      type: str
      sample: replica-1
    replica:
      description: The value of the O(replica_label) label, or null.
      type: str
      sample: replica-1
    reachable:
      description: Whether the exposition was read and parsed.
      type: bool
      sample: true
    error:
      description: Why not, in one line (refused, timed out, HTTP status, HTML, malformed line).
      type: str
      sample: "connection refused"
    errors:
      description: >-
        Every error of this replica, its own endpoint's (as in RV(replicas[].error)) and its node
        endpoint's (prefixed C(node endpoint ENDPOINT:)); empty when both were read.
      type: list
      elements: str
      sample: ["connection refused"]
    node:
      description: >-
        What its node endpoint (O(node_endpoints)) gave, or null when it has none.
      type: dict
      contains:
        endpoint:
          description: The node endpoint as written.
          type: str
          sample: 127.0.3.1:9100
        url:
          description: The URL read.
          type: str
          sample: http://127.0.3.1:9100/metrics
        reachable:
          description: Whether its exposition was read and parsed.
          type: bool
          sample: true
        error:
          description: >-
            Why it could not be read, or that it has no filesystem figures; null when it gave them.
          type: str
          sample: "timed out after 2 s (connect)"
        http_status:
          description: The HTTP status code, or null when no answer came.
          type: int
          sample: 200
        fetch_seconds:
          description: Seconds the read took.
          type: float
          sample: 0.003
        filesystem_avail_bytes:
          description: Lowest available bytes over the filesystems it exposes, or null.
          type: int
          sample: 0
        filesystem_used_percent:
          description: Highest used percentage over them, or null.
          type: float
          sample: 100.0
    http_status:
      description: The HTTP status code, or null when no answer came.
      type: int
      sample: 200
    fetch_seconds:
      description: Seconds the read took.
      type: float
      sample: 0.004
    status:
      description: The status gauge (0 Normal, 1 ViewChange, 2 Recovering, 3 StateTransfer).
      type: int
      sample: 0
    status_name:
      description: Its name.
      type: str
      sample: Normal
    view:
      description: The view number.
      type: int
      sample: 6
    op:
      description: The op number.
      type: int
      sample: 1042
    commit:
      description: The commit number.
      type: int
      sample: 1040
    op_commit_lag:
      description: C(op - commit).
      type: int
      sample: 2
    commit_lag:
      description: How far the commit number is behind the highest commit of the cluster.
      type: int
      sample: 0
    checksum_failures:
      description: The checksum failures counter.
      type: int
      sample: 0
    pending_requests:
      description: Pending client requests.
      type: int
      sample: 2
    clock_offset_ms:
      description: The clock offset, in milliseconds.
      type: float
      sample: 1.5
    reconfig_state:
      description: The reconfiguration state (0 Stable, 1 Joint).
      type: int
      sample: 0
    reconfig_state_name:
      description: Its name.
      type: str
      sample: Stable
    config_size:
      description: >-
        The members of the replica's own configuration (null when the exposition has no such
        gauge); the quorum guard decides for the larger of this and the inventory's count.
      type: int
      sample: 3
    operations_total:
      description: The committed operations counter.
      type: int
      sample: 52310
    client_latency_p95_ms:
      description: p95 of the client latency histogram, ms (null without observations).
      type: float
      sample: 9.73
    prepare_latency_p95_ms:
      description: p95 of the prepare latency histogram, ms.
      type: float
      sample: 3.35
    histograms:
      description: >-
        The two latency histograms summed over their label sets, C({buckets: [[le, count]...],
        count, sum}) (C(le) of the last bucket is the string C(+Inf)), for windowed percentiles.
      type: dict
    filesystem_avail_bytes:
      description: >-
        Lowest available bytes over the filesystems exposed (by the replica and by its node
        endpoint), or null.
      type: int
      sample: 412000000000
    filesystem_used_percent:
      description: Highest used percentage over those filesystems, or null.
      type: float
      sample: 58.8
    expected_leader:
      description: Whether this replica is the leader the view designates.
      type: bool
      sample: true
    missing:
      description: The core metrics (status, view, op, commit) absent from the exposition.
      type: list
      elements: str
      sample: []
    notes:
      description: Remarks on the exposition (a gauge with several series...).
      type: list
      elements: str
      sample: []
    samples:
      description: >-
        Every sample, C({name, labels, value, timestamp}) (NaN and infinities as the strings
        C(NaN), C(+Inf), C(-Inf); timestamps in seconds). Only with O(return_samples=true).
      type: list
      elements: dict
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.firebreak.incident.plugins.module_utils.endpoints import (  # noqa: E402
    DEFAULT_PATH,
    EndpointError,
    FetchOptions,
    endpoints_argument_spec,
    fetch_all,
    looks_like_html,
    normalize_endpoint,
    normalize_endpoints,
)
from ansible_collections.firebreak.incident.plugins.module_utils.prometheus_text import (  # noqa: E402
    PrometheusTextError,
    parse_samples,
    sample_to_dict,
)
from ansible_collections.firebreak.incident.plugins.module_utils.vsr import (  # noqa: E402
    DEFAULT_METRIC_NAMES,
    VsrInputError,
    cluster_summary,
    merge_filesystem,
    metric_names_with_defaults,
    node_filesystem,
    replica_summary,
)

_EMPTY_FIELDS = (
    "status",
    "status_name",
    "view",
    "op",
    "commit",
    "op_commit_lag",
    "checksum_failures",
    "pending_requests",
    "clock_offset_ms",
    "reconfig_state",
    "reconfig_state_name",
    "config_size",
    "operations_total",
    "client_latency_p95_ms",
    "prepare_latency_p95_ms",
    "filesystem_avail_bytes",
    "filesystem_used_percent",
)


def argument_spec():
    spec = endpoints_argument_spec()
    spec.update(
        replica_order=dict(type="list", elements="str"),
        replica_label=dict(type="str", default="replica"),
        metric_names=dict(
            type="dict",
            apply_defaults=True,
            options=dict(
                (key, dict(type="str", default=value))
                for key, value in DEFAULT_METRIC_NAMES.items()
            ),
        ),
        return_samples=dict(type="bool", default=False),
        node_endpoints=dict(type="list", elements="raw"),
    )
    return spec


def node_urls(node_endpoints, count, scheme):
    """The node exporter URL of each replica (None where it has none), parallel to the
    ``count`` endpoints. EndpointError (option node_endpoints) on bad input."""
    if node_endpoints is None:
        return []
    if len(node_endpoints) != count:
        raise EndpointError(
            "node_endpoints must be parallel to endpoints: %d items for %d endpoints"
            % (len(node_endpoints), count),
            "node_endpoints",
            node_endpoints,
        )
    urls = []
    for i, item in enumerate(node_endpoints):
        if item is None or (isinstance(item, str) and not item.strip()):
            urls.append(None)
            continue
        try:
            urls.append(normalize_endpoint(item, path=DEFAULT_PATH, scheme=scheme))
        except EndpointError as e:
            raise EndpointError("node_endpoints[%d]: %s" % (i, e), "node_endpoints", item) from None
    return urls


def _fetch_fields(fetched):
    """The fields every endpoint's entry starts with: where it was read and how that went."""
    return {
        "endpoint": fetched.endpoint,
        "url": fetched.url,
        "reachable": False,
        "error": fetched.error,
        "http_status": fetched.status,
        "fetch_seconds": round(fetched.elapsed, 4),
    }


def _samples_or_why(fetched, hint=""):
    """``(samples, None)`` from an answered exposition, else ``(None, why)`` (an HTML page,
    malformed text); ``hint`` ends the HTML page's reason."""
    if looks_like_html(fetched):
        return None, (
            "answered an HTML page (content-type %s), not a Prometheus text "
            "exposition%s" % (fetched.content_type, hint)
        )
    try:
        return parse_samples(fetched.body), None
    except PrometheusTextError as e:
        return None, "malformed exposition: %s" % (e,)


def read_node(fetched, metric_names):
    """A node endpoint's entry from its FetchResult: the filesystem figures, or why none."""
    node = dict(_fetch_fields(fetched), filesystem_avail_bytes=None, filesystem_used_percent=None)
    if not fetched.ok:
        return node
    samples, node["error"] = _samples_or_why(fetched)
    if samples is None:
        return node
    node["reachable"] = True
    avail, used = node_filesystem(samples, metric_names)
    node["filesystem_avail_bytes"], node["filesystem_used_percent"] = avail, used
    names = metric_names_with_defaults(metric_names)
    node["error"] = (
        None if avail is not None else "no %s in its exposition" % (names["filesystem_avail"],)
    )
    return node


def merge_node(entry, node):
    """A replica's entry with its node endpoint's result folded in (``node``, ``errors``)."""
    entry["node"] = node
    entry["errors"] = [entry["error"]] if entry.get("error") else []
    if node is None:
        return entry
    if node["error"]:
        entry["errors"].append("node endpoint %s: %s" % (node["endpoint"], node["error"]))
    merge_filesystem(entry, node["filesystem_avail_bytes"], node["filesystem_used_percent"])
    return entry


def read_replica(index, fetched, metric_names, replica_label, return_samples):
    """One replica's entry from its FetchResult: the numbers, or the reason there are none."""
    entry = dict(index=index, **_fetch_fields(fetched))
    entry.update(replica=None, histograms={}, missing=[], notes=[])
    for field in _EMPTY_FIELDS:
        entry[field] = None
    if return_samples:
        entry["samples"] = []
    if not fetched.ok:
        return entry
    samples, entry["error"] = _samples_or_why(fetched, "; check the path (metrics_path)")
    if samples is None:
        return entry
    entry.update(replica_summary(samples, metric_names, replica_label))
    entry["reachable"] = True
    entry["error"] = None
    if return_samples:
        entry["samples"] = [sample_to_dict(s) for s in samples]
    return entry


def describe(cluster):
    parts = [
        "%d/%d reachable" % (cluster["reachable_count"], cluster["endpoint_count"]),
        "%d Normal" % cluster["normal_count"],
        "quorum %d %s" % (cluster["quorum_size"], "kept" if cluster["has_quorum"] else "LOST"),
    ]
    if cluster["view_agreed"]:
        parts.append("view %s" % cluster["agreed_view"])
    elif cluster["views"]:
        parts.append("views %s" % ", ".join(str(v) for v in cluster["views"]))
    if cluster["expected_leader"] is not None:
        state = (
            "Normal"
            if cluster["expected_leader_normal"]
            else ("not Normal" if cluster["expected_leader_reachable"] else "unreachable")
        )
        parts.append("leader %s (%s)" % (cluster["expected_leader"], state))
    return ", ".join(parts)


def run_module():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        options = FetchOptions.from_params(params)
        metric_names = metric_names_with_defaults(params["metric_names"])
        if params["replica_order"] is not None:
            order = params["replica_order"]
            if not order or any(not name for name in order) or len(set(order)) != len(order):
                raise VsrInputError(
                    "replica_order must list distinct, non-empty replica names, got %r" % (order,)
                )
        if not params["replica_label"]:
            raise VsrInputError(
                "replica_label must be a label name, got %r" % (params["replica_label"],)
            )
        urls = normalize_endpoints(
            params["endpoints"], path=params["metrics_path"], scheme=params["scheme"]
        )
        nodes = node_urls(params["node_endpoints"], len(urls), params["scheme"])
        count = len(urls)
        # one batch: the node endpoints are read beside the replicas', under the same bounds
        node_index = [i for i, url in enumerate(nodes) if url is not None]
        all_urls = urls + [nodes[i] for i in node_index]
        written = list(params["endpoints"]) + [params["node_endpoints"][i] for i in node_index]

        def process(fetched):
            # each answer is parsed in its worker thread, while the others wait on the network
            if fetched.index >= count:
                return read_node(fetched, metric_names)
            return read_replica(
                fetched.index,
                fetched,
                metric_names,
                params["replica_label"],
                params["return_samples"],
            )

        collected_at = time.time()
        started = time.monotonic()
        results = fetch_all(all_urls, options, endpoints=written, process=process)
    except EndpointError as e:
        module.fail_json(msg=str(e), option=e.option)
    except VsrInputError as e:
        module.fail_json(msg=str(e))
    elapsed = time.monotonic() - started
    replicas = results[:count]
    read_nodes = dict(zip(node_index, results[count:]))
    for i, entry in enumerate(replicas):
        merge_node(entry, read_nodes.get(i))
    cluster = cluster_summary(replicas, params["replica_order"])
    module.exit_json(
        changed=False,
        msg=describe(cluster),
        urls=[r["url"] for r in replicas],
        node_urls=nodes,
        collected_at=round(collected_at, 3),
        elapsed=round(elapsed, 4),
        metric_names=metric_names,
        cluster=cluster,
        replicas=replicas,
    )


def main():
    run_module()


if __name__ == "__main__":
    main()
