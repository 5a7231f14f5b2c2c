"""Pure logic of firebreak.incident.pg_connections (plugins/module_utils/postgres.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

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
    assert pids(pg.select_sessions(SESSIONS, {"applications": ["batch"]}, OWN)) == [8]
    f = {"states": ["idle"], "exclude_users": ["migrator"]}
    assert pids(pg.select_sessions(SESSIONS, f, OWN)) == [1, 10, 2, 3]


def test_limit_keeps_the_oldest():
    f = {"states": ["idle"], "older_than": "10m", "limit": 2}
    assert pids(pg.select_sessions(SESSIONS, f, OWN)) == [9, 1]
    with pytest.raises(ValueError):
        pg.select_sessions(SESSIONS, {"states": ["idle"], "limit": -1}, OWN)


def test_never_own_session_walsender_or_background_workers():
    everything = {"older_than": 0}
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
        "backend_age", "wait_event_type", "wait_event", "blocked_by", "is_superuser",
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
            "connect_timeout", "login_user"} <= set(spec)  # fmt: skip
