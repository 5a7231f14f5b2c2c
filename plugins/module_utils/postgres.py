# -*- coding: utf-8 -*-
# Copyright: (c) 2025, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PostgreSQL connection options and the pure logic of firebreak.incident.pg_connections.

The connection part follows community.postgresql (``postgres_common_argument_spec``,
``ensure_required_libs``, ``connect``). Everything below the connection section is pure:
it works on plain dicts (one per ``pg_stat_activity`` row) so it can be unit-tested without
a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import re
import signal
import traceback

from ansible.module_utils.basic import missing_required_lib

PSYCOPG_IMPORT_ERROR = None
try:
    import psycopg
    from psycopg import ClientCursor
    from psycopg.rows import dict_row

    HAS_PSYCOPG = True
except ImportError:  # pragma: no cover - exercised only on hosts without psycopg
    psycopg = None
    ClientCursor = None
    dict_row = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()

# What the module's own session calls itself in pg_stat_activity.
APPLICATION_NAME = "firebreak.incident.pg_connections"

# Values pg_stat_activity.state can take (PostgreSQL 10 and later).
SESSION_STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)
IDLE_STATES = ("idle", "idle in transaction", "idle in transaction (aborted)")
# States of a session running a query: ended only with confirm_terminate_active and a limit,
# and aged from query_start (seed 004), where every other state is aged from state_change
# (seed 003).
RUNNING_STATES = ("active", "fastpath function call")

# The bound of a terminate request that names no limit (idle sessions): more matches end none.
DEFAULT_TERMINATE_LIMIT = 10

# A read may take statement_timeout (the server cancels the statement) plus this many seconds
# before the module stops waiting for a server that does not answer at all.
READ_GRACE = 2

# Only ordinary client sessions may ever be terminated: walsenders, autovacuum, the
# logical replication launcher, parallel and other background workers are never targets.
CLIENT_BACKEND = "client backend"


class PgConnectionError(Exception):
    """The server could not be reached or refused the login."""


class PgTimeout(PgConnectionError):
    """The server did not answer within the bound (see deadline())."""


class OverLimit(ValueError):
    """More sessions match than the limit allows, and over_limit is 'refuse'."""


class InvalidDuration(ValueError):
    """A duration option could not be read."""


# ---------------------------------------------------------------------------
# Connection options (shared by every PostgreSQL module of the collection)
# ---------------------------------------------------------------------------


def postgres_common_argument_spec():
    """Connection options, as in community.postgresql; documented in doc_fragments/postgres."""
    return dict(
        login_user=dict(type="str", default=os.environ.get("PGUSER") or "postgres"),
        login_password=dict(type="str", default="", no_log=True),
        login_host=dict(type="str", default=""),
        login_port=dict(type="int", default=int(os.environ.get("PGPORT") or 5432)),
        login_unix_socket=dict(type="str", default=""),
        login_db=dict(type="str", default="postgres", aliases=["db"]),
        ssl_mode=dict(
            type="str",
            default="prefer",
            choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"],
        ),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
        connect_timeout=dict(type="int", default=10),
        statement_timeout=dict(type="int", default=30),
    )


def ensure_required_libs(module):
    """Fail with Ansible's standard message when psycopg 3 is not importable."""
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)


def validate_connection_params(params):
    """Return a list of problems with the connection options (empty when they are fine)."""
    problems = []
    port = params.get("login_port")
    if port is not None and not 0 < port < 65536:
        problems.append("login_port must be between 1 and 65535, got %s" % port)
    timeout = params.get("connect_timeout")
    if timeout is not None and timeout < 1:
        # libpq treats 0 and negative values as "wait forever": never what an incident wants.
        problems.append("connect_timeout must be a positive number of seconds, got %s" % timeout)
    statement_timeout = params.get("statement_timeout")
    if statement_timeout is not None and statement_timeout < 1:
        # 0 is "no limit" to the server: the bound this option exists for.
        problems.append(
            "statement_timeout must be a positive number of seconds, got %s" % statement_timeout
        )
    return problems


def read_timeout(params):
    """Seconds the module waits for any answer of the server after the login."""
    return params.get("statement_timeout") + READ_GRACE


