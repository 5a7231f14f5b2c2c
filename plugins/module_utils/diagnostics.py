# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed's five diagnostic procedures (Check Cluster Health, Identify Leader, Check Network
Connectivity, Analyze Logs for Errors, Check Resource Utilization): what a host's reads mean
(parsers of /proc, ping, the journal) and the seed's "Expected Output" applied to them.

Pure and standard library only: the module ``host_diagnostics`` reads a host and calls the
``host_*`` functions here to turn its reads into figures; the filter ``diagnostics_evaluate``
judges every host's figures and the cluster's metrics against ``EXPECTED``, the one table of
the procedures' thresholds, each with the seed's wording.

A figure that could not be read is None with the reason beside it, never 0: its check is
``unavailable``, not ``pass``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.firebreak.incident.plugins.module_utils import vsr

VERDICTS = ("pass", "warn", "fail", "unavailable")
# The worst verdict names a procedure's and the whole diagnosis's: a failure outweighs a
# warning, which outweighs a figure nobody could read; only all-pass is pass.
_RANK = {"pass": 0, "unavailable": 1, "warn": 2, "fail": 3}
PROCEDURES = ("health", "leader", "network", "logs", "resources")


def _e(procedure, expected, rule, threshold, unit="", warn=None, miss="fail", seed=True):
    return {
        "procedure": procedure,
        "expected": expected,
        "rule": rule,
        "threshold": threshold,
        "unit": unit,
        "warn": warn,
        "miss": miss,
        "seed": seed,
    }


# check -> the seed's "Expected Output" line (``seed: False``: a check of ours, its wording
# ours), how the value is judged (below / at_most / above / equals / true) against
# ``threshold``, a second, looser bound (``warn``: missing the first but within it warns)
# and the verdict when the bound is missed (``miss``: indirect evidence only warns).
EXPECTED = {
    "unit_active": _e(
        "health", 'All replicas "Active: active (running)"', "equals", "active (running)"
    ),
    "status_normal": _e("health", "All replicas `vsr_replica_status{} 0` (Normal)", "equals", 0),
    "same_view": _e("health", "All replicas have same `vsr_view_number`", "at_most", 1, "views"),
    "commit_spread": _e(
        "health",
        "All replicas have similar `vsr_commit_number` (\u00b110 ops)",
        "at_most",
        10,
        "ops",
    ),
    "commit_lag": _e(
        "health",
        "All replicas have similar `vsr_commit_number` (\u00b110 ops)",
        "at_most",
        10,
        "ops",
    ),
    "one_high_prepare_rate": _e(
        "leader", "One replica has high Prepare message rate (leader)", "equals", 1, "replicas"
    ),
    "backups_low_prepare_rate": _e(
        "leader",
        "Other replicas have zero or low Prepare rate (backups)",
        "at_most",
        0.2,
        "of the leader's rate",
    ),
    "methods_agree": _e(
        "leader",
        "Leader = view % replica_count is the replica with the high Prepare rate",
        "true",
        True,
        seed=False,
    ),
    "ping_rtt": _e(
        "network",
        "Ping latency <1ms (same datacenter), <5ms (same region)",
        "below",
        1.0,
        "ms",
        warn=5.0,
    ),
    "tcp_connect": _e("network", "TCP connectivity succeeds on port 8080", "true", True),
    "packet_loss": _e("network", "Packet loss <0.01%", "below", 0.01, "%"),
    "protocol_reachable": _e(
        "network",
        "The replica reaches the peer on the VSR protocol (vsr_peer_reachable 1)",
        "true",
        True,
        seed=False,
    ),
    "tcp_retransmits": _e("network", "Packet loss <0.01%", "below", 0.01, "%", miss="warn"),
    "interface_drops": _e(
        "network", "Packet loss <0.01% (no drops)", "at_most", 0, "packets", miss="warn"
    ),
    "errors_last_hour": _e(
        "logs", "Few or no errors (0-10 per hour normal)", "at_most", 10, "lines"
    ),
    "checksum_lines_last_day": _e("logs", "No checksum failures", "at_most", 0, "lines"),
    "oom_kills": _e("logs", "No OOM kills", "at_most", 0, "kills"),
    "cpu_utilization": _e("resources", "CPU utilization <80%", "below", 80.0, "%"),
    "load_average": _e("resources", "Load average < number of cores", "below", 1.0, "per core"),
    "memory_utilization": _e("resources", "Memory utilization <90%", "below", 90.0, "%"),
    "disk_io_latency": _e("resources", "Disk I/O latency <10ms", "below", 10.0, "ms"),
    "network_utilization": _e(
        "resources", "Network utilization <80% of capacity", "below", 80.0, "%"
    ),
    "disk_free": _e("resources", "Disk space >20% free", "above", 20.0, "%"),
}


