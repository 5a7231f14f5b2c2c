# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure Viewstamped Replication logic: no I/O, standard library only.

- ``quorum_size(n)`` and ``vsr_leader(view, replica_order)``: the seed's rules
  (quorum = n // 2 + 1; leader = replica_order[view % n]).
- ``histogram_quantile(q, buckets)``: Prometheus's histogram_quantile (linear interpolation
  inside the bucket).
- ``replica_summary(samples, ...)``: one replica's numbers from its parsed exposition.
- ``cluster_summary(replicas, ...)``: replica count, quorum, agreed view, expected leader...
- ``classify(result, previous=None, disk=None, **thresholds)``: the seed's failure modes
  FM-001..FM-008 as findings ordered by severity, and the overall verdict.

Invalid input raises ``VsrInputError`` (a ValueError) whose message names the bad input.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.firebreak.incident.plugins.module_utils import failure_modes

STATUS_NAMES = {0: "Normal", 1: "ViewChange", 2: "Recovering", 3: "StateTransfer"}
NORMAL, VIEW_CHANGE = 0, 1
RECONFIG_NAMES = {0: "Stable", 1: "Joint"}

# The seed's metric names; vsr_metrics' metric_names option maps another build's names.
DEFAULT_METRIC_NAMES = {
    "status": "vsr_replica_status",
    "view": "vsr_view_number",
    "op": "vsr_op_number",
    "commit": "vsr_commit_number",
    "checksum_failures": "vsr_checksum_failures_total",
    "pending_requests": "vsr_pending_requests",
    "clock_offset": "vsr_clock_offset_ms",
    "reconfig_state": "vsr_reconfig_state",
    "config_size": "vsr_config_size",
    "client_latency": "vsr_client_latency_ms",
    "prepare_latency": "vsr_prepare_latency_ms",
    "operations": "vsr_operations_total",
    "filesystem_avail": "node_filesystem_avail_bytes",
    "filesystem_size": "node_filesystem_size_bytes",
}
# Keys whose absence makes a replica's summary incomplete (the rest are optional).
CORE_METRICS = ("status", "view", "op", "commit")
GAUGES = (
    "status",
    "view",
    "op",
    "commit",
    "checksum_failures",
    "pending_requests",
    "clock_offset",
    "reconfig_state",
    "config_size",
    "operations",
)
INTEGER_METRICS = (
    "status",
    "view",
    "op",
    "commit",
    "checksum_failures",
    "pending_requests",
    "reconfig_state",
    "config_size",
    "operations",
)
HISTOGRAMS = ("client_latency", "prepare_latency")

# The seed's thresholds (FM-001..FM-008, from the failure-mode registry); every one can be
# overridden in classify().
DEFAULT_THRESHOLDS = failure_modes.thresholds()
FAILURE_MODES = dict((e["id"], (e["name"], e["severity"])) for e in failure_modes.REGISTRY)


class VsrInputError(ValueError):
    """Invalid input to a VSR function; the message names it."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(name, value, minimum=None):
    """An int from an int or an integral float/str (Jinja often hands over strings)."""
    if isinstance(value, bool) or value is None:
        raise VsrInputError("%s must be an integer, got %r" % (name, value))
    if _is_int(value):
        number = value
    else:
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise VsrInputError("%s must be an integer, got %r" % (name, value)) from None
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise VsrInputError("%s must be an integer, got %r" % (name, value))
        number = int(as_float)
    if minimum is not None and number < minimum:
        raise VsrInputError("%s must be at least %d, got %r" % (name, minimum, value))
    return number


def quorum_size(n):
    """Votes needed among ``n`` replicas: ``n // 2 + 1``."""
    return _as_int("quorum_size: the replica count", n, minimum=1) // 2 + 1


def _check_order(replica_order, name="replica_order"):
    if isinstance(replica_order, (str, bytes)) or not isinstance(replica_order, (list, tuple)):
        raise VsrInputError("%s must be a list of replica names, got %r" % (name, replica_order))
    if not replica_order:
        raise VsrInputError("%s is empty" % name)
    for item in replica_order:
        if not isinstance(item, (str, int)) or isinstance(item, bool) or item == "":
            raise VsrInputError(
                "%s: each replica name must be a non-empty string, got %r" % (name, item)
            )
    names = [str(item) for item in replica_order]
    if len(set(names)) != len(names):
        raise VsrInputError("%s lists a replica twice: %r" % (name, list(replica_order)))
    return names


def vsr_leader(view, replica_order):
    """The leader (primary) of ``view``: ``replica_order[view % len(replica_order)]``."""
    order = _check_order(replica_order)
    view = _as_int("vsr_leader: view", view, minimum=0)
    return order[view % len(order)]


