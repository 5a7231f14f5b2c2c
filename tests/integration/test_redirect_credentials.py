"""Credentials and redirects, through real module runs (vsr_metrics, raft_status).

Three real HTTP servers on this test's net, 127.0.62.x: ``origin`` (http, 127.0.62.1) is the
endpoint the module is given, with a bearer token or a basic-auth password; it redirects
(301, 302, 307, 308) to ``other`` (http, 127.0.62.2), or to itself; ``tls`` (https, 127.0.62.1)
redirects to ``other`` over plain http. Every server records the Authorization header of
every request it received. What is wanted, as an SRE expects it:

- a redirect to another host (or port, or scheme) is followed without the credentials;
- a redirect on the same origin keeps them (and the endpoint still authenticates);
- https to http is refused, with a clear error, and nothing is sent to the http URL;
- no credential is in what the module returned, nor in anything the run left.
"""

from __future__ import annotations

import base64
import json
import ssl
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from playbook_harness import run_tasks
from tls_certs import self_signed

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
METRICS = (ROOT / "tests/unit/fixtures/exposition/vsr/healthy/replica-1.prom").read_bytes()
ORIGIN_IP, OTHER_IP = "127.0.62.1", "127.0.62.2"
CODES = (301, 302, 307, 308)
USER = "scraper"
PASSWORD = f"pw-{uuid.uuid4().hex}"
TOKEN = f"tok-{uuid.uuid4().hex}"
AUTH_ARGS = {
    "basic": {"url_username": USER, "url_password": PASSWORD},
    "bearer": {"bearer_token": TOKEN},
}
EXPECTED_HEADER = {
    "basic": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    "bearer": f"Bearer {TOKEN}",
}


