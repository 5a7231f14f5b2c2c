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
simulation (:mod:`firebreak.lab.sim`) and the real replica process (:mod:`firebreak.lab.replica`)
are the two drivers.

Deviations from the paper, all on the side of a durable, checksummed log:

* the log, the view number and the last normal view are durable (fsync before PrepareOK / before
  any message in a new view); a restarted replica runs the recovery protocol but counts its own
  durable state, so it needs answers from ``f`` others including the primary of the highest
  view; if nobody answers (whole cluster restarted) a replica with a clean log falls back to a
  view change from its durable state, which is safe because nothing it promised was forgotten;
* a replica without any durable state (new cluster / wiped disk) is "fresh": it recovers from a
  normal primary and never votes before; only if all ``n`` replicas are fresh do they bootstrap
  view 0 together;
* a replica that finds a corrupted entry stops voting (no PrepareOK, StartViewChange,
  DoViewChange, RecoveryResponse, GetState answers) and enters state transfer (status 3) until a
  primary's NEWSTATE / STARTVIEW repairs the range; it counts as one of the ``f`` faulty replicas;
* PrepareOK is cumulative (``op`` means "I hold the primary's log up to op"), and the primary
  retransmits unacknowledged prepares on every heartbeat, so drops are repaired without
  state transfer for small gaps.
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