# ----------------------------------------------------------------------------- histograms
def _le(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def histogram_quantile(q, buckets):
    """Prometheus's ``histogram_quantile`` on cumulative ``buckets`` [(upper bound, count)].

    Linear interpolation inside the bucket holding the rank; the first bucket starts at 0
    (when its bound is positive); a rank in the +Inf bucket gives the highest finite bound.
    NaN when there are fewer than two buckets, no +Inf bucket, or no observations.
    """
    if q < 0:
        return float("-inf")
    if q > 1:
        return float("inf")
    merged = {}
    for bound, count in buckets:  # equal bounds add up (Prometheus's coalesceBuckets)
        merged[float(bound)] = merged.get(float(bound), 0.0) + float(count)
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return float("nan")
    # Counts must not decrease (Prometheus's ensureMonotonic).
    counts = []
    high = 0.0
    for _bound, count in ordered:
        high = max(high, count)
        counts.append(high)
    total = counts[-1]
    if total == 0 or math.isnan(total):
        return float("nan")
    rank = q * total
    index = 0
    while index < len(counts) - 1 and counts[index] < rank:
        index += 1
    if index == len(ordered) - 1:
        return ordered[-2][0]
    if index == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start = 0.0
    end = ordered[index][0]
    count = counts[index]
    if index > 0:
        start = ordered[index - 1][0]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    if count == 0:
        return float("nan")  # 0/0, as in Prometheus (q = 0 over an empty first bucket)
    return start + (end - start) * (rank / count)


def histogram_from_samples(samples, name):
    """``{buckets: [[le, cumulative count]...], count, sum}`` of histogram ``name``, summed over
    its label sets (as ``sum by (le)`` does); None when the exposition has no such buckets."""
    by_le = {}
    count = total = None
    for sample in samples:
        if sample.name == name + "_bucket":
            bound = _le(sample.labels.get("le"))
            if bound is not None:
                by_le[bound] = by_le.get(bound, 0) + sample.value
        elif sample.name == name + "_count":
            count = (count or 0) + sample.value
        elif sample.name == name + "_sum":
            total = (total or 0) + sample.value
    if not by_le:
        return None
    buckets = [[bound, by_le[bound]] for bound in sorted(by_le)]
    return {"buckets": buckets, "count": count, "sum": total}


def histogram_delta(current, previous):
    """Bucket-wise ``current - previous`` (a window), or None when they do not line up or the
    counter was reset (a replica restart)."""
    if not current or not previous:
        return None
    prev = dict((_le(b), c) for b, c in _json_buckets(previous["buckets"]))
    out = []
    for bound, count in _json_buckets(current["buckets"]):
        if bound not in prev or count < prev[bound]:
            return None
        out.append([bound, count - prev[bound]])
    return {"buckets": out}


def _json_buckets(buckets):
    out = []
    for bucket in buckets:
        bound = _le(bucket[0])
        if bound is not None and _num(bucket[1]) is not None:
            out.append((bound, bucket[1]))
    return out


def _p95(histogram):
    if not histogram:
        return None
    value = histogram_quantile(0.95, _json_buckets(histogram["buckets"]))
    return None if math.isnan(value) else _clean_number(value)


# ----------------------------------------------------------------------------- per replica
def _clean_number(value, integer=False):
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if integer and value == int(value):
            return int(value)
        return round(value, 6)
    return value


def _buckets_for_json(histogram):
    if histogram is None:
        return None
    buckets = [
        ["+Inf" if math.isinf(b) else b, _clean_number(c, True)] for b, c in histogram["buckets"]
    ]
    return {
        "buckets": buckets,
        "count": _clean_number(histogram["count"], True),
        "sum": _clean_number(histogram["sum"]),
    }


def metric_names_with_defaults(metric_names=None):
    """DEFAULT_METRIC_NAMES updated with ``metric_names``; VsrInputError on an unknown key."""
    names = dict(DEFAULT_METRIC_NAMES)
    for key, value in (metric_names or {}).items():
        if key not in DEFAULT_METRIC_NAMES:
            raise VsrInputError(
                "metric_names: unknown key %r (known: %s)"
                % (key, ", ".join(sorted(DEFAULT_METRIC_NAMES)))
            )
        if value is not None:
            if not isinstance(value, str) or not value:
                raise VsrInputError("metric_names.%s must be a metric name, got %r" % (key, value))
            names[key] = value
    return names


def _first(samples_by_name, name):
    found = samples_by_name.get(name)
    if found is None and not name.endswith("_total"):
        # prometheus_client's convention names a counter's samples <name>_total
        found = samples_by_name.get(name + "_total")
    return found


def replica_summary(samples, metric_names=None, replica_label="replica"):
    """One replica's numbers from its parsed samples (a list of Sample tuples).

    Returns a dict: ``replica`` (the ``replica_label`` label, or None), status, status_name,
    view, op, commit, op_commit_lag, checksum_failures, pending_requests, clock_offset_ms,
    reconfig_state, reconfig_state_name, config_size, operations_total, client_latency_p95_ms,
    prepare_latency_p95_ms, filesystem_avail_bytes, filesystem_used_percent, histograms,
    missing (keys of CORE_METRICS not found) and notes. A gauge exposed under several label
    sets is read from the first and noted.
    """
    names = metric_names_with_defaults(metric_names)
    by_name = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    out = {"replica": None, "missing": [], "notes": []}
    values = {}
    for key in GAUGES:
        found = _first(by_name, names[key])
        if not found:
            values[key] = None
            continue
        if len(found) > 1:
            out["notes"].append("%s has %d series; read the first" % (names[key], len(found)))
        sample = found[0]
        if out["replica"] is None and replica_label in sample.labels:
            out["replica"] = sample.labels[replica_label]
        values[key] = _clean_number(sample.value, integer=key in INTEGER_METRICS)
    out["missing"] = [names[key] for key in CORE_METRICS if values[key] is None]
    for key in INTEGER_METRICS:
        if key != "operations":  # returned as operations_total
            out[key] = values[key]
    status = values["status"]
    out["status_name"] = STATUS_NAMES.get(status) if _is_int(status) else None
    out["op_commit_lag"] = (
        values["op"] - values["commit"]
        if _is_int(values["op"]) and _is_int(values["commit"])
        else None
    )
    out["clock_offset_ms"] = values["clock_offset"]
    out["reconfig_state_name"] = (
        RECONFIG_NAMES.get(values["reconfig_state"]) if _is_int(values["reconfig_state"]) else None
    )
    out["operations_total"] = values["operations"]
    histograms = {}
    for key in HISTOGRAMS:
        histogram = histogram_from_samples(samples, names[key])
        histograms[key] = _buckets_for_json(histogram)
        out["%s_p95_ms" % key] = _p95(histogram and {"buckets": histogram["buckets"]})
    out["histograms"] = histograms
    avail, used = _filesystem_of(by_name, names)
    out["filesystem_avail_bytes"] = avail
    out["filesystem_used_percent"] = used
    return out


def _filesystem_of(by_name, names):
    return _filesystem(
        by_name.get(names["filesystem_avail"]) or [], by_name.get(names["filesystem_size"]) or []
    )


def node_filesystem(samples, metric_names=None):
    """``(filesystem_avail_bytes, filesystem_used_percent)`` from a node exporter's samples, in
    the roles ``filesystem_avail`` / ``filesystem_size`` of ``metric_names`` (the same reading
    as a replica's own exposition: lowest available, highest used). (None, None) without them."""
    names = metric_names_with_defaults(metric_names)
    by_name = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    return _filesystem_of(by_name, names)


def merge_filesystem(entry, avail, used):
    """Fold a node exporter's figures into a replica's entry (its ``filesystem_avail_bytes`` /
    ``filesystem_used_percent``, which ``classify`` reads for FM-007, reachable or not): the
    lowest available bytes and the highest used percent of both sources win."""
    for key, value, pick in (
        ("filesystem_avail_bytes", avail, min),
        ("filesystem_used_percent", used, max),
    ):
        if value is None:
            continue
        current = entry.get(key)
        entry[key] = value if current is None else pick(current, value)
    return entry


def _filesystem(avail_samples, size_samples):
    """Lowest available bytes and highest used percent over the filesystems exposed."""
    if not avail_samples:
        return None, None
    sizes = dict((tuple(sorted(s.labels.items())), s.value) for s in size_samples)
    lowest = None
    highest_used = None
    for sample in avail_samples:
        if math.isnan(sample.value):
            continue
        lowest = sample.value if lowest is None else min(lowest, sample.value)
        size = sizes.get(tuple(sorted(sample.labels.items())))
        if size:
            used = 100.0 * (size - sample.value) / size
            highest_used = used if highest_used is None else max(highest_used, used)
    return _clean_number(lowest, True), _clean_number(highest_used)


# ----------------------------------------------------------------------------- cluster
def _matches(name, replica):
    return name in (
        replica.get("name"),
        replica.get("replica"),
        replica.get("endpoint"),
        replica.get("url"),
    )


def _check_replicas(replicas):
    if not isinstance(replicas, list):
        raise VsrInputError("replicas must be a list of replica dicts, got %r" % (replicas,))
    for replica in replicas:
        if not isinstance(replica, dict):
            raise VsrInputError("replicas: each item must be a dict, got %r" % (replica,))


def _name_replicas(replicas, order):
    """Set each replica's ``name``: the replica label; without one (an unreachable replica),
    the name at the same position of ``order`` when no other replica claims it; else the
    endpoint."""
    claimed = set(str(r["replica"]) for r in replicas if r.get("replica") not in (None, ""))
    for position, replica in enumerate(replicas):
        if replica.get("replica") not in (None, ""):
            replica["name"] = str(replica["replica"])
        elif (
            order
            and position < len(order)
            and order[position] not in claimed
            and not any(_matches(order[position], r) for r in replicas if r is not replica)
        ):
            replica["name"] = order[position]
        else:
            replica["name"] = str(replica.get("endpoint") or replica.get("url") or position)


def _set_commit_lags(replicas, max_commit):
    for replica in replicas:
        commit = replica.get("commit")
        replica["commit_lag"] = (
            max_commit - commit
            if replica.get("reachable") and _is_int(commit) and max_commit is not None
            else None
        )


def _leader_view(views, normal):
    """The view whose leader is expected: the agreed view, else the highest view a normal
    replica is in, else the highest view seen (None: no view seen)."""
    normal_views = [r["view"] for r in normal if _is_int(r.get("view"))]
    if len(views) == 1:
        return views[0]
    if normal_views:
        return max(normal_views)
    return views[-1] if views else None


def _mark_expected_leader(replicas, order, leader_view):
    """(leader name, its replica dict) of ``leader_view``, each replica's ``expected_leader``
    set; (None, None) when the view or the replicas are unknown."""
    n = len(order)
    leader = leader_replica = None
    if leader_view is not None and n:
        leader = order[leader_view % n]
        leader_replica = next((r for r in replicas if _matches(leader, r)), None)
    for replica in replicas:
        replica["expected_leader"] = replica is leader_replica
    return leader, leader_replica


def _is_normal(replica):
    return bool(replica.get("reachable") and replica.get("status") == NORMAL)


def cluster_summary(replicas, replica_order=None):
    """The cluster's state from per-replica dicts (as built by vsr_metrics: ``endpoint``,
    ``url``, ``replica``, ``reachable``, ``status``, ``view``, ``commit``...).

    Sets on each replica ``name`` (its identity: the ``replica`` label, else the endpoint),
    ``commit_lag`` (behind the highest commit) and ``expected_leader``; returns the summary.
    The replica count is ``len(replica_order)`` when given, else the number of replicas.
    """
    _check_replicas(replicas)
    order = _check_order(replica_order) if replica_order else None
    _name_replicas(replicas, order)
    if order is None:
        order = [r["name"] for r in replicas]
    n = len(order)
    quorum = quorum_size(n) if n else 0
    reachable = [r for r in replicas if r.get("reachable")]
    normal = [r for r in reachable if r.get("status") == NORMAL]
    commits = [r["commit"] for r in reachable if _is_int(r.get("commit"))]
    ops = [r["op"] for r in reachable if _is_int(r.get("op"))]
    max_commit = max(commits) if commits else None
    _set_commit_lags(replicas, max_commit)
    views = sorted(set(r["view"] for r in reachable if _is_int(r.get("view"))))
    leader_view = _leader_view(views, normal)
    leader, leader_replica = _mark_expected_leader(replicas, order, leader_view)
    unmatched = [name for name in order if not any(_matches(name, r) for r in replicas)]
    return {
        "replica_count": n,
        "endpoint_count": len(replicas),
        "reachable_count": len(reachable),
        "normal_count": len(normal),
        "quorum_size": quorum,
        "has_quorum": bool(n) and len(normal) >= quorum,
        "views": views,
        "view_agreed": len(views) == 1,
        "agreed_view": views[0] if len(views) == 1 else None,
        "leader_view": leader_view,
        "expected_leader": leader,
        "expected_leader_reachable": bool(leader_replica and leader_replica.get("reachable")),
        "expected_leader_normal": bool(leader_replica) and _is_normal(leader_replica),
        "max_commit": max_commit,
        "min_commit": min(commits) if commits else None,
        "max_op": max(ops) if ops else None,
        "replica_order": order,
        "unmatched_replica_order": unmatched if replica_order else [],
        "unreachable": [r["name"] for r in replicas if not r.get("reachable")],
        "not_normal": [r["name"] for r in replicas if not _is_normal(r)],
    }


# ----------------------------------------------------------------------------- classification
def _split_result(data, what):
    if not isinstance(data, dict):
        raise VsrInputError(
            "%s must be the vsr_metrics result (a dict with cluster and "
            "replicas), got %s" % (what, type(data).__name__)
        )
    cluster, replicas = data.get("cluster"), data.get("replicas")
    if not isinstance(cluster, dict) or not isinstance(replicas, list):
        raise VsrInputError(
            '%s must hold "cluster" (a dict) and "replicas" (a list), as '
            "vsr_metrics returns; got keys %s" % (what, sorted(data))
        )
    for replica in replicas:
        if not isinstance(replica, dict):
            raise VsrInputError("%s.replicas: each item must be a dict, got %r" % (what, replica))
    return cluster, replicas


def _name(replica):
    return str(
        replica.get("name")
        or replica.get("replica")
        or replica.get("endpoint")
        or replica.get("url")
    )


def _num(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else value
    if value == "+Inf":
        return float("inf")
    if value == "-Inf":
        return float("-inf")
    return None


def _fmt(value):
    if isinstance(value, float):
        if value == int(value) and not math.isinf(value):
            return "%d" % value
        return "%.6g" % value
    return str(value)


def _thresholds(overrides):
    values = dict(DEFAULT_THRESHOLDS)
    for key, value in overrides.items():
        if key not in DEFAULT_THRESHOLDS:
            raise VsrInputError(
                "unknown threshold %r (known: %s)" % (key, ", ".join(sorted(DEFAULT_THRESHOLDS)))
            )
        number = None
        if not isinstance(value, bool):
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
        if number is None or math.isnan(number) or number < 0:
            raise VsrInputError("threshold %s must be a number >= 0, got %r" % (key, value))
        values[key] = number
    return values


def _disk_input(disk, replicas):
    """{name: (avail_bytes or None, used_percent or None)} from ``disk`` and the replicas'
    own filesystem metrics. ``disk`` maps a replica name to a used percent (a number) or to a
    dict with avail_bytes, size_bytes and/or used_percent."""
    found = {}
    for replica in replicas:
        avail = _num(replica.get("filesystem_avail_bytes"))
        used = _num(replica.get("filesystem_used_percent"))
        if avail is not None or used is not None:
            found[_name(replica)] = (avail, used)
    if disk is None:
        return found
    if not isinstance(disk, dict):
        raise VsrInputError(
            "disk must map replica names to a used percent or to a dict with "
            "avail_bytes/size_bytes/used_percent, got %r" % (disk,)
        )
    for name, value in disk.items():
        if isinstance(value, dict):
            unknown = set(value) - set(("avail_bytes", "size_bytes", "used_percent"))
            if unknown:
                raise VsrInputError(
                    "disk[%r]: unknown keys %s (expected avail_bytes, "
                    "size_bytes, used_percent)" % (name, sorted(unknown))
                )
            avail = _checked_disk_number(name, "avail_bytes", value.get("avail_bytes"))
            size = _checked_disk_number(name, "size_bytes", value.get("size_bytes"))
            used = _checked_disk_number(name, "used_percent", value.get("used_percent"))
            if used is None and avail is not None and size:
                used = 100.0 * (size - avail) / size
        else:
            avail, used = None, _checked_disk_number(name, "used percent", value)
            if used is None:
                raise VsrInputError(
                    "disk[%r] must be a used percent or a dict, got %r" % (name, value)
                )
        if used is not None and not 0 <= used <= 100:
            raise VsrInputError(
                "disk[%r]: used percent must be within 0..100, got %r" % (name, used)
            )
        found[str(name)] = (avail, used)
    return found


def _checked_disk_number(name, key, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise VsrInputError("disk[%r].%s must be a number >= 0, got %r" % (name, key, value))
    return value


def _finding(fm, replicas, evidence):
    name, severity = failure_modes.name_and_severity(fm)
    return {
        "fm": fm,
        "name": name,
        "severity": severity,
        "replicas": replicas,
        "evidence": evidence,
        "runbook": failure_modes.runbook(fm),
    }


class _Context(object):
    """What every failure mode's check reads: the replicas, the previous sample, the limits."""

    def __init__(self, data, previous, disk, thresholds):
        self.cluster, self.replicas = _split_result(data, "vsr_classify input")
        self.limits = _thresholds(thresholds)
        self.names = dict(DEFAULT_METRIC_NAMES)
        if isinstance(data.get("metric_names"), dict):
            self.names.update((k, v) for k, v in data["metric_names"].items() if isinstance(v, str))
        self.prev = {}
        self.window = ""
        self.window_seconds = None
        if previous is not None:
            _prev_cluster, prev_replicas = _split_result(previous, "previous")
            self.prev = dict((_name(r), r) for r in prev_replicas)
            now, then = _num(data.get("collected_at")), _num(previous.get("collected_at"))
            if now is not None and then is not None:
                self.window_seconds = now - then
                self.window = " over %ss" % _fmt(round(now - then, 1))
        self.reachable = [r for r in self.replicas if r.get("reachable")]
        n = _num(self.cluster.get("replica_count"))
        self.n = len(self.replicas) if n is None else n
        self.quorum = quorum_size(self.n) if self.n else 0
        self.normal = [r for r in self.reachable if r.get("status") == NORMAL]
        self.unreachable = [r for r in self.replicas if not r.get("reachable")]
        self.disk = _disk_input(disk, self.replicas)
        commits = [r["commit"] for r in self.reachable if _num(r.get("commit")) is not None]
        self.max_commit = max(commits) if commits else None

    def before(self, replica, key):
        return _num(self.prev.get(_name(replica), {}).get(key))


def _fm002_view_change(c):
    """Every reachable replica in ViewChange, or the view climbing while unsettled."""
    in_vc = [r for r in c.reachable if r.get("status") == VIEW_CHANGE]
    evidence = []
    if c.reachable and len(in_vc) == len(c.reachable):
        evidence.append(
            "all %d reachable replicas in ViewChange (%s=1): %s"
            % (len(c.reachable), c.names["status"], ", ".join(_name(r) for r in in_vc))
        )
    views = [r["view"] for r in c.reachable if _num(r.get("view")) is not None]
    prev_views = [
        r["view"] for r in c.prev.values() if r.get("reachable") and _num(r.get("view")) is not None
    ]
    settled = (
        bool(c.reachable)
        and len(c.normal) == len(c.reachable)
        and c.cluster.get("view_agreed", len(set(views)) == 1)
    )
    if (
        views
        and prev_views
        and max(views) - max(prev_views) >= max(c.limits["view_climb"], 1)
        and not settled
    ):
        evidence.append(
            "%s climbed from %s to %s%s without the cluster settling in Normal"
            % (c.names["view"], _fmt(max(prev_views)), _fmt(max(views)), c.window)
        )
    if not evidence:
        return None
    if len(c.normal) < c.quorum:
        evidence.append(
            "%d of %d replicas Normal (quorum %d): the replicas answer but are electing"
            % (len(c.normal), c.n, c.quorum)
        )
    return _finding("FM-002", [_name(r) for r in c.reachable], evidence)


def _fm001_quorum_lost(c, view_change):
    """Fewer than a quorum reachable and Normal; a quorum of reachable replicas stuck in a
    view change is FM-002 (seed 000), not FM-001."""
    if len(c.normal) >= c.quorum:
        return None
    if view_change is not None and len(c.reachable) >= c.quorum:
        return None
    evidence = ["%d of %d replicas Normal, quorum needs %d" % (len(c.normal), c.n, c.quorum)]
    for r in c.replicas:
        if r in c.normal:
            continue
        if not r.get("reachable"):
            evidence.append("%s unreachable: %s" % (_name(r), r.get("error") or "no answer"))
        else:
            evidence.append(
                "%s %s=%s (%s)"
                % (
                    _name(r),
                    c.names["status"],
                    _fmt(r.get("status")),
                    r.get("status_name") or "unknown",
                )
            )
    return _finding("FM-001", [_name(r) for r in c.replicas if r not in c.normal], evidence)


def _fm003_corruption(c):
    """Checksum failures above the threshold, or rising since the previous sample."""
    evidence, targets = [], []
    metric = c.names["checksum_failures"]
    for r in c.reachable:
        failures = _num(r.get("checksum_failures"))
        if failures is None:
            continue
        before = c.before(r, "checksum_failures")
        if before is not None and failures > before:
            evidence.append(
                "%s %s rose from %s to %s%s"
                % (_name(r), metric, _fmt(before), _fmt(failures), c.window)
            )
        elif failures > c.limits["checksum_failures"]:
            evidence.append(
                "%s %s=%s (> %s)"
                % (_name(r), metric, _fmt(failures), _fmt(c.limits["checksum_failures"]))
            )
        else:
            continue
        targets.append(_name(r))
    return _finding("FM-003", targets, evidence) if targets else None


def _fm004_latency(c):
    """Latency p95 above the seed's limits (over the window when a previous is given)."""
    evidence, targets = [], []
    for r in c.reachable:
        for key, limit_key in (
            ("client_latency", "client_p95_ms"),
            ("prepare_latency", "prepare_p95_ms"),
        ):
            p95, scope = _window_p95(r, c.prev.get(_name(r)), key)
            if p95 is not None and p95 > c.limits[limit_key]:
                evidence.append(
                    "%s %s p95 %s ms%s (> %s ms)"
                    % (
                        _name(r),
                        c.names[key],
                        _fmt(round(p95, 3)),
                        c.window if scope else "",
                        _fmt(c.limits[limit_key]),
                    )
                )
                if _name(r) not in targets:
                    targets.append(_name(r))
    return _finding("FM-004", targets, evidence) if targets else None


def _fm005_crash(c):
    """Exactly one replica unreachable while the others keep a quorum."""
    if len(c.unreachable) != 1 or len(c.normal) < c.quorum:
        return None
    r = c.unreachable[0]
    return _finding(
        "FM-005",
        [_name(r)],
        [
            "%s unreachable: %s" % (_name(r), r.get("error") or "no answer"),
            "%d of %d replicas Normal, quorum %d kept" % (len(c.normal), c.n, c.quorum),
        ],
    )


def _fm006_lag_evidence(c, r, max_commit):
    op, commit = _num(r.get("op")), _num(r.get("commit"))
    names, limits, evidence = c.names, c.limits, []
    if op is not None and commit is not None and op - commit > limits["op_commit_lag"]:
        evidence.append(
            "%s %s - %s = %s (> %s)"
            % (
                _name(r),
                names["op"],
                names["commit"],
                _fmt(op - commit),
                _fmt(limits["op_commit_lag"]),
            )
        )
    if commit is not None and max_commit is not None and max_commit - commit > limits["commit_lag"]:
        evidence.append(
            "%s %s %s is %s behind the highest (%s)"
            % (_name(r), names["commit"], _fmt(commit), _fmt(max_commit - commit), _fmt(max_commit))
        )
    return evidence


def _fm006_commit_lag(c):
    """op - commit, or a replica's commit behind the highest, above the limit."""
    evidence, targets = [], []
    for r in c.reachable:
        found = _fm006_lag_evidence(c, r, c.max_commit)
        if not found:
            continue
        evidence.extend(found)
        targets.append(_name(r))
        pending, before = _num(r.get("pending_requests")), c.before(r, "pending_requests")
        if pending is not None and before is not None and pending > before:
            evidence.append(
                "%s %s rose from %s to %s%s"
                % (_name(r), c.names["pending_requests"], _fmt(before), _fmt(pending), c.window)
            )
    return _finding("FM-006", targets, evidence) if targets else None


def _fm007_disk_full(c):
    """A full (or nearly full) disk, from the exposition or the disk input."""
    evidence, targets = [], []
    for name, (avail, used) in sorted(c.disk.items()):
        hit = []
        if avail is not None and avail <= c.limits["disk_avail_bytes"]:
            hit.append(
                "%s %s (<= %s)"
                % (c.names["filesystem_avail"], _fmt(avail), _fmt(c.limits["disk_avail_bytes"]))
            )
        if used is not None and used >= c.limits["disk_used_percent"]:
            hit.append(
                "disk %s%% used (>= %s%%)"
                % (_fmt(round(used, 1)), _fmt(c.limits["disk_used_percent"]))
            )
        if hit:
            targets.append(name)
            evidence.append("%s %s" % (name, "; ".join(hit)))
    return _finding("FM-007", targets, evidence) if targets else None


def _fm008_clock(c):
    """|clock offset| above tolerance."""
    evidence, targets = [], []
    for r in c.reachable:
        offset = _num(r.get("clock_offset_ms"))
        if offset is not None and abs(offset) > c.limits["clock_offset_ms"]:
            evidence.append(
                "%s %s=%s (|offset| > %s ms)"
                % (
                    _name(r),
                    c.names["clock_offset"],
                    _fmt(offset),
                    _fmt(c.limits["clock_offset_ms"]),
                )
            )
            targets.append(_name(r))
    return _finding("FM-008", targets, evidence) if targets else None


def _alerts(c):
    """The seed's alerts that would fire (its "Prevention" thresholds, below the failure
    modes'): commit lag per replica, disk space, clock offset, view changes per hour."""
    out = []
    limits, max_commit = c.limits, c.max_commit
    for r in c.reachable:
        commit, offset = _num(r.get("commit")), _num(r.get("clock_offset_ms"))
        if (
            commit is not None
            and max_commit is not None
            and max_commit - commit > limits["commit_lag_alert"]
        ):
            out.append(_alert("FM-006", r, max_commit - commit, limits["commit_lag_alert"]))
        if offset is not None and abs(offset) > limits["clock_offset_alert_ms"]:
            out.append(_alert("FM-008", r, offset, limits["clock_offset_alert_ms"]))
    for name, (_avail, used) in sorted(c.disk.items()):
        if used is not None and used >= limits["disk_alert_percent"]:
            out.append(
                _alert("FM-007", {"name": name}, round(used, 1), limits["disk_alert_percent"])
            )
    views = [r["view"] for r in c.reachable if _num(r.get("view")) is not None]
    prev = [r["view"] for r in c.prev.values() if _num(r.get("view")) is not None]
    if views and prev and c.window_seconds:
        per_hour = (max(views) - max(prev)) * 3600.0 / c.window_seconds
        if per_hour > limits["view_changes_per_hour_alert"]:
            out.append(
                _alert(
                    "FM-002",
                    {"name": "cluster"},
                    round(per_hour, 1),
                    limits["view_changes_per_hour_alert"],
                )
            )
    return out


def _alert(fm, replica, value, threshold):
    return {
        "alert": failure_modes.alert(fm),
        "fm": fm,
        "replica": _name(replica),
        "value": _clean_number(value) if isinstance(value, float) else value,
        "threshold": _clean_number(threshold) if isinstance(threshold, float) else threshold,
    }


def _explained(finding, present):
    """The failure modes among ``present`` that explain ``finding`` (it is their symptom)."""
    return [fm for fm in failure_modes.explained_by(finding["fm"]) if fm in present]


def verdict(findings):
    """The finding that names the cause: the most severe one that no other finding explains
    (FM-004 latency is the verdict only when nothing else explains it). Each explained
    finding gets ``explained_by``; it stays in the findings as evidence."""
    present = set(f["fm"] for f in findings)
    for finding in findings:
        causes = _explained(finding, present)
        if causes:
            finding["explained_by"] = causes
    ordered = sorted(findings, key=lambda f: (f["severity"], f["fm"]))
    causes = [f for f in ordered if not f.get("explained_by")]
    return (causes or ordered or [None])[0]


def warnings_verdict(alerts):
    """Seed 000's SEV4 ("Minor issue: warning alerts, low impact"): the verdict when alerts
    fire below every failure mode's threshold; no failure mode, no runbook."""
    return {
        "fm": "none",
        "name": "Warnings",
        "severity": "SEV4",
        "replicas": sorted(set(a["replica"] for a in alerts)),
        "evidence": [
            "%s on %s: %s (> %s)"
            % (a["alert"], a["replica"], _fmt(a["value"]), _fmt(a["threshold"]))
            for a in alerts
        ],
        "runbook": "none",
    }


def classify(data, previous=None, disk=None, **thresholds):
    """The seed's failure modes found in a vsr_metrics result.

    ``data``: the vsr_metrics result, or a dict with its ``cluster`` and ``replicas``.
    ``previous``: an earlier result of the same cluster, for rates (checksum failures rising,
    view climbing, latency p95 over the window between the two). ``disk``: extra disk input
    (see ``_disk_input``). ``thresholds``: overrides of DEFAULT_THRESHOLDS.

    Returns ``{findings, overall: {failure_mode, name, severity, targets, runbook}, alerts}``;
    findings are ``{fm, name, severity, replicas, evidence, runbook[, explained_by]}``, SEV1
    first (then by FM number). The overall verdict is the cause, not its symptom (``verdict``).
    Healthy gives no findings and failure_mode/severity ``none``; no finding but alerts (the
    seed's warning thresholds) is severity SEV4, "Warnings", failure_mode ``none``.
    """
    c = _Context(data, previous, disk, thresholds)
    view_change = _fm002_view_change(c)
    found = [
        _fm001_quorum_lost(c, view_change),
        view_change,
        _fm003_corruption(c),
        _fm004_latency(c),
        _fm005_crash(c),
        _fm006_commit_lag(c),
        _fm007_disk_full(c),
        _fm008_clock(c),
    ]
    findings = sorted((f for f in found if f), key=lambda f: (f["severity"], f["fm"]))
    top = verdict(findings)
    alerts = _alerts(c)
    if top:
        overall = {
            "failure_mode": top["fm"],
            "name": top["name"],
            "severity": top["severity"],
            "targets": list(top["replicas"]),
            "runbook": top["runbook"],
        }
    elif alerts:
        warn = warnings_verdict(alerts)
        overall = {
            "failure_mode": "none",
            "name": warn["name"],
            "severity": warn["severity"],
            "targets": warn["replicas"],
            "runbook": "none",
        }
    else:
        overall = {
            "failure_mode": "none",
            "name": "Healthy",
            "severity": "none",
            "targets": [],
            "runbook": "none",
        }
    return {"findings": findings, "overall": overall, "alerts": alerts}


def _window_p95(replica, previous, key):
    """(p95, True) over the window since ``previous`` when both carry buckets, else the
    lifetime p95 the replica reported (p95, False)."""
    current = (replica.get("histograms") or {}).get(key)
    before = ((previous or {}).get("histograms") or {}).get(key) if previous else None
    delta = histogram_delta(current, before)
    if delta is not None:
        value = histogram_quantile(0.95, _json_buckets(delta["buckets"]))
        if not math.isnan(value):
            return value, True
        return None, True  # no observations in the window
    return _num(replica.get("%s_p95_ms" % key)), False


def host_findings(findings, table, has_quorum, service_name="kimberlite-vsr"):
    """``findings`` (classify's) with what the hosts themselves said: a replica whose journal
    (its current run) or admin status reports corruption is FM-003, and one unit down while a
    quorum holds is FM-005, even when the metrics alone did not show it. ``table`` is triage's
    per-replica table (``run_checksum_lines``, ``corrupt_from``, ``host_state_read``,
    ``unit_active_state``)."""
    rows = [r for r in (table or []) if isinstance(r, dict)]
    corrupt = []
    for r in rows:
        said = (r.get("run_checksum_lines") or 0) > 0 or r.get("corrupt_from") is not None
        if said and r.get("name") not in corrupt:
            corrupt.append(r.get("name"))
    down = [
        r.get("name")
        for r in rows
        if r.get("host_state_read") and r.get("unit_active_state") != "active"
    ]
    out = []
    for f in findings:
        if f.get("fm") == "FM-003":
            extra = [n for n in corrupt if n not in f.get("replicas", [])]
            f = dict(
                f,
                replicas=list(f.get("replicas", [])) + extra,
                evidence=list(f.get("evidence", []))
                + ["journal of %s (current run) reports checksum mismatches" % n for n in extra],
            )
        out.append(f)
    seen = set(f.get("fm") for f in findings)
    if "FM-003" not in seen and corrupt:
        out.insert(
            0,
            _finding(
                "FM-003",
                corrupt,
                [
                    "journal or admin status of %s reports checksum mismatches in its current run"
                    % n
                    for n in corrupt
                ],
            ),
        )
    if not seen & set(["FM-001", "FM-005"]) and len(down) == 1 and has_quorum:
        out.append(_finding("FM-005", down, ["unit %s not active on %s" % (service_name, down[0])]))
    return out
