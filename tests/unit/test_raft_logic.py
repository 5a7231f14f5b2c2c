"""Pure Raft logic of firebreak.incident.raft_status (plugins/module_utils/raft.py).

Fixtures under fixtures/raft/: etcd 3.4 answers recorded from a real 3-member cluster on
loopback, and Grey Distributed /v1/consensus/status answers in the documented shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import raft

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "raft"


def load(name):
    return json.loads((FIXTURES / name).read_text())


def grey_cluster(name):
    """What the module does for flavor=grey, from a fixture of endpoint -> answer (or None)."""
    members, member_list = [], None
    for endpoint, doc in load(name)["endpoints"].items():
        m = raft.new_member(endpoint, "http://" + endpoint)
        if doc is None:
            m["error"] = "consensus/status: connection refused"
        else:
            status = raft.parse_grey_status(raft.load_json(json.dumps(doc), "consensus/status"))
            raft.apply_status(m, status, "grey")
            member_list = member_list or status["members"]
        members.append(m)
    raft.name_members(members, member_list, "grey")
    return members, raft.summarise_cluster(members, member_list)


def etcd_cluster(statuses, member_list_doc, endpoints):
    """What the module does for flavor=etcd, from recorded status answers by member name."""
    member_list = raft.parse_etcd_members(member_list_doc)
    urls = {m["name"]: m["client_urls"][0] for m in member_list}
    members = []
    for name in endpoints:
        m = raft.new_member(urls[name].split("://")[1], urls[name])
        if name in statuses:
            raft.apply_status(m, raft.parse_etcd_status(statuses[name]), "etcd")
        else:
            m["error"] = "maintenance/status: connection refused"
        members.append(m)
    raft.name_members(members, member_list, "etcd")
    return members, raft.summarise_cluster(members, member_list)


# --- helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (12, 12), (" 7 ", 7), (3.0, 3), (None, None), ("", None), ("-1", -1)],
)
def test_to_int(value, expected):
    assert raft.to_int(value) == expected


@pytest.mark.parametrize("value", ["seven", "1.5", 1.5, True, [1], {"a": 1}])
def test_to_int_rejects(value):
    with pytest.raises(raft.RaftParseError):
        raft.to_int(value, "term")


def test_etcd_hex_id_like_etcdctl():
    assert raft.etcd_hex_id("10276657743932975437") == "8e9e05c52164694d"
    assert raft.etcd_hex_id(243703094821601775) == "361ceac6d8141ef"  # no zero padding
    assert raft.etcd_hex_id("0") is None
    assert raft.etcd_hex_id(None) is None


@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4), (0, 1)])
def test_quorum_size(n, q):
    assert raft.quorum_size(n) == q


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!DOCTYPE html><html><body>x</body></html>", "answered HTML"),
        ("  <html>", "answered HTML"),
        ("", "empty answer"),
        (None, "empty answer"),
        ("OK", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_load_json_says_what_came_instead(text, message):
    with pytest.raises(raft.RaftParseError, match=message):
        raft.load_json(text, "consensus/status")


# --- etcd -------------------------------------------------------------------------------


def test_parse_etcd_status_recorded():
    rec = load("etcd_3.4_recorded.json")
    s = raft.parse_etcd_status(rec["healthy"]["m1"])
    assert s["id"] == "6709574a86ce66a3"
    assert s["leader"] == "11443be6a9bbb938"
    assert s["is_leader"] is False
    assert (s["term"], s["index"], s["applied_index"]) == (2, 12, 12)
    assert (s["db_size"], s["db_size_in_use"], s["version"]) == (20480, 16384, "3.4.23")
    assert s["alarms"] == [] and s["errors"] == []
    assert raft.parse_etcd_status(rec["healthy"]["m3"])["is_leader"] is True


def test_parse_etcd_status_without_leader():
    s = raft.parse_etcd_status(load("etcd_3.4_recorded.json")["two_down"]["m3"])
    assert s["leader"] is None and s["is_leader"] is False
    assert s["errors"] == ["etcdserver: no leader"]


def test_parse_etcd_status_alarm_only_for_its_member():
    a = load("etcd_3.4_alarm.json")
    with_alarm = raft.parse_etcd_status(a["status_member_with_alarm"])
    other = raft.parse_etcd_status(a["status_other_member"])
    assert with_alarm["alarms"] == ["NOSPACE"] and with_alarm["errors"] == []
    assert other["alarms"] == [] and other["errors"] == []
    alarms = raft.parse_etcd_alarms(a["alarm_list"])
    assert alarms == [{"member_id": with_alarm["id"], "alarm": "NOSPACE"}]
    assert raft.parse_etcd_alarms({}) == []


@pytest.mark.parametrize(
    "doc", [{}, {"header": {}}, {"members": []}, {"header": "x", "raftTerm": "1"}]
)
def test_parse_etcd_status_rejects_other_shapes(doc):
    with pytest.raises(raft.RaftParseError, match="member_id"):
        raft.parse_etcd_status(doc)


def test_parse_etcd_members():
    ml = raft.parse_etcd_members(load("etcd_3.4_recorded.json")["member_list"])
    assert [m["name"] for m in ml] == ["m1", "m2", "m3"]
    assert all(m["client_urls"] and m["peer_urls"] and not m["is_learner"] for m in ml)
    with pytest.raises(raft.RaftParseError):
        raft.parse_etcd_members({"header": {}})
    unstarted = raft.parse_etcd_members({"members": [{"ID": "10", "peerURLs": ["http://x:2380"]}]})
    assert unstarted[0]["name"] is None and unstarted[0]["id"] == "a"


def test_parse_etcd_health():
    assert raft.parse_etcd_health(200, '{"health":"true"}') is True
    assert raft.parse_etcd_health(503, '{"health":"false"}\n') is False
    assert raft.parse_etcd_health(503, None) is False
    assert raft.parse_etcd_health(200, "<html>") is None
    assert raft.parse_etcd_health(None, None) is None


def test_parse_prometheus_recorded():
    values = raft.parse_prometheus((FIXTURES / "etcd_metrics.txt").read_text(), raft.ETCD_METRICS)
    assert values["has_leader"] == 1
    assert values["is_leader"] == 0
    assert values["leader_changes_seen"] == 1
    assert values["db_size"] == 20480
    assert values == {
        "db_size": 20480,
        "has_leader": 1,
        "is_leader": 0,
        "leader_changes_seen": 1,
        "proposals_applied": 12,
        "proposals_committed": 12,
    }
    assert raft.parse_prometheus("", raft.ETCD_METRICS) == {}


# (exposition, values): labelled samples and other names are left out, whole numbers are ints
PROMETHEUS_VALUES = [
    ("etcd_server_has_leader 1\n", {"has_leader": 1}),
    ("etcd_server_has_leader 1.0\n", {"has_leader": 1}),
    ("etcd_server_has_leader 1e0 1700000000000\n", {"has_leader": 1}),
    ("etcd_mvcc_db_total_size_in_bytes 2.5\n", {"db_size": 2.5}),
    ('etcd_server_has_leader{a="b"} 1\nother 2\n', {}),
    ("# TYPE etcd_server_is_leader gauge\netcd_server_is_leader 0\n", {"is_leader": 0}),
    (
        "# TYPE etcd_server_leader_changes_seen_total counter\n"
        "etcd_server_leader_changes_seen_total 3\n",
        {"leader_changes_seen": 3},
    ),
]


@pytest.mark.parametrize(("text", "values"), PROMETHEUS_VALUES)
def test_parse_prometheus_values(text, values):
    assert raft.parse_prometheus(text, raft.ETCD_METRICS) == values


@pytest.mark.parametrize(
    ("text", "lineno"),
    [("<html>oops</html>\nx y", 1), ("etcd_server_has_leader 1\nx y\n", 2)],
)
def test_parse_prometheus_malformed_is_an_error(text, lineno):
    with pytest.raises(
        raft.RaftParseError, match=rf"^metrics: malformed exposition, line {lineno}: "
    ):
        raft.parse_prometheus(text, raft.ETCD_METRICS)


def test_etcd_healthy_recorded():
    rec = load("etcd_3.4_recorded.json")
    members, c = etcd_cluster(rec["healthy"], rec["member_list"], ["m1", "m2", "m3"])
    assert [m["name"] for m in members] == ["m1", "m2", "m3"]
    assert c["members"] == 3 and c["quorum_size"] == 2 and c["has_quorum"] is True
    assert c["leader"] == "11443be6a9bbb938" and c["leader_name"] == "m3"
    assert c["leaders_seen_count"] == 1 and c["leader_claims"] == ["11443be6a9bbb938"]
    assert c["term_agreement"] is True and c["max_index_lag"] == 0
    assert c["healthy"] is True


def test_etcd_one_down_recorded():
    rec = load("etcd_3.4_recorded.json")
    members, c = etcd_cluster(rec["one_down"], rec["member_list"], ["m1", "m2", "m3"])
    assert c["reachable"] == 2 and c["has_quorum"] is True and c["healthy"] is False
    down = members[0]
    assert down["reachable"] is False and down["name"] == "m1"
    assert down["id"] == "6709574a86ce66a3"  # from the member list, by client URL
    assert c["unreachable"] == [down["endpoint"]]


def test_etcd_two_down_recorded():
    rec = load("etcd_3.4_recorded.json")
    members, c = etcd_cluster(rec["two_down"], rec["member_list"], ["m1", "m2", "m3"])
    assert c["reachable"] == 1 and c["has_quorum"] is False
    assert c["leader"] is None and c["leaders_seen"] == []
    assert members[2]["errors"] == ["etcdserver: no leader"]
    assert [m["name"] for m in members if not m["reachable"]] == ["m1", "m2"]


def test_member_for_url():
    ml = raft.parse_etcd_members(load("etcd_3.4_recorded.json")["member_list"])
    url = ml[1]["client_urls"][0]
    assert raft.member_for_url(url + "/", ml)["name"] == "m2"
    assert raft.member_for_url(url.upper().replace("HTTP", "http"), ml)["name"] == "m2"
    assert raft.member_for_url("http://127.0.0.1:1", ml) is None


# --- Grey -------------------------------------------------------------------------------


def test_grey_healthy():
    members, c = grey_cluster("grey_healthy.json")
    assert c["members"] == 3 and c["voters"] == 3 and c["reachable"] == 3
    assert c["has_quorum"] is True and c["leader"] == "coord-0"
    assert c["leaders_seen"] == ["coord-0"] and c["leader_claims"] == ["coord-0"]
    assert c["term_agreement"] is True and c["max_term"] == 7
    assert c["max_index_lag"] == 1 and c["max_apply_lag"] == 1
    assert c["healthy"] is True
    assert members[0]["is_leader"] and members[0]["state"] == "leader"
    assert members[1]["quorum_satisfied"] is True


def test_grey_one_down():
    members, c = grey_cluster("grey_one_down.json")
    assert c["reachable"] == 2 and c["has_quorum"] is True and c["healthy"] is False
    assert members[2]["id"] == "coord-2" and members[2]["name"] == "coord-2"
    assert c["unreachable"] == ["10.0.0.3:8080"]
    assert c["max_index_lag"] == 2 and c["max_apply_lag"] == 8


def test_grey_two_down():
    members, c = grey_cluster("grey_two_down.json")
    assert c["reachable"] == 1 and c["quorum_size"] == 2
    assert c["has_quorum"] is False and c["leader"] is None
    assert members[0]["state"] == "candidate" and members[0]["quorum_satisfied"] is False


def test_grey_split_brain_shows_two_leaders():
    _members, c = grey_cluster("grey_split_brain.json")
    assert c["members"] == 5 and c["quorum_size"] == 3
    assert c["leaders_seen"] == ["coord-0", "coord-1"] and c["leaders_seen_count"] == 2
    assert c["leader_claims"] == ["coord-0", "coord-1"]
    # the majority side, in the higher term, still has its quorum
    assert c["leader"] == "coord-1" and c["has_quorum"] is True
    assert c["term_agreement"] is False and c["terms"] == [4, 5]
    assert c["max_index_lag"] == 30
    assert c["healthy"] is False


def test_grey_minority_leader_alone_has_no_quorum():
    fx = load("grey_split_brain.json")["endpoints"]
    members = []
    for endpoint in ("10.0.0.1:8080", "10.0.0.3:8080"):
        m = raft.new_member(endpoint, "http://" + endpoint)
        raft.apply_status(m, raft.parse_grey_status(fx[endpoint]), "grey")
        members.append(m)
    status = raft.parse_grey_status(fx["10.0.0.1:8080"])
    c = raft.summarise_cluster(members, status["members"])
    assert c["leader"] == "coord-0" and c["quorum_size"] == 3 and c["has_quorum"] is False


def test_grey_leader_reporting_no_quorum_wins():
    _members, c = grey_cluster("grey_leader_without_quorum.json")
    assert c["leader"] == "coord-0" and c["has_quorum"] is False


def test_grey_tolerated_variants():
    doc = load("grey_variants.json")["endpoints"]["10.0.0.2:8080"]
    s = raft.parse_grey_status(doc)
    assert s["id"] == "coord-1" and s["state"] == "follower" and s["leader"] == "coord-0"
    assert (s["term"], s["index"], s["applied_index"]) == (12, 77, 70)
    assert s["quorum_satisfied"] is True and s["is_leader"] is False
    voters = [m for m in s["members"] if not m["is_learner"]]
    assert len(s["members"]) == 3 and len(voters) == 2
    c = raft.summarise_cluster(
        [raft.apply_status(raft.new_member("a", "http://a"), s, "grey")], s["members"]
    )
    assert c["members"] == 3 and c["voters"] == 2 and c["quorum_size"] == 2
    assert c["has_quorum"] is False  # one voter seen backing coord-0, two needed


def test_grey_leader_without_leader_field():
    s = raft.parse_grey_status({"node_id": "n1", "state": "leader", "term": 3})
    assert s["leader"] == "n1" and s["is_leader"] is True and s["members"] is None
    s = raft.parse_grey_status({"node_id": "n2", "state": "follower", "term": 3, "leader": ""})
    assert s["leader"] is None


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("html", "answered HTML"),
        ("empty", "empty answer"),
        ("not_json", "not JSON"),
        ("array", "expected a JSON object"),
        ("no_node_id", "no node_id"),
        ("no_term", "no term"),
        ("term_not_int", "term must be an integer"),
        ("members_not_list", "members is not a list"),
    ],
)
def test_grey_bad_answers(case, message):
    text = load("grey_bad_answers.json")["answers"][case]
    with pytest.raises(raft.RaftParseError, match=message):
        raft.parse_grey_status(raft.load_json(text, "consensus/status"))


# --- the summary in corner cases --------------------------------------------------------


def test_nothing_reachable():
    members = [raft.new_member(e, "http://" + e) for e in ("a:1", "b:1", "c:1")]
    c = raft.summarise_cluster(members, None)
    assert c["members"] == 3 and c["reachable"] == 0 and c["quorum_size"] == 2
    assert c["has_quorum"] is False and c["leader"] is None
    assert c["term_agreement"] is None and c["max_index_lag"] is None
    assert c["unreachable"] == ["a:1", "b:1", "c:1"] and c["healthy"] is False


def test_leader_tie_gives_no_leader():
    def m(mid, leader):
        r = raft.new_member(mid, "http://" + mid)
        r.update(reachable=True, id=mid, leader=leader, term=3, index=1)
        return r

    c = raft.summarise_cluster([m("a", "a"), m("b", "b")], None)
    assert c["leader"] is None and c["leaders_seen_count"] == 2 and c["has_quorum"] is False


def test_stale_term_leader_does_not_count():
    def m(mid, leader, term):
        r = raft.new_member(mid, "http://" + mid)
        r.update(reachable=True, id=mid, leader=leader, term=term, index=5, applied_index=5)
        return r

    c = raft.summarise_cluster([m("a", "a", 2), m("b", "a", 2), m("c", "c", 3)], None)
    assert c["leader"] == "c" and c["has_quorum"] is False
    assert c["leaders_seen"] == ["a", "c"] and c["term_agreement"] is False