class _Handler(BaseHTTPRequestHandler):
    """Records (path, Authorization) and answers what the server's ``route`` says."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self.headers.get("Authorization")
        with self.server.lock:
            self.server.seen.append((self.path, auth))
        status, location = self.server.route(self.path, auth)
        body = METRICS if status == 200 else b""
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer


def _serve(host, route, tls=None):
    httpd = ThreadingHTTPServer((host, 0), _Handler)
    httpd.daemon_threads = True
    httpd.route, httpd.seen, httpd.lock = route, [], threading.Lock()
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def _seen(httpd, prefix):
    """The Authorization headers of the requests whose path starts with ``prefix``."""
    with httpd.lock:
        return [auth for path, auth in httpd.seen if path.startswith(prefix)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    other = _serve(OTHER_IP, lambda path, auth: (200, None))  # answers anyone
    other_url = f"http://{OTHER_IP}:{other.server_address[1]}"

    def route(path, auth):
        kind, _, rest = path.strip("/").partition("/")
        if kind == "cross":  # /cross/<code>/<case>: to the other host
            code = int(rest.split("/")[0])
            return code, f"{other_url}/landed/{rest}"
        if kind == "same":  # /same/<code>/<case>: to this origin's /auth/<case>
            code, case = rest.split("/")[:2]
            return int(code), f"/auth/{case}/metrics"
        if kind == "auth":  # answers only with the right credentials
            return (200, None) if auth == EXPECTED_HEADER[rest.split("/")[0]] else (401, None)
        if kind == "down":  # /down/<case>: from https to http
            return 302, f"{other_url}/downgraded/{rest}"
        if kind == "raft":  # raft_status's etcd API, POSTs included, sent to the other host
            return 307, f"{other_url}/landed/{path.strip('/')}"
        return 404, None

    origin = _serve(ORIGIN_IP, route)
    tmp = tmp_path_factory.mktemp("redirect-tls")
    cert, key = self_signed(tmp, ORIGIN_IP)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls = _serve(ORIGIN_IP, route, tls=context)
    try:
        yield {
            "origin": f"http://{ORIGIN_IP}:{origin.server_address[1]}",
            "tls": f"https://{ORIGIN_IP}:{tls.server_address[1]}",
            "ca": str(cert),
            "origin_server": origin,
            "other_server": other,
            "tls_server": tls,
        }
    finally:
        for httpd in (origin, tls, other):
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture(scope="module")
def play(servers, tmp_path_factory):
    origin, tls = servers["origin"], servers["tls"]
    tasks = []
    for case, auth in AUTH_ARGS.items():
        for code in CODES:
            for kind in ("cross", "same"):
                tasks.append(
                    {
                        "name": f"{kind}_{code}_{case}",
                        "args": {"endpoints": [f"{origin}/{kind}/{code}/{case}"], **auth},
                    }
                )
        tls_args = {"ca_path": servers["ca"], **auth}
        tasks += [
            {"name": f"down_{case}", "args": {"endpoints": [f"{tls}/down/{case}"], **tls_args}},
            {
                "name": f"tls_same_{case}",
                "args": {"endpoints": [f"{tls}/same/302/{case}"], **tls_args},
            },
        ]
    tasks.append(
        {
            "name": "raft_cross_bearer",
            "module": "firebreak.incident.raft_status",
            "args": {"endpoints": [f"{origin}/raft"], "flavor": "etcd", "bearer_token": TOKEN},
        }
    )
    for task in tasks:
        task["args"]["timeout"] = 3
    return run_tasks(
        tasks, tmp_path_factory.mktemp("redirect-play"), module="firebreak.incident.vsr_metrics"
    )


@pytest.fixture(scope="module")
def results(play):
    return play.results


@pytest.mark.parametrize("case", sorted(AUTH_ARGS))
@pytest.mark.parametrize("code", CODES)
def test_a_redirect_to_another_host_drops_the_credentials(servers, results, code, case):
    received = _seen(servers["other_server"], f"/landed/{code}/{case}")
    assert received, "the redirect was not followed to the other host"
    assert received == [None] * len(received), (
        f"{OTHER_IP} received the {case} credentials after a {code} from {ORIGIN_IP}"
    )
    replica = results[f"cross_{code}_{case}"]["replicas"][0]
    assert replica["reachable"] is True, replica["error"]


@pytest.mark.parametrize("case", sorted(AUTH_ARGS))
@pytest.mark.parametrize("code", CODES)
def test_a_redirect_on_the_same_origin_keeps_the_credentials(servers, results, code, case):
    replica = results[f"same_{code}_{case}"]["replicas"][0]
    assert replica["reachable"] is True, replica["error"]
    assert EXPECTED_HEADER[case] in _seen(servers["origin_server"], f"/auth/{case}/")


@pytest.mark.parametrize("case", sorted(AUTH_ARGS))
def test_https_to_http_is_refused_and_nothing_is_sent(servers, results, case):
    assert _seen(servers["other_server"], f"/downgraded/{case}") == []
    replica = results[f"down_{case}"]["replicas"][0]
    assert replica["reachable"] is False
    assert "refused: a redirect from https to http" in replica["error"], replica["error"]
    # the same server, redirecting on its own https origin, works and authenticates
    same = results[f"tls_same_{case}"]["replicas"][0]
    assert same["reachable"] is True, same["error"]
    assert EXPECTED_HEADER[case] in _seen(servers["tls_server"], f"/auth/{case}/")


def test_raft_status_drops_the_token_on_a_cross_host_redirect(servers, results):
    received = _seen(servers["other_server"], "/landed/raft/")
    assert received, "raft_status's requests were not redirected"
    assert received == [None] * len(received)


def test_no_credential_in_results_or_in_what_the_run_left(play):
    secrets = [PASSWORD, TOKEN, *(h.split(" ", 1)[1] for h in EXPECTED_HEADER.values())]
    returned = json.dumps(play.results)
    assert "refused: a redirect from https to http" in returned  # the errors are in there
    for secret in secrets:
        assert secret not in returned
        assert secret not in play.output
