#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_connections
short_description: Report PostgreSQL connection usage and terminate chosen sessions
version_added: 0.1.0
description:
  - Reads C(pg_stat_activity) and the connection settings of a PostgreSQL server and reports
    how full it is (max_connections, reserved slots, used, available, utilisation), how the
    sessions split by state, user, database and application, idle-in-transaction sessions,
    long-idle sessions and sessions blocked by others (C(pg_blocking_pids)).
  - With O(action=terminate), ends the client sessions that match every filter given, with
    C(pg_terminate_backend), one pid at a time, oldest first.
  - It never targets its own session, walsenders (replication), autovacuum or any other
    background worker (only C(backend_type = 'client backend') can be a target), nor
    superuser sessions unless O(include_superusers=true), nor sessions running a query
    (state V(active) or V(fastpath function call)) unless O(confirm_terminate_active=true).
  - An empty filter never means all sessions; O(action=terminate) needs at least one of
    O(states), O(older_than), O(users), O(applications), O(databases).
  - When more sessions match than O(limit) (10 when no limit is given), nothing is ended and
    the task fails with the count (RV(matched)), unless O(over_limit=oldest).
  - O(action=terminate) acts only on a guard's decision (O(guard_decision)) or on the
    operator's explicit choice (O(force) with O(force_reason)); RV(guard) records which. Used
    on its own in a remediation it refuses without one, in check mode too.
  - Every statement is bounded (O(connect_timeout), O(statement_timeout)). A server that
    accepts the connection and then stops answering fails the task, it never hangs it.
  - Each session is re-checked in the terminating statement itself (same pid, same
    C(backend_start), same state, same C(state_change)), so a pid reused by a new session,
    or a session that became active again since it was selected, is left alone and reported
    in RV(already_gone).
options:
  action:
    description:
      - V(report) only reads.
      - V(terminate) ends the sessions selected by the filters (after reporting).
    type: str
    choices: [ report, terminate ]
    default: report
  states:
    description:
      - Select sessions in one of these C(pg_stat_activity.state) values.
    type: list
    elements: str
    choices:
      - active
      - idle
      - idle in transaction
      - idle in transaction (aborted)
      - fastpath function call
      - disabled
  older_than:
    description:
      - Select sessions older than this. Must be more than 0.
      - A session running a query (V(active), V(fastpath function call)) is as old as its
        query (now() - C(query_start)), as seed 004 measures long-running queries; any other
        session is as old as its current state (now() - C(state_change)), as seed 003
        measures idle sessions. RV(terminated[].age_from) says which one was used.
      - Seconds (V(600)) or a string with units s, m, h, d (V(90s), V(10m), V(1h), V(1h30m)).
    type: raw
  users:
    description:
      - Select sessions of these roles (C(usename)).
    type: list
    elements: str
  exclude_users:
    description:
      - Never select sessions of these roles. Does not select anything by itself.
    type: list
    elements: str
  applications:
    description:
      - Select sessions with one of these C(application_name) values (exact match).
    type: list
    elements: str
  databases:
    description:
      - Select sessions connected to one of these databases (C(datname)).
    type: list
    elements: str
  limit:
    description:
      - The most sessions this run may end; 1 or more. Required with
        O(confirm_terminate_active=true) and with O(over_limit=oldest).
      - Without it a terminate request is bounded by 10 (idle sessions can never all be
        ended by default).
      - When more sessions match, see O(over_limit).
    type: int
  over_limit:
    description:
      - What to do when more sessions match than O(limit).
      - V(refuse) ends none and fails, reporting the count in RV(matched). More matches than
        expected usually mean the filters are wider than meant.
      - V(oldest) ends the O(limit) oldest of them. Needs O(limit).
    type: str
    choices: [ refuse, oldest ]
    default: refuse
  confirm_terminate_active:
    description:
      - Allow sessions that are running a query (state V(active) or V(fastpath function call))
        to be ended, which aborts their query and rolls back their transaction.
      - Without it, O(states) naming one of these states is an error, and filters that name no
        state never select such sessions. With it, O(limit) is required.
    type: bool
    default: false
  include_superusers:
    description:
      - Allow sessions of superuser roles to be selected. Off by default.
    type: bool
    default: false
  guard_decision:
    description:
      - The decision of a guard that ran for this step, as a guard returns it. A guard
        decision is a dict whose C(decision) is V(allow) or V(override) (V(deny) refuses);
        the quorum_guard role's C(quorum_guard_result) is one (C(decision), C(allowed),
        C(action), C(message), C(summary), C(at), and for an override C(override.reason),
        C(override.by)). An override must carry its C(override.reason).
      - Required with O(action=terminate) unless O(force=true). Ignored keys are kept out
        of RV(guard) except C(action), C(at), C(override) and the message.
    type: dict
  force:
    description:
      - The operator's explicit choice to terminate without a guard decision, recorded in
        RV(guard) with O(force_reason). Not a way past a guard that denied (give one or the
        other, not both; a guard has its own override).
    type: bool
    default: false
  force_reason:
    description:
      - Why the operator terminates without a guard. Required with O(force=true).
    type: str
  long_idle_after:
    description:
      - Sessions idle (or idle in transaction) for longer than this are listed in
        RV(long_idle). Same format as O(older_than).
    type: raw
    default: 10m