class DiagnosticsError(ValueError):
    """Input that is not what the module or the role hands over; the message names it."""


def expected(thresholds=None):
    """EXPECTED with ``thresholds`` ({check: number}, e.g. ``{ping_rtt: 5}`` across regions)."""
    table = dict((k, dict(v)) for k, v in EXPECTED.items())
    for check, value in (thresholds or {}).items():
        if check not in table:
            raise DiagnosticsError(
                "thresholds: unknown check %r; known: %s" % (check, ", ".join(sorted(table)))
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DiagnosticsError("thresholds.%s must be a number, got %r" % (check, value))
        table[check]["threshold"] = value
    return table


def _meets(rule, value, bound):
    if rule == "below":
        return value < bound
    if rule == "at_most":
        return value <= bound
    if rule == "above":
        return value > bound
    return value == bound  # equals, true


def judge(table, check, value, replica=None, note=None, peer=None):
    """One check: its verdict, value, threshold and the seed's wording. ``value`` None is
    ``unavailable`` (``note`` says why), never a pass."""
    entry = table[check]
    if value is None:
        verdict = "unavailable"
    elif _meets(entry["rule"], value, entry["threshold"]):
        verdict = "pass"
    elif entry["warn"] is not None and _meets(entry["rule"], value, entry["warn"]):
        verdict = "warn"
    else:
        verdict = entry["miss"]
    out = {
        "procedure": entry["procedure"],
        "check": check,
        "replica": replica,
        "verdict": verdict,
        "value": value,
        "threshold": entry["threshold"],
        "rule": entry["rule"],
        "unit": entry["unit"],
        "expected": entry["expected"],
        "note": note,
    }
    if entry["warn"] is not None:
        out["warn_threshold"] = entry["warn"]
    if peer is not None:
        out["peer"] = peer
    return out


def worst(verdicts):
    """The worst of ``verdicts`` (``pass`` for none)."""
    out = "pass"
    for v in verdicts:
        if _RANK[v] > _RANK[out]:
            out = v
    return out


# ----------------------------------------------------------------------------- /proc parsers
def parse_proc_stat(text):
    """``{total, idle}`` jiffies of the ``cpu`` line of /proc/stat (idle counts iowait too;
    guest time is already in user)."""
    for line in (text or "").splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            nums = [int(x) for x in parts[1:9]]
            nums += [0] * (8 - len(nums))
            return {"total": sum(nums), "idle": nums[3] + nums[4]}
    raise DiagnosticsError("/proc/stat has no cpu line")


def parse_loadavg(text):
    """The 1, 5 and 15 minute load averages of /proc/loadavg."""
    parts = (text or "").split()
    if len(parts) < 3:
        raise DiagnosticsError("/proc/loadavg is not three numbers: %r" % (text,))
    return [float(x) for x in parts[:3]]


def parse_meminfo(text):
    """/proc/meminfo as {key: kB}."""
    out = {}
    for line in (text or "").splitlines():
        key, sep, rest = line.partition(":")
        if sep and rest.split():
            out[key.strip()] = int(rest.split()[0])
    return out


def parse_diskstats(text):
    """/proc/diskstats as {name: {major, minor, ios, ticks_ms}}: reads plus writes completed
    and the milliseconds they took."""
    out = {}
    for line in (text or "").splitlines():
        p = line.split()
        if len(p) < 11:
            continue
        out[p[2]] = {
            "major": int(p[0]),
            "minor": int(p[1]),
            "ios": int(p[3]) + int(p[7]),
            "ticks_ms": int(p[6]) + int(p[10]),
        }
    return out


def parse_net_dev(text):
    """/proc/net/dev as {interface: {rx_bytes, rx_drop, tx_bytes, tx_drop}}."""
    out = {}
    for line in (text or "").splitlines():
        name, sep, rest = line.partition(":")
        p = rest.split()
        if not sep or len(p) < 16 or not p[0].isdigit():
            continue
        out[name.strip()] = {
            "rx_bytes": int(p[0]),
            "rx_drop": int(p[3]),
            "tx_bytes": int(p[8]),
            "tx_drop": int(p[11]),
        }
    return out


def parse_snmp(text):
    """/proc/net/snmp as {protocol: {counter: value}} (its header and value line pairs)."""
    out = {}
    header = {}
    for line in (text or "").splitlines():
        proto, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if proto not in header:
            header[proto] = fields
            continue
        try:
            out[proto] = dict(zip(header.pop(proto), [int(x) for x in fields]))
        except ValueError:
            continue
    return out


_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = [0-9.]+/([0-9.]+)/")


def parse_ping(stdout):
    """``{transmitted, received, loss_percent, rtt_avg_ms}`` of ping's summary (iputils or
    busybox); None when it printed none (it could not run)."""
    m = _PING_COUNTS.search(stdout or "")
    if not m:
        return None
    sent, got = int(m.group(1)), int(m.group(2))
    rtt = _PING_RTT.search(stdout or "")
    return {
        "transmitted": sent,
        "received": got,
        "loss_percent": round(100.0 * (sent - got) / sent, 4) if sent else None,
        "rtt_avg_ms": float(rtt.group(1)) if rtt else None,
    }


# ----------------------------------------------------------------------------- host figures
# Block devices that are no disk of their own (their I/O is a disk's, or memory's).
VIRTUAL_DISKS = ("loop", "ram", "zram", "sr", "fd", "nbd")


def _delta(first, second, what):
    """second - first of two /proc reads, both parsed; DiagnosticsError without both."""
    if first is None or second is None:
        raise DiagnosticsError("%s was not read twice" % what)
    return second - first


def cpu_percent(first, second):
    """CPU utilization (all cores) between two /proc/stat reads, in %."""
    a, b = parse_proc_stat(first), parse_proc_stat(second)
    total = _delta(a["total"], b["total"], "/proc/stat")
    if total <= 0:
        raise DiagnosticsError("/proc/stat did not move between the reads")
    return round(100.0 * (1 - float(b["idle"] - a["idle"]) / total), 2)


def disk_devices(stats, device, block_devices):
    """``(names, source)``: the disk of the data dir (``device``: its [major, minor]) when
    /proc/diskstats lists it, else every disk of ``block_devices`` (/sys/block) that is not
    virtual (the data dir on overlay or tmpfs, whose device is no disk)."""
    if device:
        for name, d in sorted(stats.items()):
            if [d["major"], d["minor"]] == list(device):
                return [name], "the data dir's device %s" % name
    disks = [
        b for b in sorted(block_devices or []) if b in stats and not b.startswith(VIRTUAL_DISKS)
    ]
    where = "%d:%d" % tuple(device) if device else "unknown"
    return disks, "every disk (%s): the data dir's device %s is no disk of /proc/diskstats" % (
        ", ".join(disks) or "none",
        where,
    )


def disk_latency(first, second, device, block_devices):
    """``{disk_io_latency_ms, disk_ios, disk_devices, disk_source}`` between two
    /proc/diskstats reads: the time the I/Os completed in the window took, per I/O (None when
    none completed: nothing to time)."""
    a, b = parse_diskstats(first), parse_diskstats(second)
    names, source = disk_devices(b, device, block_devices)
    if not names:
        raise DiagnosticsError("no disk in /proc/diskstats (%s)" % source)
    ios = sum(b[n]["ios"] - a.get(n, b[n])["ios"] for n in names)
    ticks = sum(b[n]["ticks_ms"] - a.get(n, b[n])["ticks_ms"] for n in names)
    return {
        "disk_io_latency_ms": round(float(ticks) / ios, 3) if ios > 0 else None,
        "disk_ios": ios,
        "disk_devices": names,
        "disk_source": source,
    }


def network_io(first, second, elapsed, speeds):
    """Per interface (loopback aside) the bytes per second both ways, the drops in the window
    and, where its speed is known (/sys/class/net/IF/speed, Mb/s), its utilization in %."""
    a, b = parse_net_dev(first), parse_net_dev(second)
    if elapsed <= 0:
        raise DiagnosticsError("the window is %r s" % elapsed)
    out = {}
    for name, x in sorted(b.items()):
        if name == "lo" or name not in a:
            continue
        rx = (x["rx_bytes"] - a[name]["rx_bytes"]) / elapsed
        tx = (x["tx_bytes"] - a[name]["tx_bytes"]) / elapsed
        speed = (speeds or {}).get(name)
        util = 100.0 * 8 * max(rx, tx) / (speed * 1e6) if speed and speed > 0 else None
        out[name] = {
            "rx_bytes_per_s": round(rx, 1),
            "tx_bytes_per_s": round(tx, 1),
            "drops": (x["rx_drop"] - a[name]["rx_drop"]) + (x["tx_drop"] - a[name]["tx_drop"]),
            "speed_mbps": speed,
            "utilization_percent": round(util, 3) if util is not None else None,
        }
    return out


def tcp_retransmits(first, second):
    """``{retransmit_percent, retrans_segs, out_segs}`` of the window (/proc/net/snmp Tcp):
    segments retransmitted per segment sent (None when none was sent)."""
    a, b = parse_snmp(first).get("Tcp"), parse_snmp(second).get("Tcp")
    if not a or not b or "RetransSegs" not in b or "OutSegs" not in b:
        raise DiagnosticsError("/proc/net/snmp has no Tcp RetransSegs/OutSegs")
    out_segs = b["OutSegs"] - a["OutSegs"]
    retrans = b["RetransSegs"] - a["RetransSegs"]
    return {
        "retransmit_percent": round(100.0 * retrans / out_segs, 4) if out_segs > 0 else None,
        "retrans_segs": retrans,
        "out_segs": out_segs,
    }


def _figure(out, why, key, fn, *args):
    """``out.update(fn(*args))`` (a dict) or ``out[key] = fn(*args)``; on bad input the key(s)
    stay None and ``why[key]`` says why."""
    try:
        value = fn(*args)
    except (DiagnosticsError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        why[key] = str(e) or type(e).__name__
        return
    if isinstance(value, dict) and key != "interfaces":
        out.update(value)
    else:
        out[key] = value


def host_figures(first, second, elapsed, static):
    """A host's resource and network figures from two reads of /proc (``first``/``second``:
    {stat, diskstats, net_dev, snmp} texts, None where unreadable), ``elapsed`` s apart, and
    ``static``: {loadavg, meminfo (texts), cores, statvfs {blocks, bavail, frsize}, data_dev
    [major, minor], block_devices, speeds {interface: Mb/s}, errors {what: why}}."""
    out = dict.fromkeys(
        ("cpu_percent", "load1", "load5", "load15", "load_per_core", "memory_percent",
         "disk_io_latency_ms", "disk_ios", "disk_devices", "disk_source", "disk_free_percent",
         "disk_free_bytes", "retransmit_percent", "retrans_segs", "out_segs", "drops",
         "network_utilization_percent", "interfaces")
    )  # fmt: skip
    why = dict((static or {}).get("errors") or {})
    out["cores"] = static.get("cores")
    out["window_s"] = round(elapsed, 3)
    _figure(out, why, "cpu_percent", cpu_percent, first.get("stat"), second.get("stat"))
    _figure(out, why, "load_per_core", _load, static.get("loadavg"), static.get("cores"))
    _figure(out, why, "memory_percent", _memory, static.get("meminfo"))
    _figure(
        out, why, "disk_io_latency_ms", disk_latency, first.get("diskstats"),
        second.get("diskstats"), static.get("data_dev"), static.get("block_devices"),
    )  # fmt: skip
    _figure(out, why, "disk_free_percent", _disk_free, static.get("statvfs"))
    _figure(out, why, "retransmit_percent", tcp_retransmits, first.get("snmp"), second.get("snmp"))
    _figure(
        out, why, "interfaces", network_io, first.get("net_dev"), second.get("net_dev"), elapsed,
        static.get("speeds"),
    )  # fmt: skip
    ifaces = out["interfaces"] or {}
    if ifaces:
        out["drops"] = sum(i["drops"] for i in ifaces.values())
        utils = [
            i["utilization_percent"]
            for i in ifaces.values()
            if i["utilization_percent"] is not None
        ]
        out["network_utilization_percent"] = max(utils) if utils else None
        if not utils:
            why["network_utilization_percent"] = (
                "no interface reports its speed (/sys/class/net/*/speed)"
            )
    elif "interfaces" not in why:
        why["interfaces"] = "no interface but loopback in /proc/net/dev"
    out["unavailable"] = why
    return out


def _load(text, cores):
    l1, l5, l15 = parse_loadavg(text)
    if not cores:
        raise DiagnosticsError("the number of cores is unknown")
    return {"load1": l1, "load5": l5, "load15": l15, "load_per_core": round(l1 / cores, 3)}


def _memory(text):
    info = parse_meminfo(text)
    if not info.get("MemTotal") or "MemAvailable" not in info:
        raise DiagnosticsError("/proc/meminfo has no MemTotal/MemAvailable")
    return round(100.0 * (1 - float(info["MemAvailable"]) / info["MemTotal"]), 2)


def _disk_free(st):
    if not st or not st.get("blocks"):
        raise DiagnosticsError("the data dir's filesystem was not read (statvfs)")
    return {
        "disk_free_percent": round(100.0 * st["bavail"] / st["blocks"], 2),
        "disk_free_bytes": st["bavail"] * st["frsize"],
    }


# ----------------------------------------------------------------------------- logs
# The seed's patterns: grep -i 'error\|fatal\|panic' (last hour), grep -i checksum (last day),
# dmesg | grep -i 'killed process.*kimberlite' (the kernel's OOM kills).
PATTERNS = {"error": "error|fatal|panic", "checksum": "checksum"}
_LOG_PREFIX = re.compile(
    r"^\d{4}-\d\d-\d\d[ T][0-9:.,]+\s+(?:(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+\s+\S+:\s+)?"
)
_NUMBER = re.compile(r"\d+")
EXCERPT = 20
TYPES = 10


def error_type(message):
    """A log line's kind: its level and text without the timestamp, numbers as N (the seed's
    "count error types")."""
    m = _LOG_PREFIX.match(message)
    level = m.group(1) if m and m.group(1) else ""
    text = message[m.end() :] if m else message
    text = _NUMBER.sub("N", text).strip()[:80]
    return ("%s %s" % (level, text)).strip()


def _entries(lines):
    """(seconds, message) of ``journalctl -o json`` lines; lines that are no JSON object or
    carry a binary message are left out."""
    for raw in lines or []:
        if not raw.lstrip().startswith("{"):
            continue
        try:
            entry = json.loads(raw)
            seconds = int(entry.get("__REALTIME_TIMESTAMP") or 0) / 1e6
        except (ValueError, TypeError, AttributeError):
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, str):
            yield seconds, message


def journal_figures(lines, now, patterns=None, hour=3600, day=86400):
    """The unit's journal over the last day (``journalctl -o json`` lines, read at ``now``,
    seconds since the epoch): errors of the last hour, by type, and checksum lines of the day."""
    pats = dict(PATTERNS, **(patterns or {}))
    error, checksum = re.compile(pats["error"], re.I), re.compile(pats["checksum"], re.I)
    errors, types, checksums, entries = [], {}, 0, 0
    for seconds, message in _entries(lines):
        entries += 1
        if seconds >= now - day and checksum.search(message):
            checksums += 1
        if seconds >= now - hour and error.search(message):
            errors.append(message)
            kind = error_type(message)
            types[kind] = types.get(kind, 0) + 1
    ranked = sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))[:TYPES]
    return {
        "entries": entries,
        "errors_last_hour": len(errors),
        "errors_by_type": [{"type": k, "count": v} for k, v in ranked],
        "error_excerpt": errors[-EXCERPT:],
        "checksum_lines_last_day": checksums,
    }


