"""Sans-I/O Viewstamped Replication core (VR Revisited, Liskov & Cowling 2012).

The :class:`Replica` here is a pure state machine. It is fed messages (:meth:`Replica.on_message`),
client requests (:meth:`Replica.on_request`), clock ticks (:meth:`Replica.tick`) and storage
findings (:meth:`Replica.on_corruption`), and answers with a list of *effects* (tuples) that the
driver carries out **in order**:

``("send", dest_index, msg)``
    send a protocol message (a JSON-able dict) to replica ``dest_index``.
``("append", from_op, entries)``
    make the durable log ``log[:from_op - 1] + entries`` and fsync it. It always comes before the
    sends that depend on it (a PrepareOK is only emitted after the entry's ``append``).
``("meta", {"view": v, "last_normal_view": lv})``
    persist (fsync) the view number and last normal view before anything is sent in that view.
``("reply", token, result)`` / ``("redirect", token, leader_index_or_None)``
    answer (or bounce, not proposed) a client request; a reply is only ever produced after commit.
``("fail", token)``
    the primary lost its role with the request proposed but not committed: the outcome is
    unknown (it may still commit in the next view); only a retry with the same client id and
    request number is safe.
``("checkpoint", op, snapshot)``
    a state-machine snapshot after ``op`` (every ``checkpoint_interval`` executed ops).
``("log", level, text)``
    a log line (levels as in :mod:`logging`: "INFO", "WARNING", "ERROR").

The driver owns I/O (HTTP, disk, clock) and must not reorder effects. The deterministic
simulation (:mod:`firebreak.kimberlite.sim`) and the real replica process
(:mod:`firebreak.kimberlite.replica`) are the two drivers.

Deviations from the paper, all on the side of a durable, checksummed log:

* the log, the view number and the last normal view are durable (fsync before PrepareOK / before
  any message in a new view); a restarted replica runs the recovery protocol but counts its own
  durable state, so it needs answers from ``f`` others including the primary of the highest
  view; if nobody answers (whole cluster restarted) a replica with a clean log falls back to a
  view change from its durable state, which is safe because nothing it promised was forgotten;
* a replica without any durable state (new cluster / wiped disk) is "fresh": it recovers from a
  normal primary and never votes before; it does not count itself toward its recovery quorum
  (as in the paper: ``f + 1`` answers from others, the primary of the highest view among them
  included); only if all ``n`` replicas are fresh do they bootstrap view 0 together;
* a replica that finds a corrupted entry stops voting (no PrepareOK, StartViewChange,
  DoViewChange, RecoveryResponse, GetState answers) and enters state transfer (status 3) until a
  primary's NEWSTATE / STARTVIEW repairs the range; it counts as one of the ``f`` faulty replicas;
* PrepareOK is cumulative (``op`` means "I hold the primary's log up to op"), and the primary
  retransmits unacknowledged prepares on every heartbeat, so drops are repaired without
  state transfer for small gaps.

Reconfiguration (joint consensus; see ``README.md`` "Reconfiguration" for the proof sketch):

* the configuration is replicated state: it is *derived from the log* (``reconfig_begin`` entries
  carry ``old`` and ``new``; ``reconfig_end`` closes them), so it is durable, recovered on restart
  and carried by view change, recovery and state transfer like any entry. ``cfg(L[:k])`` is the
  configuration after applying the configuration entries of the log prefix up to op ``k``:
  ``Stable(C)`` or ``Joint(old, new)``; a *quorum* of it is a majority of C, or a majority of
  old *and* a majority of new;
* commit: op ``k`` commits when the replicas holding it (cumulative PrepareOKs plus the primary)
  form a quorum of ``cfg(L[:k])``;
* a new ``reconfig_begin`` is only proposed when the log's configuration is stable and its last
  configuration entry is committed; the primary proposes ``reconfig_end`` once the begin has
  committed (also after a view change);
* view change: a replica sends its DOVIEWCHANGE for view v to ``leader(v, cfg(own log))`` (one
  target per view: a vote); the receiver D computes the best log B of what it got and starts the
  view only if the senders form a quorum of ``cfg(B)`` and ``leader(v, cfg(B)) == D``;
  ``leader(v, Stable(C)) = C[v % |C|]`` and ``leader(v, Joint(old, new)) = old[v % |old|]``.
  The primary of a view is fixed when the view starts (``self.leader``); a configuration entry
  appended later in the view does not move it, a primary removed by a committed ``reconfig_end``
  steps down and the new configuration elects the next view;
* a replica takes part (votes, starts view changes, answers recoveries) while it belongs to
  ``cfg(log)`` or to ``cfg(log[:commit])``: a removed replica stops once the stable op commits;
  replicas ignore view-change traffic from replicas that do not take part in their configuration;
  an added replica counts only for the ops it holds (cumulative PrepareOK), and a fresh one stays
  Recovering until a primary whose configuration includes it gives it the log.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NORMAL, VIEW_CHANGE, RECOVERING, STATE_TRANSFER = 0, 1, 2, 3
STATUS_NAMES = {
    NORMAL: "Normal",
    VIEW_CHANGE: "ViewChange",
    RECOVERING: "Recovering",
    STATE_TRANSFER: "StateTransfer",
}


@dataclass
class Timing:
    heartbeat_ms: int = 100
    view_change_min_ms: int = 500
    view_change_max_ms: int = 1000
    retry_ms: int = 300
    recovery_fallback_ms: int = 1500
    catchup_threshold: int = 256
    max_batch: int = 64
    checkpoint_interval: int = 100
    learner_timeout_ms: int = 10000


def entry_id(e: dict) -> tuple:
    """Identity of a log entry: the proposal (view, op) and the request it carries."""
    return (e["view"], e["op"], e.get("client"), e.get("req"))


def cfg_apply(cfg: tuple, e: dict) -> tuple:
    """The configuration after entry ``e``: ``(members, None)`` stable, ``(old, new)`` joint."""
    body = e.get("body") or {}
    kind = body.get("kind")
    if kind == "reconfig_begin":
        return (tuple(body["old"]), tuple(body["new"]))
    if kind == "reconfig_end" and cfg[1] is not None:
        return (cfg[1], None)
    return cfg


def is_config_entry(e: dict) -> bool:
    return (e.get("body") or {}).get("kind") in ("reconfig_begin", "reconfig_end")


def cfg_of_log(entries: list[dict], base: tuple) -> tuple:
    cfg = base
    for e in entries:
        if is_config_entry(e):
            cfg = cfg_apply(cfg, e)
    return cfg


def cfg_members(cfg: tuple) -> list[str]:
    out = list(cfg[0])
    for x in cfg[1] or ():
        if x not in out:
            out.append(x)
    return out


def quorum_ok(cfg: tuple, names) -> bool:
    """Do ``names`` hold a quorum of ``cfg`` (both majorities while joint)?"""
    have = set(names)
    for group in (cfg[0], cfg[1]):
        if group is None:
            continue
        if len(have.intersection(group)) < len(group) // 2 + 1:
            return False
    return True


def meets_every_quorum(cfg: tuple, names) -> bool:
    """Do ``names`` share a replica with every quorum of ``cfg`` (f + 1 of 2f + 1, in both
    configurations while joint)? What a replica without durable state must hear from: then an
    answer comes from every quorum that started a view or committed an op."""
    have = set(names)
    for group in (cfg[0], cfg[1]):
        if group is not None and len(have.intersection(group)) < len(group) - len(group) // 2:
            return False
    return True


def served_range(msg: dict) -> tuple[int, int] | None:
    """The ops (first, last) whose log entries an outgoing message carries, or None: the driver
    verifies their durable copies before sending (a corrupt entry is never served)."""
    t = msg.get("type")
    if t == "newstate" or (t == "recovery_response" and "entries" in msg):
        first, count = msg["from_op"], len(msg["entries"])
    elif t in ("start_view", "dvc"):
        first, count = 1, len(msg["log"])
    else:
        return None
    return (first, first + count - 1) if count else None


def cfg_leader(view: int, cfg: tuple) -> str:
    """Primary of ``view`` under ``cfg``: the old configuration's rotation while joint."""
    group = cfg[0]
    return group[view % len(group)]


