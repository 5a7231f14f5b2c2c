#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_diagnostics
short_description: Read a replica host for the runbook's diagnostic procedures
version_added: 0.1.0
description:
  - Reads, on one replica host, what the seed runbook's diagnostic procedures look at
    (Check Cluster Health, Check Network Connectivity, Analyze Logs for Errors, Check Resource
    Utilization) and returns the figures; the role C(firebreak.incident.diagnostics) judges
    them with the P(firebreak.incident.diagnostics_evaluate#filter) filter against the
    runbook's expected values.
  - The unit - C(systemctl show) of O(service) (C(LoadState), C(ActiveState), C(SubState)).
  - The network - from this host to every peer of O(peers), concurrently, a TCP connect to
    the VSR port and, where C(ping) is installed and allowed, an ICMP ping (loss, average
    round trip); TCP retransmits (C(/proc/net/snmp)) and interface drops (C(/proc/net/dev))
    over the window.
  - The logs - the unit's journal of the last day (C(journalctl -o json)) - errors of the last
    hour by type, checksum lines of the day; the kernel's OOM kills from C(dmesg), else
    C(journalctl -k). A kernel log that cannot be read (in a container) is reported
    unavailable, never as no kill.
  - The resources - CPU utilization, disk I/O latency (C(/proc/diskstats), the data
    directory's disk) and network bytes between two reads of C(/proc) O(window) seconds
    apart (the probes run in between), the load average against the cores, memory
    utilization (C(MemAvailable)), free space of O(data_dir)'s filesystem.
  - Everything it cannot read is reported with the reason (RV(figures.unavailable),
    RV(unit.why), RV(journal.why), RV(kernel.why)); it never fails for that. Only invalid
    options fail the module.
author:
  - Firebreak maintainers (@firebreak)
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
    description: Linux (C(/proc)); C(systemctl), C(journalctl), C(dmesg) and C(ping) where present.
options:
  replica:
    description:
      - The replica this host runs (its name in the results).
    type: str
    required: true
  peers:
    description:
      - The other replicas, each probed from this host.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The peer replica's name.
        type: str
        required: true
      host:
        description: Its address or host name, as this host reaches it.
        type: str
        required: true
      port:
        description: Its VSR protocol port (the seed's 8080).
        type: int
        default: 8080
  source_address:
    description:
      - Address the probes are sent from (ping C(-I), the TCP connect's bind). For a lab whose
        replicas share one machine on loopback addresses; empty lets the kernel choose.
    type: str
    default: ""
  service:
    description:
      - The replica's systemd unit. Empty where the replica runs without one (the lab's
        processes mode); the unit and its journal are then reported unavailable.
    type: str
    default: kimberlite-vsr
  data_dir:
    description:
      - The replica's data directory (free space, and the disk whose I/O latency is read).
    type: path
    default: /var/lib/kimberlite
  window:
    description:
      - Least seconds between the two reads of C(/proc) (CPU, disk, network rates). The probes
        run in between; when they take longer the window is theirs.
    type: float
    default: 1.0
  ping:
    description:
      - Ping every peer (ICMP). Off, or without C(ping), the ping figures are unavailable.
    type: bool
    default: true
  ping_count:
    description:
      - Echo requests per peer (the seed sends 10; with few, any loss is above 0.01 %).
    type: int
    default: 5
  ping_interval:
    description:
      - Seconds between echo requests (below 0.2 needs root).
    type: float
    default: 0.2
  connect_timeout:
    description:
      - Seconds a TCP connect may take (the seed's C(timeout 5)).
    type: float
    default: 3.0
  journal_lines:
    description:
      - Most journal lines read (the last ones of the day); RV(journal.truncated) says when
        the day had more.
    type: int
    default: 20000
  error_pattern:
    description:
      - What an error line matches (a Python regular expression, case-insensitive; the seed's).
    type: str
    default: "error|fatal|panic"
  checksum_pattern:
    description:
      - What a checksum failure line matches (case-insensitive).
    type: str
    default: checksum
notes:
  - The TCP connect opens and closes a connection to the peer's port and sends nothing, as the
    seed's C(echo > /dev/tcp/HOST/8080) does. No bandwidth test (the seed's C(iperf3)) is run;
    it would load the network of the cluster it diagnoses.
  - In a container, C(/proc/stat), C(/proc/meminfo), C(/proc/loadavg) and C(/proc/diskstats)
    are the host's; C(/proc/net) is the container's.
seealso:
  - module: firebreak.incident.vsr_metrics
  - plugin: firebreak.incident.diagnostics_evaluate
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read a replica host, probing its two peers
  firebreak.incident.host_diagnostics:
    replica: replica-1
    peers:
      - {name: replica-2, host: 10.0.1.2, port: 8080}
      - {name: replica-3, host: 10.0.1.3, port: 8080}
    data_dir: /var/lib/kimberlite
  register: diag

- name: A lab whose replicas are processes on loopback addresses (no unit, no journal)
  firebreak.incident.host_diagnostics:
    replica: replica-1
    peers: [{name: replica-2, host: 127.0.20.2}, {name: replica-3, host: 127.0.20.3}]
    source_address: 127.0.20.1
    service: ""
    data_dir: /tmp/lab/replicas/replica-1/data
"""

RETURN = r"""
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
  sample: false
replica:
  description: O(replica).
  returned: always
  type: str
  sample: replica-1
window_s:
  description: Seconds between the two reads of C(/proc).
  returned: always
  type: float
  sample: 1.02
commands:
  description: Every command run, as its argument list (what the module did).
  returned: always
  type: list
  elements: list
  sample: [[systemctl, show, kimberlite-vsr, "--property=LoadState,ActiveState,SubState"]]
unit:
  description: The unit's state.
  returned: always
  type: dict
  contains:
    read:
      description: Whether it was read.
      type: bool
    why:
      description: Why not (no O(service), no C(systemctl), its error).
      type: str
    load_state:
      description: C(LoadState) (C(loaded), C(not-found)).
      type: str
    active_state:
      description: C(ActiveState) (C(active), C(inactive), C(failed)).
      type: str
    sub_state:
      description: C(SubState) (C(running), C(dead)).
      type: str
journal:
  description: The unit's journal of the last day.
  returned: always
  type: dict
  contains:
    read:
      description: Whether it was read.
      type: bool
    why:
      description: Why not.
      type: str
    entries:
      description: Journal entries read.
      type: int
    truncated:
      description: Whether O(journal_lines) cut the day short (the counts are then at least).
      type: bool
    errors_last_hour:
      description: Lines of the last hour matching O(error_pattern).
      type: int
    errors_by_type:
      description: Those lines by kind (level and text, numbers as N), most frequent first.
      type: list
      elements: dict
    error_excerpt:
      description: The last of those lines.
      type: list
      elements: str
    checksum_lines_last_day:
      description: Lines of the day matching O(checksum_pattern).
      type: int
kernel:
  description: OOM kills in the kernel log.
  returned: always
  type: dict
  contains:
    available:
      description: Whether the kernel log could be read.
      type: bool
    source:
      description: C(dmesg) or C(journalctl -k).
      type: str
    why:
      description: Why it could not be read.
      type: str
    oom_kills:
      description: C(Killed process) lines (null when unavailable).
      type: int
    replica_oom_kills:
      description: Those of the replica (its unit's cgroup, or C(kimberlite) in the name).
      type: int
    excerpt:
      description: The kill lines.
      type: list
      elements: str
peers:
  description: One probe per O(peers) item.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The peer.
      type: str
    host:
      description: Its address.
      type: str
    port:
      description: Its port.
      type: int
    tcp_ok:
      description: Whether the TCP connect succeeded.
      type: bool
    tcp_ms:
      description: Milliseconds it took.
      type: float
    tcp_error:
      description: Why it failed (refused, timed out, name resolution).
      type: str
    ping:
      description: C({transmitted, received, loss_percent, rtt_avg_ms}), null without a ping.
      type: dict
    ping_error:
      description: Why there is no ping figure (not installed, not permitted, its error).
      type: str
figures:
  description: >-
    Resource and network figures (see the role's README) - C(cpu_percent), C(load1),
    C(load_per_core), C(cores), C(memory_percent), C(disk_io_latency_ms), C(disk_ios),
    C(disk_devices), C(disk_source), C(disk_free_percent), C(disk_free_bytes),
    C(retransmit_percent), C(retrans_segs), C(out_segs), C(drops), C(interfaces),
    C(network_utilization_percent), C(window_s); null where unreadable, and
    RV(figures.unavailable) says why.
  returned: always
  type: dict
  contains:
    cpu_percent:
      description: CPU utilization over the window, all cores, in %.
      type: float
      sample: 12.5
    load_per_core:
      description: The 1-minute load average divided by the cores this process may run on.
      type: float
      sample: 0.4
    memory_percent:
      description: Memory in use (1 - MemAvailable / MemTotal), in %.
      type: float
      sample: 41.2
    disk_io_latency_ms:
      description: >-
        Milliseconds per I/O completed in the window on the data directory's disk (null when
        none completed).
      type: float
      sample: 0.8
    disk_free_percent:
      description: Free space of the data directory's filesystem (available to non-root), in %.
      type: float
      sample: 62.0
    retransmit_percent:
      description: TCP segments retransmitted per segment sent in the window, in %.
      type: float
      sample: 0.0
    drops:
      description: Packets dropped by the interfaces (loopback aside) in the window.
      type: int
      sample: 0
    network_utilization_percent:
      description: The busiest interface's bytes per second against its link speed, in %.
      type: float
      sample: 0.2
    unavailable:
      description: Each figure that could not be read, with why.
      type: dict
      sample: {network_utilization_percent: "no interface reports its speed"}
"""

import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    diagnostics,
)

PROC = {
    "stat": "/proc/stat",
    "diskstats": "/proc/diskstats",
    "net_dev": "/proc/net/dev",
    "snmp": "/proc/net/snmp",
}


def _text(path, errors):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError) as e:
        errors[path] = str(e)
        return None


def _proc(errors):
    return dict((k, _text(path, errors)) for k, path in PROC.items())


def _speed(name):
    try:
        with open("/sys/class/net/%s/speed" % name) as f:
            speed = int(f.read().strip())
    except (IOError, OSError, ValueError):
        return None  # virtual interfaces, loopback: no speed
    return speed if speed > 0 else None


def _static(data_dir, errors):
    out = {"errors": errors, "loadavg": _text("/proc/loadavg", errors)}
    out["meminfo"] = _text("/proc/meminfo", errors)
    try:
        out["cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        out["cores"] = os.cpu_count()
    try:
        st = os.statvfs(data_dir)
        out["statvfs"] = {"blocks": st.f_blocks, "bavail": st.f_bavail, "frsize": st.f_frsize}
        dev = os.stat(data_dir).st_dev
        out["data_dev"] = [os.major(dev), os.minor(dev)]
    except OSError as e:
        errors["disk_free_percent"] = "%s: %s" % (data_dir, e.strerror or e)
        out["statvfs"], out["data_dev"] = None, None
    try:
        out["block_devices"] = os.listdir("/sys/block")
        out["speeds"] = dict((n, _speed(n)) for n in os.listdir("/sys/class/net"))
    except OSError:
        out["block_devices"], out["speeds"] = [], {}
    return out


class Runner(object):
    """The commands the module runs, each kept in ``commands`` (what it did)."""

    def __init__(self, module):
        self.module = module
        self.commands = []
        self.lock = threading.Lock()

    def run(self, name, args):
        """``{rc, stdout, stderr}`` of ``name args``; None when ``name`` is not installed."""
        path = self.module.get_bin_path(name)
        if path is None:
            return None
        argv = [path, *list(args)]
        with self.lock:
            self.commands.append(argv)
        # Raised here, not failed at once: a probe thread must not end the module (ping
        # cannot even be executed in a container without CAP_NET_RAW: EPERM).
        try:
            rc, out, err = self.module.run_command(argv, handle_exceptions=False)
        except (OSError, ValueError) as e:
            return {"rc": None, "stdout": "", "stderr": "%s: %s" % (name, e)}
        return {"rc": rc, "stdout": out, "stderr": err}


def _tcp(host, port, timeout, source):
    start = time.time()
    try:
        sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
    except socket.timeout:
        return False, None, "%s:%s: timed out after %s s" % (host, port, timeout)
    except (socket.error, OSError) as e:
        return False, None, "%s:%s: %s" % (host, port, getattr(e, "strerror", None) or e)
    sock.close()
    return True, round((time.time() - start) * 1000.0, 3), None


def _ping(runner, host, p):
    if not p["ping"]:
        return None, "ping turned off (ping: false)"
    deadline = int(p["ping_count"] * p["ping_interval"]) + 2
    args = ["-n", "-q", "-c", str(p["ping_count"]), "-i", str(p["ping_interval"])]
    args += ["-w", str(deadline)] + (["-I", p["source_address"]] if p["source_address"] else [])
    res = runner.run("ping", [*args, host])
    if res is None:
        return None, "ping is not installed on this host"
    summary = diagnostics.parse_ping(res["stdout"])
    if summary is None:
        return None, "ping %s: %s" % (host, (res["stderr"] or res["stdout"]).strip()[:200])
    return summary, None


def _probe(runner, peer, p, out):
    ok, ms, err = _tcp(peer["host"], peer["port"], p["connect_timeout"], p["source_address"])
    ping, ping_err = _ping(runner, peer["host"], p)
    out.update(
        name=peer["name"], host=peer["host"], port=peer["port"], tcp_ok=ok, tcp_ms=ms,
        tcp_error=err, ping=ping, ping_error=ping_err,
    )  # fmt: skip


def _unit(runner, service):
    if not service:
        return {"read": False, "why": "no systemd unit for this replica (service is empty)"}
    res = runner.run("systemctl", ["show", service, "--property=LoadState,ActiveState,SubState"])
    if res is None:
        return {"read": False, "why": "systemctl is not installed on this host"}
    props = dict(line.partition("=")[::2] for line in res["stdout"].splitlines() if "=" in line)
    if res["rc"] != 0 or not props.get("ActiveState"):
        return {"read": False, "why": "systemctl show %s: %s" % (service, res["stderr"].strip())}
    return {
        "read": True,
        "why": None,
        "load_state": props.get("LoadState"),
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
    }


def _journal(runner, service, unit, p):
    if not unit.get("read"):
        return {"read": False, "why": "unit not read: %s" % unit.get("why")}
    if unit.get("load_state") == "not-found":
        return {"read": False, "why": "unit %s not found on this host" % service}
    args = ["--unit=%s" % service, "--since=1 day ago", "--no-pager", "--output=json"]
    args += ["--output-fields=MESSAGE", "--lines=%d" % p["journal_lines"]]
    now = time.time()
    res = runner.run("journalctl", args)
    if res is None:
        return {"read": False, "why": "journalctl is not installed on this host"}
    if res["rc"] != 0 or "No journal files were found" in res["stderr"]:
        return {"read": False, "why": "journalctl: %s" % res["stderr"].strip()[:200]}
    lines = res["stdout"].splitlines()
    patterns = {"error": p["error_pattern"], "checksum": p["checksum_pattern"]}
    out = diagnostics.journal_figures(lines, now, patterns)
    out.update(read=True, why=None, truncated=len(lines) >= p["journal_lines"])
    return out


def _kernel(runner, service):
    dmesg = runner.run("dmesg", [])
    journal_k = None
    if dmesg is None or dmesg["rc"] != 0:
        journal_k = runner.run("journalctl", ["-k", "--no-pager", "--output=cat"])
    if dmesg is None:
        dmesg = {"rc": None, "stderr": "not installed"}
    return diagnostics.kernel_oom(dmesg, journal_k, service)


def _check(module, p):
    for name, value in (("window", p["window"]), ("ping_interval", p["ping_interval"])):
        if value < 0:
            module.fail_json(msg="%s must be 0 or more, got %s" % (name, value))
    for name in ("ping_count", "journal_lines"):
        if p[name] < 1:
            module.fail_json(msg="%s must be 1 or more, got %s" % (name, p[name]))
    if p["connect_timeout"] <= 0:
        module.fail_json(msg="connect_timeout must be above 0, got %s" % p["connect_timeout"])


def run(module, p):
    runner = Runner(module)
    errors = {}
    start, first = time.time(), _proc(errors)
    probes = [dict(name=peer["name"]) for peer in p["peers"]]
    threads = [
        threading.Thread(target=_probe, args=(runner, peer, p, probe))
        for peer, probe in zip(p["peers"], probes)
    ]
    for t in threads:
        t.start()
    unit = _unit(runner, p["service"])
    journal = _journal(runner, p["service"], unit, p)
    kernel = _kernel(runner, p["service"])
    for t in threads:
        t.join()
    time.sleep(max(0.0, p["window"] - (time.time() - start)))
    second, elapsed = _proc(errors), time.time() - start
    static = _static(p["data_dir"], errors)
    return dict(
        changed=False,
        replica=p["replica"],
        window_s=round(elapsed, 3),
        commands=runner.commands,
        unit=unit,
        journal=journal,
        kernel=kernel,
        peers=probes,
        figures=diagnostics.host_figures(first, second, elapsed, static),
    )


def main():
    peer = dict(
        name=dict(type="str", required=True),
        host=dict(type="str", required=True),
        port=dict(type="int", default=8080),
    )
    module = AnsibleModule(
        argument_spec=dict(
            replica=dict(type="str", required=True),
            peers=dict(type="list", elements="dict", options=peer, default=[]),
            source_address=dict(type="str", default=""),
            service=dict(type="str", default="kimberlite-vsr"),
            data_dir=dict(type="path", default="/var/lib/kimberlite"),
            window=dict(type="float", default=1.0),
            ping=dict(type="bool", default=True),
            ping_count=dict(type="int", default=5),
            ping_interval=dict(type="float", default=0.2),
            connect_timeout=dict(type="float", default=3.0),
            journal_lines=dict(type="int", default=20000),
            error_pattern=dict(type="str", default="error|fatal|panic"),
            checksum_pattern=dict(type="str", default="checksum"),
        ),
        supports_check_mode=True,
    )
    _check(module, module.params)
    module.exit_json(**run(module, module.params))


if __name__ == "__main__":
    main()
