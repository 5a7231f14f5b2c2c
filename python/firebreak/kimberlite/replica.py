"""The replica process: drives :mod:`firebreak.kimberlite.core` with real disk, HTTP and clock.

Run with ``python3 -m firebreak.kimberlite.replica --config PATH`` where PATH is a JSON file::

    {"cluster": "lab", "replica": "replica-1",
     "replicas": [{"name": "replica-1", "host": "127.0.20.1", "api_port": 8080,
                   "metrics_port": 9090}, ...],
     "data_dir": "/var/lib/kimberlite", "checkpoint_interval": 100, "checkpoint_keep": 3,
     "scrub_interval_s": 5}

Optional keys: ``hold_repair`` (default false: corruption found while running is repaired at
once; true: the replica fences itself and waits for a forced state transfer or a restart, so the
damaged bytes stay on disk as evidence), ``members`` (the initial configuration, default every
name in ``replicas``; a replica added later by a reconfiguration lists the cluster's initial
members here, or leaves it out: it learns the configuration from the log before it takes part),
``bind_host`` (default: this replica's ``host``; "0.0.0.0" in containers),
``heartbeat_ms`` (100), ``view_change_min_ms`` (500), ``view_change_max_ms`` (1000),
``request_timeout_s`` (5), ``control_file`` (default ``<data_dir>/control.json``: simulated
partition / latency faults, see below), ``log_level`` ("INFO").

Endpoints on ``api_port`` (8080):

* ``POST /api/write`` ``{"stream": .., "event": .., ["client": .., "request": N]}`` (any
  content-type; ``curl -d`` works). The write is acknowledged (200) only after it is committed by a
  quorum. **A write sent to a backup is forwarded to the current leader** (the primary of the view)
  and the leader's answer is relayed. A write that cannot commit within ``request_timeout_s``
  (no quorum, view change that does not finish) gets 503 and is *not* acknowledged.
  ``client``/``request`` make retries exactly-once (the replicated client table).
* ``GET /api/read?stream=S``: the committed events of S, linearizable: the read is an op of the
  log (``{"kind": "read"}``), answered by the leader once it commits (a backup forwards it, as a
  write), so a leader cut off from a newer view cannot answer it (503 after
  ``request_timeout_s``); ``&local=1`` serves the local replica's state at once (possibly
  behind). A replica that is not in normal status or has a detected checksum failure answers a
  local read with 503 instead of serving.
* ``POST /vsr/message``: replica-to-replica protocol traffic (JSON batches).
* ``/admin/...``: status, state-transfer, checkpoints, checkpoint, isolate, rejoin, scrub, reconfig,
  partition, latency, slow-commit (used by ``kimberlite-admin`` and the lab's fault injection).
  ``POST /admin/slow-commit {"ms": N}`` (the lab's ``slow-commit`` fault, FM-006): as a backup
  this replica still appends, persists and acknowledges every prepare, but executes committed
  ops at most one per N ms, so its commit number falls behind its op number while the cluster
  commits with the others; ``{"ms": 0}`` ends it. Held in memory only: a restart clears it.
  ``POST /admin/viewchange-stuck {"on": true}`` (the lab's ``viewchange-stuck`` fault, FM-002):
  this replica starts a view change and, until ``{"on": false}`` or a restart, drops every
  DoViewChange and StartView it receives, so a view change it takes part in never completes;
  on every replica, all stay in ViewChange with the view climbing (seed 000's "deadlock in the
  view change protocol"). Held in memory only.
  ``POST /admin/reconfig {"action": "add"|"remove", "replica": NAME, ["address": {"host": ..,
  "api_port": .., "metrics_port": ..}]}``: joint consensus (see ``core``); answers once the joint
  configuration has committed (an added replica first catches up as a learner); the stable
  configuration follows by itself. Addresses of added replicas travel in the log.

On ``metrics_port`` (9090): ``/metrics`` (Prometheus), ``/health``, ``/ready``.

Peers are resolved and connected to only by their :class:`Peer` threads, so a resolver that never
answers or a peer that does not accept blocks none of the endpoints above; each peer's reachability
is reported (``/admin/status`` ``peers``, ``vsr_peer_reachable``).

Partition and latency faults in processes mode are *simulated* by this process: the peers named in
the control file's ``"partition"`` list have their protocol traffic dropped in both directions
(outbound by the senders, inbound by ``/vsr/message``), and ``"latency_ms"`` delays every outbound
protocol send. In containers mode the lab uses real network faults instead.

Persistence failures (e.g. ENOSPC on a full disk) are fail-stop: the replica logs the error and
exits rather than acknowledge something it could not make durable.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import queue
import signal
import socket
import socketserver
import statistics
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, UnknownMetricFamily

from firebreak.kimberlite import storage
from firebreak.kimberlite.core import (
    NORMAL,
    STATE_TRANSFER,
    STATUS_NAMES,
    Replica,
    Timing,
    cfg_json,
    cfg_members,
    served_range,
)

LOG = logging.getLogger("kimberlite-vsr")
_NEVER_SET = threading.Event()


def pause(seconds: float) -> None:
    """Sleep ``seconds`` without ``time.sleep``. Python 3.11's ``time.sleep`` is an absolute
    ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)``; under libfaketime (the lab's clock
    skew, ``FAKETIME_DONT_FAKE_MONOTONIC=1``) its deadline is shifted by the faked wall clock
    into a negative time and every call fails with EINVAL at once, which killed the ticker
    thread. A timed wait on a lock (what this is) is left alone by libfaketime."""
    _NEVER_SET.wait(seconds)


disable_created_metrics()


def load_config(path: str | os.PathLike) -> dict:
    cfg = json.loads(Path(path).read_text())
    for key in ("cluster", "replica", "replicas", "data_dir"):
        if key not in cfg:
            raise SystemExit(f"config {path}: missing key {key!r}")
    cfg.setdefault("checkpoint_interval", 100)
    cfg.setdefault("checkpoint_keep", 3)
    cfg.setdefault("scrub_interval_s", 5)
    cfg.setdefault("hold_repair", False)
    cfg.setdefault("heartbeat_ms", 100)
    cfg.setdefault("view_change_min_ms", 500)
    cfg.setdefault("view_change_max_ms", 1000)
    cfg.setdefault("request_timeout_s", 5)
    cfg.setdefault("control_file", str(Path(cfg["data_dir"]) / "control.json"))
    cfg.setdefault("reconfig_timeout_s", 20)
    return cfg


def parse_address(addr, default_api: int = 8080, default_metrics: int = 9090) -> dict:
    """``HOST[:API_PORT[:METRICS_PORT]]`` (or a dict with ``host``) -> an address dict."""
    if isinstance(addr, dict):
        out = {"host": str(addr["host"])}
        out["api_port"] = int(addr.get("api_port", default_api))
        out["metrics_port"] = int(addr.get("metrics_port", default_metrics))
        return out
    parts = str(addr).split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"bad address {addr!r} (HOST[:API_PORT[:METRICS_PORT]])")
    return {
        "host": parts[0],
        "api_port": int(parts[1]) if len(parts) > 1 and parts[1] else default_api,
        "metrics_port": int(parts[2]) if len(parts) > 2 and parts[2] else default_metrics,
    }


class Waiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: dict | None = None
        self.redirect: int | None = None
        self.redirected = False
        self.failed = False


PROBE_S = (
    1.0  # an idle link to a peer is tried (an empty batch) this often: its state stays current
)


class PeerUnreachable(Exception):
    """A peer that could not be resolved or reached; the message says why."""


class Peer(threading.Thread):
    """Sends batches of protocol messages to one peer over a kept-alive HTTP connection.

    Only this thread looks the peer's name up and connects to it, so a resolver that does not
    answer, or a peer that does not accept, holds up this peer's traffic and nothing else (the
    lookup gets the resolver's own timeout: seconds). What it saw is the peer's link state
    (:meth:`link`); requests forwarded to the peer use the address it resolved (:meth:`target`).
    """

    def __init__(self, node: ReplicaNode, name: str, host: str, port: int) -> None:
        super().__init__(name=f"send-{name}", daemon=True)
        self.node, self.peer, self.host, self.port = node, name, host, port
        self.q: queue.Queue = queue.Queue()
        self.conn: http.client.HTTPConnection | None = None
        self.ip: str | None = None  # the last address the name resolved to
        self.looked_up = threading.Event()  # the first lookup has an outcome
        self.lookup_since: float | None = None  # a lookup is waiting since (monotonic)
        self.reachable = False
        self.error: str | None = "not contacted yet"
        self.last_ok: float | None = None
        self.last_try = float("-inf")

    def run(self) -> None:
        while not self.node.stopping.is_set():
            try:
                first = self.q.get(timeout=0.2)
            except queue.Empty:
                idle = time.monotonic() - self.last_try >= PROBE_S
                if idle and self.peer not in self.node.partitioned and self.node.linked(self.peer):
                    self._post([])
                continue
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 256:
                    batch.append(self.q.get_nowait())
            delay = self.node.latency_ms
            if delay:
                pause(delay / 1000.0)
            if self.peer in self.node.partitioned:
                continue
            self._post(batch)

    def _post(self, msgs: list) -> None:
        self.last_try = time.monotonic()
        body = json.dumps({"src": self.node.name, "ts": time.time() * 1000, "msgs": msgs})
        for _attempt in range(2):  # a kept-alive connection the peer closed fails once
            try:
                if self.conn is None:
                    self.conn = self._connect()
                self.conn.request(
                    "POST", "/vsr/message", body, {"Content-Type": "application/json"}
                )
                self.conn.getresponse().read()
                self.reachable, self.error, self.last_ok = True, None, time.monotonic()
                return
            except PeerUnreachable as exc:
                self.reachable, self.error = False, str(exc)
                return
            except (OSError, http.client.HTTPException) as exc:
                with contextlib.suppress(Exception):
                    self.conn.close()
                self.conn = None
                self.reachable, self.error = False, f"{self.ip}:{self.port}: {exc}"

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self._lookup(), self.port, timeout=2)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _lookup(self) -> str:
        self.lookup_since = time.monotonic()
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            self.ip = info[0][4][0]
        except OSError as exc:
            self.ip = None
            raise PeerUnreachable(f"name resolution of {self.host!r} failed: {exc}") from exc
        finally:
            self.lookup_since = None
            self.looked_up.set()
        return self.ip

    def link(self) -> dict:
        """The peer's link state as this replica sees it (``/admin/status`` ``peers``)."""
        now = time.monotonic()
        reachable, error = self.reachable, self.error
        since = self.lookup_since
        if since is not None:
            reachable = False
            error = f"name resolution of {self.host!r}: no answer for {now - since:.1f} s"
        elif self.peer in self.node.partitioned:
            reachable, error = False, "partitioned (simulated, control file)"
        return {
            "host": self.host,
            "address": self.ip,
            "reachable": reachable,
            "error": error,
            "last_ok_age_s": None if self.last_ok is None else round(now - self.last_ok, 1),
        }

    def target(self, deadline: float) -> str:
        """The address to forward a request to; waits (up to ``deadline``) for the first lookup."""
        self.looked_up.wait(max(0.0, deadline - time.monotonic()))
        ip = self.ip
        if ip is None:
            raise PeerUnreachable(self.link()["error"] or f"{self.host!r} not resolved yet")
        return ip