attributes:
  check_mode:
    support: full
    description:
      - In check mode nothing is terminated; RV(would_terminate) lists exactly the sessions
        that a real run would end at that moment, and RV(queries) the statements it would run.
      - C(changed) is then the prediction (true when a real run would end sessions). Outside
        check mode it is true only when a session was terminated.
      - A request a real run would refuse (more matches than O(limit), a missing confirmation,
        no guard decision) fails in check mode too.
  diff_mode:
    support: none
    description:
      - Returns no diff.
  platform:
    platforms: posix
    support: full
    description:
      - Runs wherever psycopg can reach the server (usually the database host or a jump host).
notes:
  - To see every session's state and terminate sessions of other roles, O(login_user) needs
    to be a superuser or to have C(pg_read_all_stats) and C(pg_signal_backend).
    C(pg_signal_backend) cannot end superuser sessions.
  - C(used) counts client backends only; walsenders (PostgreSQL 12 and later) and background
    workers do not take C(max_connections) slots. The module's own session is counted.
  - On PostgreSQL 14 and later C(pg_terminate_backend) waits up to 5 seconds (at most half of
    O(statement_timeout)) for each session to exit, so a second run right after does not see
    sessions that are on their way out.
  - Ending a session rolls back its open transaction; what it committed stays.
seealso:
  - module: community.postgresql.postgresql_query
  - name: pg_stat_activity
    description: The view this module reads.
    link: https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW
author:
  - Firebreak maintainers (@firebreak)
extends_documentation_fragment:
  - firebreak.incident.postgres
"""

EXAMPLES = r"""
# Seed 003 (connection exhaustion): "kill idle connections older than 10 minutes", at most
# 50 of them, on the operator's recorded choice (no guard ran before this task).
- name: Kill idle connections older than 10 minutes
  firebreak.incident.pg_connections:
    login_host: postgres.example.com
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    action: terminate
    states: [idle]
    older_than: 10m
    limit: 50
    force: true
    force_reason: "INC-2041: pool exhausted by leaked idle connections (seed 003)"
  register: killed

- name: Show what was ended
  ansible.builtin.debug:
    msg: "ended {{ killed.terminated | map(attribute='pid') | list }}"

# The same, restricted to the application's database and role, previewed first.
- name: Preview which idle hotswap sessions would be ended
  firebreak.incident.pg_connections:
    login_host: postgres.example.com
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    action: terminate
    states: [idle]
    older_than: 10m
    databases: [hotswap]
    users: [hotswap]
    guard_decision: "{{ quorum_guard_result }}"  # the guard that ran for this remediation
  check_mode: true
  register: preview