def conn_params(params):
    """Map the module's options to psycopg.connect() keyword arguments (pure)."""
    kw = {
        "user": params.get("login_user") or None,
        "password": params.get("login_password") or None,
        "port": params.get("login_port"),
        "dbname": params.get("login_db") or None,
        "sslmode": params.get("ssl_mode") or None,
        "sslrootcert": params.get("ca_cert") or None,
        "connect_timeout": params.get("connect_timeout"),
        "application_name": APPLICATION_NAME,
    }
    host = params.get("login_host") or ""
    socket_dir = params.get("login_unix_socket") or ""
    # As community.postgresql: a socket directory applies when no host (or localhost) is given.
    if socket_dir and host in ("", "localhost"):
        host = socket_dir
    if host:
        kw["host"] = host
    return dict((k, v) for k, v in kw.items() if v is not None and v != "")


def describe_target(params):
    """Where the module tried to connect, for messages (never includes the password)."""
    host = params.get("login_host") or ""
    socket_dir = params.get("login_unix_socket") or ""
    if socket_dir and host in ("", "localhost"):
        where = "unix socket %s (port %s)" % (socket_dir, params.get("login_port"))
    else:
        where = "%s:%s" % (host or "default host", params.get("login_port"))
    return "%s as user %s, database %s" % (
        where,
        params.get("login_user"),
        params.get("login_db"),
    )


def scrub(text, secret):
    """Remove a secret from a message before it is shown anywhere."""
    text = str(text).strip()
    if secret:
        text = text.replace(secret, "********")
    return text


@contextlib.contextmanager
def deadline(seconds, message):
    """Raise PgTimeout(message) when the block has not finished within ``seconds``.

    A SIGALRM timer: psycopg waits for the server in Python, so the alarm interrupts a read
    from a server that accepted the connection and then went silent. Main thread only (an
    Ansible module's process).
    """

    def expired(signum, frame):
        raise PgTimeout(message)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bounded(params):
    """deadline() for one statement, with the message that names the server and the bound."""
    seconds = read_timeout(params)
    return deadline(
        seconds,
        "PostgreSQL at %s did not answer within %s s (statement_timeout %s s + %s s)"
        % (describe_target(params), seconds, params.get("statement_timeout"), READ_GRACE),
    )


def connect(params):
    """Open an autocommit psycopg 3 connection with statement_timeout set; raise
    PgConnectionError with a clear message.

    connect_timeout bounds the login (libpq's own, over the whole handshake); the
    statement_timeout is set first thing after it, under bounded().
    """
    try:
        conn = psycopg.connect(
            autocommit=True,
            cursor_factory=ClientCursor,
            row_factory=dict_row,
            **conn_params(params),
        )
    except Exception as e:  # psycopg.OperationalError and friends
        raise PgConnectionError(
            "unable to connect to PostgreSQL at %s: %s"
            % (describe_target(params), scrub(e, params.get("login_password")))
        ) from None
    try:
        with bounded(params):
            conn.execute("SET statement_timeout = %d" % (params["statement_timeout"] * 1000))
    except Exception as e:
        conn.close()
        if isinstance(e, PgConnectionError):
            raise
        raise PgConnectionError(
            "cannot set statement_timeout at %s: %s"
            % (describe_target(params), scrub(e, params.get("login_password")))
        ) from None
    return conn