def cfg_json(cfg: tuple) -> dict:
    return {
        "members": list(cfg[0]) if cfg[1] is None else list(cfg[1]),
        "old": list(cfg[0]),
        "new": None if cfg[1] is None else list(cfg[1]),
        "joint": cfg[1] is not None,
    }


class StateMachine:
    """The replicated application: append-only event streams plus the client table."""

    def __init__(self, snapshot: dict | None = None) -> None:
        snap = snapshot or {}
        self.op = snap.get("op", 0)
        self.streams: dict[str, list] = {k: list(v) for k, v in snap.get("streams", {}).items()}
        self.client_table: dict[str, list] = {
            k: list(v) for k, v in snap.get("client_table", {}).items()
        }
        self.config: list[str] | None = snap.get("config")
        self.reconfig: dict | None = snap.get("reconfig")

    def apply(self, e: dict) -> dict:
        self.op = e["op"]
        client, req = e.get("client"), e.get("req")
        if client is not None:
            prev = self.client_table.get(client)
            if prev is not None and req <= prev[0]:
                return dict(prev[1], duplicate=True)
        body = e.get("body") or {}
        kind = body.get("kind", "write")
        if kind == "write":
            stream = str(body.get("stream", ""))
            events = self.streams.setdefault(stream, [])
            events.append([body.get("event"), e["op"]])
            result = {"op": e["op"], "stream": stream, "index": len(events) - 1}
        elif kind == "read":  # a linearizable read: ordered by the log like a write
            stream = str(body.get("stream", ""))
            events = self.streams.get(stream, [])
            result = {
                "op": e["op"],
                "stream": stream,
                "events": [ev for ev, _ in events],
                "ops": [op for _, op in events],
            }
        elif kind == "reconfig_begin":
            self.reconfig = {"old": body["old"], "new": body["new"]}
            result = {
                "op": e["op"],
                "reconfig": "joint",
                "old": list(body["old"]),
                "new": list(body["new"]),
            }
        elif kind == "reconfig_end":
            if self.reconfig is not None:
                self.config = list(self.reconfig["new"])
            self.reconfig = None
            result = {"op": e["op"], "reconfig": "stable", "members": self.config}
        else:
            result = {"op": e["op"], "noop": True}
        if client is not None:
            self.client_table[client] = [req, result]
        return result

    def snapshot(self) -> dict:
        return {
            "op": self.op,
            "streams": {k: [list(x) for x in v] for k, v in self.streams.items()},
            "client_table": {k: list(v) for k, v in self.client_table.items()},
            "config": self.config,
            "reconfig": self.reconfig,
        }


