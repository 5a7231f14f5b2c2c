"""firebreak.incident.pg_connections against a real PostgreSQL 15 server, through playbooks.

The test opens many sessions with distinct application_name values (idle, idle in
transaction, active in pg_sleep, a lock holder and its blocked waiter, a superuser session,
a walsender), runs the module in playbooks through firebreak.runner (ansible-runner, see
playbook_harness), and checks what it returned against what pg_stat_activity shows from the
test's own (superuser) control connection. The server listens on 127.0.64.1 (this file's
``pg_host``); the stalling listeners of the bounded-I/O test on 127.0.64.2 and .3.
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
    StallingServer,
    free_port,
    pg_server,  # noqa: F401  (fixture)
)
from playbook_harness import run_tasks

pytestmark = pytest.mark.lab

MODULE = "firebreak.incident.pg_connections"
OLD_AGE = 3.5  # seconds the "old" sessions sit idle before the module runs
OLDER_THAN = "3s"
READ_GRACE = 2  # module_utils/postgres.py: a read may take statement_timeout + this
# what quorum_guard's quorum_guard_result carries (the module refuses to end sessions without
# a guard decision or the operator's force)
ALLOWED = {"decision": "allow", "allowed": True, "action": "end sessions", "message": "allowed"}
GUARD = {"guard_decision": ALLOWED}


@pytest.fixture(scope="module")
def pg_host():
    """This file's loopback address for the server (fixtures_pg.pg_server listens on it)."""
    return "127.0.64.1"


def superuser_login(server) -> dict:
    return {
        "login_host": server.host,
        "login_port": server.port,
        "login_user": "postgres",
        "login_password": SUPERUSER_PASSWORD,
    }


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