_KILLED = re.compile(r"killed process (\d+) \(([^)]*)\)", re.I)
_OOM_KILL = re.compile(r"oom-kill:.*\bpid=(\d+)")


def _oom_lines(text, service):
    kills, replica = [], set()
    for line in (text or "").splitlines():
        m = _OOM_KILL.search(line)
        if m and service and service in line:
            replica.add(m.group(1))
        m = _KILLED.search(line)
        if m:
            kills.append((m.group(1), m.group(2), line))
    ours = [k for k in kills if k[0] in replica or "kimberlite" in k[1].lower()]
    return kills, ours


def kernel_oom(dmesg, journal_k, service):
    """The kernel's OOM kills, from ``dmesg`` or else ``journalctl -k`` (registered-like dicts
    {rc, stdout, stderr}, None when not run). An empty ``journalctl -k`` proves nothing (a
    container's journal has no kernel messages): without dmesg the count is unavailable."""
    source, text, why = None, None, []
    if dmesg and dmesg.get("rc") == 0:
        source, text = "dmesg", dmesg.get("stdout") or ""
    else:
        why.append("dmesg: %s" % ((dmesg or {}).get("stderr") or "not run").strip())
        out = (journal_k or {}).get("stdout") or ""
        if (journal_k or {}).get("rc") == 0 and out.strip() and "-- No entries --" not in out:
            source, text = "journalctl -k", out
        else:
            err = ((journal_k or {}).get("stderr") or "").strip()
            why.append("journalctl -k: %s" % (err or "no kernel messages in this journal"))
    if source is None:
        return {
            "available": False,
            "source": None,
            "oom_kills": None,
            "replica_oom_kills": None,
            "excerpt": [],
            "why": "kernel log unreadable here (%s)" % "; ".join(why),
        }
    kills, ours = _oom_lines(text, service)
    return {
        "available": True,
        "source": source,
        "oom_kills": len(kills),
        "replica_oom_kills": len(ours),
        "excerpt": [k[2] for k in kills][-EXCERPT:],
        "why": None,
    }