def entry_id(e: dict) -> tuple:
    """Identity of a log entry: the proposal (view, op) and the request it carries."""
    return (e["view"], e["op"], e.get("client"), e.get("req"))


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
        elif kind == "reconfig_begin":
            self.reconfig = {"old": body["old"], "new": body["new"]}
            result = {"op": e["op"], "reconfig": "joint"}
        elif kind == "reconfig_end":
            if self.reconfig is not None:
                self.config = list(self.reconfig["new"])
            self.reconfig = None
            result = {"op": e["op"], "reconfig": "stable"}
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
    """One VR replica. ``names`` is the configuration (ordered), ``index`` our position."""

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
    ) -> None:
        self.names = list(names)
        self.n = len(names)
        self.f = (self.n - 1) // 2
        self.index = index
        self.name = names[index]
        self.t = timing or Timing()
        self.rng = random.Random(seed)
        self.now = now
        self.log: list[dict] = list(log or [])
        self.view = view
        self.last_normal_view = last_normal_view
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
        self.prepares_sent = 0
        self.ops_executed = 0
        self.isolated = False
        # a replica with no durable state at all (new cluster, or wiped data dir) promised
        # nothing, but remembers nothing either: it must learn the state from a normal primary,
        # unless *every* replica is fresh (a brand-new cluster), which bootstraps view 0
        self.fresh = fresh
        self.fresh_peers: set[int] = set()
        # primary state
        self.acked: dict[int, int] = {}
        self.waiters: dict[int, list] = {}
        self.inflight: dict[tuple, int] = {}
        # view change state
        self.svc: set[int] = set()
        self.dvc: dict[int, dict] = {}
        self.dvc_sent = False
        # recovery / state transfer
        self.nonce = 0
        self.responses: dict[int, dict] = {}
        self.st_from = 0
        self.st_view = 0
        self.last_retry = now
        self.recovery_started = now
        self.last_heard = now
        self.last_heartbeat = -(10**9)
        self.vc_deadline = now + self._vc_timeout()
        self.vc_span = self._vc_timeout()
        self.sent: dict[int, int] = {}
        self.out: list = []
        self._execute()
        if restarted or fresh:
            self.status = RECOVERING
            self._start_recovery()
        elif corrupt_from is not None:
            self.status = STATE_TRANSFER
        else:
            self.status = NORMAL

    # ------------------------------------------------------------------ helpers
    @property
    def op(self) -> int:
        return len(self.log)

    def primary_of(self, view: int) -> int:
        return view % self.n

    @property
    def is_primary(self) -> bool:
        return self.primary_of(self.view) == self.index

    @property
    def clean(self) -> bool:
        return self.corrupt_from is None

    def _vc_timeout(self) -> int:
        return self.rng.randint(self.t.view_change_min_ms, self.t.view_change_max_ms)

    def _drain(self) -> list:
        out, self.out = self.out, []
        return out

    def _send(self, dest: int, msg: dict) -> None:
        msg["from"] = self.index
        self.out.append(("send", dest, msg))

    def _broadcast(self, msg: dict) -> None:
        for i in range(self.n):
            if i != self.index:
                self._send(i, dict(msg))

    def _log(self, level: str, text: str) -> None:
        self.out.append(("log", level, text))

    def _persist_meta(self) -> None:
        self.out.append(("meta", {"view": self.view, "last_normal_view": self.last_normal_view}))

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
            body = e.get("body") or {}
            if body.get("kind") == "reconfig_begin" and self.is_primary and self.status == NORMAL:
                self._propose(None, None, {"kind": "reconfig_end"}, None)

    def _fail_waiters(self) -> None:
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
        elif self.status == NORMAL:
            if now - self.last_heard > self.vc_span:
                self._start_view_change(self.view + 1)
        elif self.status == VIEW_CHANGE:
            if now >= self.vc_deadline:
                self._start_view_change(self.view + 1)
            elif now - self.last_retry >= self.t.retry_ms:
                self.last_retry = now
                self._broadcast({"type": "svc", "view": self.view})
                if self.dvc_sent and not self.is_primary:
                    self._send_dvc()
        elif self.status == RECOVERING:
            if now - self.last_retry >= self.t.retry_ms:
                self._send_recovery()
            if (
                self.clean
                and not self.fresh
                and now - self.recovery_started >= self.t.recovery_fallback_ms
            ):
                self._log(
                    "WARNING", "recovery got no quorum of answers; view change from durable state"
                )
                self._start_view_change(self.view + 1)
        elif self.status == STATE_TRANSFER:
            if now - self.last_retry >= self.t.retry_ms:
                self._send_getstate(broadcast=True)
            if self.clean and now - self.last_heard > self.t.view_change_max_ms * 2:
                self._start_view_change(self.view + 1)
        return self._drain()

    def on_request(self, client: str | None, req: int | None, body: dict, token) -> list:
        """A client request. Backups (or a primary not in normal status) answer ``redirect``."""
        if self.status != NORMAL or not self.is_primary:
            leader = self.primary_of(self.view) if self.status == NORMAL else None
            self.out.append(("redirect", token, leader))
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

    def _propose(self, client, req, body, token) -> None:
        e = {"op": self.op + 1, "view": self.view, "client": client, "req": req, "body": body}
        self.log.append(e)
        self.out.append(("append", e["op"], [e]))
        if token is not None:
            self.waiters.setdefault(e["op"], []).append(token)
        if client is not None:
            self.inflight[(client, req)] = e["op"]
        for i in range(self.n):
            if i == self.index:
                continue
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
        for i in range(self.n):
            if i == self.index:
                continue
            acked = self.acked.get(i, -1)
            if 0 <= acked < self.op:
                batch = self.log[acked : acked + self.t.max_batch]
                for e in batch:
                    self._send_prepare(i, e)
                self.sent[i] = max(self.sent.get(i, -1), batch[-1]["op"])
            self._send(
                i, {"type": "commit", "view": self.view, "commit": self.commit, "op": self.op}
            )

    def _try_commit(self) -> None:
        if self.reconfig_joint_blocked():
            return
        acks = sorted((a for i, a in self.acked.items() if i != self.index), reverse=True)
        if len(acks) < self.f:
            return
        k = min(acks[self.f - 1], self.op) if self.f > 0 else self.op
        if k > self.commit:
            self.commit = k
            self._execute()

    def reconfig_joint_blocked(self) -> bool:
        return False

    def on_corruption(self, op: int) -> list:
        """The storage layer found a checksum mismatch in the durable copy of ``op``."""
        first = op if self.corrupt_from is None else min(self.corrupt_from, op)
        self.corrupt_from = first
        self._log(
            "ERROR",
            f"checksum mismatch in log entry op={op}: not serving or acknowledging ops >= {first}; "
            "starting state transfer to repair",
        )
        if self.status != RECOVERING:
            if self.is_primary and self.status == NORMAL:
                self._fail_waiters()
            self.status = STATE_TRANSFER
            self.st_from = min(first - 1, self.commit)
            self.st_view = self.view
            self._send_getstate(broadcast=True)
        return self._drain()

    def on_message(self, msg: dict, now: int | None = None) -> list:
        if now is not None:
            self.now = now
        handler = getattr(self, "_on_" + msg.get("type", ""), None)
        if handler is not None:
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
        v = m["view"]
        if v < self.view or self.status == RECOVERING or m["from"] != self.primary_of(v):
            return
        if v > self.view:
            if self.status == STATE_TRANSFER and not self.clean:
                self.view = v
                self._persist_meta()
                self.st_view = v
                return
            # we missed a view change: fetch the new view's log after our commit number
            self._enter_state_transfer(v, self.commit)
            return
        if self.status == VIEW_CHANGE:
            return
        self.last_heard = self.now
        if self.status == STATE_TRANSFER:
            return
        if m["type"] == "prepare":
            e = m["entry"]
            if e["op"] == self.op + 1:
                self.log.append(dict(e))
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

    # ------------------------------------------------------------------ view change
    def _start_view_change(self, v: int) -> None:
        was_primary = self.status == NORMAL and self.is_primary
        if was_primary:
            self._fail_waiters()
        self.view = v
        self.status = VIEW_CHANGE
        self.svc = {self.index}
        self.dvc = {}
        self.dvc_sent = False
        self.vc_deadline = self.now + self._vc_timeout()
        self.vc_span = self._vc_timeout()
        self.last_retry = self.now
        self._persist_meta()
        self._log("INFO", f"{self.name} starting view change to view {v}")
        self._broadcast({"type": "svc", "view": v})

    def _on_svc(self, m: dict) -> None:
        if not self.clean or self.status == RECOVERING:
            return
        v = m["view"]
        if v > self.view:
            self._start_view_change(v)
        if v == self.view and self.status == VIEW_CHANGE:
            self.svc.add(m["from"])
            if len(self.svc) - 1 >= self.f and not self.dvc_sent:
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
        p = self.primary_of(self.view)
        if p == self.index:
            self.dvc[self.index] = self._dvc_payload()
            self._maybe_start_view()
        else:
            self._send(p, self._dvc_payload())

    def _on_dvc(self, m: dict) -> None:
        if not self.clean or self.status == RECOVERING:
            return
        v = m["view"]
        if v > self.view:
            self._start_view_change(v)
        if v != self.view or self.primary_of(v) != self.index:
            return
        if self.status == NORMAL:
            self._send(m["from"], self._start_view_msg())
            return
        if self.status != VIEW_CHANGE:
            return
        self.dvc[m["from"]] = m
        self.dvc[self.index] = self._dvc_payload()
        self._maybe_start_view()

    def _maybe_start_view(self) -> None:
        if len(self.dvc) < self.f + 1 or self.status != VIEW_CHANGE:
            return
        best = max(self.dvc.values(), key=lambda d: (d["last_normal_view"], d["op"]))
        commit = max(d["commit"] for d in self.dvc.values())
        self._replace_log(1, best["log"])
        self.status = NORMAL
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
        self.view = v
        self.status = NORMAL
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
        self.last_heard = self.now
        self._log("INFO", f"starting state transfer from op {from_op + 1} (view {v})")
        self._send_getstate(broadcast=False)

    def _send_getstate(self, broadcast: bool) -> None:
        self.last_retry = self.now
        msg = {"type": "getstate", "view": self.view, "op": self.st_from}
        p = self.primary_of(self.view)
        if broadcast or p == self.index:
            self._broadcast(msg)
        else:
            self._send(p, msg)

    def _on_getstate(self, m: dict) -> None:
        if self.status == NORMAL and self.clean and m["view"] > self.view:
            # a higher view exists somewhere (the asker went through view changes we missed)
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
        if m["from"] != self.primary_of(m["view"]) or m["from_op"] - 1 > self.st_from:
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
        if self.status != NORMAL or not self.clean:
            return
        if m.get("view", 0) > self.view:
            self._start_view_change(m["view"])  # the recovering replica saw a higher view
            return
        r = {"type": "recovery_response", "view": self.view, "nonce": m["nonce"]}
        if self.is_primary:
            k = min(m["commit"], self.commit)
            r.update(from_op=k + 1, entries=self.log[k:], commit=self.commit)
        self._send(m["from"], r)

    def _on_recovery_response(self, m: dict) -> None:
        if self.status != RECOVERING or m["nonce"] != self.nonce:
            return
        if self.fresh and m["view"] == 0 and (m.get("fresh") or "entries" not in m):
            # fresh, or normal in view 0 of a cluster that just bootstrapped without a primary
            self.fresh_peers.add(m["from"])
        if not m.get("fresh"):
            self.responses[m["from"]] = m
            if self._try_recover():
                return
        if self.fresh and len(self.fresh_peers) == self.n - 1:
            self.fresh = False
            self.status = NORMAL
            self.last_normal_view = 0
            self._persist_meta()
            self.last_heard = self.now
            self.vc_span = self._vc_timeout()
            self._log("INFO", f"new cluster: all {self.n} replicas fresh, bootstrapping view 0")
            self._log("INFO", f"{self.names[0]} is primary (leader) for view 0")
            self._log("INFO", "Entering Normal status (view 0, op 0)")

    def _try_recover(self) -> bool:
        vmax = max(r["view"] for r in self.responses.values())
        if len(self.responses) < self.f or vmax < self.view:
            return False
        prim = self.responses.get(self.primary_of(vmax))
        if prim is None or prim["view"] != vmax or "entries" not in prim:
            return False
        if prim["from_op"] - 1 > self.commit:
            return False
        self.fresh = False
        self._adopt(
            vmax, prim["from_op"], prim["entries"], prim["commit"], prim["from"], "recovery"
        )
        return self.status == NORMAL