# ---------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(value, name="duration"):
    """Seconds (float) from an int/float or a string like '600', '90s', '10m', '1h30m', '2d'.

    Raise InvalidDuration for anything else (negative numbers, booleans, unknown units).
    """
    if isinstance(value, bool) or value is None:
        raise InvalidDuration("%s must be seconds or a string like '10m', got %r" % (name, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.match(r"^\d+(\.\d+)?$", text):
            seconds = float(text)
        else:
            compact = text.replace(" ", "")
            parts = _DURATION_PART.findall(compact)
            if not parts or "".join(n + u for n, u in parts) != compact:
                raise InvalidDuration(
                    "%s must be seconds or a string like '90s', '10m', '1h', '1h30m', '2d'; "
                    "got %r" % (name, value)
                )
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise InvalidDuration("%s must not be negative, got %r" % (name, value))
    return seconds


def with_age(session):
    """Set ``age`` (seconds) and ``age_from`` on a pg_stat_activity row that has
    ``state_age`` (now() - state_change) and ``query_age`` (now() - query_start).

    A running query is as old as the query (query_start, seed 004); any other session is as
    old as its current state (state_change, seed 003: idle for 10 minutes).
    """
    if session.get("state") in RUNNING_STATES:
        age, source = session.get("query_age"), "query_start"
    else:
        age, source = session.get("state_age"), "state_change"
    session["age"] = age
    session["age_from"] = source if age is not None else None
    return session


def filters_given(filters):
    """True when at least one selecting filter is set (exclude_users alone does not select)."""
    return any(filters.get(k) for k in ("states", "users", "applications", "databases")) or (
        filters.get("older_than") is not None
    )


def session_view(session):
    """The public face of one session (what the module returns for it)."""
    age = session.get("age")
    return {
        "pid": session.get("pid"),
        "user": session.get("user"),
        "database": session.get("database"),
        "application": session.get("application"),
        "client_addr": session.get("client_addr"),
        "state": session.get("state"),
        "age": round(age, 1) if age is not None else None,
        "xact_age": _round(session.get("xact_age")),
        "backend_age": _round(session.get("backend_age")),
        "wait_event_type": session.get("wait_event_type"),
        "wait_event": session.get("wait_event"),
        "blocked_by": list(session.get("blocked_by") or []),
        "is_superuser": bool(session.get("is_superuser")),
        "age_from": session.get("age_from"),
    }


def _round(value):
    return round(value, 1) if value is not None else None


def protection_reason(session, own_pid, include_superusers, include_active=False):
    """Why a session can never be a target, or None when it may be one."""
    if session.get("pid") == own_pid:
        return "own session"
    if session.get("backend_type") != CLIENT_BACKEND:
        return "not a client backend (%s)" % (session.get("backend_type") or "unknown")
    if session.get("is_superuser") and not include_superusers:
        return "superuser session (include_superusers is false)"
    if session.get("state") in RUNNING_STATES and not include_active:
        return "running a query (confirm_terminate_active is false)"
    return None


def terminate_problems(filters):
    """What is wrong with a terminate request, as messages (an empty list when it may run).

    ``filters`` holds the selecting options (states, older_than, users, applications,
    databases), exclude_users, limit, over_limit and confirm_terminate_active.
    """
    problems = []
    if not filters_given(filters):
        problems.append(
            "action=terminate needs at least one of states, older_than, users, applications "
            "or databases: an empty filter never means all sessions"
        )
    older_than = filters.get("older_than")
    if older_than is not None:
        try:
            if parse_duration(older_than, "older_than") <= 0:
                problems.append(
                    "older_than must be more than 0 for action=terminate, got %r" % (older_than,)
                )
        except InvalidDuration as e:
            problems.append(str(e))
    limit = filters.get("limit")
    if limit is not None and limit < 1:
        problems.append("limit must be 1 or more, got %s" % limit)
    running = [s for s in RUNNING_STATES if s in (filters.get("states") or [])]
    confirmed = filters.get("confirm_terminate_active")
    if running and not confirmed:
        problems.append(
            "terminating sessions in state %s (running queries) needs "
            "confirm_terminate_active=true and a limit" % ", ".join(running)
        )
    if confirmed and limit is None:
        problems.append(
            "confirm_terminate_active=true needs a limit: the most sessions this run may end"
        )
    if filters.get("over_limit") == "oldest" and limit is None:
        problems.append("over_limit=oldest needs a limit")
    return problems


def matches(session, filters, older_than_seconds):
    """Whether a (non-protected) session matches every filter that is set."""
    states = filters.get("states") or []
    users = filters.get("users") or []
    exclude_users = filters.get("exclude_users") or []
    applications = filters.get("applications") or []
    databases = filters.get("databases") or []
    if states and session.get("state") not in states:
        return False
    if users and session.get("user") not in users:
        return False
    if session.get("user") in exclude_users:
        return False
    if applications and session.get("application") not in applications:
        return False
    if databases and session.get("database") not in databases:
        return False
    if older_than_seconds is not None:
        age = session.get("age")
        # Strictly older (seed 003: state_change < now() - interval); no age never matches.
        if age is None or age <= older_than_seconds:
            return False
    return True


def select_sessions(sessions, filters, own_pid, include_superusers=False):
    """Every session that matches the filters and may be a target, oldest first.

    ``sessions`` are dicts with at least pid, user, application, database, state,
    backend_type, is_superuser and age (see with_age()). ``filters`` is what
    terminate_problems() takes; raise ValueError with its messages when it finds any (an
    empty filter never means "all sessions"). The limit is applied by within_limit().
    """
    problems = terminate_problems(filters)
    if problems:
        raise ValueError("; ".join(problems))
    older_than = filters.get("older_than")
    older_than_seconds = None if older_than is None else parse_duration(older_than, "older_than")
    include_active = bool(filters.get("confirm_terminate_active"))

    chosen = []
    for session in sessions:
        if protection_reason(session, own_pid, include_superusers, include_active) is not None:
            continue
        if matches(session, filters, older_than_seconds):
            chosen.append(session)
    chosen.sort(key=lambda s: (-(s.get("age") or 0.0), s.get("pid")))
    return chosen


def within_limit(matched, limit, over_limit="refuse"):
    """The sessions to end: all of ``matched`` when they are no more than ``limit``.

    No ``limit`` (a request for idle sessions: running queries need one) is
    DEFAULT_TERMINATE_LIMIT: no request ends an unbounded number of sessions. More than the
    limit is a sign the filters are wider than the operator thought: raise OverLimit (nothing
    is ended), unless ``over_limit`` is 'oldest' (the oldest ``limit``).
    """
    bound = DEFAULT_TERMINATE_LIMIT if limit is None else limit
    if len(matched) <= bound:
        return matched
    if over_limit == "oldest" and limit is not None:
        return matched[:limit]
    raise OverLimit(
        "%d sessions match, more than limit=%d%s: none terminated (narrow the filters, raise "
        "the limit, or set over_limit=oldest to end the oldest %d)"
        % (len(matched), bound, " (the default, no limit given)" if limit is None else "", bound)
    )


def _count(values):
    counts = {}
    for value in values:
        key = "" if value is None else str(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def summarise(sessions, settings, long_idle_after=600.0):
    """Connection usage from pg_stat_activity rows and the connection settings.

    ``settings`` maps max_connections, superuser_reserved_connections and (16+)
    reserved_connections to integers. ``used`` counts client backends only: since
    PostgreSQL 12 walsenders do not take max_connections slots, and background workers
    have their own pool (max_worker_processes).
    """
    max_connections = int(settings.get("max_connections") or 0)
    su_reserved = int(settings.get("superuser_reserved_connections") or 0)
    reserved = settings.get("reserved_connections")
    reserved = None if reserved is None else int(reserved)
    usable = max(max_connections - su_reserved - (reserved or 0), 0)

    clients = [s for s in sessions if s.get("backend_type") == CLIENT_BACKEND]
    used = len(clients)
    utilisation = round(100.0 * used / usable, 1) if usable else 0.0

    iit = [s for s in clients if (s.get("state") or "").startswith("idle in transaction")]
    iit_ages = [s.get("xact_age") for s in iit if s.get("xact_age") is not None]

    long_idle = [
        s
        for s in clients
        if s.get("state") in IDLE_STATES
        and s.get("age") is not None
        and s.get("age") > long_idle_after
    ]
    long_idle.sort(key=lambda s: (-(s.get("age") or 0.0), s.get("pid")))

    blocked = [s for s in sessions if s.get("blocked_by")]
    blocked.sort(key=lambda s: s.get("pid"))

    return {
        "max_connections": max_connections,
        "superuser_reserved_connections": su_reserved,
        "reserved_connections": reserved,
        "usable_connections": usable,
        "used": used,
        "available": max(usable - used, 0),
        "utilisation_percent": utilisation,
        "by_state": _count(s.get("state") or "unknown" for s in clients),
        "by_user": _count(s.get("user") for s in clients),
        "by_database": _count(s.get("database") for s in clients),
        "by_application": _count(s.get("application") for s in clients),
        "by_backend_type": _count(s.get("backend_type") for s in sessions),
        "idle_in_transaction": {
            "count": len(iit),
            "oldest_age": round(max(iit_ages), 1) if iit_ages else None,
        },
        "long_idle": [session_view(s) for s in long_idle],
        "blocked": [session_view(s) for s in blocked],
    }