# ----------------------------------------------------------------------------- evaluation
PREPARE_METRIC = "vsr_messages_sent_prepare"
PEER_METRIC = "vsr_peer_reachable"


def _samples(entry, name):
    """The samples named ``name`` (or ``name_total``) of a vsr_metrics replica entry."""
    wanted = (name, name + "_total")
    return [s for s in (entry or {}).get("samples") or [] if s.get("name") in wanted]


def _prepares(entry):
    found = _samples(entry, PREPARE_METRIC)
    if not entry or not entry.get("reachable") or not found:
        return None
    try:
        return float(found[0]["value"])
    except (TypeError, ValueError):
        return None


def _peer_reachable(entry):
    """{peer: bool} of a replica's own vsr_peer_reachable series."""
    out = {}
    for s in _samples(entry, PEER_METRIC):
        peer = (s.get("labels") or {}).get("peer")
        if peer is not None:
            out[peer] = s.get("value") == 1
    return out


def _host_result(result):
    """A host's module result, or None with why it was not read (failed, unreachable,
    skipped)."""
    result = result or {}
    if result.get("unreachable"):
        return None, "host unreachable: %s" % result.get("msg", "")
    if result.get("skipped"):
        return None, "host not read (skipped)"
    if result.get("failed") or "figures" not in result:
        return None, "host not read: %s" % (result.get("msg") or "no host_diagnostics result")
    return result, None