# Seed 004 PLAY-022: "kill long-running queries" (active older than 5 minutes, measured from
# query_start). Running queries need the confirmation and a limit: if more than 10 match,
# nothing is ended and the task fails with the count.
- name: End queries running for more than 5 minutes, at most 10
  firebreak.incident.pg_connections:
    login_host: postgres.example.com
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    action: terminate
    states: [active]
    older_than: 5m
    confirm_terminate_active: true
    limit: 10
    guard_decision: "{{ quorum_guard_result }}"

# Seed 004 PLAY-022 (PostgresConnectionPoolExhausted): saturation check.
- name: Read connection usage
  firebreak.incident.pg_connections:
    login_host: postgres.example.com
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
  register: pg

- name: Connection pool is not saturated
  ansible.builtin.assert:
    that:
      - pg.utilisation_percent < 90
    fail_msg: >-
      {{ pg.used }} of {{ pg.usable_connections }} usable connections in use
      ({{ pg.utilisation_percent }}%), by state {{ pg.by_state }},
      idle in transaction {{ pg.idle_in_transaction.count }}
    success_msg: "{{ pg.utilisation_percent }}% of usable connections in use"

# End the five oldest sessions stuck idle in a transaction, sparing the migration role.
- name: End sessions idle in transaction for more than 1 hour
  firebreak.incident.pg_connections:
    login_unix_socket: /var/run/postgresql
    action: terminate
    states: [idle in transaction, idle in transaction (aborted)]
    older_than: 1h
    exclude_users: [migrator]
    limit: 5
    over_limit: oldest
    force: true
    force_reason: "transactions left open by the batch job"
  become: true
  become_user: postgres
"""

RETURN = r"""
server_version:
  description: Server version number (C(server_version_num)).
  returned: success
  type: int
  sample: 150010
own_pid:
  description: The pid of the module's own session (never a target).
  returned: success
  type: int
  sample: 4242
max_connections:
  description: The C(max_connections) setting.
  returned: success
  type: int
  sample: 100
superuser_reserved_connections:
  description: Slots reserved for superusers (C(superuser_reserved_connections)).
  returned: success
  type: int
  sample: 3
reserved_connections:
  description: Slots reserved for C(pg_use_reserved_connections) members (PostgreSQL 16+).
  returned: success
  type: int
  sample: null
usable_connections:
  description: Slots ordinary roles can use, max_connections minus both reserved counts.
  returned: success
  type: int
  sample: 97