class ReplicaNode:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.name = cfg["replica"]
        self.cluster = cfg["cluster"]
        self.names = [r["name"] for r in cfg["replicas"]]  # the universe known at start
        self.by_name = {r["name"]: r for r in cfg["replicas"]}
        self.members = list(cfg.get("members") or self.names)
        self.no_address: set[str] = set()
        self.index = self.names.index(self.name)
        self.me = self.by_name[self.name]
        self.data_dir = Path(cfg["data_dir"])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.partitioned: set[str] = set()
        self.latency_ms = 0
        # the slow-commit fault: ms per executed op as a backup (0: off). Process memory only,
        # never the control file, so that a restart clears it (FM-006's remedy).
        self.slow_commit_ms = 0
        self.slow_commit_mark = 0.0  # monotonic time the slowed executor finished its last op
        self.slow_commit_idle = True  # it had executed everything it knew committed
        # the viewchange-stuck fault: DoViewChange and StartView dropped on receipt (memory only)
        self.viewchange_stuck = False
        self.isolated = False
        # test-only fault (control file "read_fault"): this replica answers reads wrongly, so
        # that the workload's history checker can be shown to catch it (see _bad_read)
        self.read_fault: str | None = None
        self.frozen: dict[str, list] = {}
        self.checksum_failures = 0
        self.scrub_tours = 0
        self.known_bad: set[int] = set()
        self.pending = 0
        self.offsets: dict[str, float] = {}
        self.propose_times: dict[int, float] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["replica", "cluster"]
        self.h_client = Histogram(
            "vsr_client_latency_ms",
            "client write latency (request to committed reply), ms",
            labels,
            registry=self.registry,
            buckets=(1, 2, 5, 10, 15, 20, 50, 100, 250, 500, 1000, 2500, 5000),
        )
        self.h_prepare = Histogram(
            "vsr_prepare_latency_ms",
            "primary: time from Prepare to quorum of PrepareOK (commit), ms",
            labels,
            registry=self.registry,
            buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000),
        )
        self.registry.register(_Collector(self))
        self.log = storage.Log(self.data_dir)
        self._load_control()
        self.core = self._boot()
        self.peers = {
            r["name"]: Peer(self, r["name"], r["host"], int(r["api_port"]))
            for r in cfg["replicas"]
            if r["name"] != self.name
        }
        self.started = False

    def address(self, name: str) -> dict | None:
        """A replica's address: from the config file, else from the log (reconfig add)."""
        return self.by_name.get(name) or self.core.addresses.get(name)

    def peer(self, name: str) -> Peer | None:
        p = self.peers.get(name)
        if p is None:
            a = self.address(name)
            if a is None:
                if name not in self.no_address:
                    self.no_address.add(name)
                    LOG.warning("no address known for %s: not sending to it", name)
                return None
            p = Peer(self, name, a["host"], int(a.get("api_port", 8080)))
            self.peers[name] = p
            LOG.info("peer %s at %s:%s", name, a["host"], a.get("api_port", 8080))
            if self.started:
                p.start()
        return p

    def linked(self, name: str) -> bool:
        """Whether ``name`` is a peer whose link is kept and reported: a member of the configuration
        in the log, or the learner catching up."""
        with self.lock:
            return name in self._linked_names()

    def _linked_names(self) -> list[str]:
        c = self.core
        names = [*cfg_members(c.cfg), (c.learner or {}).get("name")]
        return [n for n in dict.fromkeys(names) if n and n != self.name]

    def peer_links(self) -> dict[str, dict]:
        """name -> link state (reachable, error, ...) of each linked peer (caller holds lock)."""
        out = {}
        for name in self._linked_names():
            p = self.peer(name)
            out[name] = p.link() if p else {"reachable": False, "error": "no address known"}
        return out

    # ------------------------------------------------------------------ boot
    def _boot(self) -> Replica:
        commit_hint = storage.load_commit_hint(self.data_dir)
        res = self.log.load(commit_hint)
        if res.torn_tail:
            LOG.warning("log ends with a torn (partial) record; dropped it")
        for op in res.corrupt:
            self.checksum_failures += 1
            LOG.error("checksum mismatch in log entry op=%d found at start-up", op)
        try:
            meta = storage.load_meta(self.data_dir)
        except storage.MetaCorruptError as exc:
            LOG.critical(
                "refusing to start: %s. The durable view is lost and a guess could vote twice "
                "in one view: wipe the data directory and resync from scratch (FM-003 step 5)",
                exc,
            )
            raise SystemExit(3) from exc
        self.meta_on_disk = (
            {"view": meta["view"], "last_normal_view": meta["last_normal_view"]} if meta else None
        )
        timing = Timing(
            heartbeat_ms=int(self.cfg["heartbeat_ms"]),
            view_change_min_ms=int(self.cfg["view_change_min_ms"]),
            view_change_max_ms=int(self.cfg["view_change_max_ms"]),
            checkpoint_interval=int(self.cfg["checkpoint_interval"]),
        )
        core = Replica(
            self.names,
            self.index,
            timing=timing,
            members=self.members,
            seed=int.from_bytes(os.urandom(4), "big"),
            now=self.now_ms(),
            **storage.boot_args(
                res, meta, commit_hint, storage.load_latest_checkpoint(self.data_dir)
            ),
            hold_repair=bool(self.cfg["hold_repair"]),
        )
        self.boot_effects = core._drain()
        return core

    @staticmethod
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    def _load_control(self) -> None:
        try:
            ctl = json.loads(Path(self.cfg["control_file"]).read_text())
        except (OSError, ValueError):
            ctl = {}
        part = set(ctl.get("partition", []))
        if part != self.partitioned:
            LOG.warning("simulated partition from peers: %s", sorted(part) or "none (healed)")
        self.partitioned = part
        lat = int(ctl.get("latency_ms", 0))
        if lat != self.latency_ms:
            LOG.warning("outbound protocol latency set to %d ms", lat)
        self.latency_ms = lat
        rf = ctl.get("read_fault")
        if rf != self.read_fault:
            LOG.warning("test fault: reads served %s", rf or "correctly again")
            self.read_fault, self.frozen = rf, {}

    def _save_control(self) -> None:
        """Write what the admin API changed; the rest of the control file (the read fault) is
        the lab's, kept as the file says it."""
        path = Path(self.cfg["control_file"])
        try:
            ctl = json.loads(path.read_text())
        except (OSError, ValueError):
            ctl = {}
        ctl.update(partition=sorted(self.partitioned), latency_ms=self.latency_ms)
        storage.write_json_atomic(path, ctl, fsync=False)

    def _bad_read(self, code: int, body: dict) -> tuple[int, dict]:
        """The test-only read fault on an answer this replica gives (local or forwarded):
        ``stale`` serves each stream as it was at its first read under the fault, ``reorder``
        swaps the last two events of the stream."""
        if code != 200 or self.read_fault not in ("stale", "reorder"):
            return code, body
        pairs = list(zip(body["events"], body["ops"], strict=True))
        if self.read_fault == "stale":
            pairs = self.frozen.setdefault(body["stream"], pairs)
        elif len(pairs) >= 2:
            pairs[-2:] = pairs[:-3:-1]
        body = dict(body, events=[e for e, _ in pairs], ops=[op for _, op in pairs])
        return code, body

    # ------------------------------------------------------------------ effects
    def run_effects(self, effects: list) -> None:
        """Carry out the core's effects in order (caller holds the lock)."""
        work = list(effects)
        while work:
            eff = work.pop(0)
            kind = eff[0]
            if kind == "send":
                msg = eff[2]
                bad = self._verify_outgoing(msg)
                if bad:
                    work[:0] = self._report_corruption(bad, "read")
                    continue
                peer = self.peer(self.core.names[eff[1]])
                if peer is not None:
                    peer.q.put(msg)
            elif kind == "append":
                try:
                    if len(eff[2]) == 1 and self.core.is_primary and self.core.status == NORMAL:
                        self.propose_times[eff[1]] = time.monotonic()
                    self.log.write(eff[1], eff[2])
                    self.known_bad = {op for op in self.known_bad if op < eff[1]}
                except OSError as exc:
                    self._fatal(f"cannot persist log entries from op {eff[1]}: {exc}")
            elif kind == "meta":
                # Only a change is written (and fsync'd): the view numbers move on view changes,
                # not on every recovery or state transfer the core reports them after.
                if eff[1] == self.meta_on_disk:
                    continue
                try:
                    storage.save_meta(self.data_dir, eff[1])
                    self.meta_on_disk = dict(eff[1])
                except OSError as exc:
                    self._fatal(f"cannot persist view metadata: {exc}")
            elif kind == "reply":
                w: Waiter = eff[1]
                w.result = eff[2]
                w.event.set()
            elif kind == "redirect":
                w = eff[1]
                w.redirect, w.redirected = eff[2], True
                w.event.set()
            elif kind == "fail":
                w = eff[1]
                w.failed = True
                w.event.set()
            elif kind == "checkpoint":
                try:
                    storage.write_checkpoint(
                        self.data_dir, eff[1], eff[2], int(self.cfg["checkpoint_keep"])
                    )
                except OSError as exc:
                    LOG.error("checkpoint at op %d failed: %s", eff[1], exc)
            elif kind == "log":
                LOG.log(getattr(logging, eff[1], logging.INFO), "%s", eff[2])
        commit = self.core.commit
        if self.propose_times:
            now = time.monotonic()
            labels = (self.name, self.cluster)
            for op in [op for op in self.propose_times if op <= commit]:
                self.h_prepare.labels(*labels).observe((now - self.propose_times.pop(op)) * 1000)
            if len(self.propose_times) > 10000:
                self.propose_times.clear()

    def _verify_outgoing(self, msg: dict) -> list[int]:
        """Read path: verify the durable copies of the entries a message would serve to a peer."""
        span = served_range(msg)
        return self.log.verify_range(*span) if span else []

    def _report_corruption(self, bad: list[int], where: str) -> list:
        effects = []
        for op in bad:
            if op in self.known_bad:
                continue
            self.known_bad.add(op)
            self.checksum_failures += 1
            LOG.error("checksum mismatch in log entry op=%d detected by %s", op, where)
            effects += self.core.on_corruption(op)
        return effects

    def _fatal(self, text: str) -> None:
        LOG.critical("%s; stopping (fail-stop: nothing unpersisted is acknowledged)", text)
        logging.shutdown()
        os._exit(75)

    # ------------------------------------------------------------------ loops
    def ticker(self) -> None:
        last_hint = last_ctl = 0.0
        while not self.stopping.is_set():
            pause(0.01)
            with self.lock:
                self.run_effects(self.core.tick(self.now_ms()))
                now = time.monotonic()
                if now - last_hint > 0.5:
                    last_hint = now
                    with contextlib.suppress(OSError):
                        storage.save_commit_hint(self.data_dir, self.core.commit)
            if now - last_ctl > 0.2:
                last_ctl = now
                self._load_control()

    def scrubber(self) -> None:
        interval = float(self.cfg["scrub_interval_s"])
        while not self.stopping.wait(interval):
            self.scrub_once()

    def scrub_once(self) -> dict:
        with self.lock:
            bad = self.log.scrub()
            self.scrub_tours += 1
            self.run_effects(self._report_corruption(bad, "scrubber"))
            return {"tour": self.scrub_tours, "checksum_failures": bad}

    def deliver(self, payload: dict) -> None:
        src = payload.get("src")
        if src in self.partitioned:
            return
        ts = payload.get("ts")
        if ts is not None:
            self.offsets[src] = time.time() * 1000 - float(ts)
        with self.lock:
            for msg in payload.get("msgs", []):
                if self.viewchange_stuck and msg.get("type") in ("dvc", "start_view"):
                    continue
                if self.slow_commit_ms and msg.get("type") in ("prepare", "commit"):
                    msg = self._slowed_commit(msg)
                self.run_effects(self.core.on_message(msg, self.now_ms()))

    def _slowed_commit(self, msg: dict) -> dict:
        """The slow-commit fault on a PREPARE / COMMIT: the commit number it carries, held back so
        that this replica executes at most one op per ``slow_commit_ms`` (caller holds the lock).

        Safe: any number up to the primary's commit number is committed (commits are a prefix),
        so a lower one is what an older PREPARE of the view carried; the core takes it as such.
        The entry itself is appended and acknowledged as usual, so the op number keeps up."""
        c = self.core
        want = msg.get("commit")
        if not isinstance(want, int) or isinstance(want, bool):
            return msg
        # what it can execute: the ops it holds (a PREPARE brings one more)
        want = min(want, c.op + (msg["type"] == "prepare"))
        if want <= c.commit:
            return msg
        now = time.monotonic()
        per = self.slow_commit_ms / 1000.0
        if self.slow_commit_idle:
            # nothing was waiting: time spent idle is no credit, the executor starts now
            self.slow_commit_mark = max(self.slow_commit_mark, now - per)
        backlog = want - c.commit
        n = min(backlog, int((now - self.slow_commit_mark) / per))
        self.slow_commit_idle = n == backlog
        self.slow_commit_mark = now if self.slow_commit_idle else self.slow_commit_mark + n * per
        return dict(msg, commit=c.commit + n)

    def clock_offset_ms(self) -> float:
        return statistics.median([0.0, *self.offsets.values()])

    # ------------------------------------------------------------------ client requests
    def leader_name(self) -> str | None:
        c = self.core
        return c.leader_name() if c.status == NORMAL else None

    def write(self, body: dict, deadline: float, forwarded: bool) -> tuple[int, dict]:
        if self.isolated:
            return 503, {"error": f"{self.name} is isolated (not accepting client requests)"}
        client = body.get("client")
        req = body.get("request")
        if client is not None:
            client, req = str(client), int(req or 0)
        payload = {"stream": str(body.get("stream", "")), "event": body.get("event")}
        if "kind" in body:
            payload = {k: v for k, v in body.items() if k not in ("client", "request")}
        start = time.monotonic()
        self.pending += 1
        try:
            while time.monotonic() < deadline:
                w = Waiter()
                with self.lock:
                    self.run_effects(self.core.on_request(client, req, payload, w))
                w.event.wait(max(0.0, deadline - time.monotonic()))
                if w.result is not None and w.result.get("error"):
                    return 409, dict(w.result, replica=self.name, acknowledged=False)
                if w.result is not None:
                    self.h_client.labels(self.name, self.cluster).observe(
                        (time.monotonic() - start) * 1000
                    )
                    return 200, dict(w.result, replica=self.name, acknowledged=True)
                if w.failed and client is None:
                    return 503, {
                        "error": "leader changed before commit; outcome unknown (send client and "
                        "request to retry exactly-once)",
                        "acknowledged": False,
                    }
                if not (w.redirected or w.failed):
                    break
                if w.redirect is not None and w.redirect != self.core.index and not forwarded:
                    status, resp = self._forward_write(w.redirect, body, deadline)
                    if status == 200:
                        self.h_client.labels(self.name, self.cluster).observe(
                            (time.monotonic() - start) * 1000
                        )
                        return status, resp
                pause(0.05)
        finally:
            self.pending -= 1
        return 503, {
            "error": "not committed before the timeout (no quorum?)"
            + ("" if "kind" not in body else " (a reconfiguration may still complete)"),
            "acknowledged": False,
        }

    def _forward_write(self, leader: int, body: dict, deadline: float) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "X-Forwarded-By": self.name}
        return self._forward(self.core.names[leader], "POST", "/api/write", body, headers, deadline)

    def _forward(
        self, name: str, method: str, path: str, body, headers: dict, deadline: float
    ) -> tuple[int, dict]:
        """Relay a client request to the peer ``name`` (the leader), within ``deadline``: at the
        address its Peer thread resolved, so a lookup that hangs never holds the request."""
        with self.lock:
            peer = self.peer(name)
        if peer is None:
            return 503, {"error": f"no address for the leader {name}"}
        try:
            ip = peer.target(deadline)
            timeout = max(0.1, deadline - time.monotonic())
            conn = http.client.HTTPConnection(ip, peer.port, timeout=timeout)
            try:
                conn.request(method, path, None if body is None else json.dumps(body), headers)
                resp = conn.getresponse()
                return resp.status, json.loads(resp.read() or b"{}")
            finally:
                conn.close()
        except (PeerUnreachable, OSError, ValueError, http.client.HTTPException) as exc:
            return 503, {"error": f"forward to {name} failed: {exc}"}

    def read(self, stream: str, local: bool) -> tuple[int, dict]:
        return self._bad_read(*self._read(stream, local))

    def _read(self, stream: str, local: bool) -> tuple[int, dict]:
        if not local:
            # linearizable: the read is an op of the log, answered when it commits, so a leader
            # cut off from the others (still Normal in its old view) cannot answer it from a
            # state the new view has moved past; a backup relays it to the leader
            deadline = time.monotonic() + float(self.cfg["request_timeout_s"])
            code, resp = self.write({"kind": "read", "stream": stream}, deadline, False)
            if code != 200:
                return code, {"error": resp.get("error", f"read failed ({code})")}
            return 200, {
                "stream": stream,
                "events": resp["events"],
                "ops": resp["ops"],
                "served_by": resp.get("replica"),
                "commit": resp["op"],
            }
        with self.lock:
            c = self.core
            if c.status != NORMAL or not c.clean:
                return 503, {
                    "error": f"{self.name} is {STATUS_NAMES[c.status]}"
                    + ("" if c.clean else f" (checksum failure from op {c.corrupt_from})"),
                }
            events = c.sm.streams.get(stream, [])
            return 200, {
                "stream": stream,
                "events": [e for e, _ in events],
                "ops": [op for _, op in events],
                "served_by": self.name,
                "commit": c.commit,
            }

    # ------------------------------------------------------------------ admin
    def status(self) -> dict:
        with self.lock:
            c = self.core
            return {
                "replica": self.name,
                "cluster": self.cluster,
                "pid": os.getpid(),
                "status": c.status,
                "status_name": STATUS_NAMES[c.status],
                "view": c.view,
                "op": c.op,
                "commit": c.commit,
                "leader": c.leader_name(),
                "is_primary": c.status == NORMAL and c.is_primary,
                "isolated": self.isolated,
                "corrupt_from": c.corrupt_from,
                "repair_held": c.repair_held,
                "checksum_failures": self.checksum_failures,
                "scrub_tours": self.scrub_tours,
                "partitioned_from": sorted(self.partitioned),
                "read_fault": self.read_fault,
                "latency_ms": self.latency_ms,
                "slow_commit_ms": self.slow_commit_ms,
                "viewchange_stuck": self.viewchange_stuck,
                "clock_offset_ms": round(self.clock_offset_ms(), 1),
                "reconfig_state": self.reconfig_state(),
                "configuration": cfg_members(c.cfg_at(c.commit)),
                "config": cfg_json(c.cfg_at(c.commit)),
                "config_log": cfg_json(c.cfg),
                "member": c.member,
                "learner": (c.learner or {}).get("name"),
                "reconfig_joint_total": c.joint_entered,
                "reconfig_stable_total": c.stable_entered,
                "pending_requests": self.pending,
                "log_bytes": self.log.size(),
                "data_dir": str(self.data_dir),
                "peers": self.peer_links(),
            }

    def admin(self, action: str, body: dict) -> tuple[int, dict]:
        if action == "status":
            return 200, self.status()
        if action == "checkpoints":
            return 200, {"checkpoints": storage.list_checkpoints(self.data_dir)}
        if action == "checkpoint":
            with self.lock:
                snap = self.core.sm.snapshot()
                path = storage.write_checkpoint(
                    self.data_dir, snap["op"], snap, int(self.cfg["checkpoint_keep"])
                )
            return 200, {"checkpoint": str(path), "op": snap["op"]}
        if action == "isolate":
            self.isolated = True
            LOG.warning("isolated: no longer accepting client requests")
            return 200, {"isolated": True}
        if action == "rejoin":
            self.isolated = False
            LOG.warning("rejoined: accepting client requests again")
            return 200, {"isolated": False}
        if action == "scrub":
            return 200, self.scrub_once()
        if action == "state-transfer":
            with self.lock:
                c = self.core
                if c.repair_held:
                    LOG.warning("held repair released by admin (from op %d)", c.st_from + 1)
                    self.run_effects(c.release_repair())
                    return 200, {
                        "status": STATUS_NAMES[STATE_TRANSFER],
                        "from_op": c.st_from + 1,
                        "released": True,
                    }
                if c.status == STATE_TRANSFER:
                    return 409, {"error": "state transfer already running"}
                LOG.warning("state transfer forced by admin (from op %d)", c.commit + 1)
                c._enter_state_transfer(c.view, c.commit)
                self.run_effects(c._drain())
            return 200, {"status": STATUS_NAMES[STATE_TRANSFER], "from_op": self.core.commit + 1}
        if action == "partition":
            self.partitioned = set(body.get("peers", []))
            self._save_control()
            LOG.warning("simulated partition from peers: %s", sorted(self.partitioned) or "none")
            return 200, {"partitioned_from": sorted(self.partitioned)}
        if action == "latency":
            self.latency_ms = int(body.get("ms", 0))
            self._save_control()
            return 200, {"latency_ms": self.latency_ms}
        if action == "slow-commit":
            return self._slow_commit(body)
        if action == "viewchange-stuck":
            return self._viewchange_stuck(body)
        if action == "reconfig":
            return self._reconfig(body)
        return 404, {"error": f"unknown admin action {action}"}

    def _slow_commit(self, body: dict) -> tuple[int, dict]:
        try:
            ms = int(body.get("ms", 0))
        except (TypeError, ValueError):
            return 400, {"error": f"slow-commit: ms must be an integer, not {body.get('ms')!r}"}
        if ms < 0:
            return 400, {"error": f"slow-commit: ms must be >= 0, not {ms}"}
        with self.lock:
            was, self.slow_commit_ms = self.slow_commit_ms, ms
            self.slow_commit_mark, self.slow_commit_idle = time.monotonic(), True
        if ms:
            LOG.warning("slow commit: executing at most one committed op per %d ms", ms)
        elif was:
            LOG.warning("slow commit ended (was %d ms per op)", was)
        return 200, {"slow_commit_ms": ms, "was_ms": was}

    def _viewchange_stuck(self, body: dict) -> tuple[int, dict]:
        on = body.get("on")
        if not isinstance(on, bool):
            return 400, {"error": f"viewchange-stuck: on must be true or false, not {on!r}"}
        with self.lock:
            was, self.viewchange_stuck = self.viewchange_stuck, on
            c = self.core
            if on and c.status != STATE_TRANSFER:
                c._start_view_change(c.view + 1)
                self.run_effects(c._drain())
        if on:
            LOG.warning("view change stuck: dropping DoViewChange and StartView (view %d)", c.view)
        elif was:
            LOG.warning("view change no longer stuck")
        return 200, {"viewchange_stuck": on, "was": was}

    def reconfig_state(self) -> int:
        """1 (Joint) while the committed configuration is joint, else 0 (Stable)."""
        c = self.core
        return 1 if c.cfg_at(c.commit)[1] is not None else 0

    def _reconfig(self, body: dict) -> tuple[int, dict]:
        action, who = body.get("action"), body.get("replica")
        if action not in ("add", "remove") or not who:
            return 400, {"error": "expected action add|remove and replica NAME"}
        req = {"kind": "reconfig", "action": action, "replica": str(who)}
        if action == "add":
            addr = body.get("address")
            try:
                if addr:
                    req["address"] = parse_address(addr)
                elif self.address(str(who)) is not None:
                    a = self.address(str(who))
                    req["address"] = parse_address(a)
            except (ValueError, KeyError) as exc:
                return 400, {"error": str(exc)}
            if "address" not in req:
                return 400, {"error": f"{who}: no address known; pass address HOST[:API[:METRICS]]"}
        with self.lock:
            old = cfg_members(self.core.cfg)
        LOG.warning("reconfig %s %s requested (configuration %s)", action, who, old)
        deadline = time.monotonic() + float(self.cfg["reconfig_timeout_s"])
        status, resp = self.write(req, deadline, False)
        return status, dict(resp, requested={"action": action, "replica": who})


