"""The seed's five diagnostic procedures (module_utils/diagnostics.py, the filter
diagnostics_evaluate): /proc parsers and window figures on recorded reads of a real host
(tests/unit/fixtures/diagnostics, two reads one second apart), ping summaries, the journal and
the kernel log, the thresholds of EXPECTED, and whole clusters judged (healthy, a killed
replica, a partitioned one, the two leader methods disagreeing, a host not read)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.filter import diagnostics as diag_filter
from ansible_collections.firebreak.incident.plugins.module_utils import diagnostics as d

pytestmark = pytest.mark.unit

FIX = Path(__file__).parent / "fixtures" / "diagnostics"
NOW = 1796200000.0


def _read(name: str) -> str:
    return (FIX / name).read_text()


def _reads(i: int) -> dict:
    return {k: _read(f"{k}.{i}") for k in ("stat", "diskstats", "net_dev")} | {
        "snmp": _read(f"net_snmp.{i}")
    }


def _static(**over) -> dict:
    out = {
        "loadavg": _read("loadavg"),
        "meminfo": _read("meminfo"),
        "cores": 2,
        "statvfs": {"blocks": 1000, "bavail": 303, "frsize": 4096},
        "data_dev": [254, 0],
        "block_devices": ["loop0", "loop1", "vda", "zram0"],
        "speeds": {"veth0": 10000},
        "errors": {},
    }
    out.update(over)
    return out


# ----------------------------------------------------------------------------- parsers
def test_proc_parsers_read_the_recorded_host() -> None:
    cpu = d.parse_proc_stat(_read("stat.1"))
    assert cpu["total"] > cpu["idle"] > 0
    disks = d.parse_diskstats(_read("diskstats.1"))
    assert disks["vda"]["major"] == 254 and disks["vda"]["ios"] > 0
    assert "lo" in d.parse_net_dev(_read("net_dev.1"))
    tcp = d.parse_snmp(_read("net_snmp.1"))["Tcp"]
    assert tcp["OutSegs"] >= tcp["RetransSegs"] >= 0
    assert d.parse_meminfo(_read("meminfo"))["MemTotal"] > 0
    assert len(d.parse_loadavg(_read("loadavg"))) == 3


@pytest.mark.parametrize(
    "text",
    ["", "intr 1 2 3\nctxt 4\n"],
)
def test_proc_stat_without_a_cpu_line_is_an_error(text) -> None:
    with pytest.raises(d.DiagnosticsError, match="no cpu line"):
        d.parse_proc_stat(text)


def test_cpu_percent_is_the_busy_share_of_the_window() -> None:
    a = "cpu  100 0 100 700 100 0 0 0 0 0\n"
    b = "cpu  150 0 150 1000 200 0 0 0 0 0\n"  # +100 busy, +400 idle/iowait
    assert d.cpu_percent(a, b) == 20.0
    with pytest.raises(d.DiagnosticsError, match="did not move"):
        d.cpu_percent(a, a)


def test_host_figures_of_the_recorded_window() -> None:
    f = d.host_figures(_reads(1), _reads(2), 1.0, _static())
    assert 0.0 <= f["cpu_percent"] <= 100.0
    assert f["disk_devices"] == ["vda"] and "data dir's device vda" in f["disk_source"]
    assert f["disk_free_percent"] == 30.3 and f["disk_free_bytes"] == 303 * 4096
    assert f["load_per_core"] == round(f["load1"] / 2, 3)
    assert 0.0 < f["memory_percent"] < 100.0
    assert "lo" not in f["interfaces"] and f["drops"] == 0
    assert f["interfaces"]["veth0"]["speed_mbps"] == 10000
    assert f["network_utilization_percent"] is not None
    assert f["retransmit_percent"] is not None or f["out_segs"] == 0
    assert f["unavailable"] == {}


def test_a_data_dir_on_no_disk_falls_back_to_every_disk_and_says_so() -> None:
    f = d.host_figures(_reads(1), _reads(2), 1.0, _static(data_dev=[0, 45]))
    assert f["disk_devices"] == ["vda"]  # loop and zram are no disks of their own
    assert "every disk (vda)" in f["disk_source"] and "0:45" in f["disk_source"]


def test_disk_latency_is_time_per_io_and_none_without_io() -> None:
    a = "254 0 vda 10 0 0 50 10 0 0 50 0 0 0\n"
    b = "254 0 vda 15 0 0 80 15 0 0 100 0 0 0\n"  # 10 I/Os, 80 ms
    out = d.disk_latency(a, b, [254, 0], ["vda"])
    assert out["disk_io_latency_ms"] == 8.0 and out["disk_ios"] == 10
    assert d.disk_latency(a, a, [254, 0], ["vda"])["disk_io_latency_ms"] is None


def test_unreadable_reads_are_none_with_the_reason_never_zero() -> None:
    first = dict(_reads(1), stat=None, snmp=None)
    f = d.host_figures(first, _reads(2), 1.0, _static(statvfs=None, meminfo="", speeds={}))
    for figure in ("cpu_percent", "retransmit_percent", "disk_free_percent", "memory_percent"):
        assert f[figure] is None, figure
        assert f["unavailable"][figure], figure
    assert f["network_utilization_percent"] is None
    assert "speed" in f["unavailable"]["network_utilization_percent"]


# ----------------------------------------------------------------------------- ping
IPUTILS = """PING 127.0.75.2 (127.0.75.2) from 127.0.75.1 : 56(84) bytes of data.

