"""firebreak.incident.raft_status against a real 3-member etcd 3.4 cluster, through playbooks.

Healthy, then the leader killed (quorum kept), then a second member killed (quorum lost).
Around the real cluster: an endpoint that accepts and never answers, one answering HTML,
a fake Grey Distributed coordinator set (the seed's /v1/consensus/status), and bad options.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_etcd import etcd_cluster  # noqa: F401  (fixture)
from fixtures_pg import free_port
from playbook_harness import run_tasks

pytestmark = pytest.mark.lab

MODULE = "firebreak.incident.raft_status"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        status, ctype, body = self.server.answer(self.path)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 answering answer(path) -> (status, ctype, body)."""

    def __init__(self, answer):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.answer = answer
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def html_answer(_path):
    return 200, "text/html; charset=utf-8", "<!DOCTYPE html><html><body>Login</body></html>"


def grey_answer(doc):
    def answer(path):
        if path == "/v1/consensus/status":
            return 200, "application/json", json.dumps(doc)
        return 404, "text/plain", "404 page not found"

    return answer


def grey_status(node, state, leader, term, commit, applied, members):
    return {
        "node_id": node,
        "state": state,
        "leader": leader,
        "term": term,
        "commit_index": commit,
        "applied_index": applied,
        "last_log_index": commit,
        "quorum_satisfied": state == "leader" or None,
        "members": members,
    }


def etcd_post(member, path, body):
    req = urllib.request.Request(
        member.client_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read().decode())


def member_id(member) -> int:
    """The member's id as etcd's JSON gateway gives it (a decimal string)."""
    return int(etcd_post(member, "/v3/maintenance/status", {})["header"]["member_id"])