class _Collector:
    def __init__(self, node: ReplicaNode) -> None:
        self.node = node

    def describe(self):
        return []

    def collect(self):
        n = self.node
        labels = ["replica", "cluster"]
        values = [n.name, n.cluster]
        with n.lock:
            c = n.core
            gauges = {
                "vsr_replica_status": (
                    c.status,
                    "0 Normal, 1 ViewChange, 2 Recovering, 3 StateTransfer",
                ),
                "vsr_view_number": (c.view, "current view number"),
                "vsr_op_number": (c.op, "highest op number in the log"),
                "vsr_commit_number": (c.commit, "highest committed op number"),
                "vsr_pending_requests": (n.pending, "client requests waiting for commit"),
                "vsr_clock_offset_ms": (
                    n.clock_offset_ms(),
                    "wall clock minus peers' (median), ms",
                ),
                "vsr_reconfig_state": (n.reconfig_state(), "0 Stable, 1 Joint"),
                "vsr_config_member": (
                    1 if c.member else 0,
                    "1 while this replica belongs to the configuration",
                ),
                "vsr_config_size": (len(c.cfg_at(c.commit)[0]), "members of the configuration"),
            }
            counters = {
                "vsr_operations_total": (c.ops_executed, "operations executed (committed)"),
                "vsr_checksum_failures_total": (n.checksum_failures, "checksum mismatches found"),
                "vsr_reconfig_joint_total": (c.joint_entered, "joint configurations executed"),
                "vsr_reconfig_stable_total": (
                    c.stable_entered,
                    "stable configurations executed (reconfig_end)",
                ),
            }
            untyped = {
                "vsr_messages_sent_prepare": (c.prepares_sent, "Prepare messages sent"),
                "vsr_scrub_tours_completed": (n.scrub_tours, "scrubber tours over the whole log"),
            }
            links = n.peer_links()
        for name, (v, doc) in gauges.items():
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, v)
            yield g
        for name, (v, doc) in counters.items():
            m = CounterMetricFamily(name, doc, labels=labels)
            m.add_metric(values, v)
            yield m
        for name, (v, doc) in untyped.items():
            m = UnknownMetricFamily(name, doc, labels=labels)
            m.add_metric(values, v)
            yield m
        g = GaugeMetricFamily(
            "vsr_peer_reachable",
            "1 while the last contact with the peer succeeded (why not: /admin/status peers)",
            labels=[*labels, "peer"],
        )
        for peer, link in links.items():
            g.add_metric([*values, peer], 1 if link["reachable"] else 0)
        yield g