--- 127.0.75.2 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 817ms
rtt min/avg/max/mdev = 0.031/0.046/0.062/0.011 ms
"""
BUSYBOX = """--- 10.0.1.2 ping statistics ---
10 packets transmitted, 9 packets received, 10% packet loss
round-trip min/avg/max = 0.210/0.480/1.200 ms
"""
LOST = """--- 10.0.1.3 ping statistics ---
5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4080ms
"""


@pytest.mark.parametrize(
    ("stdout", "want"),
    [
        (IPUTILS, {"transmitted": 5, "received": 5, "loss_percent": 0.0, "rtt_avg_ms": 0.046}),
        (BUSYBOX, {"transmitted": 10, "received": 9, "loss_percent": 10.0, "rtt_avg_ms": 0.48}),
        (LOST, {"transmitted": 5, "received": 0, "loss_percent": 100.0, "rtt_avg_ms": None}),
        ("ping: socket: Operation not permitted\n", None),
        ("", None),
    ],
)
def test_ping_summaries(stdout, want) -> None:
    assert d.parse_ping(stdout) == want


# ----------------------------------------------------------------------------- thresholds
T = d.expected()


@pytest.mark.parametrize(
    ("check", "value", "verdict"),
    [
        ("ping_rtt", 0.3, "pass"),  # same datacenter
        ("ping_rtt", 2.0, "warn"),  # same region
        ("ping_rtt", 5.0, "fail"),
        ("ping_rtt", None, "unavailable"),
        ("packet_loss", 0.0, "pass"),
        ("packet_loss", 20.0, "fail"),
        ("tcp_connect", True, "pass"),
        ("tcp_connect", False, "fail"),
        ("tcp_retransmits", 0.5, "warn"),  # indirect evidence of loss: warns
        ("interface_drops", 3, "warn"),
        ("cpu_utilization", 79.9, "pass"),
        ("cpu_utilization", 80.0, "fail"),
        ("load_average", 0.99, "pass"),
        ("load_average", 1.0, "fail"),
        ("memory_utilization", 90.0, "fail"),
        ("disk_io_latency", 9.9, "pass"),
        ("disk_io_latency", 12.0, "fail"),
        ("disk_free", 20.5, "pass"),
        ("disk_free", 20.0, "fail"),
        ("errors_last_hour", 10, "pass"),
        ("errors_last_hour", 11, "fail"),
        ("checksum_lines_last_day", 1, "fail"),
        ("oom_kills", 0, "pass"),
        ("oom_kills", None, "unavailable"),
        ("unit_active", "active (running)", "pass"),
        ("unit_active", "inactive (dead)", "fail"),
        ("status_normal", 0, "pass"),
        ("status_normal", "unreachable", "fail"),
        ("commit_lag", 10, "pass"),
        ("commit_lag", 11, "fail"),
    ],
)
def test_judge_applies_the_seeds_expected_output(check, value, verdict) -> None:
    out = d.judge(T, check, value, replica="replica-1", note="why")
    assert out["verdict"] == verdict
    assert out["value"] == value and out["threshold"] == T[check]["threshold"]
    assert out["expected"] == d.EXPECTED[check]["expected"] and out["note"] == "why"


def test_thresholds_can_be_overridden_and_bad_ones_are_refused() -> None:
    table = d.expected({"ping_rtt": 5})
    assert d.judge(table, "ping_rtt", 2.0)["verdict"] == "pass"
    assert d.EXPECTED["ping_rtt"]["threshold"] == 1.0  # the table itself is untouched
    with pytest.raises(d.DiagnosticsError, match=r"unknown check 'ping'.*ping_rtt"):
        d.expected({"ping": 5})
    with pytest.raises(d.DiagnosticsError, match="must be a number"):
        d.expected({"ping_rtt": "5"})


@pytest.mark.parametrize(
    ("verdicts", "want"),
    [
        ([], "pass"),
        (["pass", "pass"], "pass"),
        (["pass", "unavailable"], "unavailable"),
        (["unavailable", "warn"], "warn"),
        (["warn", "fail", "pass"], "fail"),
    ],
)
def test_worst_verdict(verdicts, want) -> None:
    assert d.worst(verdicts) == want


def test_every_check_belongs_to_a_procedure_and_says_what_is_expected() -> None:
    for check, entry in d.EXPECTED.items():
        assert entry["procedure"] in d.PROCEDURES, check
        assert entry["expected"] and entry["miss"] in ("fail", "warn"), check


# ----------------------------------------------------------------------------- logs
def _jline(message: str, age_s: float) -> str:
    return json.dumps({"__REALTIME_TIMESTAMP": str(int((NOW - age_s) * 1e6)), "MESSAGE": message})


def test_journal_errors_by_type_in_the_hour_and_checksums_in_the_day() -> None:
    lines = [
        _jline(
            "2026-12-03 10:00:00,001 ERROR replica-2 kimberlite.replica: checksum mismatch op=5", 60
        ),
        _jline(
            "2026-12-03 10:00:01,001 ERROR replica-2 kimberlite.replica: checksum mismatch op=9", 30
        ),
        _jline(
            "2026-12-03 10:00:02,001 INFO replica-2 kimberlite.replica: Entering Normal status", 20
        ),
        _jline("fatal: peer replica-3 gone", 10),
        _jline("old error, two hours ago", 7200),
        _jline("checksum mismatch two days ago", 2 * 86400),
        "not json",
        json.dumps({"__REALTIME_TIMESTAMP": str(int(NOW * 1e6)), "MESSAGE": [1, 2]}),
    ]
    out = d.journal_figures(lines, NOW)
    assert out["entries"] == 6 and out["errors_last_hour"] == 3
    assert out["errors_by_type"][0] == {
        "type": "ERROR checksum mismatch op=N",
        "count": 2,
    }
    assert out["checksum_lines_last_day"] == 2
    assert out["error_excerpt"][-1] == "fatal: peer replica-3 gone"


DMESG_OOM = (
    (
        "[ 100.1] oom-kill:constraint=CONSTRAINT_NONE,"
        "task_memcg=/system.slice/kimberlite-vsr.service,task=python3,pid=4242,uid=0\n"
    )
    + """[ 100.2] Out of memory: Killed process 4242 (python3) total-vm:1000kB
