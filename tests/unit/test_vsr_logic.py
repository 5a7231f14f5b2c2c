"""Pure VSR logic (module_utils/vsr.py), the filters over it, the module's assembly of a
result from recorded expositions, and the pure part of module_utils/endpoints.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.filter import vsr as vsr_filters
from ansible_collections.firebreak.incident.plugins.module_utils import (
    endpoints as ep,
)
from ansible_collections.firebreak.incident.plugins.module_utils import (
    prometheus_text as pt,
)
from ansible_collections.firebreak.incident.plugins.module_utils import vsr
from ansible_collections.firebreak.incident.plugins.modules import vsr_metrics

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "exposition" / "vsr"
ORDER = ["replica-1", "replica-2", "replica-3"]
FILTERS = vsr_filters.FilterModule().filters()


def scenario(name, order=ORDER, collected_at=1000.0, **params):
    """What vsr_metrics returns for a recorded scenario; an absent file is a refused endpoint."""
    replicas = []
    for i, replica in enumerate(order):
        path = FIXTURES / name / f"{replica}.prom"
        endpoint = f"127.0.40.{i + 1}:9090"
        fetched = ep.FetchResult(endpoint, f"http://{endpoint}/metrics", elapsed=0.001)
        if path.exists():
            fetched.ok, fetched.status, fetched.body = True, 200, path.read_text()
            fetched.content_type = "text/plain; version=0.0.4; charset=utf-8"
        else:
            fetched.error = "connection refused"
        replicas.append(
            vsr_metrics.read_replica(
                i,
                fetched,
                params.get("metric_names"),
                params.get("replica_label", "replica"),
                params.get("return_samples", False),
            )
        )
    cluster = vsr.cluster_summary(replicas, params.get("replica_order", order))
    return {"cluster": cluster, "replicas": replicas, "collected_at": collected_at}


# ------------------------------------------------------------------ quorum and leader
@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4), ("5", 3)])
def test_quorum_size(n, q):
    assert vsr.quorum_size(n) == q
    assert FILTERS["quorum_size"](n) == q


@pytest.mark.parametrize("bad", [0, -3, "three", None, True, 2.5, [3]])
def test_quorum_size_refuses_bad_input_naming_it(bad):
    with pytest.raises(
        AnsibleFilterError, match=r"quorum_size: .*" + repr(bad)[:6].replace("[", r"\[")
    ):
        FILTERS["quorum_size"](bad)


@pytest.mark.parametrize(
    ("view", "leader"), [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (7, "b"), ("8", "c")]
)
def test_vsr_leader(view, leader):
    assert vsr.vsr_leader(view, ["a", "b", "c"]) == leader
    assert FILTERS["vsr_leader"](view, ["a", "b", "c"]) == leader


@pytest.mark.parametrize(
    ("view", "order", "words"),
    [
        (-1, ["a"], "at least 0"),
        ("x", ["a"], "view must be an integer"),
        (1.5, ["a"], "view must be an integer"),
        (1, [], "empty"),
        (1, "abc", "must be a list"),
        (1, ["a", "a"], "twice"),
        (1, ["a", ""], "non-empty"),
        (None, ["a"], "None"),
    ],
)
def test_vsr_leader_refuses_bad_input(view, order, words):
    with pytest.raises(AnsibleFilterError, match="vsr_leader: ") as caught:
        FILTERS["vsr_leader"](view, order)
    assert words in str(caught.value)


# ------------------------------------------------------------------ histogram_quantile
@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.1, 10), (0.2, 20), (math.inf, 20)], 0.1),
        (0.75, [(0.1, 10), (0.2, 20), (math.inf, 20)], 0.15),
        (1.0, [(0.1, 10), (0.2, 20), (math.inf, 20)], 0.2),
        (0.95, [(1, 1), (math.inf, 10)], 1.0),  # rank in +Inf: highest finite bound
        (0.25, [(-1, 5), (1, 10), (math.inf, 10)], -1.0),  # first bound <= 0
        (0.95, [(5, 630), (10, 2000), (math.inf, 2000)], 5 + 5 * (1900 - 630) / 1370),
        (0.5, [(math.inf, 3), (1, 2)], 0.75),  # unsorted input
        (0.5, [(1, 4), (2, 2), (math.inf, 4)], 0.5),  # non-monotonic counts are fixed
        (-0.1, [(1, 1), (math.inf, 1)], -math.inf),
        (1.1, [(1, 1), (math.inf, 1)], math.inf),
    ],
)
def test_histogram_quantile_matches_prometheus(q, buckets, expected):
    assert vsr.histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize(
    "buckets",
    [[], [(math.inf, 5)], [(1, 1), (2, 2)], [(1, 0), (math.inf, 0)]],
    ids=["empty", "one bucket", "no +Inf", "no observations"],
)
def test_histogram_quantile_nan(buckets):
    assert math.isnan(vsr.histogram_quantile(0.95, buckets))


def test_histogram_sums_label_sets_like_sum_by_le():
    text = (
        "# TYPE h histogram\n"
        'h_bucket{op="a",le="1"} 1\nh_bucket{op="a",le="+Inf"} 2\n'
        'h_count{op="a"} 2\nh_sum{op="a"} 3\n'
        'h_bucket{op="b",le="1"} 3\nh_bucket{op="b",le="+Inf"} 4\n'
        'h_count{op="b"} 4\nh_sum{op="b"} 5\n'
    )
    h = vsr.histogram_from_samples(pt.parse_samples(text), "h")
    assert h == {"buckets": [[1.0, 4], [math.inf, 6]], "count": 6, "sum": 8}


# ------------------------------------------------------------------ per replica / cluster
def test_healthy_scenario_summary():
    result = scenario("healthy")
    cluster = result["cluster"]
    assert cluster["replica_count"] == 3 and cluster["quorum_size"] == 2
    assert cluster["normal_count"] == 3 and cluster["has_quorum"] is True
    assert cluster["agreed_view"] == 6 and cluster["view_agreed"] is True
    assert cluster["expected_leader"] == "replica-1"  # 6 % 3 == 0
    assert cluster["expected_leader_normal"] is True
    assert cluster["max_commit"] == 1040
    r1 = result["replicas"][0]
    assert r1["name"] == "replica-1" and r1["replica"] == "replica-1"
    assert (r1["status"], r1["status_name"], r1["view"], r1["op"], r1["commit"]) == (
        0,
        "Normal",
        6,
        1042,
        1040,
    )
    assert r1["op_commit_lag"] == 2 and r1["commit_lag"] == 0
    assert r1["checksum_failures"] == 0 and r1["pending_requests"] == 2
    assert r1["clock_offset_ms"] == 1.5
    assert r1["reconfig_state"] == 0 and r1["reconfig_state_name"] == "Stable"
    assert r1["expected_leader"] is True
    # 630 of 2000 below 5 ms, all below 10: p95 interpolated inside (5, 10]
    assert r1["client_latency_p95_ms"] == pytest.approx(5 + 5 * (1900 - 630) / 1370, abs=1e-5)
    assert 2 < r1["prepare_latency_p95_ms"] < 5
    assert r1["filesystem_avail_bytes"] == 412_000_000_000
    assert r1["filesystem_used_percent"] == pytest.approx(58.8)
    assert r1["missing"] == [] and r1["notes"] == []


def test_replica_identity_falls_back_to_endpoint_order():
    text = "vsr_replica_status 0\nvsr_view_number 4\nvsr_op_number 10\nvsr_commit_number 9\n"
    replicas = []
    for i in range(3):
        fetched = ep.FetchResult(
            f"h{i}:1", f"http://h{i}:1/metrics", ok=True, status=200, body=text
        )
        replicas.append(vsr_metrics.read_replica(i, fetched, None, "replica", False))
    cluster = vsr.cluster_summary(replicas)
    assert cluster["replica_order"] == ["h0:1", "h1:1", "h2:1"]
    assert cluster["expected_leader"] == "h1:1"  # 4 % 3
    assert [r["expected_leader"] for r in replicas] == [False, True, False]


def test_replica_order_matches_endpoints_too():
    result = scenario("healthy", replica_order=["127.0.40.2:9090", "replica-1", "replica-3"])
    assert result["cluster"]["expected_leader"] == "127.0.40.2:9090"
    assert [r["expected_leader"] for r in result["replicas"]] == [False, True, False]
    assert result["cluster"]["unmatched_replica_order"] == []


def test_views_disagree_leader_from_highest_normal_view():
    result = scenario("view_change")
    cluster = result["cluster"]
    assert cluster["views"] == [7, 8] and cluster["view_agreed"] is False
    assert cluster["agreed_view"] is None and cluster["leader_view"] == 8
    assert cluster["expected_leader"] == "replica-3"
    assert cluster["expected_leader_normal"] is False and cluster["has_quorum"] is False


def test_metric_names_map_another_build():
    text = "kv_status 0\nkv_view 2\nkv_op 5\nkv_commit 5\n"
    fetched = ep.FetchResult("h:1", "http://h:1/metrics", ok=True, status=200, body=text)
    names = {"status": "kv_status", "view": "kv_view", "op": "kv_op", "commit": "kv_commit"}
    entry = vsr_metrics.read_replica(0, fetched, names, "replica", True)
    assert (entry["status"], entry["view"], entry["op"], entry["commit"]) == (0, 2, 5, 5)
    assert entry["checksum_failures"] is None
    assert entry["samples"][0] == {"name": "kv_status", "labels": {}, "value": 0, "timestamp": None}
    with pytest.raises(vsr.VsrInputError, match="unknown key 'bogus'"):
        vsr.metric_names_with_defaults({"bogus": "x"})


def test_unreadable_answers_become_replica_errors():
    html = ep.FetchResult(
        "h:1",
        "http://h:1/metrics",
        ok=True,
        status=200,
        content_type="text/html",
        body="<!DOCTYPE html><html><body>Sign in</body></html>",
    )
    entry = vsr_metrics.read_replica(0, html, None, "replica", False)
    assert entry["reachable"] is False and "HTML" in entry["error"]
    bad = ep.FetchResult("h:1", "http://h:1/metrics", ok=True, status=200, body="a 1\nb{ 2\n")
    entry = vsr_metrics.read_replica(0, bad, None, "replica", False)
    assert entry["reachable"] is False
    assert entry["error"].startswith("malformed exposition: line 2: ")
    missing = ep.FetchResult("h:1", "http://h:1/metrics", ok=True, status=200, body="up 1\n")
    entry = vsr_metrics.read_replica(0, missing, None, "replica", False)
    assert entry["reachable"] is True and entry["status"] is None
    assert entry["missing"] == [
        "vsr_replica_status",
        "vsr_view_number",
        "vsr_op_number",
        "vsr_commit_number",
    ]


# ------------------------------------------------------------------ classification
EXPECTED = {
    "healthy": ("none", "none", []),
    "one_down": ("FM-005", "SEV3", ["replica-3"]),
    "quorum_lost": ("FM-001", "SEV1", ["replica-1", "replica-2", "replica-3"]),
    "corrupted": ("FM-003", "SEV1", ["replica-2"]),
    # Seed 000: every replica in ViewChange, the view climbing, is FM-002 (SEV2), not FM-001.
    "view_change": ("FM-002", "SEV2", ["replica-1", "replica-2", "replica-3"]),
    "high_latency": ("FM-004", "SEV2", ["replica-1", "replica-2", "replica-3"]),
    "commit_lag": ("FM-006", "SEV3", ["replica-1", "replica-2", "replica-3"]),
    "clock_drift": ("FM-008", "SEV3", ["replica-2"]),
    "disk_full": ("FM-007", "SEV2", ["replica-1"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_recorded_scenarios(name):
    verdict = FILTERS["vsr_classify"](scenario(name))
    fm, severity, targets = EXPECTED[name]
    assert verdict["overall"]["failure_mode"] == fm
    assert verdict["overall"]["severity"] == severity
    assert verdict["overall"]["targets"] == targets
    severities = [f["severity"] for f in verdict["findings"]]
    assert severities == sorted(severities)
    for finding in verdict["findings"]:
        keys = {"fm", "name", "severity", "replicas", "evidence", "runbook"}
        assert set(finding) - {"explained_by"} == keys
        assert finding["evidence"] and all(isinstance(e, str) for e in finding["evidence"])
        assert any(ch.isdigit() for e in finding["evidence"] for ch in e)


def test_view_change_findings_include_fm002():
    findings = vsr.classify(scenario("view_change"))["findings"]
    assert [f["fm"] for f in findings] == ["FM-002"]
    assert "all 3 reachable replicas in ViewChange" in findings[0]["evidence"][0]
    assert "0 of 3 replicas Normal (quorum 2)" in findings[0]["evidence"][-1]


def test_evidence_carries_the_numbers():
    corrupted = vsr.classify(scenario("corrupted"))
    fm003 = corrupted["findings"][0]
    assert fm003["evidence"] == ["replica-2 vsr_checksum_failures_total=3 (> 0)"]
    lag = vsr.classify(scenario("commit_lag"))["findings"][0]
    assert "replica-1 vsr_op_number - vsr_commit_number = 150 (> 100)" in lag["evidence"]
    assert "replica-3 vsr_commit_number 640 is 510 behind the highest (1150)" in lag["evidence"]
    drift = vsr.classify(scenario("clock_drift"))["findings"][0]
    assert drift["evidence"] == ["replica-2 vsr_clock_offset_ms=-350 (|offset| > 200 ms)"]
    disk = vsr.classify(scenario("disk_full"))["findings"][0]
    assert disk["evidence"] == [
        "replica-1 node_filesystem_avail_bytes 0 (<= 0); disk 100% used (>= 90%)"
    ]


def test_thresholds_are_parameters():
    assert (
        vsr.classify(scenario("high_latency"), client_p95_ms=500, prepare_p95_ms=500)["overall"][
            "failure_mode"
        ]
        == "none"
    )
    assert vsr.classify(scenario("healthy"), client_p95_ms=5)["overall"]["failure_mode"] == "FM-004"
    assert vsr.classify(scenario("clock_drift"), clock_offset_ms=400)["findings"] == []
    assert (
        vsr.classify(scenario("corrupted"), checksum_failures=5)["overall"]["failure_mode"]
        == "none"
    )


def test_previous_sample_rates():
    before = scenario("healthy", collected_at=1000.0)
    now = scenario("healthy", collected_at=1030.0)
    assert vsr.classify(now, before)["overall"]["failure_mode"] == "none"
    # checksum failures rising, from a previous value above the threshold
    now["replicas"][1]["checksum_failures"] = 7
    before["replicas"][1]["checksum_failures"] = 4
    finding = vsr.classify(now, before, checksum_failures=10)["findings"][0]
    assert finding["fm"] == "FM-003"
    assert finding["evidence"] == [
        "replica-2 vsr_checksum_failures_total rose from 4 to 7 over 30s"
    ]


def test_view_climbing_while_unsettled_is_fm002_but_a_finished_failover_is_not():
    before = scenario("healthy")
    failover = scenario("healthy")
    for r in failover["replicas"]:
        r["view"] = 7
    failover["cluster"] = vsr.cluster_summary(failover["replicas"], ORDER)
    assert vsr.classify(failover, before)["findings"] == []
    unsettled = scenario("healthy")
    unsettled["replicas"][0].update(view=9, status=1, status_name="ViewChange")
    unsettled["cluster"] = vsr.cluster_summary(unsettled["replicas"], ORDER)
    verdict = vsr.classify(unsettled, before)
    assert verdict["overall"]["failure_mode"] == "FM-002"
    assert "vsr_view_number climbed from 6 to 9" in verdict["findings"][0]["evidence"][0]


def test_latency_window_uses_bucket_deltas():
    before = scenario("healthy")
    now = scenario("healthy")
    # 100 new slow requests (in the 50-100 ms bucket) since `before`
    for le_count in now["replicas"][0]["histograms"]["client_latency"]["buckets"]:
        if le_count[0] == "+Inf" or le_count[0] >= 100:
            le_count[1] += 100
    verdict = vsr.classify(now, before)
    assert verdict["overall"]["failure_mode"] == "FM-004"
    assert verdict["findings"][0]["evidence"][0].startswith("replica-1 vsr_client_latency_ms p95 ")
    # without the previous sample, the lifetime p95 stays low
    assert vsr.classify(now)["overall"]["failure_mode"] == "none"


def test_disk_input():
    healthy = scenario("healthy")
    verdict = vsr.classify(healthy, disk={"replica-2": 97.5})
    assert verdict["overall"]["failure_mode"] == "FM-007"
    assert verdict["overall"]["targets"] == ["replica-2"]
    verdict = vsr.classify(healthy, disk={"replica-3": {"avail_bytes": 5, "size_bytes": 100}})
    assert verdict["findings"][0]["evidence"] == ["replica-3 disk 95% used (>= 90%)"]


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (("not a result",), {}, "must be the vsr_metrics result"),
        (({"cluster": {}},), {}, 'must hold "cluster"'),
        (({"cluster": {}, "replicas": ["x"]},), {}, "each item must be a dict"),
        ((None,), {}, "NoneType"),
        ((), {"bogus_limit": 3}, "unknown threshold 'bogus_limit'"),
        ((), {"client_p95_ms": -1}, "client_p95_ms must be a number >= 0"),
        ((), {"client_p95_ms": "fast"}, "'fast'"),
        ((), {"disk": {"replica-1": 150}}, "within 0..100"),
        ((), {"disk": {"replica-1": "full"}}, "'full'"),
        ((), {"disk": {"replica-1": {"free": 1}}}, "unknown keys ['free']"),
        ((), {"disk": [1]}, "disk must map replica names"),
        ((), {"previous": {"cluster": 1}}, "previous must hold"),
    ],
)
def test_classify_refuses_bad_input_naming_it(args, kwargs, words):
    if not args:
        args = (scenario("healthy"),)
    with pytest.raises(AnsibleFilterError, match=r"^vsr_classify: ") as caught:
        FILTERS["vsr_classify"](*args, **kwargs)
    assert words in str(caught.value)


def test_prometheus_samples_filter():
    text = (FIXTURES / "healthy" / "replica-1.prom").read_text()
    samples = FILTERS["prometheus_samples"](text)
    status = next(s for s in samples if s["name"] == "vsr_replica_status")
    assert status == {
        "name": "vsr_replica_status",
        "labels": {"replica": "replica-1"},
        "value": 0.0,
        "timestamp": None,
    }
    with pytest.raises(
        AnsibleFilterError, match=r"prometheus_samples: malformed exposition, line 1: "
    ):
        FILTERS["prometheus_samples"]("<html>\n")
    with pytest.raises(AnsibleFilterError, match="got int"):
        FILTERS["prometheus_samples"](3)


# ------------------------------------------------------------------ endpoints.py, pure part
@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("127.0.3.1:9090", "http://127.0.3.1:9090/metrics"),
        ("replica-1.lab:9090/stats", "http://replica-1.lab:9090/stats"),
        ("http://h:1", "http://h:1/metrics"),
        ("https://h:9443/x?y=1", "https://h:9443/x?y=1"),
        ("[::1]:9090", "http://[::1]:9090/metrics"),
        ("  h:1  ", "http://h:1/metrics"),
    ],
)
def test_normalize_endpoint(endpoint, url):
    assert ep.normalize_endpoint(endpoint) == url


def test_normalize_endpoint_scheme_and_path():
    assert ep.normalize_endpoint("h:1", path="/m", scheme="https") == "https://h:1/m"


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("h", "has no port"),
        ("h:0", "port must be 1-65535"),
        ("h:70000", "port must be 1-65535"),
        ("h:abc", "port must be 1-65535"),
        ("ftp://h:1", "scheme must be http or https"),
        ("http://h:x/", "not a valid URL"),
        ("http://user:secret@h:1/", "use url_username"),
        ("", "empty"),
        ("a b:1", "whitespace"),
        ("bad_host!:1", "not a valid host"),
        (9090, "must be a string"),
        ("http:///metrics", "has no host"),
    ],
)
def test_normalize_endpoint_refuses(endpoint, words):
    with pytest.raises(ep.EndpointError) as caught:
        ep.normalize_endpoint(endpoint)
    assert words in str(caught.value)
    assert caught.value.option == "endpoints"
    assert "secret" not in str(caught.value)


def test_normalize_endpoints_list_rules():
    assert ep.normalize_endpoints(["h:1", "h:2"]) == ["http://h:1/metrics", "http://h:2/metrics"]
    with pytest.raises(ep.EndpointError, match="same URL"):
        ep.normalize_endpoints(["h:1", "http://h:1/metrics"])
    with pytest.raises(ep.EndpointError, match="empty"):
        ep.normalize_endpoints([])
    with pytest.raises(ep.EndpointError, match="must be a list"):
        ep.normalize_endpoints("h:1")
    with pytest.raises(ep.EndpointError, match='metrics_path must start with "/"'):
        ep.normalize_endpoints(["h:1"], path="metrics")


@pytest.mark.parametrize(
    ("kwargs", "option", "words"),
    [
        ({"timeout": -1}, "timeout", "greater than 0, got -1.0"),
        ({"timeout": 0}, "timeout", "greater than 0"),
        ({"timeout": "soon"}, "timeout", "must be a number, got 'soon'"),
        ({"timeout": float("nan")}, "timeout", "greater than 0"),
        ({"concurrency": 0}, "concurrency", "at least 1, got 0"),
        ({"concurrency": True}, "concurrency", "at least 1"),
        ({"client_key": "/k.pem"}, "client_key", "client_cert is not"),
        ({"url_password": "pw"}, "url_username", "url_username is not"),
        ({"url_username": "u", "bearer_token": "t"}, "bearer_token", "mutually exclusive"),
    ],
)
def test_fetch_options_refuse_bad_values(kwargs, option, words):
    with pytest.raises(ep.EndpointError) as caught:
        ep.FetchOptions(**kwargs)
    assert caught.value.option == option
    assert words in str(caught.value)
    assert "pw" not in str(caught.value) or option != "url_username"


def test_fetch_options_headers():
    basic = ep.FetchOptions(url_username="u", url_password="p").headers()
    assert basic["Authorization"] == "Basic dTpw"
    assert ep.FetchOptions(bearer_token="t0k").headers()["Authorization"] == "Bearer t0k"
    assert "Authorization" not in ep.FetchOptions().headers()
    assert "Authorization" not in ep.FetchOptions(bearer_token="t0k").headers(credentials=False)


FIRST = "http://10.0.0.1:9090/metrics"


@pytest.mark.parametrize(
    ("current", "location", "target", "credentials"),
    [
        (FIRST, "/other/metrics", "http://10.0.0.1:9090/other/metrics", True),
        (FIRST, "http://10.0.0.1:9090/x", "http://10.0.0.1:9090/x", True),
        (FIRST, "http://10.0.0.2:9090/metrics", "http://10.0.0.2:9090/metrics", False),
        (FIRST, "http://10.0.0.1:9091/metrics", "http://10.0.0.1:9091/metrics", False),
        (FIRST, "https://10.0.0.1:9090/metrics", "https://10.0.0.1:9090/metrics", False),
        (FIRST, "//evil.example:9090/metrics", "http://evil.example:9090/metrics", False),
        # back on the first origin after a hop elsewhere: the credentials are its own
        ("http://10.0.0.2:1/m", "http://10.0.0.1:9090/m", "http://10.0.0.1:9090/m", True),
        ("https://h/a", "/b", "https://h/b", False),  # h is not the first origin
    ],
)
def test_follow_redirect_credentials_only_on_the_first_origin(
    current, location, target, credentials
):
    assert ep.follow_redirect(FIRST, current, location) == (target, credentials)


def test_follow_redirect_default_ports_are_the_same_origin():
    first = "https://Vsr.example/metrics"
    assert ep.follow_redirect(first, first, "https://vsr.example:443/m") == (
        "https://vsr.example:443/m",
        True,
    )


@pytest.mark.parametrize(
    ("current", "location", "words"),
    [
        ("https://h:1/m", "http://h:1/m", "refused: a redirect from https to http (to http://h"),
        ("https://h:1/m", "http://u:pw-secret@h:2/m", "to http://u:********@h:2/m"),
        ("http://h:1/m", "ftp://h/m", "which is not http(s)"),
        ("http://h:1/m", "http://h:notaport/m", "not a valid URL"),
        ("http://h:1/m", "http://[::1/m", "not a valid URL"),
    ],
)
def test_follow_redirect_refuses(current, location, words):
    with pytest.raises(ep._FetchFailed) as caught:
        ep.follow_redirect("http://h:1/m", current, location)
    assert words in str(caught.value)
    assert "pw-secret" not in str(caught.value)


def test_argument_spec_is_a_fresh_copy_with_secrets_hidden():
    spec = ep.endpoints_argument_spec()
    spec["timeout"]["default"] = 99
    assert ep.endpoints_argument_spec()["timeout"]["default"] == ep.DEFAULT_TIMEOUT
    assert spec["url_password"]["no_log"] is True and spec["bearer_token"]["no_log"] is True
    assert (
        ep.endpoints_argument_spec(default_path="/status")["metrics_path"]["default"] == "/status"
    )


def test_bad_tls_file_is_an_option_error():
    options = ep.FetchOptions(ca_path="/nonexistent/ca.pem")
    with pytest.raises(ep.EndpointError, match="cannot load the TLS files") as caught:
        ep.fetch_all(["https://127.0.0.1:9/metrics"], options)
    assert caught.value.option == "ca_path"