class Replica:
    """One VR replica. ``names`` is the universe of replicas it knows (ordered; indices in effects
    and messages' destinations are positions in it, and it grows when a reconfiguration names a
    new replica), ``index`` our position, ``members`` the initial configuration (default: all of
    ``names``); the configuration in force afterwards comes from the log."""

    def __init__(
        self,
        names: list[str],
        index: int,
        *,
        timing: Timing | None = None,
        seed: int = 0,
        now: int = 0,
        log: list[dict] | None = None,
        view: int = 0,
        last_normal_view: int = 0,
        commit_hint: int = 0,
        corrupt_from: int | None = None,
        snapshot: dict | None = None,
        restarted: bool = False,
        fresh: bool = False,
        members: list[str] | None = None,
        hold_repair: bool = False,
    ) -> None:
        self.names = list(names)
        self.index = index
        self.name = names[index]
        self.addresses: dict[str, dict] = {}
        self.t = timing or Timing()
        self.rng = random.Random(seed)
        self.now = now
        self._init_storage(log, snapshot, commit_hint, corrupt_from)
        self._init_reconfiguration(members or names)
        self._init_protocol_state(view, last_normal_view, fresh)
        self._init_view_change_state()
        self._init_recovery_state(hold_repair)
        self._init_timers(now)
        self._start(restarted, fresh, corrupt_from)

    def _init_storage(
        self,
        log: list[dict] | None,
        snapshot: dict | None,
        commit_hint: int,
        corrupt_from: int | None,
    ) -> None:
        """The durable state: the log, the checkpointed state machine, the commit point."""
        self.log: list[dict] = list(log or [])
        self.corrupt_from = corrupt_from
        self.sm = StateMachine(snapshot)
        if self.sm.op > len(self.log):
            self.sm = StateMachine(None)
        # commit: the prefix of the log known committed *and* readable; executed may be ahead of
        # it when a checkpoint covers ops whose log copies are corrupt.
        self.commit = max(min(commit_hint, len(self.log)), self.sm.op)
        if corrupt_from is not None:
            self.commit = min(self.commit, corrupt_from - 1)
        self.executed = self.sm.op

    def _init_reconfiguration(self, members) -> None:
        """The initial configuration, the configuration points the log holds, and counters."""
        self.base_cfg: tuple = (tuple(members), None)
        self._cfg_points: list[tuple[int, tuple]] = []
        self._cfg_rebuild(1)
        self.joint_entered = 0
        self.stable_entered = 0
        self.not_member_logged = False
        self._was_member: bool | None = None

    def _init_protocol_state(self, view: int, last_normal_view: int, fresh: bool) -> None:
        """Normal-operation state: the view, the primary's bookkeeping, outgoing messages."""
        self.view = view
        self.last_normal_view = last_normal_view
        self.prepares_sent = 0
        self.ops_executed = 0
        self.isolated = False
        # a replica with no durable state at all (new cluster, or wiped data dir) promised
        # nothing, but remembers nothing either: it must learn the state from a normal primary,
        # unless *every* replica is fresh (a brand-new cluster), which bootstraps view 0
        self.fresh = fresh
        self.fresh_peers: set[int] = set()
        # the primary of the current view, fixed when the view starts (None: not known)
        self.leader: str | None = None
        # primary state (learner: an add waiting for its replica to catch up)
        self.learner: dict | None = None
        self.acked: dict[int, int] = {}
        self.waiters: dict[int, list] = {}
        self.inflight: dict[tuple, int] = {}
        self.sent: dict[int, int] = {}
        self.out: list = []

    def _init_view_change_state(self) -> None:
        self.svc: set[int] = set()
        self.dvc: dict[int, dict] = {}
        self.dvc_sent = False
        self.dvc_target: int | None = None
        self.svc_best: tuple = (0, 0, None)

    def _init_recovery_state(self, hold_repair: bool) -> None:
        """Recovery and state transfer."""
        self.nonce = 0
        self.responses: dict[int, dict] = {}
        self.st_from = 0
        self.st_view = 0
        # hold_repair: corruption found while running fences the replica (status 3, no votes,
        # the range never served) but waits for an operator (release_repair, i.e. a forced
        # state transfer, or a restart) instead of repairing itself: the damaged bytes stay on
        # disk as evidence until then. Corruption found at start-up is always repaired.
        self.hold_repair = hold_repair
        self.repair_held = False

    def _init_timers(self, now: int) -> None:
        """Retry, heartbeat and view-change timers (the view-change timeout is drawn twice)."""
        self.last_retry = now
        self.recovery_started = now
        self.last_heard = now
        self.last_heartbeat = -(10**9)
        self.vc_deadline = now + self._vc_timeout()
        self.vc_span = self._vc_timeout()

    def _start(self, restarted: bool, fresh: bool, corrupt_from: int | None) -> None:
        """Execute what the log commits, then recover, transfer state, or start normal."""
        self.status = RECOVERING
        self._execute()
        if restarted or fresh:
            self.status = RECOVERING
            self._start_recovery()
        elif corrupt_from is not None:
            self.status = STATE_TRANSFER
        else:
            self.status = NORMAL
            self.leader = cfg_leader(self.view, self.cfg)

    # ------------------------------------------------------------------ configuration
    def _idx(self, name) -> int:
        """Universe index of a replica name (learning it if new)."""
        if isinstance(name, int):
            return name
        try:
            return self.names.index(name)
        except ValueError:
            self.names.append(name)
            return len(self.names) - 1

    def _cfg_rebuild(self, from_op: int) -> None:
        """Refresh the configuration points after the log changed from ``from_op`` on."""
        pts = [p for p in self._cfg_points if p[0] < from_op]
        cfg = pts[-1][1] if pts else None
        for e in self.log[from_op - 1 :]:
            if not is_config_entry(e):
                continue
            body = e.get("body") or {}
            if cfg is None:
                cfg = (tuple(body["old"]), None) if "old" in body else self.base_cfg
            cfg = cfg_apply(cfg, e)
            pts.append((e["op"], cfg))
            for nm in cfg_members(cfg):
                self._idx(nm)
            self.addresses.update(body.get("addresses") or {})
        self._cfg_points = pts
        if pts and self.base_cfg[0] != self._first_old():
            self.base_cfg = (self._first_old(), None)

    def _first_old(self) -> tuple:
        for e in self.log:
            body = e.get("body") or {}
            if body.get("kind") == "reconfig_begin":
                return tuple(body["old"])
        return self.base_cfg[0]

    def cfg_at(self, op: int) -> tuple:
        """The configuration in force after op ``op`` of our log."""
        cfg = self.base_cfg
        for at, c in self._cfg_points:
            if at > op:
                break
            cfg = c
        return cfg

    @property
    def cfg(self) -> tuple:
        """The configuration of the whole log (committed or not): what we act on."""
        return self._cfg_points[-1][1] if self._cfg_points else self.base_cfg

    @property
    def last_cfg_op(self) -> int:
        return self._cfg_points[-1][0] if self._cfg_points else 0

    def participants(self) -> set[str]:
        """Who takes part: the members of cfg(log) and of cfg(log[:commit])."""
        return set(cfg_members(self.cfg)) | set(cfg_members(self.cfg_at(self.commit)))

    @property
    def member(self) -> bool:
        return self.name in self.participants()

    @property
    def n(self) -> int:
        return len(cfg_members(self.cfg))

    @property
    def f(self) -> int:
        return (len(self.cfg[0]) - 1) // 2

    def _audience(self) -> list[int]:
        parts = self.participants()  # in universe order: deterministic
        return [i for i, x in enumerate(self.names) if x in parts and i != self.index]

    def _takes_part(self, i: int) -> bool:
        return self.names[i] in self.participants()

    # ------------------------------------------------------------------ helpers
    @property
    def op(self) -> int:
        return len(self.log)

    def primary_of(self, view: int) -> int:
        if view == self.view and self.leader is not None:
            return self._idx(self.leader)
        return self._idx(cfg_leader(view, self.cfg))

    def leader_name(self) -> str:
        return self.names[self.primary_of(self.view)]

    def designate(self, view: int) -> int:
        """leader(view, cfg(our log))."""
        return self._idx(cfg_leader(view, self.cfg))

    @property
    def is_primary(self) -> bool:
        return self.leader == self.name and self.member

    @property
    def clean(self) -> bool:
        return self.corrupt_from is None

    def _vc_timeout(self) -> int:
        return self.rng.randint(self.t.view_change_min_ms, self.t.view_change_max_ms)

    def _drain(self) -> list:
        out, self.out = self.out, []
        return out

    def _send(self, dest: int, msg: dict) -> None:
        msg["from"] = self.name
        self.out.append(("send", dest, msg))

    def _broadcast(self, msg: dict) -> None:
        for i in range(len(self.names)):
            if i != self.index:
                self._send(i, dict(msg))

    def _log(self, level: str, text: str) -> None:
        self.out.append(("log", level, text))

    def _persist_meta(self) -> None:
        self.out.append(("meta", {"view": self.view, "last_normal_view": self.last_normal_view}))

    def _append(self, e: dict) -> None:
        self.log.append(e)
        if is_config_entry(e):
            self._cfg_rebuild(e["op"])

    def _replace_log(self, from_op: int, entries: list[dict], force: bool = False) -> None:
        """Make the log ``log[:from_op-1] + entries``, persisting only what differs.

        ``force`` rewrites every entry from ``from_op`` on (a repair: the durable copies may be
        corrupt even where the in-memory ones are equal)."""
        new = self.log[: from_op - 1] + [dict(e) for e in entries]
        i = from_op - 1
        while (
            not force
            and i < min(len(new), len(self.log))
            and entry_id(new[i]) == entry_id(self.log[i])
        ):
            i += 1
        if i < len(new) or len(new) != len(self.log):
            self.out.append(("append", i + 1, new[i:]))
        self.log = new
        self._cfg_rebuild(i + 1)

    def _execute(self) -> None:
        upto = min(self.commit, self.op)
        while self.executed < upto:
            e = self.log[self.executed]
            result = self.sm.apply(e)
            self.executed += 1
            self.ops_executed += 1
            for token in self.waiters.pop(e["op"], []):
                self.out.append(("reply", token, result))
            self.inflight.pop((e.get("client"), e.get("req")), None)
            if self.t.checkpoint_interval and self.executed % self.t.checkpoint_interval == 0:
                self.out.append(("checkpoint", self.executed, self.sm.snapshot()))
            if is_config_entry(e):
                cfg = self.cfg_at(e["op"])
                if cfg[1] is not None:
                    self.joint_entered += 1
                    self._log(
                        "INFO",
                        f"reconfig: Joint at op {e['op']} (old {list(cfg[0])}, new {list(cfg[1])})",
                    )
                else:
                    self.stable_entered += 1
                    self._log("INFO", f"reconfig: Stable at op {e['op']} (members {list(cfg[0])})")
        member = self.member
        if self._was_member and not member:
            self._removed()
        self._was_member = member
        self._maybe_propose_end()

    def _removed(self) -> None:
        if self.leader == self.name:
            self._fail_waiters()
        self._log(
            "WARNING",
            f"{self.name} is not a member of the configuration {list(self.cfg[0])} any more: "
            "no longer taking part (status and metrics still served)",
        )

    def _maybe_propose_end(self) -> None:
        """Primary: close a joint configuration whose begin has committed."""
        if (
            self.cfg[1] is not None
            and self.status == NORMAL
            and self.is_primary
            and self.clean
            and self.last_cfg_op <= self.commit
        ):
            self._propose(None, None, {"kind": "reconfig_end"}, None)

    def _fail_waiters(self) -> None:
        if self.learner is not None:
            self.out.append(("fail", self.learner["token"]))
            self.learner = None
        for tokens in self.waiters.values():
            for token in tokens:
                self.out.append(("fail", token))
        self.waiters.clear()
        self.inflight.clear()

    # ------------------------------------------------------------------ inputs
    def tick(self, now: int) -> list:
        self.now = now
        if self.status == NORMAL and self.is_primary:
            if now - self.last_heartbeat >= self.t.heartbeat_ms:
                self.last_heartbeat = now
                self._heartbeat()
                self._maybe_propose_end()
                self._maybe_admit_learner()
        elif self.status == NORMAL:
            if self.member and now - self.last_heard > self.vc_span:
                self._start_view_change(self.view + 1)
        elif self.status == VIEW_CHANGE:
            if now >= self.vc_deadline:
                self._start_view_change(self.view + 1)
            elif now - self.last_retry >= self.t.retry_ms:
                self.last_retry = now
                self._broadcast(self._svc_msg())
                if self.dvc_sent and self.dvc_target != self.index:
                    self._send_dvc()
        elif self.status == RECOVERING:
            if now - self.last_retry >= self.t.retry_ms:
                self._send_recovery()
            if (
                self.clean
                and not self.fresh
                and self.member
                and now - self.recovery_started >= self.t.recovery_fallback_ms
            ):
                self._log(
                    "WARNING", "recovery got no quorum of answers; view change from durable state"
                )
                self._start_view_change(self.view + 1)
        elif self.status == STATE_TRANSFER:
            if now - self.last_retry >= self.t.retry_ms and not self.repair_held:
                self._send_getstate(broadcast=True)
            if self.clean and self.member and now - self.last_heard > self.t.view_change_max_ms * 2:
                self._start_view_change(self.view + 1)
        return self._drain()

    def on_request(self, client: str | None, req: int | None, body: dict, token) -> list:
        """A client request. Backups (or a primary not in normal status) answer ``redirect``.

        ``{"kind": "reconfig", "action": "add"|"remove", "replica": NAME, ["address": {..}]}``
        asks the primary for a configuration change: it proposes ``reconfig_begin`` (the reply
        comes when the joint configuration has committed) or answers ``{"error": ..}``."""
        if self.status != NORMAL or not self.is_primary:
            leader = self.primary_of(self.view) if self.status == NORMAL else None
            self.out.append(("redirect", token, leader))
            return self._drain()
        kind = (body or {}).get("kind")
        if kind in ("reconfig_begin", "reconfig_end"):
            self.out.append(("reply", token, {"op": None, "error": f"{kind} is internal"}))
            return self._drain()
        if kind == "reconfig":
            begin = self._reconfig_begin(body)
            if isinstance(begin, str):
                self.out.append(("reply", token, {"op": None, "error": begin}))
            elif body.get("action") == "add":
                # the new replica first catches up as a learner (it gets the log but does not
                # count); the joint configuration is proposed once it holds the committed prefix
                who = body["replica"]
                # it must acknowledge afresh (a name re-added on a new machine)
                self.acked.pop(self._idx(who), None)
                self.sent.pop(self._idx(who), None)
                self.addresses.update(begin.get("addresses") or {})
                self.learner = {
                    "name": who,
                    "begin": begin,
                    "token": token,
                    "deadline": self.now + self.t.learner_timeout_ms,
                }
                self._log("INFO", f"reconfig: {who} catching up as a learner before it is added")
                self._maybe_admit_learner()
            else:
                self._propose(None, None, begin, token)
            return self._drain()
        if client is not None:
            prev = self.sm.client_table.get(client)
            if prev is not None and req <= prev[0]:
                if req == prev[0]:
                    self.out.append(("reply", token, dict(prev[1], duplicate=True)))
                return self._drain()
            op = self.inflight.get((client, req))
            if op is not None:
                self.waiters.setdefault(op, []).append(token)
                return self._drain()
        self._propose(client, req, body, token)
        return self._drain()

    def reconfig_pending(self) -> bool:
        """A configuration change is in the log and not yet closed and committed (or an add is
        waiting for its learner)."""
        return self.cfg[1] is not None or self.last_cfg_op > self.commit or bool(self.learner)

    def _maybe_admit_learner(self) -> None:
        ln = self.learner
        if ln is None or self.status != NORMAL or not self.is_primary:
            return
        if self.acked.get(self._idx(ln["name"]), -1) >= self.commit:
            self.learner = None
            self._log("INFO", f"reconfig: {ln['name']} caught up (op {self.commit}); joint")
            self._propose(None, None, ln["begin"], ln["token"])
        elif self.now >= ln["deadline"]:
            self.learner = None
            err = f"{ln['name']} did not catch up within {self.t.learner_timeout_ms} ms"
            self._log("WARNING", f"reconfig: {err}")
            self.out.append(("reply", ln["token"], {"op": None, "error": err}))

    def _reconfig_begin(self, body: dict) -> dict | str:
        if self.learner is not None:
            return f"an add of {self.learner['name']} is waiting for it to catch up"
        if self.reconfig_pending():
            return "a reconfiguration is already in flight (Joint)"
        current = list(self.cfg[0])
        who, action = body.get("replica"), body.get("action")
        if not isinstance(who, str) or not who:
            return "no replica named"
        if action == "add":
            if who in current:
                return f"{who} is already a member"
            new = [*current, who]
        elif action == "remove":
            if who not in current:
                return f"{who} is not a member"
            if len(current) == 1:
                return "cannot remove the last member"
            new = [x for x in current if x != who]
        else:
            return "action must be add or remove"
        begin = {"kind": "reconfig_begin", "old": current, "new": new}
        if body.get("address"):
            begin["addresses"] = {who: dict(body["address"])}
        return begin

    def _propose(self, client, req, body, token) -> None:
        e = {"op": self.op + 1, "view": self.view, "client": client, "req": req, "body": body}
        self._append(e)
        self.out.append(("append", e["op"], [e]))
        if token is not None:
            self.waiters.setdefault(e["op"], []).append(token)
        if client is not None:
            self.inflight[(client, req)] = e["op"]
        for i in self._audience():
            sent = self.sent.get(i, -1)
            if sent == e["op"] - 1:
                self.sent[i] = e["op"]
                self._send_prepare(i, e)
            elif sent == -1:  # position unknown yet: try; a gap is answered with its position
                self._send_prepare(i, e)
        self._try_commit()

    def _send_prepare(self, dest: int, e: dict) -> None:
        self.prepares_sent += 1
        self._send(dest, {"type": "prepare", "view": self.view, "commit": self.commit, "entry": e})

    def _heartbeat(self) -> None:
        for i in range(len(self.names)):
            if i == self.index:
                continue
            acked = self.acked.get(i, -1)
            # retransmit to whoever acknowledged in this view and lags (a removed replica too:
            # it must learn the stable op that removes it)
            if 0 <= acked < self.op:
                batch = self.log[acked : acked + self.t.max_batch]
                for e in batch:
                    self._send_prepare(i, e)
                self.sent[i] = max(self.sent.get(i, -1), batch[-1]["op"])
            self._send(
                i, {"type": "commit", "view": self.view, "commit": self.commit, "op": self.op}
            )

    def _try_commit(self) -> None:
        """Commit the highest op held by a quorum of the configuration in force at that op."""
        holds = {self.name: self.op}
        for i, a in self.acked.items():
            if i != self.index:
                holds[self.names[i]] = min(a, self.op)
        for k in sorted(set(holds.values()), reverse=True):
            if k <= self.commit:
                return
            if quorum_ok(self.cfg_at(k), [x for x, a in holds.items() if a >= k]):
                self.commit = k
                self._execute()
                return

    def on_corruption(self, op: int) -> list:
        """The storage layer found a checksum mismatch in the durable copy of ``op``."""
        first = op if self.corrupt_from is None else min(self.corrupt_from, op)
        self.corrupt_from = first
        held = self.hold_repair and self.status != RECOVERING
        self._log(
            "ERROR",
            f"checksum mismatch in log entry op={op}: not serving or acknowledging ops >= {first}; "
            + (
                "repair held for the operator (a forced state transfer or a restart repairs it)"
                if held
                else "starting state transfer to repair"
            ),
        )
        if self.status != RECOVERING:
            if self.is_primary and self.status == NORMAL:
                self._fail_waiters()
            self.status = STATE_TRANSFER
            self.st_from = min(first - 1, self.commit)
            self.st_view = self.view
            self.repair_held = held
            if not held:
                self._send_getstate(broadcast=True)
        return self._drain()

    def release_repair(self) -> list:
        """An operator's go for a held repair: the state transfer starts now."""
        if self.repair_held:
            self.repair_held = False
            self._log("WARNING", f"held repair released: state transfer from op {self.st_from + 1}")
            self._send_getstate(broadcast=True)
        return self._drain()

    def on_message(self, msg: dict, now: int | None = None) -> list:
        if now is not None:
            self.now = now
        handler = getattr(self, "_on_" + msg.get("type", ""), None)
        if handler is not None and "from" in msg:
            msg = dict(msg)
            msg["from"] = self._idx(msg["from"])
            if msg["from"] != self.index:
                handler(msg)
        return self._drain()

    # ------------------------------------------------------------------ normal operation
    def _heard_from_primary(self) -> None:
        self.last_heard = self.now

    def _on_prepare(self, m: dict) -> None:
        self._from_primary(m, m["entry"]["op"])

    def _on_commit(self, m: dict) -> None:
        self._from_primary(m, m["op"])

    def _from_primary(self, m: dict, their_op: int) -> None:
        # only the primary of a view sends PREPARE / COMMIT in it (there is one per view)
        v = m["view"]
        if v < self.view or self.status == RECOVERING:
            return
        if v == self.view and self.leader is not None and m["from"] != self._idx(self.leader):
            return
        if v > self.view:
            if self.status == STATE_TRANSFER and not self.clean:
                self.view = v
                self.leader = self.names[m["from"]]
                self._persist_meta()
                self.st_view = v
                return
            # we missed a view change: fetch the new view's log after our commit number
            self.leader = self.names[m["from"]]
            self._enter_state_transfer(v, self.commit)
            return
        if self.status == VIEW_CHANGE:
            return
        self.last_heard = self.now
        if self.status == STATE_TRANSFER:
            if self.leader is None:
                self.leader = self.names[m["from"]]
            return
        if m["type"] == "prepare":
            e = m["entry"]
            if e["op"] == self.op + 1:
                self._append(dict(e))
                self.out.append(("append", e["op"], [dict(e)]))
                self._send(m["from"], {"type": "prepare_ok", "view": v, "op": self.op})
            elif their_op - self.op > self.t.catchup_threshold:
                self._enter_state_transfer(v, self.op)
                return
            else:
                self._send(m["from"], {"type": "prepare_ok", "view": v, "op": self.op})
        elif their_op > self.op:
            if their_op - self.op > self.t.catchup_threshold:
                self._enter_state_transfer(v, self.op)
                return
            self._send(m["from"], {"type": "prepare_ok", "view": v, "op": self.op})
        if min(m["commit"], self.op) > self.commit:
            self.commit = min(m["commit"], self.op)
            self._execute()

    def _on_prepare_ok(self, m: dict) -> None:
        if m["view"] != self.view or self.status != NORMAL or not self.is_primary:
            return
        i = m["from"]
        prev = self.acked.get(i, -1)
        if m["op"] > prev:
            self.acked[i] = m["op"]
        if self.sent.get(i, -1) < self.acked[i]:
            self.sent[i] = self.acked[i]
        if m["op"] < self.op and prev < 0:
            batch = self.log[m["op"] : m["op"] + self.t.max_batch]
            for e in batch:
                self._send_prepare(i, e)
            self.sent[i] = batch[-1]["op"]
        self._try_commit()
        if self.learner is not None:
            self._maybe_admit_learner()

    # ------------------------------------------------------------------ view change
    def _start_view_change(self, v: int) -> None:
        was_primary = self.status == NORMAL and self.is_primary
        if was_primary:
            self._fail_waiters()
        self.view = v
        self.leader = None
        self.status = VIEW_CHANGE
        self.svc = {self.index}
        self.dvc = {}
        self.dvc_sent = False
        self.dvc_target = None
        self.svc_best = (self.last_normal_view, self.op, self.cfg)
        self.vc_deadline = self.now + self._vc_timeout()
        self.vc_span = self._vc_timeout()
        self.last_retry = self.now
        self._persist_meta()
        self._log("INFO", f"{self.name} starting view change to view {v}")
        self._broadcast(self._svc_msg())

    def _svc_msg(self) -> dict:
        cfg = [list(self.cfg[0]), None if self.cfg[1] is None else list(self.cfg[1])]
        return {
            "type": "svc",
            "view": self.view,
            "lnv": self.last_normal_view,
            "op": self.op,
            "cfg": cfg,
        }

    def _votes(self, m: dict) -> bool:
        """May we vote in a view change? With a clean durable log, yes, even while recovering
        (what we promised is on disk; the recovery protocol only fetches what we lack) and even
        when we do not see ourselves in our configuration: a joint configuration in a log we have
        not received yet may count us (a vote only counts where the voter is a member). A fresh
        replica (no durable state) never votes."""
        return self.clean and not self.fresh

    def _escalates(self, m: dict) -> bool:
        """Does the sender take part in our configuration (may it move us to a higher view)?
        A removed replica cannot disrupt the configuration that removed it."""
        return self._takes_part(m["from"])

    def _on_svc(self, m: dict) -> None:
        if not self._votes(m):
            return
        v = m["view"]
        if v > self.view:
            if not self._escalates(m):
                return
            self._start_view_change(v)
        if v == self.view and self.status == VIEW_CHANGE:
            self.svc.add(m["from"])
            c = m.get("cfg")
            if c and (m["lnv"], m["op"]) > self.svc_best[:2]:
                cfg = (tuple(c[0]), None if c[1] is None else tuple(c[1]))
                self.svc_best = (m["lnv"], m["op"], cfg)
            voters = [self.names[i] for i in self.svc]
            if not self.dvc_sent and (
                quorum_ok(self.cfg, voters) or quorum_ok(self.svc_best[2], voters)
            ):
                self.dvc_sent = True
                self._send_dvc()

    def _dvc_payload(self) -> dict:
        return {
            "type": "dvc",
            "view": self.view,
            "log": list(self.log),
            "last_normal_view": self.last_normal_view,
            "op": self.op,
            "commit": self.commit,
        }

    def _send_dvc(self) -> None:
        # our vote for this view goes to one replica only (dvc_target, never changed in the
        # view): the leader of the view under the configuration of the best log we heard of in
        # the STARTVIEWCHANGEs (the log the new primary is likely to pick). Any single target is
        # safe; this choice makes the replicas agree when some logs lag a reconfiguration.
        if self.dvc_target is None:
            self.dvc_target = self._idx(cfg_leader(self.view, self.svc_best[2]))
        p = self.dvc_target
        if p == self.index:
            self.dvc[self.index] = self._dvc_payload()
            self._maybe_start_view()
        else:
            self._send(p, self._dvc_payload())

    def _on_dvc(self, m: dict) -> None:
        if not self._votes(m):
            return
        v = m["view"]
        if v > self.view:
            if not self._escalates(m):
                return
            self._start_view_change(v)
        if v != self.view:
            return
        if self.status == NORMAL:
            if self.leader == self.name:
                self._send(m["from"], self._start_view_msg())
            return
        if self.status != VIEW_CHANGE:
            return
        self.dvc[m["from"]] = m
        if self.dvc_target is None:  # somebody elects us: our vote goes to ourselves
            self.dvc_target = self.index
            self.dvc_sent = True
        if self.dvc_target == self.index:
            self.dvc[self.index] = self._dvc_payload()
        self._maybe_start_view()

    def _maybe_start_view(self) -> None:
        """Start the view once the DOVIEWCHANGE senders hold a quorum of cfg(best log) and that
        configuration makes us the primary of the view."""
        if self.status != VIEW_CHANGE or not self.dvc:
            return
        best = max(self.dvc.values(), key=lambda d: (d["last_normal_view"], d["op"]))
        cfg_b = cfg_of_log(best["log"], self.base_cfg)
        voters = [self.names[i] for i in self.dvc]
        if not quorum_ok(cfg_b, voters) or cfg_leader(self.view, cfg_b) != self.name:
            return
        commit = max(d["commit"] for d in self.dvc.values())
        self._replace_log(1, best["log"])
        self.status = NORMAL
        self.leader = self.name
        self.last_normal_view = self.view
        self._persist_meta()
        self.commit = max(self.commit, min(commit, self.op))
        self.acked = {}
        self.sent = {}
        self.waiters = {}
        self.inflight = {
            (e.get("client"), e.get("req")): e["op"]
            for e in self.log[self.commit :]
            if e.get("client") is not None
        }
        self.last_heartbeat = self.now
        self._log("INFO", f"{self.name} is primary (leader) for view {self.view}")
        self._log("INFO", f"Entering Normal status (view {self.view}, op {self.op})")
        self._broadcast(self._start_view_msg())
        self._execute()

    def _start_view_msg(self) -> dict:
        return {
            "type": "start_view",
            "view": self.view,
            "log": list(self.log),
            "commit": self.commit,
        }

    def _on_start_view(self, m: dict) -> None:
        v = m["view"]
        if v < self.view or self.status == RECOVERING:
            return
        if v == self.view and self.status == NORMAL:
            return
        self._adopt(v, 1, m["log"], m["commit"], m["from"], "start view")

    def _adopt(self, v: int, from_op: int, entries: list, commit: int, src: int, why: str) -> None:
        """Take a primary's log (from ``from_op`` on) and its view; go normal as a backup.

        Stale answers (reordered / duplicated STARTVIEW or NEWSTATE) are refused: a legitimate
        one never ends before our commit number, and within the view of our log it is never
        shorter than our log (a backup's log is a prefix of its primary's)."""
        new_op = from_op - 1 + len(entries)
        if new_op < self.commit or (v == self.last_normal_view and new_op < self.op):
            return
        was_repair = not self.clean
        self._fail_waiters()  # we may have been primary of an older view
        self._replace_log(from_op, entries, force=was_repair)
        self.corrupt_from = None
        self.repair_held = False
        self.view = v
        self.status = NORMAL
        self.leader = self.names[src]
        self.last_normal_view = v
        self._persist_meta()
        self.commit = max(self.commit, min(commit, self.op))
        self.last_heard = self.now
        self.vc_span = self._vc_timeout()
        self.sent = {}
        if was_repair:
            self._log("INFO", f"state transfer repaired the log from op {from_op} (view {v})")
        self._log("INFO", f"{self.names[src]} is primary (leader) for view {v}")
        self._log("INFO", f"Entering Normal status (view {v}, op {self.op}, after {why})")
        self._send(src, {"type": "prepare_ok", "view": v, "op": self.op})
        self._execute()

    # ------------------------------------------------------------------ state transfer
    def _enter_state_transfer(self, v: int, from_op: int) -> None:
        if self.status == NORMAL and self.is_primary:
            self._fail_waiters()
        if v > self.view:
            self.view = v
            self._persist_meta()
        self.status = STATE_TRANSFER
        self.st_from = from_op
        self.st_view = v
        self.repair_held = False
        self.last_heard = self.now
        self._log("INFO", f"starting state transfer from op {from_op + 1} (view {v})")
        self._send_getstate(broadcast=False)

    def _send_getstate(self, broadcast: bool) -> None:
        self.last_retry = self.now
        msg = {"type": "getstate", "view": self.view, "op": self.st_from}
        p = self._idx(self.leader) if self.leader is not None else self.index
        if broadcast or p == self.index:
            self._broadcast(msg)
        else:
            self._send(p, msg)

    def _on_getstate(self, m: dict) -> None:
        if self.status == NORMAL and self.clean and m["view"] > self.view:
            # a higher view exists somewhere (the asker went through view changes we missed)
            if self.member and self._takes_part(m["from"]):
                self._start_view_change(m["view"])
            return
        if self.status != NORMAL or not self.is_primary or not self.clean:
            return
        if self.view < m["view"] or m["op"] > self.op:
            return
        self._send(
            m["from"],
            {
                "type": "newstate",
                "view": self.view,
                "from_op": m["op"] + 1,
                "entries": self.log[m["op"] :],
                "commit": self.commit,
            },
        )

    def _on_newstate(self, m: dict) -> None:
        if self.status != STATE_TRANSFER or m["view"] < self.view:
            return
        same_view = m["view"] == self.view and self.leader is not None
        if same_view and m["from"] != self._idx(self.leader):
            return
        if m["from_op"] - 1 > self.st_from:
            return
        self._adopt(m["view"], m["from_op"], m["entries"], m["commit"], m["from"], "state transfer")

    # ------------------------------------------------------------------ recovery
    def _start_recovery(self) -> None:
        self.recovery_started = self.now
        self.nonce = self.rng.getrandbits(48)
        self._log(
            "INFO",
            f"{self.name} recovering: view {self.view}, op {self.op}, commit {self.commit}"
            + ("" if self.clean else f", log corrupt from op {self.corrupt_from}"),
        )
        self._send_recovery()

    def _send_recovery(self) -> None:
        self.last_retry = self.now
        self.responses = {}
        msg = {
            "type": "recovery",
            "nonce": self.nonce,
            "commit": self.commit,
            "view": self.view,
            "fresh": self.fresh,
        }
        self._broadcast(msg)

    def _on_recovery(self, m: dict) -> None:
        if self.status == RECOVERING and self.fresh and m.get("fresh"):
            self._send(
                m["from"],
                {"type": "recovery_response", "view": 0, "nonce": m["nonce"], "fresh": True},
            )
            return
        if self.status != NORMAL or not self.clean or not self.member:
            return
        if m.get("view", 0) > self.view:
            if self._takes_part(m["from"]):
                self._start_view_change(m["view"])  # the recovering replica saw a higher view
            return
        r = {"type": "recovery_response", "view": self.view, "nonce": m["nonce"], "op": self.op}
        if self.is_primary:
            r["config"] = [list(self.cfg[0]), None if self.cfg[1] is None else list(self.cfg[1])]
            learner = self.learner is not None and self.learner["name"] == self.names[m["from"]]
            if learner:
                r["learner"] = True
            if learner or not (m.get("fresh") and not self._takes_part(m["from"])):
                k = min(m["commit"], self.commit)
                r.update(from_op=k + 1, entries=self.log[k:], commit=self.commit)
        self._send(m["from"], r)

    def _on_recovery_response(self, m: dict) -> None:
        if self.status != RECOVERING or m["nonce"] != self.nonce:
            return
        if (
            self.fresh
            and m["view"] == 0
            and (m.get("fresh") or (not m.get("op") and not m.get("entries")))
        ):
            # fresh, or normal in view 0 with nothing in its log: a peer (the primary included)
            # of a cluster that just bootstrapped before this replica heard all the others
            # fresh. It holds nothing, so it counts as fresh: otherwise two fresh backups of a
            # bootstrapped primary wait for each other forever, each needing the other Normal.
            self.fresh_peers.add(m["from"])
        if not m.get("fresh"):
            self.responses[m["from"]] = m
            if "config" in m and "entries" not in m and not self.not_member_logged:
                self.not_member_logged = True
                self._log(
                    "INFO",
                    f"{self.name} is not a member of the configuration {m['config']} yet: "
                    "waiting (Recovering) until a reconfiguration adds it",
                )
            if self._try_recover():
                return
        base = set(self.base_cfg[0])
        if (
            self.fresh
            and self.name in base
            and base - {self.name} <= {self.names[i] for i in self.fresh_peers}
        ):
            self.fresh = False
            self.status = NORMAL
            self.leader = cfg_leader(0, self.cfg)
            self.last_normal_view = 0
            self._persist_meta()
            self.last_heard = self.now
            self.vc_span = self._vc_timeout()
            self._log("INFO", f"new cluster: all {len(base)} replicas fresh, bootstrapping view 0")
            self._log("INFO", f"{self.leader} is primary (leader) for view 0")
            self._log("INFO", "Entering Normal status (view 0, op 0)")

    def _try_recover(self) -> bool:
        vmax = max(r["view"] for r in self.responses.values())
        if vmax < self.view:
            return False
        prim = next(
            (r for r in self.responses.values() if r["view"] == vmax and "entries" in r), None
        )
        if prim is None:
            return False
        pc = prim.get("config")
        cfg_p = (tuple(pc[0]), None if pc[1] is None else tuple(pc[1])) if pc else self.cfg
        others = {self.names[i] for i in self.responses}
        # a restarted replica counts itself (its view and log are durable); a wiped one (fresh)
        # remembers nothing, so the others alone must meet every quorum (f + 1 of 2f + 1): one
        # stale primary of an old view is not enough. A learner (an add waiting for it to catch
        # up) is outside cfg_p, so it counts for nothing either: a primary cut off from a newer
        # view may still hold its add, and its word alone would hand it a stale log
        if self.fresh:
            enough = meets_every_quorum(cfg_p, others)
        else:
            enough = quorum_ok(cfg_p, others | {self.name})
        if not enough:
            return False
        if prim["from_op"] - 1 > self.commit:
            return False
        self.fresh = False
        self._adopt(
            vmax, prim["from_op"], prim["entries"], prim["commit"], prim["from"], "recovery"
        )
        return self.status == NORMAL