[ 200.0] Out of memory: Killed process 77 (postgres) total-vm:1000kB
"""
)


@pytest.mark.parametrize(
    ("dmesg", "journal_k", "want"),
    [
        ({"rc": 0, "stdout": DMESG_OOM}, None, (True, "dmesg", 2, 1)),
        ({"rc": 0, "stdout": "[ 1.0] Linux version 6.1\n"}, None, (True, "dmesg", 0, 0)),
        # a container: dmesg refused, its journal holds no kernel message: unknown, never 0
        (
            {"rc": 1, "stderr": "dmesg: read kernel buffer failed: Operation not permitted"},
            {"rc": 0, "stdout": "-- No entries --\n"},
            (False, None, None, None),
        ),
        ({"rc": None, "stderr": "not installed"}, None, (False, None, None, None)),
        (
            {"rc": 1, "stderr": "Operation not permitted"},
            {"rc": 0, "stdout": DMESG_OOM},
            (True, "journalctl -k", 2, 1),
        ),
    ],
)
def test_kernel_oom_kills_or_unavailable(dmesg, journal_k, want) -> None:
    out = d.kernel_oom(dmesg, journal_k, "kimberlite-vsr")
    assert (out["available"], out["source"], out["oom_kills"], out["replica_oom_kills"]) == want
    if not out["available"]:
        assert "unreadable" in out["why"] and "dmesg" in out["why"]


# ----------------------------------------------------------------------------- whole clusters
NAMES = [["replica-1", "replica-1"], ["replica-2", "replica-2"], ["replica-3", "replica-3"]]


def _entry(name, prepares, view=4, commit=100, status=0, reachable=True, peers=None):
    if not reachable:
        return {"name": name, "reachable": False, "error": "connection refused", "samples": []}
    samples = [
        {"name": "vsr_messages_sent_prepare", "labels": {"replica": name}, "value": prepares}
    ]
    for peer, up in (peers or {}).items():
        samples.append(
            {"name": "vsr_peer_reachable", "labels": {"peer": peer}, "value": 1 if up else 0}
        )
    return {
        "name": name,
        "reachable": True,
        "status": status,
        "status_name": {0: "Normal", 1: "ViewChange"}[status],
        "view": view,
        "commit": commit,
        "samples": samples,
    }


def _metrics(entries, at, view=4):
    return {
        "collected_at": at,
        "cluster": {"replica_order": [n for n, _ in NAMES], "leader_view": view},
        "replicas": entries,
    }


def _peers_up(name):
    return {n: True for n, _ in NAMES if n != name}


def _cluster(rates=(200, 0, 0)):
    """Two reads 2 s apart of a healthy cluster in view 4 (leader replica-2: 4 % 3 = 1)."""
    first = _metrics([_entry(n, 1000, peers=_peers_up(n)) for n, _ in NAMES], NOW)
    second = _metrics(
        [
            _entry(n, 1000 + 2 * r, peers=_peers_up(n))
            for (n, _), r in zip(NAMES, rates, strict=True)
        ],
        NOW + 2,
    )
    return first, second


def _host(name, tcp=None, unit=("active", "running")):
    figures = d.host_figures(_reads(1), _reads(2), 1.0, _static())
    peers = []
    for other, _ in NAMES:
        if other != name:
            ok = (tcp or {}).get(other, True)
            peers.append(
                {
                    "name": other,
                    "host": f"127.0.75.{other[-1]}",
                    "port": 8080,
                    "tcp_ok": ok,
                    "tcp_ms": 0.2 if ok else None,
                    "tcp_error": None if ok else f"127.0.75.{other[-1]}:8080: Connection refused",
                    "ping": {
                        "transmitted": 5,
                        "received": 5,
                        "loss_percent": 0.0,
                        "rtt_avg_ms": 0.05,
                    },
                    "ping_error": None,
                }
            )
    return {
        "replica": name,
        "unit": {
            "read": True,
            "load_state": "loaded",
            "active_state": unit[0],
            "sub_state": unit[1],
        },
        "journal": {"read": True, "errors_last_hour": 0, "checksum_lines_last_day": 0},
        "kernel": {"available": True, "source": "dmesg", "oom_kills": 0, "replica_oom_kills": 0},
        "peers": peers,
        "figures": figures,
    }


def _hosts(**over):
    out = {n: _host(n) for n, _ in NAMES}
    out.update(over)
    return out


def _checks(diag, check, verdict=None):
    return [
        c
        for c in diag["checks"]
        if c["check"] == check and (verdict is None or c["verdict"] == verdict)
    ]


def test_a_healthy_cluster_passes_health_leader_network_and_logs() -> None:
    first, second = _cluster(rates=(0, 200, 0))
    diag = d.evaluate(NAMES, _hosts(), first, second, at="now")
    for procedure in ("health", "leader", "network", "logs"):
        assert diag["verdicts"][procedure] == "pass", [x for x in diag["failing"] if procedure in x]
    leader = diag["procedures"]["leader"]
    assert (leader["by_view"], leader["by_prepare_rate"], leader["agree"]) == ("replica-2",) * 2 + (
        True,
    )
    assert leader["prepare_rates"] == {"replica-1": 0.0, "replica-2": 200.0, "replica-3": 0.0}
    matrix = diag["procedures"]["network"]["matrix"]
    assert sorted(matrix) == ["replica-1", "replica-2", "replica-3"]
    assert all(cell["tcp_ok"] for row in matrix.values() for cell in row.values())
    assert sorted(matrix["replica-1"]) == ["replica-2", "replica-3"]  # never itself
    assert diag["procedures"]["network"]["not_reaching"] == []
    used = {c["check"] for c in diag["checks"]}
    assert used == set(d.EXPECTED), set(d.EXPECTED) - used  # every table entry is judged
    assert diag["at"] == "now" and sum(diag["counts"].values()) == len(diag["checks"])


def test_a_killed_replica_fails_health_and_the_matrix_names_who_cannot_reach_it() -> None:
    first, second = _cluster(rates=(0, 200, 0))
    second["replicas"][2] = _entry("replica-3", 0, reachable=False)
    refused = {"replica-3": False}
    hosts = _hosts(
        **{
            "replica-1": _host("replica-1", tcp=refused),
            "replica-2": _host("replica-2", tcp=refused),
            "replica-3": _host("replica-3", unit=("failed", "failed")),
        }
    )
    diag = d.evaluate(NAMES, hosts, first, second)
    assert diag["verdicts"]["health"] == "fail" and diag["overall"] == "fail"
    unit = _checks(diag, "unit_active", "fail")
    assert [(c["replica"], c["value"]) for c in unit] == [("replica-3", "failed (failed)")]
    status = _checks(diag, "status_normal", "fail")
    assert [(c["replica"], c["value"], c["note"]) for c in status] == [
        ("replica-3", "unreachable", "connection refused")
    ]
    tcp = _checks(diag, "tcp_connect", "fail")
    assert sorted((c["replica"], c["peer"]) for c in tcp) == [
        ("replica-1", "replica-3"),
        ("replica-2", "replica-3"),
    ]
    cut = diag["procedures"]["network"]["not_reaching"]
    assert {(x["from"], x["to"]) for x in cut} == {
        ("replica-1", "replica-3"),
        ("replica-2", "replica-3"),
    }
    assert all("Connection refused" in x["why"] for x in cut)
    lag = _checks(diag, "commit_lag")
    assert [c["verdict"] for c in lag if c["replica"] == "replica-3"] == ["unavailable"]


def test_a_partitioned_replica_shows_in_the_protocol_column_even_when_tcp_connects() -> None:
    first, second = _cluster(rates=(0, 200, 0))
    cut_off = {"replica-1": False, "replica-2": False}
    second["replicas"][2] = _entry("replica-3", 1000, view=9, status=1, peers=cut_off)
    for i in (0, 1):
        name = NAMES[i][0]
        peers = dict(_peers_up(name), **{"replica-3": False})
        second["replicas"][i] = _entry(name, 1000 + 400 * (i == 1), peers=peers)
    diag = d.evaluate(NAMES, _hosts(), first, second)
    proto = {(c["replica"], c["peer"]) for c in _checks(diag, "protocol_reachable", "fail")}
    assert proto == {
        ("replica-1", "replica-3"),
        ("replica-2", "replica-3"),
        ("replica-3", "replica-1"),
        ("replica-3", "replica-2"),
    }
    assert not _checks(diag, "tcp_connect", "fail")
    assert _checks(diag, "same_view")[0]["verdict"] == "fail"
    assert _checks(diag, "same_view")[0]["value"] == 2


@pytest.mark.parametrize(
    ("rates", "by_rate", "agree", "verdicts"),
    [
        ((0, 200, 0), "replica-2", True, ("pass", "pass", "pass")),
        ((200, 0, 0), "replica-1", False, ("pass", "pass", "fail")),  # rate and view disagree
        ((200, 180, 0), None, None, ("fail", "unavailable", "unavailable")),  # two lead
        ((0, 0, 0), None, None, ("unavailable",) * 3),  # idle: no Prepare to count
        ((0, 200, 30), "replica-2", True, ("pass", "pass", "pass")),  # 15 % of the leader's: low
    ],
)
def test_the_two_leader_methods(rates, by_rate, agree, verdicts) -> None:
    first, second = _cluster(rates=rates)
    leader = d.evaluate(NAMES, _hosts(), first, second)["procedures"]["leader"]
    assert (leader["by_view"], leader["by_prepare_rate"], leader["agree"]) == (
        "replica-2",
        by_rate,
        agree,
    )
    assert tuple(c["verdict"] for c in leader["checks"]) == verdicts


def test_a_host_not_read_makes_its_checks_unavailable_with_the_reason() -> None:
    first, second = _cluster(rates=(0, 200, 0))
    hosts = _hosts(**{"replica-3": {"unreachable": True, "msg": "ssh: connect refused"}})
    diag = d.evaluate(NAMES, hosts, first, second)
    mine = [c for c in diag["checks"] if c["replica"] == "replica-3" and c["procedure"] != "health"]
    assert mine and all(
        c["verdict"] == "unavailable" for c in mine if c["check"] != "protocol_reachable"
    )
    assert all(
        "ssh: connect refused" in (c["note"] or "") for c in mine if c["procedure"] == "resources"
    )
    row = {k: v for k, v in diag["replicas"][2].items() if k != "why"}
    assert row == {"host": "replica-3", "name": "replica-3", "read": False}
    assert diag["procedures"]["network"]["matrix"]["replica-3"]["replica-1"]["tcp_ok"] is None


def test_the_filter_takes_lazy_containers_and_names_bad_input() -> None:
    first, second = _cluster()
    out = diag_filter.diagnostics_evaluate(
        _hosts(), copy.deepcopy(NAMES), first, second, max_lag="10"
    )
    assert out["procedures"]["leader"]["by_view"] == "replica-2"
    with pytest.raises(AnsibleFilterError, match="names must be"):
        diag_filter.diagnostics_evaluate(_hosts(), ["replica-1"], first, second)
    with pytest.raises(AnsibleFilterError, match="second must be a vsr_metrics result"):
        diag_filter.diagnostics_evaluate(_hosts(), NAMES, first, None)
    with pytest.raises(AnsibleFilterError, match="unknown check"):
        diag_filter.diagnostics_evaluate(_hosts(), NAMES, first, second, thresholds={"x": 1})


class _Module:
    """What Runner needs of an AnsibleModule: ping is installed but cannot be executed."""

    def get_bin_path(self, name):
        return f"/usr/bin/{name}" if name != "absent" else None

    def run_command(self, argv, handle_exceptions=True):
        assert handle_exceptions is False  # else it would fail_json from a probe thread
        raise PermissionError(1, "Operation not permitted", argv[0])


def test_a_command_that_cannot_run_is_a_reason_not_a_module_failure() -> None:
    from ansible_collections.firebreak.incident.plugins.modules import host_diagnostics as hd

    runner = hd.Runner(_Module())
    res = runner.run("ping", ["-c", "1", "10.0.1.2"])
    assert res["rc"] is None and "Operation not permitted" in res["stderr"]
    assert runner.run("absent", []) is None
    assert runner.commands == [["/usr/bin/ping", "-c", "1", "10.0.1.2"]]
    summary, why = hd._ping(runner, "10.0.1.2", {
        "ping": True, "ping_count": 5, "ping_interval": 0.2, "source_address": ""
    })  # fmt: skip
    assert summary is None and "not permitted" in why