def _rows(names, metrics, hosts):
    """One row per replica: {host, name, metrics (the second read's entry), host result, why}."""
    entries = (metrics or {}).get("replicas") or []
    rows = []
    for i, (host, name) in enumerate(names):
        result, why = _host_result((hosts or {}).get(host))
        rows.append(
            {
                "host": host,
                "name": name,
                "metrics": entries[i] if i < len(entries) else {},
                "result": result,
                "why": why,
            }
        )
    return rows


def _unit_value(row):
    if row["result"] is None:
        return None, row["why"]
    unit = row["result"].get("unit") or {}
    if not unit.get("read"):
        return None, unit.get("why") or "unit not read"
    return "%s (%s)" % (unit.get("active_state"), unit.get("sub_state")), None


def _health(table, rows, max_lag):
    reachable = [r for r in rows if (r["metrics"] or {}).get("reachable")]
    commits = [r["metrics"]["commit"] for r in reachable if r["metrics"].get("commit") is not None]
    views = sorted(
        set(r["metrics"]["view"] for r in reachable if r["metrics"].get("view") is not None)
    )
    top = max(commits) if commits else None
    table = dict(table, commit_lag=dict(table["commit_lag"], threshold=max_lag))
    checks = []
    for r in rows:
        m = r["metrics"] or {}
        value, note = _unit_value(r)
        checks.append(judge(table, "unit_active", value, r["name"], note))
        if m.get("reachable"):
            status, note = m.get("status"), m.get("status_name")
        else:
            status, note = "unreachable", m.get("error") or "metrics not read"
        checks.append(judge(table, "status_normal", status, r["name"], note))
        lag = (
            top - m["commit"]
            if m.get("reachable") and m.get("commit") is not None and top is not None
            else None
        )
        checks.append(
            judge(
                table, "commit_lag", lag, r["name"], None if lag is not None else "commit unknown"
            )
        )
    note = "views %s of %d reachable replicas" % (views, len(reachable))
    checks.append(judge(table, "same_view", len(views) if views else None, None, note))
    spread = top - min(commits) if commits else None
    checks.append(judge(table, "commit_spread", spread, None, "commits %s" % sorted(commits)))
    return {"views": views, "max_commit": top, "checks": checks}