used:
  description: Client backends connected now (the module's own session included).
  returned: success
  type: int
  sample: 42
available:
  description: RV(usable_connections) minus RV(used), never below 0.
  returned: success
  type: int
  sample: 55
utilisation_percent:
  description:
    - 100 * RV(used) / RV(usable_connections), one decimal. Above 100 when superusers use
      their reserved slots.
  returned: success
  type: float
  sample: 43.3
by_state:
  description: Client backends per state (V(unknown) when the state is hidden).
  returned: success
  type: dict
  sample: {"active": 3, "idle": 37, "idle in transaction": 2}
by_user:
  description: Client backends per role.
  returned: success
  type: dict
  sample: {"app": 40, "postgres": 2}
by_database:
  description: Client backends per database.
  returned: success
  type: dict
  sample: {"app": 40, "postgres": 2}
by_application:
  description: Client backends per C(application_name) (V("") when unset).
  returned: success
  type: dict
  sample: {"api": 38, "firebreak.incident.pg_connections": 1}
by_backend_type:
  description: Every backend (background workers and walsenders too) per C(backend_type).
  returned: success
  type: dict
  sample: {"client backend": 42, "walsender": 1, "autovacuum launcher": 1}
idle_in_transaction:
  description: Sessions idle in a transaction (aborted or not).
  returned: success
  type: dict
  contains:
    count:
      description: How many.
      type: int
      sample: 2
    oldest_age:
      description: Seconds since the oldest of their transactions started (null when none).
      type: float
      sample: 1234.5
long_idle:
  description:
    - Client sessions idle or idle in transaction for longer than O(long_idle_after),
      oldest first. Elements have the shape of RV(terminated) elements.
  returned: success
  type: list
  elements: dict
blocked:
  description:
    - Sessions waiting on a lock held by others. Elements have the shape of RV(terminated)
      elements; RV(terminated[].blocked_by) names the blockers.
  returned: success
  type: list
  elements: dict
terminated:
  description: Sessions ended by this run, oldest first. Always empty in check mode.
  returned: success
  type: list
  elements: dict
  contains:
    pid:
      description: Backend pid.
      type: int
      sample: 31337
    user:
      description: Role name (C(usename)).
      type: str
      sample: app
    database:
      description: Database name.
      type: str
      sample: app
    application:
      description: C(application_name).
      type: str
      sample: api
    client_addr:
      description: Client address (null for unix socket sessions).
      type: str
      sample: 10.0.0.7
    state:
      description: State when selected.
      type: str
      sample: idle
    age:
      description: Age when selected, in seconds, measured from RV(terminated[].age_from).
      type: float
      sample: 742.3
    age_from:
      description:
        - V(query_start) for a session running a query (V(active), V(fastpath function call)),
          V(state_change) for any other state; null when the state is hidden.
      type: str
      sample: state_change
    xact_age:
      description: Seconds since its transaction started (null when not in one).
      type: float
      sample: null
    backend_age:
      description: Seconds since the session connected.
      type: float
      sample: 3600.2
    wait_event_type:
      description: C(wait_event_type) when selected.
      type: str
      sample: Client
    wait_event:
      description: C(wait_event) when selected.
      type: str
      sample: ClientRead
    blocked_by:
      description: Pids blocking this session (C(pg_blocking_pids)).
      type: list
      elements: int
      sample: []
    is_superuser:
      description: Whether the role is a superuser.
      type: bool
      sample: false
guard:
  description:
    - What let this run terminate. C(decision) V(allow) or V(override) with C(source)
      V(guard) (and the guard's C(message), C(action), C(at), C(override)), or V(force) with
      C(source) V(operator) and its C(reason).
  returned: with O(action=terminate)
  type: dict
  sample: {"decision": "force", "source": "operator", "reason": "INC-2041: leaked connections"}
matched:
  description:
    - How many sessions matched the filters, before O(limit). Also returned when the task
      fails because more sessions match than O(limit).
  returned: with O(action=terminate)
  type: int
  sample: 3
would_terminate:
  description:
    - In check mode, the sessions a real run would end now (same shape as RV(terminated)).
      Empty outside check mode.
  returned: success
  type: list
  elements: dict
already_gone:
  description:
    - Pids selected but not terminated because, when their turn came, the session had ended
      or was no longer the one selected (pid reused, state changed).
  returned: success
  type: list
  elements: int
  sample: [31338]
queries:
  description:
    - The terminating statements run (in check mode, the ones that would run), like
      community.postgresql's C(queries). Read-only queries are not listed.
  returned: success
  type: list
  elements: str
  sample:
    - "SELECT pg_terminate_backend(pid, 5000) AS ok FROM pg_stat_activity WHERE pid = 31337 AND ..."
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.firebreak.incident.plugins.module_utils.guard import (  # noqa: E402
    act_authority,
)
from ansible_collections.firebreak.incident.plugins.module_utils.postgres import (  # noqa: E402
    SESSION_STATES,
    InvalidDuration,
    OverLimit,
    PgConnectionError,
    bounded,
    connect,
    describe_target,
    ensure_required_libs,
    parse_duration,
    postgres_common_argument_spec,
    select_sessions,
    session_view,
    summarise,
    terminate_problems,
    validate_connection_params,
    with_age,
    within_limit,
)

SESSIONS_QUERY = """
SELECT a.pid,
       a.usename AS "user",
       a.datname AS database,
       a.application_name AS application,
       host(a.client_addr) AS client_addr,
       a.state,
       a.backend_type,
       a.wait_event_type,
       a.wait_event,
       COALESCE(r.rolsuper, false) AS is_superuser,
       EXTRACT(EPOCH FROM (now() - a.state_change))::float8 AS state_age,
       EXTRACT(EPOCH FROM (now() - a.query_start))::float8 AS query_age,
       EXTRACT(EPOCH FROM (now() - a.xact_start))::float8 AS xact_age,
       EXTRACT(EPOCH FROM (now() - a.backend_start))::float8 AS backend_age,
       pg_blocking_pids(a.pid) AS blocked_by,
       a.backend_start,
       a.state_change
FROM pg_stat_activity a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
ORDER BY a.pid
"""

SETTINGS_QUERY = """
SELECT name, setting FROM pg_settings
WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')
"""

# The session is re-checked in the same statement that ends it: same pid, same connection
# (backend_start), same state since the same instant (state_change).
TERMINATE_QUERY = (
    "SELECT {call} AS ok FROM pg_stat_activity "
    "WHERE pid = %(pid)s AND backend_start = %(backend_start)s "
    "AND state IS NOT DISTINCT FROM %(state)s "
    "AND state_change IS NOT DISTINCT FROM %(state_change)s"
)

FILTER_OPTIONS = ("states", "older_than", "users", "applications", "databases", "limit")
TERMINATE_OPTIONS = FILTER_OPTIONS + ("exclude_users", "over_limit", "confirm_terminate_active")  # noqa: RUF005
GUARD_OPTIONS = ("guard_decision", "force", "force_reason")


class PgConnections(object):
    def __init__(self, module, conn):
        self.module = module
        self.conn = conn
        self.cursor = conn.cursor()

    def execute(self, query, params=None, fetch="all"):
        """Run one statement and fetch its rows, all within the read bound."""
        with bounded(self.module.params):
            self.cursor.execute(query, params)
            return self.cursor.fetchone() if fetch == "one" else self.cursor.fetchall()

    def read(self):
        row = self.execute(
            "SELECT pg_backend_pid() AS pid, current_setting('server_version_num')::int AS v",
            fetch="one",
        )
        own_pid, version = row["pid"], row["v"]
        settings = dict((r["name"], r["setting"]) for r in self.execute(SETTINGS_QUERY))
        sessions = [with_age(s) for s in self.execute(SESSIONS_QUERY)]
        return own_pid, version, settings, sessions

    def terminate_statement(self, session, version):
        # 14+: wait until the backend has exited, so the report is final: up to 5 s, and
        # within half the statement_timeout so that the wait itself is never cancelled.
        wait_ms = min(5000, self.module.params["statement_timeout"] * 500)
        call = "pg_terminate_backend(pid%s)" % (", %d" % wait_ms if version >= 140000 else "")
        params = {
            "pid": session["pid"],
            "backend_start": session["backend_start"],
            "state": session["state"],
            "state_change": session["state_change"],
        }
        return TERMINATE_QUERY.format(call=call), params

    def terminate(self, session, version):
        """Return (outcome, query text): outcome is 'terminated', 'gone' or 'timeout'."""
        query, params = self.terminate_statement(session, version)
        text = self.cursor.mogrify(query, params)
        row = self.execute(query, params, fetch="one")
        if row is None:
            return "gone", text
        return ("terminated" if row["ok"] else "timeout"), text


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(
        action=dict(type="str", default="report", choices=["report", "terminate"]),
        states=dict(type="list", elements="str", choices=list(SESSION_STATES)),
        older_than=dict(type="raw"),
        users=dict(type="list", elements="str"),
        exclude_users=dict(type="list", elements="str"),
        applications=dict(type="list", elements="str"),
        databases=dict(type="list", elements="str"),
        limit=dict(type="int"),
        over_limit=dict(type="str", default="refuse", choices=["refuse", "oldest"]),
        confirm_terminate_active=dict(type="bool", default=False),
        include_superusers=dict(type="bool", default=False),
        long_idle_after=dict(type="raw", default="10m"),
        guard_decision=dict(type="dict"),
        force=dict(type="bool", default=False),
        force_reason=dict(type="str"),
    )
    return spec


def request_problems(p):
    """Everything wrong with the request, found before connecting: (problems, authority)."""
    problems = validate_connection_params(p)
    try:
        parse_duration(p["long_idle_after"], "long_idle_after")
    except InvalidDuration as e:
        problems.append(str(e))
    authority = None
    if p["action"] == "terminate":
        problems.extend(terminate_problems(dict((k, p[k]) for k in TERMINATE_OPTIONS)))
        authority, refusal = act_authority(p["guard_decision"], p["force"], p["force_reason"])
        if refusal:
            problems.append(refusal)
    elif any(p[k] not in (None, []) for k in FILTER_OPTIONS):
        problems.append(
            "session filters are only used with action=terminate "
            "(run it in check mode to preview what would be ended)"
        )
    elif p["guard_decision"] is not None or p["force"] or p["force_reason"]:
        problems.append("guard_decision, force and force_reason are for action=terminate only")
    return problems, authority


def end_sessions(module, pg, targets, version, result):
    """End ``targets`` one at a time, recording each outcome in ``result``."""
    failures = []
    for s in targets:
        try:
            outcome, text = pg.terminate(s, version)
        except PgConnectionError as e:  # the server stopped answering
            failures.append("pid %s: %s" % (s["pid"], e))
            break
        except Exception as e:
            failures.append("pid %s: %s" % (s["pid"], str(e).strip()))
            continue
        result["queries"].append(text)
        if outcome == "terminated":
            result["terminated"].append(session_view(s))
        elif outcome == "gone":
            result["already_gone"].append(s["pid"])
        else:
            # Signalled, but still there after the wait: it was ended, say so.
            result["terminated"].append(session_view(s))
            module.warn("pid %s was signalled but had not exited yet" % s["pid"])
    result["changed"] = bool(result["terminated"])
    if failures:
        module.fail_json(
            msg="could not terminate %d session(s): %s" % (len(failures), "; ".join(failures)),
            **result,
        )


def run_terminate(module, pg, sessions, own_pid, version, result):
    """action=terminate once read: select, bound, then predict (check mode) or end."""
    p = module.params
    filters = dict((k, p[k]) for k in TERMINATE_OPTIONS)
    matched = select_sessions(sessions, filters, own_pid, p["include_superusers"])
    result["matched"] = len(matched)
    try:
        targets = within_limit(matched, p["limit"], p["over_limit"])
    except OverLimit as e:
        module.fail_json(msg=str(e), **result)
    if not module.check_mode:
        end_sessions(module, pg, targets, version, result)
        return
    for s in targets:
        query, params = pg.terminate_statement(s, version)
        result["queries"].append(pg.cursor.mogrify(query, params))
    result["would_terminate"] = [session_view(s) for s in targets]
    # As Ansible's check mode means: changed predicts what a real run would do.
    result["changed"] = bool(targets)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    problems, authority = request_problems(p)
    if problems:
        module.fail_json(msg="; ".join(problems))
    ensure_required_libs(module)
    try:
        conn = connect(p)
    except PgConnectionError as e:
        module.fail_json(msg=str(e))

    result = dict(changed=False, terminated=[], would_terminate=[], already_gone=[], queries=[])
    if authority is not None:
        result["guard"] = authority
    try:
        pg = PgConnections(module, conn)
        try:
            own_pid, version, settings, sessions = pg.read()
        except PgConnectionError as e:
            module.fail_json(msg=str(e))
        except Exception as e:
            module.fail_json(msg="cannot read pg_stat_activity at %s: %s" % (describe_target(p), e))
        long_idle_after = parse_duration(p["long_idle_after"], "long_idle_after")
        result.update(summarise(sessions, settings, long_idle_after))
        result.update(server_version=version, own_pid=own_pid)
        if p["action"] == "terminate":
            run_terminate(module, pg, sessions, own_pid, version, result)
    finally:
        conn.close()

    module.exit_json(**result)


if __name__ == "__main__":
    main()
