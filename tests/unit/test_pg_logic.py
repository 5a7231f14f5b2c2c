"""Pure logic of firebreak.incident.pg_connections (plugins/module_utils/postgres.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import (
    guard,
)
from ansible_collections.firebreak.incident.plugins.module_utils import (
    postgres as pg,
)

pytestmark = pytest.mark.unit

OWN = 100


def session(pid, state="idle", age=700.0, user="app", app="api", db="app", **kw):
    s = {
        "pid": pid,
        "user": user,
        "application": app,
        "database": db,
        "state": state,
        "backend_type": "client backend",
        "is_superuser": False,
        "age": age,
        "xact_age": None,
        "backend_age": age,
        "blocked_by": [],
    }
    s.update(kw)
    return s


SESSIONS = [
    session(OWN, state="active", age=0.0, user="postgres", app=pg.APPLICATION_NAME,
            is_superuser=True),
    session(1, age=900.0),
    session(2, age=601.0),
    session(3, age=599.0),  # too young for 10m
    session(4, age=3600.0, user="postgres", is_superuser=True),
    session(5, age=5000.0, backend_type="walsender", user="replicator"),
    session(6, state=None, age=None, backend_type="autovacuum launcher", user=None),
    session(7, state="idle in transaction", age=1200.0, xact_age=1300.0),
    session(8, state="active", age=800.0, app="batch", blocked_by=[7]),
    session(9, age=2000.0, user="migrator", app="flyway"),
    session(10, age=650.0, db="other"),
]  # fmt: skip


def pids(sessions):
    return [s["pid"] for s in sessions]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (600, 600.0),
        (0, 0.0),
        (1.5, 1.5),
        ("600", 600.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        (" 10M ", 600.0),
        ("1h 30m", 5400.0),
    ],
)
def test_parse_duration(value, seconds):
    assert pg.parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["ten minutes", "10x", "m10", "", "-5", -5, -0.1, True, None, "10m5", "1h-1m", [1]]
)
def test_parse_duration_rejects(value):
    with pytest.raises(pg.InvalidDuration):
        pg.parse_duration(value, "older_than")


def test_seed_003_idle_older_than_10_minutes():
    chosen = pg.select_sessions(SESSIONS, {"states": ["idle"], "older_than": "10m"}, OWN)
    # oldest first; 3 is too young, 4 superuser, 5 walsender, 7 not idle, 8 active
    assert pids(chosen) == [9, 1, 10, 2]


def test_older_than_is_strict_and_none_age_never_matches():
    s = [session(1, age=600.0), session(2, age=None, state=None)]
    assert pg.select_sessions(s, {"older_than": 600}, OWN) == []
    assert pids(pg.select_sessions(s, {"older_than": 599.9}, OWN)) == [1]


def test_filters_combine_with_and():
    f = {"states": ["idle"], "older_than": "10m", "databases": ["app"], "users": ["app"]}
    assert pids(pg.select_sessions(SESSIONS, f, OWN)) == [1, 2]
    assert pids(pg.select_sessions(SESSIONS, {"applications": ["flyway"]}, OWN)) == [9]
    f = {"states": ["idle"], "exclude_users": ["migrator"]}
    assert pids(pg.select_sessions(SESSIONS, f, OWN)) == [1, 10, 2, 3]


def test_more_matches_than_the_limit_ends_none_unless_oldest_is_asked():
    matched = pg.select_sessions(SESSIONS, {"states": ["idle"], "older_than": "10m"}, OWN)
    assert pids(matched) == [9, 1, 10, 2]  # every match, oldest first: the limit is not here
    with pytest.raises(pg.OverLimit, match="4 sessions match, more than limit=2: none"):
        pg.within_limit(matched, 2)
    assert pids(pg.within_limit(matched, 2, "oldest")) == [9, 1]
    assert pids(pg.within_limit(matched, 4)) == [9, 1, 10, 2]  # at the limit: all of them
    assert pids(pg.within_limit(matched, None)) == [9, 1, 10, 2]
    with pytest.raises(ValueError, match="limit must be 1 or more"):
        pg.select_sessions(SESSIONS, {"states": ["idle"], "limit": 0}, OWN)


def test_never_own_session_walsender_or_background_workers():
    everything = {"older_than": 0.1, "confirm_terminate_active": True, "limit": 100}
    for include_superusers in (False, True):
        chosen = pids(pg.select_sessions(SESSIONS, everything, OWN, include_superusers))
        assert OWN not in chosen
        assert 5 not in chosen and 6 not in chosen
    # even when the own session is named explicitly
    f = {"applications": [pg.APPLICATION_NAME]}
    assert pg.select_sessions(SESSIONS, f, OWN, include_superusers=True) == []


def test_superusers_only_when_asked():
    f = {"users": ["postgres"]}
    assert pg.select_sessions(SESSIONS, f, OWN) == []
    assert pids(pg.select_sessions(SESSIONS, f, OWN, include_superusers=True)) == [4]


@pytest.mark.parametrize(
    "filters",
    [{}, {"limit": 3}, {"exclude_users": ["x"]}, {"states": [], "users": []}, {"older_than": None}],
)
def test_empty_filter_never_means_all(filters):
    assert not pg.filters_given(filters)
    with pytest.raises(ValueError, match="empty filter never means all sessions"):
        pg.select_sessions(SESSIONS, filters, OWN)


def test_older_than_zero_is_a_filter():
    assert pg.filters_given({"older_than": 0})


@pytest.mark.parametrize("older_than", [0, "0", "0s", 0.0])
def test_terminate_needs_older_than_above_zero(older_than):
    problems = pg.terminate_problems({"states": ["idle"], "older_than": older_than})
    assert problems == [f"older_than must be more than 0 for action=terminate, got {older_than!r}"]
    with pytest.raises(ValueError, match="older_than must be more than 0"):
        pg.select_sessions(SESSIONS, {"states": ["idle"], "older_than": older_than}, OWN)


@pytest.mark.parametrize(
    ("filters", "problem"),
    [
        ({"states": ["active"]}, "needs confirm_terminate_active=true"),
        ({"states": ["idle", "fastpath function call"], "limit": 3},
         "needs confirm_terminate_active=true"),
        ({"states": ["active"], "confirm_terminate_active": True}, "needs a limit"),
        ({"users": ["app"], "confirm_terminate_active": True}, "needs a limit"),
        ({"states": ["active"], "confirm_terminate_active": True, "limit": 0},
         "limit must be 1 or more"),
        ({"states": ["idle"], "over_limit": "oldest"}, "over_limit=oldest needs a limit"),
        ({"states": ["idle"], "older_than": -1}, "must not be negative"),
    ],
)  # fmt: skip
def test_terminate_problems(filters, problem):
    problems = pg.terminate_problems(filters)
    assert len(problems) == 1 and problem in problems[0], problems
    with pytest.raises(ValueError, match=problem):
        pg.select_sessions(SESSIONS, filters, OWN)


def test_terminate_problems_none_for_a_bounded_confirmed_request():
    ok = {"states": ["active"], "older_than": "5m", "confirm_terminate_active": True, "limit": 5}
    assert pg.terminate_problems(ok) == []
    assert pg.terminate_problems({"states": ["idle"], "older_than": "10m"}) == []


def test_running_queries_only_with_confirmation():
    # 8 is active: a filter that does not name states never reaches it without confirmation
    assert pids(pg.select_sessions(SESSIONS, {"applications": ["batch"]}, OWN)) == []
    confirmed = {"applications": ["batch"], "confirm_terminate_active": True, "limit": 1}
    assert pids(pg.select_sessions(SESSIONS, confirmed, OWN)) == [8]
    assert "running a query" in pg.protection_reason(SESSIONS[8], OWN, False)
    assert pg.protection_reason(SESSIONS[8], OWN, False, include_active=True) is None


def test_age_of_running_queries_from_query_start_of_others_from_state_change():
    # seed 004: active older than 5 minutes by query_start; seed 003: idle by state_change
    active = pg.with_age({"state": "active", "state_age": 10.0, "query_age": 400.0})
    assert (active["age"], active["age_from"]) == (400.0, "query_start")
    fastpath = pg.with_age({"state": "fastpath function call", "state_age": 1.0, "query_age": 9.0})
    assert (fastpath["age"], fastpath["age_from"]) == (9.0, "query_start")
    for state in pg.IDLE_STATES:
        idle = pg.with_age({"state": state, "state_age": 700.0, "query_age": 900.0})
        assert (idle["age"], idle["age_from"]) == (700.0, "state_change")
    none = pg.with_age({"state": None, "state_age": None, "query_age": None})
    assert none["age"] is None and none["age_from"] is None
    assert pg.session_view(active)["age_from"] == "query_start"


def test_deadline_ends_a_read_that_never_returns():
    import socket

    a, b = socket.socketpair()  # nothing is ever written to b: a.recv() would wait forever
    try:
        with (
            pytest.raises(pg.PgTimeout, match=r"no answer from the server within 0\.2 s"),
            pg.deadline(0.2, "no answer from the server within 0.2 s"),
        ):
            a.recv(1)
        with pg.deadline(5, "unused"):
            b.sendall(b"x")
            assert a.recv(1) == b"x"  # a read that is answered is left alone
    finally:
        a.close()
        b.close()


def test_protection_reasons():
    assert pg.protection_reason(SESSIONS[0], OWN, True) == "own session"
    assert "walsender" in pg.protection_reason(SESSIONS[5], OWN, True)
    assert "superuser" in pg.protection_reason(SESSIONS[4], OWN, False)
    assert pg.protection_reason(SESSIONS[4], OWN, True) is None
    assert pg.protection_reason(SESSIONS[1], OWN, False) is None


def test_summarise():
    settings = {"max_connections": "40", "superuser_reserved_connections": "3"}
    s = pg.summarise(SESSIONS, settings, long_idle_after=600)
    assert s["max_connections"] == 40
    assert s["reserved_connections"] is None
    assert s["usable_connections"] == 37
    assert s["used"] == 9  # client backends only
    assert s["available"] == 28
    assert s["utilisation_percent"] == round(900 / 37, 1)
    assert s["by_state"] == {"active": 2, "idle": 6, "idle in transaction": 1}
    assert s["by_user"] == {"postgres": 2, "app": 6, "migrator": 1}
    assert s["by_backend_type"] == {"client backend": 9, "walsender": 1, "autovacuum launcher": 1}
    assert s["idle_in_transaction"] == {"count": 1, "oldest_age": 1300.0}
    assert pids(s["long_idle"]) == [4, 9, 7, 1, 10, 2]
    assert [(b["pid"], b["blocked_by"]) for b in s["blocked"]] == [(8, [7])]
    assert set(s["long_idle"][0]) == {
        "pid", "user", "database", "application", "client_addr", "state", "age", "xact_age",
        "backend_age", "wait_event_type", "wait_event", "blocked_by", "is_superuser", "age_from",
    }  # fmt: skip


def test_summarise_pg16_reserved_and_saturation():
    settings = {
        "max_connections": 10,
        "superuser_reserved_connections": 2,
        "reserved_connections": 3,
    }
    many = [session(i) for i in range(1, 8)]
    s = pg.summarise(many, settings)
    assert s["reserved_connections"] == 3
    assert s["usable_connections"] == 5
    assert s["used"] == 7
    assert s["available"] == 0
    assert s["utilisation_percent"] == 140.0  # superusers in their reserved slots
    empty = pg.summarise([], {"max_connections": 0})
    assert empty["utilisation_percent"] == 0.0
    assert empty["idle_in_transaction"]["oldest_age"] is None


def test_conn_params_and_socket():
    base = {
        "login_user": "u",
        "login_password": "p",
        "login_port": 5433,
        "login_db": "d",
        "ssl_mode": "prefer",
        "ca_cert": None,
        "connect_timeout": 7,
    }
    kw = pg.conn_params(dict(base, login_host="db1", login_unix_socket="/run/pg"))
    assert kw["host"] == "db1"
    assert kw["application_name"] == pg.APPLICATION_NAME
    assert "sslrootcert" not in kw
    kw = pg.conn_params(dict(base, login_host="", login_unix_socket="/run/pg"))
    assert kw["host"] == "/run/pg"
    kw = pg.conn_params(dict(base, login_host="", login_unix_socket="", login_password=""))
    assert "host" not in kw and "password" not in kw
    assert kw["connect_timeout"] == 7 and kw["port"] == 5433 and kw["dbname"] == "d"


def test_describe_target_and_scrub_hide_password():
    params = {"login_host": "db1", "login_port": 5432, "login_user": "u", "login_db": "d",
              "login_password": "s3cr3t"}  # fmt: skip
    assert "s3cr3t" not in pg.describe_target(params)
    assert pg.describe_target(params) == "db1:5432 as user u, database d"
    assert pg.scrub("failed for s3cr3t\n", "s3cr3t") == "failed for ********"
    assert pg.scrub("x", "") == "x"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"login_port": 0, "connect_timeout": 10}, "login_port"),
        ({"login_port": 70000, "connect_timeout": 10}, "login_port"),
        ({"login_port": 5432, "connect_timeout": 0}, "connect_timeout"),
        ({"login_port": 5432, "connect_timeout": -3}, "connect_timeout"),
        ({"login_port": 5432, "connect_timeout": 10, "statement_timeout": 0}, "statement_timeout"),
    ],
)
def test_validate_connection_params(params, problem):
    problems = pg.validate_connection_params(params)
    assert len(problems) == 1 and problem in problems[0]
    assert pg.validate_connection_params({"login_port": 5432, "connect_timeout": 1}) == []


def test_argument_spec_marks_password_no_log():
    spec = pg.postgres_common_argument_spec()
    assert spec["login_password"]["no_log"] is True
    assert spec["login_db"]["aliases"] == ["db"]
    assert {"login_host", "login_port", "login_unix_socket", "ssl_mode", "ca_cert",
            "connect_timeout", "login_user", "statement_timeout"} <= set(spec)  # fmt: skip
    assert spec["statement_timeout"] == {"type": "int", "default": 30}


def test_conn_params_set_statement_timeout_and_bound_reads():
    kw = pg.conn_params({"login_host": "db1", "connect_timeout": 3, "statement_timeout": 7})
    assert kw["connect_timeout"] == 3
    assert "statement_timeout" not in kw  # set with SET after the login, not a libpq option
    assert pg.read_timeout({"statement_timeout": 7}) == 7 + pg.READ_GRACE


def test_idle_terminate_without_a_limit_is_bounded_by_the_default():
    many = [session(1000 + k, age=700.0 + k) for k in range(pg.DEFAULT_TERMINATE_LIMIT + 1)]
    matched = pg.select_sessions(many, {"states": ["idle"], "older_than": "10m"}, OWN)
    assert len(matched) == pg.DEFAULT_TERMINATE_LIMIT + 1
    with pytest.raises(pg.OverLimit, match=r"more than limit=10 \(the default, no limit given\)"):
        pg.within_limit(matched, None)
    with pytest.raises(pg.OverLimit):
        pg.within_limit(matched, None, "oldest")  # oldest needs an explicit limit
    assert len(pg.within_limit(matched, 11)) == 11
    assert len(pg.within_limit(matched[:10], None)) == 10


ALLOW = {"decision": "allow", "allowed": True, "action": "pg terminate", "message": "ok", "at": "t"}


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "refusing to act without a guard decision"),
        ({"guard_decision": {"decision": "deny", "message": "2 of 3 down"}},
         "the guard denied: 2 of 3 down"),
        ({"guard_decision": {"decision": "maybe"}}, "must be allow or override, got 'maybe'"),
        ({"guard_decision": {}}, "must be allow or override, got None"),
        ({"guard_decision": "allow"}, "guard_decision must be a dict"),
        ({"guard_decision": {"decision": "allow", "allowed": False}}, "allowed is False"),
        ({"guard_decision": {"decision": "override", "override": {"reason": " "}}},
         "an override without its reason"),
        ({"force": True}, "force=true needs force_reason"),
        ({"force": True, "force_reason": "x", "guard_decision": ALLOW}, "not both"),
    ],
)  # fmt: skip
def test_act_authority_refusals(kwargs, problem):
    authority, refusal = guard.act_authority(**kwargs)
    assert authority is None and problem in refusal, refusal


def test_act_authority_records_the_guard_or_the_operator():
    authority, refusal = guard.act_authority(ALLOW)
    assert refusal is None
    assert authority == {"decision": "allow", "source": "guard", "message": "ok",
                         "action": "pg terminate", "at": "t"}  # fmt: skip
    over = {"decision": "override", "override": {"reason": "why", "by": "ana"}, "summary": "s"}
    authority, refusal = guard.act_authority(over)
    assert refusal is None and authority["override"]["by"] == "ana" and authority["message"] == "s"
    authority, refusal = guard.act_authority(force=True, force_reason=" pool leak ")
    assert refusal is None
    assert authority == {"decision": "force", "source": "operator", "reason": "pool leak"}