def _leader(table, rows, first, second):
    c = (second or {}).get("cluster") or {}
    order = c.get("replica_order") or [r["name"] for r in rows]
    view = c.get("leader_view")
    by_view = vsr.vsr_leader(view, order) if view is not None and order else None
    window = (second or {}).get("collected_at", 0) - (first or {}).get("collected_at", 0)
    firsts = dict((e.get("name"), _prepares(e)) for e in (first or {}).get("replicas") or [])
    rates = {}
    for r in rows:
        a, b = firsts.get(r["name"]), _prepares(r["metrics"])
        ok = a is not None and b is not None and window > 0
        rates[r["name"]] = round((b - a) / window, 2) if ok else None
    known = dict((k, v) for k, v in rates.items() if v is not None)
    top = max(known.values()) if known else None
    low = table["backups_low_prepare_rate"]["threshold"]
    high = sorted(k for k, v in known.items() if top and v > low * top)
    by_rate = high[0] if len(high) == 1 else None
    idle = "no Prepare sent in the %.1f s window (no writes): the rate names no leader" % window
    checks = [
        judge(
            table, "one_high_prepare_rate", len(high) if top else None, None, None if top else idle
        )
    ]
    share = max([v for k, v in known.items() if k != by_rate] or [0]) / top if by_rate else None
    share = round(share, 3) if share is not None else None
    note = None if by_rate else "no single leader by rate"
    checks.append(judge(table, "backups_low_prepare_rate", share, None, note))
    agree = by_view == by_rate if by_view and by_rate else None
    checks.append(
        judge(
            table,
            "methods_agree",
            agree,
            None,
            "view %s: %s; by rate: %s" % (view, by_view, by_rate),
        )
    )
    return {
        "view": view,
        "by_view": by_view,
        "by_prepare_rate": by_rate,
        "agree": agree,
        "prepare_rates": rates,
        "window_s": round(window, 3),
        "checks": checks,
    }


