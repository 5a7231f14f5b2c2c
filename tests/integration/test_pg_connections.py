"""firebreak.incident.pg_connections against a real PostgreSQL 15 server, through playbooks.

The test opens many sessions with distinct application_name values (idle, idle in
transaction, active in pg_sleep, a lock holder and its blocked waiter, a superuser session,
a walsender), runs the module in playbooks through firebreak.runner (ansible-runner, see
playbook_harness), and checks what it returned against what pg_stat_activity shows from the
test's own (superuser) control connection.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from fixtures_pg import (
    APP_PASSWORD,
    MAX_CONNECTIONS,
    SUPERUSER_PASSWORD,
    free_port,
    pg_server,  # noqa: F401  (fixture)
)
from playbook_harness import run_tasks

pytestmark = pytest.mark.lab

MODULE = "firebreak.incident.pg_connections"
OLD_AGE = 3.5  # seconds the "old" sessions sit idle before the module runs
OLDER_THAN = "3s"


class Sessions:
    """The sessions the test opens; every one is closed in close()."""

    def __init__(self, server):
        self.server = server
        self.conns: dict[str, object] = {}
        self.raw: list = []
        self.stop = threading.Event()
        self.pinger: threading.Thread | None = None

    def open(self, app, user="app_user", password=APP_PASSWORD, **kw):
        conn = self.server.connect(user, password, application_name=app, **kw)
        self.conns[app] = conn
        return conn

    def pid(self, app) -> int:
        return self.conns[app].info.backend_pid

    def send_nowait(self, app, sql: str) -> None:
        """Start a statement and return at once (the session stays active)."""
        pgconn = self.conns[app].pgconn
        pgconn.send_query(sql.encode())
        pgconn.flush()

    def keep_fresh(self, apps):
        """Keep these idle sessions' state_change recent (so they are never 'old')."""

        def loop():
            while not self.stop.is_set():
                for app in apps:
                    with contextlib.suppress(Exception):
                        self.conns[app].execute("SELECT 1")
                self.stop.wait(0.2)

        self.pinger = threading.Thread(target=loop, daemon=True)
        self.pinger.start()

    def close(self):
        self.stop.set()
        if self.pinger:
            self.pinger.join(5)
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


def alive_by_app(control) -> dict[str, int]:
    rows = control.execute(
        "SELECT application_name, pid FROM pg_stat_activity WHERE application_name LIKE 'fb-%'"
    ).fetchall()
    return {app: pid for app, pid in rows}