def wait_health(member, want: bool, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(member.client_url + "/health", timeout=1) as resp:
                ok = json.loads(resp.read().decode()).get("health") == "true"
        except urllib.error.HTTPError as e:
            ok = e.code == 200
        except Exception:
            ok = False
        if ok == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{member.name} /health never became {want}")


def test_raft_status_etcd(etcd_cluster, tmp_path):  # noqa: F811
    cluster = etcd_cluster
    eps = [m.endpoint for m in cluster.members]
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections (kernel backlog), never answers
    hang_ep = f"127.0.0.1:{hang.getsockname()[1]}"
    html = FakeServer(html_answer)
    grey_members = [
        {"node_id": f"coord-{i}", "address": f"127.0.0.1:{p}", "state": s, "voter": True}
        for i, (p, s) in enumerate([(0, "leader"), (0, "follower"), (0, "follower")])
    ]
    grey_down_port = free_port()
    greys = []
    try:
        g0 = FakeServer(lambda p: (500, "text/plain", "not yet"))
        g1 = FakeServer(lambda p: (500, "text/plain", "not yet"))
        greys = [g0, g1]
        grey_members[0]["address"] = g0.endpoint
        grey_members[1]["address"] = g1.endpoint
        grey_members[2]["address"] = f"127.0.0.1:{grey_down_port}"
        g0.httpd.answer = grey_answer(
            grey_status("coord-0", "leader", "coord-0", 7, 1042, 1042, grey_members)
        )
        g1.httpd.answer = grey_answer(
            grey_status("coord-1", "follower", "coord-0", 7, 1040, 1038, grey_members)
        )
        grey_eps = [g0.endpoint, g1.endpoint, f"127.0.0.1:{grey_down_port}"]

        expected_ids = {m.name: f"{member_id(m):x}" for m in cluster.members}

        # --- run 1: healthy cluster, odd endpoints, bad options ---------------------------
        run1 = run_tasks(
            [
                {"name": "healthy", "module": MODULE, "args": {"endpoints": eps, "timeout": 3}},
                {"name": "healthy_check", "module": MODULE, "check_mode": True,
                 "args": {"endpoints": [f"http://{e}" for e in eps], "concurrency": 1}},
                {"name": "hanging", "module": MODULE, "timed": True,
                 "args": {"endpoints": [*eps, hang_ep], "timeout": 1}},
                {"name": "html", "module": MODULE, "args": {"endpoints": [html.endpoint]}},
                {"name": "html_grey", "module": MODULE,
                 "args": {"flavor": "grey", "endpoints": [html.endpoint]}},
                {"name": "grey", "module": MODULE,
                 "args": {"flavor": "grey", "endpoints": grey_eps, "timeout": 2}},
                {"name": "grey_on_etcd", "module": MODULE,
                 "args": {"flavor": "grey", "endpoints": eps[:1]}},
                {"name": "unknown_flavor", "module": MODULE,
                 "args": {"flavor": "consul", "endpoints": eps}},
                {"name": "negative_timeout", "module": MODULE,
                 "args": {"endpoints": eps, "timeout": -1}},
                {"name": "timeout_not_number", "module": MODULE,
                 "args": {"endpoints": eps, "timeout": "soon"}},
                {"name": "zero_concurrency", "module": MODULE,
                 "args": {"endpoints": eps, "concurrency": 0}},
                {"name": "url_no_host", "module": MODULE, "args": {"endpoints": ["http://"]}},
                {"name": "url_no_port", "module": MODULE, "args": {"endpoints": ["127.0.0.1"]}},
                {"name": "url_bad_scheme", "module": MODULE,
                 "args": {"endpoints": ["ftp://127.0.0.1:2379"]}},
                {"name": "endpoints_dict", "module": MODULE,
                 "args": {"endpoints": {"a": 1}}},
                {"name": "endpoints_empty", "module": MODULE, "args": {"endpoints": []}},
                {"name": "endpoints_twice", "module": MODULE,
                 "args": {"endpoints": [eps[0], f"http://{eps[0]}"]}},
                {"name": "bad_ca", "module": MODULE,
                 "args": {"endpoints": [f"https://{eps[0]}"], "ca_cert": "/nonexistent/ca.pem"}},
            ],
            tmp_path,
        )  # fmt: skip
        r = run1.results

        h = r["healthy"]
        assert not h.get("failed"), h
        assert h["changed"] is False
        c = h["cluster"]
        assert c["members"] == 3 and c["voters"] == 3 and c["reachable"] == 3
        assert c["quorum_size"] == 2 and c["has_quorum"] is True
        assert c["leaders_seen_count"] == 1 and c["leader"] == c["leaders_seen"][0]
        assert c["leader_claims"] == [c["leader"]]
        assert c["term_agreement"] is True and len(c["terms"]) == 1
        assert c["max_index_lag"] <= 1
        assert c["alarms"] == [] and c["healthy"] is True
        names = {m["name"]: m for m in h["members"]}
        assert set(names) == {"m1", "m2", "m3"}
        for m in h["members"]:
            assert m["reachable"] and m["error"] is None and m["errors"] == []
            assert m["id"] == expected_ids[m["name"]]  # hex, as etcdctl shows it
            assert m["health"] is True and m["has_leader"] == 1
            assert m["version"].startswith("3.4")
            assert m["db_size"] > 0 and m["index"] >= m["applied_index"] - 1
            assert m["leader_changes_seen"] >= 1
        assert sum(m["is_leader"] for m in h["members"]) == 1
        leader_name = c["leader_name"]
        assert names[leader_name]["is_leader"]
        assert {x["name"] for x in h["member_list"]} == {"m1", "m2", "m3"}

        hc = r["healthy_check"]
        assert not hc.get("failed"), hc
        assert hc["changed"] is False and hc["cluster"]["has_quorum"] is True
        assert hc["cluster"]["leader"] == c["leader"]

        hg = r["hanging"]
        assert not hg.get("failed"), hg
        assert hg["cluster"]["reachable"] == 3 and hg["cluster"]["has_quorum"] is True
        assert hg["cluster"]["unreachable"] == [hang_ep]
        hung = hg["members"][3]
        assert hung["reachable"] is False
        assert "timed out after 1 s" in hung["error"], hung["error"]
        assert run1.seconds["hanging"] < 6, run1.seconds["hanging"]  # 1 s timeout + module start

        for name in ("html", "html_grey"):
            m = r[name]["members"][0]
            assert not r[name].get("failed"), r[name]
            assert m["reachable"] is False and "HTML" in m["error"], m["error"]
            assert r[name]["cluster"]["has_quorum"] is False

        g = r["grey"]
        assert not g.get("failed"), g
        gc = g["cluster"]
        assert gc["members"] == 3 and gc["reachable"] == 2 and gc["has_quorum"] is True
        assert gc["leader"] == "coord-0" and gc["max_term"] == 7
        assert gc["max_index_lag"] == 2 and gc["max_apply_lag"] == 2
        down = g["members"][2]
        assert down["reachable"] is False and "connection refused" in down["error"]
        assert down["id"] == "coord-2"  # named from the membership the others report
        assert g["members"][0]["quorum_satisfied"] is True

        goe = r["grey_on_etcd"]["members"][0]
        assert goe["reachable"] is False and "404" in goe["error"], goe["error"]

        assert "consul" in r["unknown_flavor"]["msg"] and "flavor" in r["unknown_flavor"]["msg"]
        assert "timeout must be a number of seconds greater than 0" in r["negative_timeout"]["msg"]
        assert "timeout" in r["timeout_not_number"]["msg"]
        assert "concurrency" in r["zero_concurrency"]["msg"]
        assert "has no host" in r["url_no_host"]["msg"]
        assert "has no port" in r["url_no_port"]["msg"]
        assert "scheme must be http or https" in r["url_bad_scheme"]["msg"]
        assert "endpoints" in r["endpoints_dict"]["msg"]
        assert "endpoints is empty" in r["endpoints_empty"]["msg"]
        assert "same URL" in r["endpoints_twice"]["msg"]
        assert "/nonexistent/ca.pem" in r["bad_ca"]["msg"]
        for name in (
            "unknown_flavor", "negative_timeout", "timeout_not_number", "zero_concurrency",
            "url_no_host", "url_no_port", "url_bad_scheme", "endpoints_dict", "endpoints_empty",
            "endpoints_twice", "bad_ca",
        ):  # fmt: skip
            assert r[name]["failed"] is True, name

        # --- run 2: the leader killed; quorum kept; an alarm raised -----------------------
        old_term = c["max_term"]
        killed = next(i for i, m in enumerate(cluster.members) if m.name == leader_name)
        cluster.kill(killed)
        survivors = [m for i, m in enumerate(cluster.members) if i != killed]
        for m in survivors:
            wait_health(m, True)
        alarmed = survivors[0]
        alarm = {"memberID": str(member_id(alarmed)), "alarm": "NOSPACE"}
        alarmed_id = f"{member_id(alarmed):x}"
        etcd_post(alarmed, "/v3/maintenance/alarm", {"action": "ACTIVATE", **alarm})
        try:
            run2 = run_tasks(
                [{"name": "one_down", "module": MODULE, "args": {"endpoints": eps, "timeout": 2}}],
                tmp_path,
            )
        finally:
            etcd_post(alarmed, "/v3/maintenance/alarm", {"action": "DEACTIVATE", **alarm})
        o = run2.results["one_down"]
        assert not o.get("failed"), o
        oc = o["cluster"]
        assert oc["reachable"] == 2 and oc["has_quorum"] is True
        assert oc["unreachable"] == [cluster.members[killed].endpoint]
        assert oc["leader"] is not None and oc["leader"] != c["leader"]
        assert oc["leader_name"] in {m.name for m in survivors}
        assert oc["max_term"] > old_term and oc["term_agreement"] is True
        assert oc["leaders_seen_count"] == 1
        assert oc["alarms"] == [{"member_id": alarmed_id, "alarm": "NOSPACE"}]
        assert oc["healthy"] is False
        dead = o["members"][killed]
        assert dead["reachable"] is False
        assert dead["error"] == "maintenance/status: connection refused", dead["error"]
        assert dead["name"] == leader_name and dead["id"] == c["leader"]
        by_name = {m["name"]: m for m in o["members"]}
        assert by_name[alarmed.name]["alarms"] == ["NOSPACE"]

        # --- run 3: a second member killed; quorum lost -----------------------------------
        second = cluster.members.index(survivors[1])
        cluster.kill(second)
        last = survivors[0]
        wait_health(last, False)
        run3 = run_tasks(
            [{"name": "two_down", "module": MODULE, "timed": True,
              "args": {"endpoints": eps, "timeout": 2}}],
            tmp_path,
        )  # fmt: skip
        t = run3.results["two_down"]
        assert not t.get("failed"), t
        tc = t["cluster"]
        assert tc["reachable"] == 1 and tc["quorum_size"] == 2
        assert tc["has_quorum"] is False and tc["leader"] is None
        assert tc["healthy"] is False
        assert sorted(tc["unreachable"]) == sorted(
            cluster.members[i].endpoint for i in (killed, second)
        )
        alive = t["members"][cluster.members.index(last)]
        assert alive["reachable"] is True and alive["leader"] is None
        assert alive["health"] is False and alive["has_leader"] == 0
        assert "etcdserver: no leader" in alive["errors"]
        for i in (killed, second):
            m = t["members"][i]
            assert m["reachable"] is False and "connection refused" in m["error"]
            assert m["name"] == cluster.members[i].name
        assert run3.seconds["two_down"] < 10
    finally:
        hang.close()
        html.close()
        for s in greys:
            s.close()