def alive_by_app(control, prefix: str = "fb-") -> dict[str, int]:
    rows = control.execute(
        "SELECT application_name, pid FROM pg_stat_activity WHERE application_name LIKE %s",
        (prefix + "%",),
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

        login = superuser_login(server)
        over_socket = {
            "login_unix_socket": str(server.socket_dir),
            "login_port": server.port,
            "login_user": "postgres",
        }
        idle_old = {"action": "terminate", "states": ["idle"], "older_than": OLDER_THAN, **GUARD}

        # --- run 1: reading, check mode, refusals --------------------------------------
        run1 = run_tasks(
            [
                {"name": "report", "module": MODULE,
                 "args": {**over_socket, "long_idle_after": OLDER_THAN}},
                {"name": "check", "module": MODULE, "args": {**login, **idle_old},
                 "check_mode": True},
                {"name": "check_su", "module": MODULE, "check_mode": True,
                 "args": {**login, "action": "terminate", "states": ["idle"], **GUARD,
                          "include_superusers": True,
                          "applications": ["fb-super-idle", "fb-walsender", "fb-idle-old-1"]}},
                {"name": "check_all", "module": MODULE, "check_mode": True,
                 "args": {**login, "action": "terminate", "older_than": OLDER_THAN, **GUARD,
                          "include_superusers": True, "confirm_terminate_active": True,
                          "limit": 100}},
                {"name": "empty_filter", "module": MODULE,
                 "args": {**login, "action": "terminate"}},
                {"name": "exclude_only", "module": MODULE,
                 "args": {**login, "action": "terminate", "exclude_users": ["x"]}},
                {"name": "filters_on_report", "module": MODULE,
                 "args": {**login, "states": ["idle"]}},
                {"name": "bad_password", "module": MODULE,
                 "args": {**login, "login_password": "Wrong-Pass-9931"}},
                {"name": "unreachable", "module": MODULE,
                 "args": {**login, "login_port": free_port(server.host), "connect_timeout": 3}},
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
        assert {s["application"] for s in every["would_terminate"]} - {"control"} == set(
            before) - {"fb-walsender", "fb-idle-new-1", "fb-idle-new-2"}  # fmt: skip

        for name in ("empty_filter", "exclude_only"):
            assert r[name]["failed"] is True
            assert "empty filter never means all sessions" in r[name]["msg"]
        assert "only used with action=terminate" in r["filters_on_report"]["msg"]

        bad = r["bad_password"]
        assert bad["failed"] is True
        assert "password authentication failed" in bad["msg"], bad["msg"]
        assert f"{server.host}:{server.port}" in bad["msg"]
        assert "password authentication failed" in run1.output  # the events are in there
        assert "Wrong-Pass-9931" not in run1.output + str(r)  # events, their stdout, the command

        unr = r["unreachable"]
        assert unr["failed"] is True
        assert f"unable to connect to PostgreSQL at {server.host}:" in unr["msg"]
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
                          "applications": ["fb-iit-1", "fb-iit-2"], "limit": 1, **GUARD}},
                {"name": "iit_oldest", "module": MODULE,
                 "args": {**login, "action": "terminate", "states": ["idle in transaction"],
                          "applications": ["fb-iit-1", "fb-iit-2"], "limit": 1,
                          "over_limit": "oldest", **GUARD}},
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
        assert lim["failed"] is True and lim["terminated"] == [] and lim["matched"] == 2, lim
        assert "2 sessions match, more than limit=1: none terminated" in lim["msg"]
        oldest = r["iit_oldest"]
        assert [s["application"] for s in oldest["terminated"]] == ["fb-iit-1"], oldest
        assert oldest["matched"] == 2

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
        "login_host": pg_server.host,
        "login_port": pg_server.port,
        "login_user": "app_user",
        "login_password": "Wrong-Pass-1234",
        "login_db": "postgres",
        "ssl_mode": "disable",
        "connect_timeout": 3,
        "statement_timeout": 5,
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


def test_running_queries_need_confirmation_and_a_limit(pg_server, tmp_path):  # noqa: F811
    """Seed 004 ends active queries older than 5 minutes: here only when confirmed and bounded."""
    server = pg_server
    sessions = Sessions(server)
    control = server.connect(application_name="control")
    apps = ["fb-q-1", "fb-q-2", "fb-q-idle"]
    try:
        for app in ("fb-q-1", "fb-q-2"):
            sessions.open(app)
            sessions.send_nowait(app, "SELECT pg_sleep(120)")
        sessions.open("fb-q-idle")
        time.sleep(OLD_AGE)
        before = alive_by_app(control, "fb-q-")
        assert set(before) == set(apps)
        login = superuser_login(server)
        active = {"action": "terminate", "states": ["active"], "older_than": OLDER_THAN,
                  "applications": apps, **GUARD}  # fmt: skip
        confirmed = {**active, "confirm_terminate_active": True}

        run1 = run_tasks(
            [
                {"name": "no_confirm", "module": MODULE, "args": {**login, **active, "limit": 5}},
                {"name": "no_limit", "module": MODULE, "args": {**login, **confirmed}},
                {"name": "zero_age", "module": MODULE,
                 "args": {**login, **active, "states": ["idle"], "older_than": 0}},
                {"name": "zero_age_text", "module": MODULE,
                 "args": {**login, **active, "states": ["idle"], "older_than": "0s"}},
                {"name": "over_limit", "module": MODULE,
                 "args": {**login, **confirmed, "limit": 1}},
                {"name": "preview", "module": MODULE, "check_mode": True,
                 "args": {**login, **confirmed, "limit": 2}},
                {"name": "any_state", "module": MODULE,
                 "args": {**login, "action": "terminate", "older_than": OLDER_THAN,
                          "applications": apps, **GUARD}},
            ],
            tmp_path,
        )  # fmt: skip
        r = run1.results
        after1 = alive_by_app(control, "fb-q-")
        for name in ("no_confirm", "no_limit", "zero_age", "zero_age_text", "over_limit"):
            assert r[name]["failed"] is True, (name, r[name])
            assert not r[name].get("terminated"), (name, r[name])
        assert "confirm_terminate_active=true" in r["no_confirm"]["msg"], r["no_confirm"]["msg"]
        assert "needs a limit" in r["no_limit"]["msg"], r["no_limit"]["msg"]
        for name in ("zero_age", "zero_age_text"):
            assert "older_than must be more than 0" in r[name]["msg"], r[name]["msg"]
        over = r["over_limit"]
        assert over["matched"] == 2 and "2 sessions match, more than limit=1" in over["msg"]
        pre = r["preview"]
        assert not pre.get("failed"), pre
        assert {s["application"] for s in pre["would_terminate"]} == {"fb-q-1", "fb-q-2"}
        for s in pre["would_terminate"]:
            assert s["state"] == "active" and s["age_from"] == "query_start" and s["age"] > 3
        # without confirmation a filter that names no state spares the running queries
        anys = r["any_state"]
        assert not anys.get("failed"), anys
        assert [s["application"] for s in anys["terminated"]] == ["fb-q-idle"], anys
        assert anys["terminated"][0]["age_from"] == "state_change"
        assert after1 == {app: before[app] for app in ("fb-q-1", "fb-q-2")}

        run2 = run_tasks(
            [{"name": "confirmed", "module": MODULE, "args": {**login, **confirmed, "limit": 2}}],
            tmp_path,
        )
        done = run2.results["confirmed"]
        assert not done.get("failed"), done
        assert done["changed"] is True and done["matched"] == 2
        assert {s["pid"] for s in done["terminated"]} == {before["fb-q-1"], before["fb-q-2"]}
        assert alive_by_app(control, "fb-q-") == {}
    finally:
        sessions.close()
        control.close()


def test_terminate_refuses_without_a_guard_decision_and_beyond_the_default_bound(
    pg_server,  # noqa: F811
    tmp_path,
):
    """Issue 11: pg_connections action=terminate on its own ended idle sessions with no guard
    decision and no bound. Each deny path ends nothing; the default bound (10) refuses 11
    idle matches without a limit; a guard's allow and an operator's force end them, and the
    result records which."""
    server = pg_server
    sessions = Sessions(server)
    control = server.connect(application_name="control")
    apps = [f"fb-g-{k:02d}" for k in range(11)]
    try:
        for app in apps:
            sessions.open(app)
        time.sleep(OLD_AGE)
        before = alive_by_app(control, "fb-g-")
        assert set(before) == set(apps)
        login = superuser_login(server)
        idle = {"action": "terminate", "states": ["idle"], "older_than": OLDER_THAN,
                "applications": apps}  # fmt: skip
        deny = {"decision": "deny", "allowed": False, "message": "quorum_guard refuses: 1 of 3"}
        run1 = run_tasks(
            [
                {"name": "no_guard", "module": MODULE, "args": {**login, **idle, "limit": 20}},
                {"name": "no_guard_check", "module": MODULE, "check_mode": True,
                 "args": {**login, **idle, "limit": 20}},
                {"name": "denied", "module": MODULE,
                 "args": {**login, **idle, "limit": 20, "guard_decision": deny}},
                {"name": "not_a_decision", "module": MODULE,
                 "args": {**login, **idle, "limit": 20, "guard_decision": {"ok": True}}},
                {"name": "override_no_reason", "module": MODULE,
                 "args": {**login, **idle, "limit": 20,
                          "guard_decision": {"decision": "override", "override": {}}}},
                {"name": "force_no_reason", "module": MODULE,
                 "args": {**login, **idle, "limit": 20, "force": True}},
                {"name": "force_and_deny", "module": MODULE,
                 "args": {**login, **idle, "limit": 20, "force": True, "force_reason": "x",
                          "guard_decision": deny}},
                {"name": "guard_on_report", "module": MODULE,
                 "args": {**login, "guard_decision": ALLOWED}},
                {"name": "default_bound", "module": MODULE, "args": {**login, **idle, **GUARD}},
            ],
            tmp_path,
        )  # fmt: skip
        r = run1.results
        assert alive_by_app(control, "fb-g-") == before, "no refused call ended anything"
        for name, text in [
            ("no_guard", "refusing to act without a guard decision"),
            ("no_guard_check", "refusing to act without a guard decision"),
            ("denied", "the guard denied: quorum_guard refuses: 1 of 3"),
            ("not_a_decision", "guard_decision.decision must be allow or override"),
            ("override_no_reason", "an override without its reason"),
            ("force_no_reason", "force=true needs force_reason"),
            ("force_and_deny", "not both"),
            ("guard_on_report", "for action=terminate only"),
            ("default_bound", "11 sessions match, more than limit=10 (the default"),
        ]:
            assert r[name]["failed"] is True, (name, r[name])
            assert text in r[name]["msg"], (name, r[name]["msg"])
            assert not r[name].get("terminated"), (name, r[name])
        assert r["default_bound"]["matched"] == 11

        run2 = run_tasks(
            [
                {"name": "allowed", "module": MODULE,
                 "args": {**login, **idle, **GUARD, "limit": 5, "over_limit": "oldest"}},
                {"name": "forced", "module": MODULE,
                 "args": {**login, **idle, "limit": 6, "force": True,
                          "force_reason": "INC-1: leaked idle connections"}},
            ],
            tmp_path,
        )  # fmt: skip
        allowed, forced = run2.results["allowed"], run2.results["forced"]
        assert not allowed.get("failed") and len(allowed["terminated"]) == 5, allowed
        assert allowed["guard"]["decision"] == "allow" and allowed["guard"]["source"] == "guard"
        assert allowed["guard"]["message"] == "allowed"
        assert not forced.get("failed") and len(forced["terminated"]) == 6, forced
        assert forced["guard"] == {"decision": "force", "source": "operator",
                                   "reason": "INC-1: leaked idle connections"}  # fmt: skip
        assert alive_by_app(control, "fb-g-") == {}
    finally:
        sessions.close()
        control.close()


def test_old_idle_sessions_end_young_ones_stay_open_transaction_rolls_back(pg_server, tmp_path):  # noqa: F811
    server = pg_server
    sessions = Sessions(server)
    control = server.connect(application_name="control")
    try:
        control.execute("CREATE TABLE rb_t (note text)")
        control.execute("GRANT SELECT, INSERT ON rb_t TO app_user")
        txn = sessions.open("fb-rb-txn", autocommit=False)
        txn.execute("INSERT INTO rb_t VALUES ('committed')")
        txn.commit()
        txn.execute("INSERT INTO rb_t VALUES ('uncommitted')")  # left open: idle in transaction
        sessions.open("fb-rb-idle-old")
        time.sleep(OLD_AGE)
        sessions.open("fb-rb-idle-new")
        sessions.keep_fresh(["fb-rb-idle-new"])
        before = alive_by_app(control, "fb-rb-")
        assert set(before) == {"fb-rb-txn", "fb-rb-idle-old", "fb-rb-idle-new"}

        run = run_tasks(
            [{"name": "old_idle", "module": MODULE,
              "args": {**superuser_login(server), "action": "terminate",
                       "states": ["idle", "idle in transaction"], "older_than": OLDER_THAN,
                       "applications": list(before), **GUARD}}],
            tmp_path,
        )  # fmt: skip
        res = run.results["old_idle"]
        assert not res.get("failed"), res
        assert {s["application"] for s in res["terminated"]} == {"fb-rb-txn", "fb-rb-idle-old"}
        assert alive_by_app(control, "fb-rb-") == {"fb-rb-idle-new": before["fb-rb-idle-new"]}
        notes = [n for (n,) in control.execute("SELECT note FROM rb_t ORDER BY note").fetchall()]
        assert notes == ["committed"], "the terminated session's open transaction rolled back"
    finally:
        sessions.close()
        control.execute("DROP TABLE IF EXISTS rb_t")
        control.close()


def test_statement_timeout_ends_a_read_the_server_blocks(pg_server, tmp_path):  # noqa: F811
    """A real server that accepts the login and then makes the module's read wait on a lock."""
    server = pg_server
    locker = server.connect(application_name="fb-locker", autocommit=False)
    try:
        locker.execute("LOCK TABLE pg_settings IN ACCESS EXCLUSIVE MODE")  # the module reads it
        run = run_tasks(
            [{"name": "blocked", "module": MODULE, "timed": True,
              "args": {**superuser_login(server), "statement_timeout": 1}}],
            tmp_path,
            timeout=120,
        )  # fmt: skip
    finally:
        locker.rollback()
        locker.close()
    blocked = run.results["blocked"]
    assert blocked["failed"] is True
    assert "canceling statement due to statement timeout" in blocked["msg"], blocked["msg"]
    assert f"{server.host}:{server.port}" in blocked["msg"]
    # bound: 3 x (statement_timeout + READ_GRACE), margin for the module's start on a busy host
    assert run.seconds["blocked"] < 3 * (1 + READ_GRACE), run.seconds["blocked"]


def test_servers_that_accept_and_stall_fail_within_the_bound(tmp_path):
    secret = "Stall-Secret-3141"
    with (
        StallingServer("127.0.64.2") as silent,
        StallingServer("127.0.64.3", login=True) as stalled,
    ):
        run = run_tasks(
            [
                {"name": "silent", "module": MODULE, "timed": True,
                 "args": {"login_host": silent.endpoint[0], "login_port": silent.endpoint[1],
                          "login_password": secret, "connect_timeout": 3}},
                {"name": "stalled", "module": MODULE, "timed": True,
                 "args": {"login_host": stalled.endpoint[0], "login_port": stalled.endpoint[1],
                          "login_password": secret, "connect_timeout": 3,
                          "statement_timeout": 2}},
            ],
            tmp_path,
            timeout=120,
        )  # fmt: skip
    r = run.results
    host, port = silent.endpoint
    assert r["silent"]["failed"] is True
    assert f"unable to connect to PostgreSQL at {host}:{port}" in r["silent"]["msg"]
    assert "timeout" in r["silent"]["msg"], r["silent"]["msg"]
    # bounds: 3 x the configured timeout, margin for the module's start (about 2 s here)
    assert run.seconds["silent"] < 3 * 3, run.seconds["silent"]  # connect_timeout
    host, port = stalled.endpoint
    assert r["stalled"]["failed"] is True
    assert f"PostgreSQL at {host}:{port}" in r["stalled"]["msg"], r["stalled"]
    assert f"did not answer within {2 + READ_GRACE} s" in r["stalled"]["msg"], r["stalled"]
    assert run.seconds["stalled"] < 3 * (2 + READ_GRACE), run.seconds["stalled"]
    assert secret not in run.output + str(r)