def _pair(probe, protocol):
    """The matrix cell of one probe (a host_diagnostics ``peers`` item)."""
    ping = probe.get("ping") or {}
    return {
        "tcp_ok": probe.get("tcp_ok"),
        "tcp_ms": probe.get("tcp_ms"),
        "tcp_error": probe.get("tcp_error"),
        "address": "%s:%s" % (probe.get("host"), probe.get("port")),
        "ping_loss_percent": ping.get("loss_percent"),
        "ping_rtt_ms": ping.get("rtt_avg_ms"),
        "ping_error": probe.get("ping_error"),
        "protocol_reachable": protocol,
    }


def _pair_checks(table, src, dst, cell):
    ping_why = cell["ping_error"] or (None if cell["ping_rtt_ms"] is not None else "no reply")
    return [
        judge(table, "tcp_connect", cell["tcp_ok"], src, cell["tcp_error"], dst),
        judge(table, "ping_rtt", cell["ping_rtt_ms"], src, ping_why, dst),
        judge(table, "packet_loss", cell["ping_loss_percent"], src, cell["ping_error"], dst),
        judge(
            table,
            "protocol_reachable",
            cell["protocol_reachable"],
            src,
            None if cell["protocol_reachable"] is not None else "no vsr_peer_reachable series",
            dst,
        ),
    ]


def _network(table, rows):
    matrix, checks, cut = {}, [], []
    for r in rows:
        peers_seen = _peer_reachable(r["metrics"]) if (r["metrics"] or {}).get("reachable") else {}
        matrix[r["name"]] = {}
        probes = dict((p.get("name"), p) for p in (r["result"] or {}).get("peers") or [])
        for other in rows:
            dst = other["name"]
            if dst == r["name"]:
                continue
            probe = probes.get(dst) or {
                "tcp_error": r["why"] or "not probed",
                "ping_error": r["why"],
            }
            cell = _pair(probe, peers_seen.get(dst))
            matrix[r["name"]][dst] = cell
            checks.extend(_pair_checks(table, r["name"], dst, cell))
            if cell["tcp_ok"] is False or cell["protocol_reachable"] is False:
                why = (
                    cell["tcp_error"]
                    or "the replica's protocol link is down (vsr_peer_reachable 0)"
                )
                cut.append({"from": r["name"], "to": dst, "why": why})
        f = (r["result"] or {}).get("figures") or {}
        why = f.get("unavailable") or {}
        checks.append(
            judge(table, "tcp_retransmits", f.get("retransmit_percent"), r["name"],
                  r["why"] or why.get("retransmit_percent") or _segs(f))
        )  # fmt: skip
        checks.append(
            judge(
                table,
                "interface_drops",
                f.get("drops"),
                r["name"],
                r["why"] or why.get("interfaces"),
            )
        )
    return {"matrix": matrix, "not_reaching": cut, "checks": checks}


def _segs(f):
    if f.get("out_segs") == 0:
        return "no TCP segment sent in the window"
    return "%s of %s segments retransmitted" % (f.get("retrans_segs"), f.get("out_segs"))


def _logs(table, rows):
    checks, out = [], {}
    for r in rows:
        res = r["result"] or {}
        j, k = res.get("journal") or {}, res.get("kernel") or {}
        jwhy = r["why"] or (None if j.get("read") else j.get("why") or "journal not read")
        kwhy = r["why"] or k.get("why")
        errors = j.get("errors_last_hour") if j.get("read") else None
        lines = j.get("checksum_lines_last_day") if j.get("read") else None
        kills = k.get("oom_kills") if k.get("available") else None
        checks.append(judge(table, "errors_last_hour", errors, r["name"], jwhy))
        checks.append(judge(table, "checksum_lines_last_day", lines, r["name"], jwhy))
        note = kwhy or "%s of them the replica's (%s)" % (
            k.get("replica_oom_kills"),
            k.get("source"),
        )
        checks.append(judge(table, "oom_kills", kills, r["name"], note))
        out[r["name"]] = {
            "errors_last_hour": errors,
            "errors_by_type": j.get("errors_by_type") or [],
            "error_excerpt": j.get("error_excerpt") or [],
            "checksum_lines_last_day": lines,
            "oom_kills": kills,
            "replica_oom_kills": k.get("replica_oom_kills") if k.get("available") else None,
            "oom_excerpt": k.get("excerpt") or [],
            "journal_unavailable": jwhy,
            "kernel_log_unavailable": kwhy,
        }
    return {"replicas": out, "checks": checks}