def _handler(node: ReplicaNode, metrics: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # headers and body go out in separate writes: without this, Nagle + delayed ACK
            # add ~40 ms to every answer on a kept-alive connection
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *args):  # quiet access log
            pass

        def _send(self, code: int, body, ctype: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not raw:
                return {}
            try:
                return json.loads(raw)
            except ValueError:
                # a form body (curl -d k=v&...): accept it too
                return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            if metrics:
                if url.path == "/metrics":
                    return self._send(
                        200, generate_latest(node.registry), "text/plain; version=0.0.4"
                    )
                if url.path == "/health":
                    return self._send(200, {"status": "ok", "replica": node.name})
                if url.path == "/ready":
                    st = node.status()
                    ok = st["status"] == NORMAL and st["corrupt_from"] is None
                    return self._send(200 if ok else 503, {"ready": ok, **st})
                return self._send(404, {"error": "not found"})
            if url.path == "/api/read":
                code, body = node.read(q.get("stream", ""), q.get("local") in ("1", "true"))
                return self._send(code, body)
            if url.path.startswith("/admin/"):
                code, body = node.admin(url.path[len("/admin/") :], q)
                return self._send(code, body)
            if url.path in ("/health", "/ready"):
                return self._send(200, {"status": "ok"})
            return self._send(404, {"error": "not found"})

        def do_POST(self):
            url = urllib.parse.urlparse(self.path)
            body = self._body()
            if metrics:
                return self._send(404, {"error": "not found"})
            if url.path == "/vsr/message":
                node.deliver(body)
                return self._send(200, {"ok": True})
            if url.path == "/api/write":
                if "stream" not in body and "kind" not in body:
                    return self._send(400, {"error": 'expected {"stream": .., "event": ..}'})
                deadline = time.monotonic() + float(node.cfg["request_timeout_s"])
                fwd = bool(self.headers.get("X-Forwarded-By"))
                code, resp = node.write(body, deadline, fwd)
                return self._send(code, resp)
            if url.path.startswith("/admin/"):
                code, resp = node.admin(url.path[len("/admin/") :], body)
                return self._send(code, resp)
            return self._send(404, {"error": "not found"})

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks socket.getfqdn(host) for server_name, a reverse lookup
        # that waits out the resolver's timeout (seconds) when DNS does not answer, before the
        # socket listens. Nothing here uses server_name: bind without the lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def serve(cfg: dict) -> int:
    node = ReplicaNode(cfg)
    bind = cfg.get("bind_host") or node.me["host"]
    api = _Server((bind, int(node.me["api_port"])), _handler(node, metrics=False))
    met = _Server((bind, int(node.me["metrics_port"])), _handler(node, metrics=True))
    with node.lock:
        for p in list(node.peers.values()):
            p.start()
        node.started = True
    c = node.core
    boot = (STATUS_NAMES[c.status], c.view, c.op, c.commit)
    threads = [
        threading.Thread(target=api.serve_forever, name="api", daemon=True),
        threading.Thread(target=met.serve_forever, name="metrics", daemon=True),
        threading.Thread(target=node.ticker, name="ticker", daemon=True),
        threading.Thread(target=node.scrubber, name="scrubber", daemon=True),
    ]
    for t in threads:
        t.start()
    LOG.info(
        "Replica started: %s of cluster %s (%d replicas), api %s:%s, metrics %s:%s, status %s, "
        "view %d, op %d, commit %d",
        node.name,
        node.cluster,
        len(node.names),
        bind,
        node.me["api_port"],
        bind,
        node.me["metrics_port"],
        *boot,
    )
    with node.lock:
        node.run_effects(node.boot_effects)
    if boot[0] == "Normal":
        LOG.info("Entering Normal status (view %d, op %d)", c.view, c.op)
        LOG.info("%s is primary (leader) for view %d", c.leader_name(), c.view)
    done = threading.Event()

    def _stop(signum, _frame):
        LOG.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    done.wait()
    node.stopping.set()
    with node.lock, contextlib.suppress(OSError):
        storage.write_json_atomic(
            node.data_dir / "commit.json", {"commit": node.core.commit}, fsync=True
        )
    api.shutdown()
    met.shutdown()
    LOG.info("Replica stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m firebreak.kimberlite.replica", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--config", required=True, help="replica JSON config")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, str(cfg.get("log_level", "INFO")).upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {cfg['replica']} %(name)s: %(message)s",
    )
    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