def test_pg_connections(pg_server, tmp_path):  # noqa: F811
    server = pg_server
    sessions = Sessions(server)
    control = server.connect(application_name="control")  # superuser: never a target
    try:
        # --- sessions that become "old" ------------------------------------------------
        for i in (1, 2, 3):
            sessions.open(f"fb-idle-old-{i}")
        sessions.open("fb-super-idle", user="postgres", password=SUPERUSER_PASSWORD)
        sessions.open("fb-walsender", user="replicator", password=APP_PASSWORD, replication="true")
        for i in (1, 2):
            c = sessions.open(f"fb-iit-{i}", autocommit=False)
            c.execute("SELECT 1")  # opens the transaction, then idles in it
        holder = sessions.open("fb-lock-holder", autocommit=False)
        holder.execute("LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE")
        sessions.open("fb-lock-waiter")
        sessions.send_nowait("fb-lock-waiter", "SELECT count(*) FROM locked_t")
        for i in (1, 2, 3):
            sessions.open(f"fb-active-{i}")
            sessions.send_nowait(f"fb-active-{i}", "SELECT pg_sleep(120)")
        time.sleep(OLD_AGE)
        # --- sessions kept fresh (idle, but never older than 0.2 s) ---------------------
        for i in (1, 2):
            sessions.open(f"fb-idle-new-{i}")
        sessions.keep_fresh(["fb-idle-new-1", "fb-idle-new-2"])

        before = alive_by_app(control)
        assert len(before) == 14, " ".join(sorted(before))
        background = {
            pid
            for (pid,) in control.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
            ).fetchall()
        }
        assert sessions.pid("fb-walsender") in background

        login = {
            "login_host": "127.0.0.1",
            "login_port": server.port,
            "login_user": "postgres",
            "login_password": SUPERUSER_PASSWORD,
        }
        over_socket = {
            "login_unix_socket": str(server.socket_dir),
            "login_port": server.port,
            "login_user": "postgres",
        }
        idle_old = {"action": "terminate", "states": ["idle"], "older_than": OLDER_THAN}

        # --- run 1: reading, check mode, refusals --------------------------------------
        run1 = run_tasks(
            [
                {"name": "report", "module": MODULE,
                 "args": {**over_socket, "long_idle_after": OLDER_THAN}},
                {"name": "check", "module": MODULE, "args": {**login, **idle_old},
                 "check_mode": True},
                {"name": "check_su", "module": MODULE, "check_mode": True,
                 "args": {**login, "action": "terminate", "states": ["idle"],
                          "include_superusers": True,
                          "applications": ["fb-super-idle", "fb-walsender", "fb-idle-old-1"]}},
                {"name": "check_all", "module": MODULE, "check_mode": True,
                 "args": {**login, "action": "terminate", "older_than": 0,
                          "include_superusers": True}},
                {"name": "empty_filter", "module": MODULE,
                 "args": {**login, "action": "terminate"}},
                {"name": "exclude_only", "module": MODULE,
                 "args": {**login, "action": "terminate", "exclude_users": ["x"]}},
                {"name": "filters_on_report", "module": MODULE,
                 "args": {**login, "states": ["idle"]}},
                {"name": "bad_password", "module": MODULE,
                 "args": {**login, "login_password": "Wrong-Pass-9931"}},
                {"name": "unreachable", "module": MODULE,
                 "args": {**login, "login_port": free_port(), "connect_timeout": 3}},
                {"name": "bad_duration", "module": MODULE,
                 "args": {**login, **idle_old, "older_than": "ten minutes"}},
                {"name": "negative_duration", "module": MODULE,
                 "args": {**login, **idle_old, "older_than": -5}},
                {"name": "negative_timeout", "module": MODULE,
                 "args": {**login, "connect_timeout": -1}},
                {"name": "limit_not_int", "module": MODULE,
                 "args": {**login, **idle_old, "limit": "many"}},
                {"name": "unknown_state", "module": MODULE,
                 "args": {**login, "action": "terminate", "states": ["sleeping"]}},
            ],
            tmp_path,
        )  # fmt: skip
        r = run1.results
        after_check = alive_by_app(control)
        assert after_check == before, "check mode must end nothing"

        rep = r["report"]
        assert not rep.get("failed"), rep
        assert rep["changed"] is False
        assert rep["max_connections"] == MAX_CONNECTIONS
        assert rep["superuser_reserved_connections"] == 3
        assert rep["reserved_connections"] is None  # PostgreSQL 15
        assert rep["usable_connections"] == MAX_CONNECTIONS - 3
        # 13 fb-* client sessions (the walsender is not one) + control + the module's own
        assert rep["used"] == 15, rep["by_application"]
        assert rep["available"] == MAX_CONNECTIONS - 3 - 15
        assert rep["utilisation_percent"] == round(100 * 15 / 37, 1)
        assert rep["by_backend_type"]["walsender"] == 1
        assert "fb-walsender" not in rep["by_application"]
        for app in ("fb-idle-old-1", "fb-iit-1", "fb-active-1", "fb-lock-waiter"):
            assert rep["by_application"][app] == 1
        assert rep["by_state"]["idle in transaction"] == 3
        assert rep["by_state"]["active"] >= 5  # 3 pg_sleep, the waiter, the module itself
        assert rep["by_user"]["app_user"] == 12
        assert rep["idle_in_transaction"]["count"] == 3
        assert rep["idle_in_transaction"]["oldest_age"] >= OLD_AGE - 0.5
        blocked = {b["pid"]: b for b in rep["blocked"]}
        assert set(blocked) == {sessions.pid("fb-lock-waiter")}
        assert blocked[sessions.pid("fb-lock-waiter")]["blocked_by"] == [
            sessions.pid("fb-lock-holder")
        ]
        long_idle = {s["application"] for s in rep["long_idle"]}
        assert {"fb-idle-old-1", "fb-idle-old-2", "fb-idle-old-3", "fb-iit-1", "fb-iit-2",
                "fb-lock-holder", "fb-super-idle"} <= long_idle  # fmt: skip
        assert not long_idle & {"fb-idle-new-1", "fb-idle-new-2", "fb-walsender"}

        chk = r["check"]
        assert not chk.get("failed"), chk
        assert chk["changed"] is True  # the prediction; nothing was ended (checked above)
        assert chk["terminated"] == []
        predicted = {s["pid"] for s in chk["would_terminate"]}
        expected = {sessions.pid(f"fb-idle-old-{i}") for i in (1, 2, 3)}
        assert predicted == expected, chk["would_terminate"]
        assert len(chk["queries"]) == 3 and all("pg_terminate_backend" in q for q in chk["queries"])
        assert all(s["state"] == "idle" and s["age"] > 3 for s in chk["would_terminate"])
        ages = [s["age"] for s in chk["would_terminate"]]
        assert ages == sorted(ages, reverse=True), "oldest first"

        su = r["check_su"]
        assert {s["application"] for s in su["would_terminate"]} == {
            "fb-super-idle", "fb-idle-old-1"}  # fmt: skip

        every = r["check_all"]
        pids = {s["pid"] for s in every["would_terminate"]}
        assert every["own_pid"] not in pids
        assert not pids & background, "walsenders and background workers are never targets"
        assert sessions.pid("fb-super-idle") in pids  # superusers included when asked
        assert {s["application"] for s in every["would_terminate"]} >= set(before) - {
            "fb-walsender"}  # fmt: skip

        for name in ("empty_filter", "exclude_only"):
            assert r[name]["failed"] is True
            assert "empty filter never means all sessions" in r[name]["msg"]
        assert "only used with action=terminate" in r["filters_on_report"]["msg"]

        bad = r["bad_password"]
        assert bad["failed"] is True
        assert "password authentication failed" in bad["msg"], bad["msg"]
        assert f"127.0.0.1:{server.port}" in bad["msg"]
        assert "password authentication failed" in run1.output  # the events are in there
        assert "Wrong-Pass-9931" not in run1.output + str(r)  # events, their stdout, the command

        unr = r["unreachable"]
        assert unr["failed"] is True
        assert "unable to connect to PostgreSQL at 127.0.0.1:" in unr["msg"]
        assert "refused" in unr["msg"].lower(), unr["msg"]

        assert "older_than" in r["bad_duration"]["msg"] and "10m" in r["bad_duration"]["msg"]
        assert "must not be negative" in r["negative_duration"]["msg"]
        assert "connect_timeout must be a positive" in r["negative_timeout"]["msg"]
        assert r["limit_not_int"]["failed"] is True and "limit" in r["limit_not_int"]["msg"]
        assert "sleeping" in r["unknown_state"]["msg"]
        assert alive_by_app(control) == before, "no failing call ended anything"

        # --- run 2: the real thing, then again ----------------------------------------
        run2 = run_tasks(
            [
                {"name": "terminate", "module": MODULE, "args": {**login, **idle_old}},
                {"name": "again", "module": MODULE, "args": {**login, **idle_old}},
                {"name": "iit_limit", "module": MODULE,
                 "args": {**login, "action": "terminate", "states": ["idle in transaction"],
                          "applications": ["fb-iit-1", "fb-iit-2"], "limit": 1}},
            ],
            tmp_path,
        )  # fmt: skip
        r = run2.results
        term = r["terminate"]
        assert not term.get("failed"), term
        assert term["changed"] is True
        assert {s["pid"] for s in term["terminated"]} == predicted
        assert term["would_terminate"] == [] and term["already_gone"] == []
        assert len(term["queries"]) == 3
        again = r["again"]
        assert again["changed"] is False and again["terminated"] == [], again
        lim = r["iit_limit"]
        assert [s["application"] for s in lim["terminated"]] == ["fb-iit-1"], lim

        after = alive_by_app(control)
        gone = {app for app in before if app not in after}
        assert gone == {"fb-idle-old-1", "fb-idle-old-2", "fb-idle-old-3", "fb-iit-1"}
        assert {app: before[app] for app in after} == after, "survivors are the same sessions"
    finally:
        sessions.close()
        control.close()


def test_connect_error_never_shows_password(pg_server):  # noqa: F811
    """The message built by module_utils itself (before Ansible's no_log masking)."""
    from ansible_collections.firebreak.incident.plugins.module_utils import postgres

    params = {
        "login_host": "127.0.0.1",
        "login_port": pg_server.port,
        "login_user": "app_user",
        "login_password": "Wrong-Pass-1234",
        "login_db": "postgres",
        "ssl_mode": "disable",
        "connect_timeout": 3,
    }
    with pytest.raises(postgres.PgConnectionError) as err:
        postgres.connect(params)
    msg = str(err.value)
    assert "password authentication failed" in msg
    assert "Wrong-Pass-1234" not in msg
    params["login_password"] = APP_PASSWORD
    conn = postgres.connect(params)
    try:
        row = conn.execute("SELECT current_setting('application_name') AS a").fetchone()
        assert row["a"] == postgres.APPLICATION_NAME
    finally:
        conn.close()