# check -> the figure of host_figures it judges
RESOURCE_FIGURES = (
    ("cpu_utilization", "cpu_percent"),
    ("load_average", "load_per_core"),
    ("memory_utilization", "memory_percent"),
    ("disk_io_latency", "disk_io_latency_ms"),
    ("network_utilization", "network_utilization_percent"),
    ("disk_free", "disk_free_percent"),
)


def _resource_note(f, figure, why):
    if figure in why:
        return why[figure]
    if figure == "disk_io_latency_ms":
        if f.get("disk_ios") == 0:
            return "no I/O completed in the window on %s" % ", ".join(f.get("disk_devices") or [])
        return "%s I/Os on %s" % (f.get("disk_ios"), f.get("disk_source"))
    if figure == "load_per_core":
        return "load %s on %s cores" % (f.get("load1"), f.get("cores"))
    return None


def _resources(table, rows):
    checks, out = [], {}
    for r in rows:
        f = (r["result"] or {}).get("figures") or {}
        why = f.get("unavailable") or {}
        for check, figure in RESOURCE_FIGURES:
            value = f.get(figure)
            note = r["why"] or _resource_note(f, figure, why)
            if figure == "disk_io_latency_ms" and value is None and f.get("disk_ios") == 0:
                value = 0.0  # nothing completed in the window: nothing was slow
            checks.append(judge(table, check, value, r["name"], note))
        out[r["name"]] = dict((k, v) for k, v in f.items() if k != "unavailable")
    return {"replicas": out, "checks": checks}


def _section(body, checks_of):
    body["verdict"] = worst(c["verdict"] for c in body["checks"])
    checks_of.extend(body["checks"])
    return body


def _line(c):
    where = "/".join(x for x in (c["replica"], c.get("peer")) if x) or "cluster"
    return "%s %s %s: %s %s (expected: %s)%s" % (
        c["verdict"].upper(),
        c["procedure"],
        c["check"],
        where,
        c["value"],
        c["expected"],
        "; %s" % c["note"] if c["note"] else "",
    )


def evaluate(names, hosts, first, second, max_lag=10, thresholds=None, at=None):
    """The ``diagnostics`` fact: the five procedures judged against EXPECTED.

    ``names``: [[inventory host, replica name]] in the group's order (that of the vsr_metrics
    endpoints); ``hosts``: {inventory host: host_diagnostics result}; ``first``/``second``:
    vsr_metrics results (``return_samples: true``) from before and after the host reads;
    ``thresholds``: {check: number} overrides of EXPECTED."""
    if not isinstance(names, list) or not all(isinstance(n, list) and len(n) == 2 for n in names):
        raise DiagnosticsError("names must be [[host, replica name], ...], got %r" % (names,))
    for what, read in (("first", first), ("second", second)):
        if not isinstance(read, dict) or "replicas" not in read:
            raise DiagnosticsError("%s must be a vsr_metrics result, got %r" % (what, read))
    table = expected(thresholds)
    rows = _rows(names, second, hosts)
    checks = []
    procedures = {
        "health": _section(_health(table, rows, max_lag), checks),
        "leader": _section(_leader(table, rows, first, second), checks),
        "network": _section(_network(table, rows), checks),
        "logs": _section(_logs(table, rows), checks),
        "resources": _section(_resources(table, rows), checks),
    }
    counts = dict((v, len([c for c in checks if c["verdict"] == v])) for v in VERDICTS)
    return {
        "at": at,
        "overall": worst(c["verdict"] for c in checks),
        "verdicts": dict((k, v["verdict"]) for k, v in procedures.items()),
        "counts": counts,
        "failing": [_line(c) for c in checks if c["verdict"] in ("fail", "warn")],
        "unavailable": [_line(c) for c in checks if c["verdict"] == "unavailable"],
        "replicas": [
            {"host": r["host"], "name": r["name"], "read": r["why"] is None, "why": r["why"]}
            for r in rows
        ],
        "procedures": procedures,
        "checks": checks,
    }
