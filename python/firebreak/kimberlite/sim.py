"""Seeded deterministic simulation of the VSR core.

One :class:`Simulation` drives ``n`` :class:`~firebreak.kimberlite.core.Replica` objects over a
simulated network that drops, delays, duplicates and reorders messages, partitions replicas (with
``oneway``, that share of the partitions is one-way: the cut-off side hears the others, they do not
hear it), crashes and restarts them, flips bits in durable log entries (detected later by the
scrubber, by the check before an entry is sent, or at restart; with ``length_rate``, that share of
the corruptions flips a bit of a record's length field instead, or as well). Each replica's disk is
a real data directory written and read by :mod:`firebreak.kimberlite.storage` (``Log``, meta,
commit hint, checkpoints; memory-backed under ``/dev/shm`` when there is one), and a restart boots
from it as the replica process does (``Log.load``, :func:`storage.boot_args`). With
``midcrash_rate`` a replica crashes partway through a batch of effects that persists something
(between persist and send: what came before is done, what came after never happens), and half of
the crashes that land on an ``append`` tear it (a prefix of its bytes on disk: ``Log.load`` must
drop the torn tail, or hold it as corruption if it may have been acknowledged). With ``wipe_rate``
wipes a member's disk (it restarts with no durable state: fresh; one disk fault at a time, as
neither a wipe nor a corruption overlaps another), and, with ``reconfig_rate``, reconfigures the
cluster at random points: ``add`` (a spare replica is provisioned with an empty disk, before or
after the request) and ``remove`` (any member, the primary included; a removed replica keeps
running as a non-member or is decommissioned once its removal has committed). Every fault decision
comes from one ``random.Random(seed)``, so a seed replays exactly:

    python -m firebreak.kimberlite.sim --seed 1234 [--reconfig-rate 0.002] [--midcrash-rate 0.01]

Invariants are checked after every step (see :meth:`Simulation.check`); after the fault phase
everything heals and the cluster must return to normal and commit a new write (liveness). With
reconfigurations the same invariants run over every replica ever started, plus: each log's
configuration entries alternate begin / end, one member at a time, each begin from the stable
configuration before it; a normal primary belongs to its configuration; a removed replica never
reports itself a member; liveness is judged on the members of the final configuration, which must
be stable.
"""

from __future__ import annotations

import argparse
import heapq
import inspect
import os
import random
import shutil
import sys
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from firebreak.kimberlite import storage
from firebreak.kimberlite.core import (
    NORMAL,
    Replica,
    Timing,
    cfg_apply,
    cfg_members,
    entry_id,
    is_config_entry,
    served_range,
)


class InvariantViolation(AssertionError):
    pass


@dataclass
class Disk:
    """A replica's data directory, written and read by :mod:`firebreak.kimberlite.storage`."""

    path: Path
    blank: bool = False  # wiped and nothing written since (the replica boots fresh)
    corrupt: set = field(default_factory=set)  # ops the simulation damaged, not yet rewritten
    known_bad: set = field(default_factory=set)  # ops the running replica reported corrupt
    meta: dict | None = None  # what meta.json holds
    hint: int = 0  # what commit.json holds
    log: storage.Log = field(init=False)

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        """A new process opens the directory (the log's index is rebuilt by ``load``)."""
        self.log = storage.Log(self.path)

    def erase(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.corrupt, self.known_bad, self.meta, self.hint = set(), set(), None, 0
        self.open()


def _data_root() -> Path:
    """Where the simulated disks live: memory-backed when the machine has it (fsync is cheap)."""
    shm = Path("/dev/shm")  # noqa: S108 (mkdtemp below: a private, unique 0700 directory)
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="firebreak-sim-", dir=base))


@dataclass
class Client:
    cid: str
    req: int = 0
    pending: bool = False
    sent_at: int = 0
    target: int = 0


def replay_command(seed: int, **kw) -> str:
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in kw.items())
    return f".venv/bin/python -m firebreak.kimberlite.sim --seed {seed}{extra}"


# the parameters a replay command repeats when they differ from their defaults, in its order
REPLAYED = (
    "n",
    "drop",
    "crash_rate",
    "partition_rate",
    "corrupt_rate",
    "fault_ms",
    "reconfig_rate",
    "min_members",
    "wipe_rate",
    "midcrash_rate",
    "oneway",
    "length_rate",
)


class Simulation:
    def __init__(
        self,
        seed: int,
        *,
        n: int = 3,
        fault_ms: int = 15000,
        heal_ms: int = 20000,
        step_ms: int = 10,
        clients: int = 3,
        drop: float = 0.05,
        dup: float = 0.02,
        crash_rate: float = 0.0015,
        partition_rate: float = 0.001,
        corrupt_rate: float = 0.0008,
        reconfig_rate: float = 0.0,
        spares: int = 2,
        min_members: int = 3,
        wipe_rate: float = 0.0,
        midcrash_rate: float = 0.0,
        oneway: float = 0.0,
        length_rate: float = 0.0,
    ) -> None:
        given = dict(locals())
        if wipe_rate and reconfig_rate:
            raise ValueError("wipe_rate and reconfig_rate do not combine (wipes hit members)")
        defaults = inspect.signature(Simulation.__init__).parameters
        self.params = {k: given[k] for k in REPLAYED if given[k] != defaults[k].default}
        self.seed, self.n = seed, n
        self.rng = random.Random(seed)
        self.fault_ms, self.heal_ms, self.step_ms = fault_ms, heal_ms, step_ms
        self.drop, self.dup = drop, dup
        self.crash_rate, self.partition_rate = crash_rate, partition_rate
        self.corrupt_rate, self.length_rate = corrupt_rate, length_rate
        self.reconfig_rate, self.min_members = reconfig_rate, min_members
        self.wipe_rate, self.midcrash_rate, self.oneway = wipe_rate, midcrash_rate, oneway
        self.wipes = self.midcrashes = self.torn = self.torn_dropped = self.oneways = 0
        self.length_faults = 0
        # the universe: the initial members, then spares that reconfigurations may add
        self.u = n + (spares if reconfig_rate > 0 else 0)
        self.names = [f"replica-{i + 1}" for i in range(self.u)]
        self.initial = self.names[:n]
        self.timing = Timing(checkpoint_interval=20)
        self.now = 0
        self._start_cluster()
        self._start_bookkeeping(clients)

    def _start_cluster(self) -> None:
        """The disks (the initial members' bootstrapped: Normal in view 0) and the replicas."""
        self.root = _data_root()
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.root, True)
        self.disks = [Disk(self.root / name) for name in self.names]
        for d in self.disks[: self.n]:
            storage.save_meta(d.path, {"view": 0, "last_normal_view": 0})
            d.meta = {"view": 0, "last_normal_view": 0}
        self.replicas: list[Replica | None] = [
            Replica(
                self.names,
                i,
                timing=self.timing,
                seed=self.rng.getrandbits(32),
                members=self.initial,
            )
            for i in range(self.n)
        ] + [None] * (self.u - self.n)

    def _start_bookkeeping(self, clients: int) -> None:
        """Faults in progress, reconfigurations, the network, clients, what the checks saw."""
        self.provisioned = set(range(self.n))
        self.provision_at: dict[int, int] = {}
        self.decommission: set[int] = set()
        self.decommissioned: set[int] = set()
        self.reconfigs_issued = 0
        self.reconfigs_done: list[str] = []
        self.incarnation = [0] * self.u
        self.restart_at: dict[int, int] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.partition_until = 0
        self.net: list = []
        self.seq = 0
        self.clients = [Client(f"c{k}") for k in range(clients)]
        self.acked: dict[tuple, tuple] = {}  # (client, req) -> (op, view of the ack)
        self.committed: dict[int, tuple] = {}  # op -> entry id
        self.primaries: dict[int, int] = {}  # view -> index seen as normal primary
        self.last_view = [0] * self.u
        self.last_commit = [0] * self.u
        self.spoke = [0] * self.u  # the highest view each replica sent a message in
        self.checked = [0] * self.u
        self.scrub_due: list = []
        self.steps = 0
        self.trace: list[str] = []
        self.faults = True

    # -------------------------------------------------------------- plumbing
    def fail(self, text: str) -> None:
        tail = "\n".join(self.trace[-15:])
        raise InvariantViolation(
            f"seed {self.seed} t={self.now}ms: {text}\nlast events:\n{tail}\n"
            f"replay: {replay_command(self.seed, **self.params)}"
        )

    def note(self, text: str) -> None:
        self.trace.append(f"t={self.now} {text}")
        if len(self.trace) > 200:
            del self.trace[:100]

    def apply(self, i: int, effects: list) -> None:
        """Carry out replica ``i``'s effects in order, as the replica process does (the log, meta,
        commit hint and checkpoints through :mod:`storage`, outgoing entries verified first).
        With ``midcrash_rate`` the replica may crash at one of the batch's persisting effects:
        just before it, just after it (persisted, nothing after it sent), or in the middle of an
        ``append`` (torn: only a prefix of its bytes reaches the disk)."""
        cut = tear = None
        persists = [k for k, e in enumerate(effects) if e[0] in ("append", "meta")]
        if (
            self.faults
            and self.midcrash_rate
            and i < self.n
            and persists
            and self.rng.random() < self.midcrash_rate
        ):
            k, how = self.rng.choice(persists), self.rng.choice(("before", "after", "torn"))
            cut = k + 1 if how == "after" else k
            tear = how == "torn" and effects[k][0] == "append" and bool(effects[k][2])
        disk = self.disks[i]
        work = list(effects)
        stop = effects[cut] if cut is not None and cut < len(effects) else None
        while work:
            eff = work.pop(0)
            kind = eff[0]
            if eff is stop:
                if tear:
                    self.tear(i, eff[1], eff[2])
                self.midcrash(i, f"{'in' if tear else 'before'} effect {cut} ({kind})", effects)
                return
            if kind == "send":
                span = served_range(eff[2])
                bad = disk.log.verify_range(*span) if span else []
                if bad and self.replicas[i] is not None:
                    for op in sorted(set(bad) - disk.known_bad):
                        disk.known_bad.add(op)
                        work[:0] = self.replicas[i].on_corruption(op)
                    continue
                self.spoke[i] = max(self.spoke[i], eff[2].get("view", 0))
                self.transmit(i, eff[1], eff[2])
            elif kind == "append":
                from_op, entries = eff[1], eff[2]
                disk.log.write(from_op, entries)
                disk.corrupt = {op for op in disk.corrupt if op < from_op}
                disk.known_bad = {op for op in disk.known_bad if op < from_op}
                disk.blank = False
            elif kind == "meta":
                if eff[1] != disk.meta:
                    storage.save_meta(disk.path, eff[1])
                    disk.meta = dict(eff[1])
                disk.blank = False
            elif kind == "checkpoint":
                storage.write_checkpoint(disk.path, eff[1], eff[2], keep=2)
            elif kind in ("reply", "redirect", "fail") and eff[1][0] == "reconfig":
                if kind == "reply":
                    self.note(f"reconfig {eff[1][1]} by {self.names[i]}: {eff[2]}")
            elif kind == "reply":
                cid, req = eff[1]
                c = next(c for c in self.clients if c.cid == cid)
                if c.pending and c.req == req:
                    self.acked[(cid, req)] = (eff[2]["op"], self.replicas[i].view)
                    c.pending = False
            elif kind in ("redirect", "fail"):
                cid, req = eff[1]
                c = next(c for c in self.clients if c.cid == cid)
                leader = eff[2] if kind == "redirect" else None
                c.target = leader if leader is not None else self.rng.randrange(self.u)
            elif kind == "log" and eff[1] != "INFO":
                self.note(f"{self.names[i]} {eff[1]} {eff[2]}")
        if cut == len(effects):
            self.midcrash(i, f"after effect {cut - 1} ({effects[-1][0]})", effects)

    def midcrash(self, i: int, where: str, effects: list) -> None:
        self.midcrashes += 1
        kinds = ",".join(e[0] for e in effects)
        self.crash(i, f"mid-batch {where} of [{kinds}]")

    def tear(self, i: int, from_op: int, entries: list) -> None:
        """A crash in the middle of writing ``entries``: the file keeps a prefix of the bytes
        (and the held count its value before the write, raised only once the write is whole)."""
        log = self.disks[i].log
        start = log.offsets[from_op - 1] if from_op <= len(log.offsets) else log.end
        log.write_records(from_op, entries)
        keep = self.rng.randrange(start, log.end)
        with open(log.path, "r+b") as fh:
            fh.truncate(keep)
        self.torn += 1
        kept = f"{keep - start} of {log.end - start} bytes"
        self.note(f"torn write {self.names[i]} from op {from_op}: {kept} on disk")

    def save_hint(self, i: int, commit: int) -> None:
        d = self.disks[i]
        if commit != d.hint:
            storage.save_commit_hint(d.path, commit)
            d.hint = commit

    def transmit(self, src: int, dst: int, msg: dict) -> None:
        if self.faults and self.rng.random() < self.drop:
            return
        copies = 2 if self.faults and self.rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.rng.randint(1, 30)
            if self.faults and self.rng.random() < 0.02:
                delay += self.rng.randint(100, 600)
            self.seq += 1
            heapq.heappush(self.net, (self.now + delay, self.seq, src, dst, msg))

    # -------------------------------------------------------------- faults
    def crash(self, i: int, why: str = "") -> None:
        if self.replicas[i] is not None:  # a crash mid-batch may follow a commit and its reply
            self.record_commits(i, self.replicas[i])
        self.replicas[i] = None
        self.restart_at[i] = self.now + self.rng.randint(200, 3000)
        self.note(f"crash {self.names[i]} {why}".rstrip())

    def wipe(self, i: int) -> None:
        """The disk of member ``i`` is lost: it restarts later with nothing (fresh)."""
        self.replicas[i] = None
        self.disks[i].erase()
        self.disks[i].blank = True
        self.spoke[i] = 0  # it remembers nothing, so it promised nothing
        self.restart_at[i] = self.now + self.rng.randint(200, 3000)
        self.wipes += 1
        self.note(f"wipe {self.names[i]}")

    def disk_fault_open(self) -> bool:
        """A corruption not yet repaired, or a wiped replica not yet recovered."""
        return any(d.corrupt or d.blank for d in self.disks)

    def restart(self, i: int) -> None:
        """Boot replica ``i`` from its data directory, as the replica process does."""
        d = self.disks[i]
        d.open()
        hint = storage.load_commit_hint(d.path)
        res = d.log.load(hint)
        boot = storage.boot_args(
            res, storage.load_meta(d.path), hint, storage.load_latest_checkpoint(d.path)
        )
        d.known_bad = set()
        corrupt_from = boot["corrupt_from"]
        r = Replica(
            self.names,
            i,
            timing=self.timing,
            seed=self.rng.getrandbits(32),
            now=self.now,
            members=self.initial,
            **boot,
        )
        # a view it sent a message in is a promise: forgetting it could vote twice in one view
        # (what it never told anyone, a crash between persist and send may take back)
        if r.view < self.spoke[i]:
            self.fail(f"{self.names[i]} restarted in view {r.view}, spoke in {self.spoke[i]}")
        self.last_view[i] = r.view
        self.replicas[i] = r
        self.incarnation[i] += 1
        self.last_commit[i] = r.commit
        self.checked[i] = 0
        self.restart_at.pop(i, None)
        torn = ", torn tail dropped" if res.torn_tail else ""
        self.torn_dropped += res.torn_tail
        self.note(f"restart {self.names[i]} (corrupt_from={corrupt_from}{torn})")
        self.apply(i, r._drain())

    def corrupt(self) -> None:
        if self.disk_fault_open():
            return
        i = self.rng.randrange(self.u)
        d = self.disks[i]
        spans = storage.record_spans(d.log.path)  # the file as it is (torn by a crash, maybe)
        if not spans:
            return
        op = self.rng.randint(1, len(spans))
        start, length = spans[op - 1]
        kind, note = "body", ""
        if self.length_rate and self.rng.random() < self.length_rate:
            # a flipped bit of the length: past the end of the file, into the records after it,
            # past MAX_BODY or short; with the body damaged too half of the time
            kind = self.rng.choice(("length", "length and body"))
            new = storage.damage_length(d.log.path, start, self.rng.randrange(32))
            note = f", length {length} -> {new}"
            self.length_faults += 1
        if kind != "length":
            storage.damage_body(d.log.path, start, length)
        d.corrupt.add(op)
        self.note(f"corrupt {self.names[i]} op {op}: {kind}{note}")
        if self.replicas[i] is not None:
            due = self.now + self.rng.randint(50, 800)
            self.scrub_due.append((due, i, self.incarnation[i], op))

    def random_faults(self) -> None:
        r = self.rng.random
        alive = [i for i in range(self.n) if self.replicas[i] is not None]
        if alive and r() < self.crash_rate:
            self.crash(self.rng.choice(alive))
        if r() < self.partition_rate and not self.blocked:
            side = set(self.rng.sample(range(self.u), self.rng.randint(1, self.f_plus())))
            # one way: the side hears the others, the others do not hear the side
            oneway = bool(self.oneway) and self.rng.random() < self.oneway
            self.oneways += oneway
            self.blocked = {
                (a, b)
                for a in range(self.u)
                for b in range(self.u)
                if (a in side) != (b in side) and (a in side or not oneway)
            }
            self.partition_until = self.now + self.rng.randint(300, 4000)
            self.note(f"partition {sorted(side)}{' one-way (side not heard)' if oneway else ''}")
        if self.blocked and self.now >= self.partition_until:
            self.blocked = set()
            self.note("partition healed")
        if r() < self.corrupt_rate:
            self.corrupt()
        if self.wipe_rate and r() < self.wipe_rate and not self.disk_fault_open():
            self.wipe(self.rng.randrange(self.n))
        if self.reconfig_rate and r() < self.reconfig_rate:
            self.reconfigure()

    def f_plus(self) -> int:
        return (self.n - 1) // 2 + 1

    # -------------------------------------------------------------- reconfiguration
    def provision(self, j: int) -> None:
        """A new (or re-added, wiped) replica: empty disk, fresh, not yet a member."""
        self.provision_at.pop(j, None)
        self.restart_at.pop(j, None)
        self.decommission.discard(j)
        self.decommissioned.discard(j)
        self.provisioned.add(j)
        self.disks[j].erase()
        self.spoke[j] = 0
        r = Replica(
            self.names,
            j,
            timing=self.timing,
            seed=self.rng.getrandbits(32),
            now=self.now,
            fresh=True,
            members=self.initial,
        )
        self.replicas[j] = r
        self.incarnation[j] += 1
        self.last_view[j] = 0
        self.last_commit[j] = 0
        self.checked[j] = 0
        self.note(f"provision {self.names[j]} (empty disk)")
        self.apply(j, r._drain())

    def committed_cfg(self) -> tuple | None:
        best = max(
            (r for r in self.replicas if r is not None), key=lambda r: r.commit, default=None
        )
        return best.cfg_at(best.commit) if best is not None else None

    def reconfigure(self) -> None:
        prims = [
            (i, r)
            for i, r in enumerate(self.replicas)
            if r is not None and r.status == NORMAL and r.is_primary and not r.reconfig_pending()
        ]
        if not prims:
            return
        i, p = self.rng.choice(prims)
        cur = list(p.cfg[0])
        spare = [j for j in range(self.u) if self.names[j] not in cur]
        if spare and (len(cur) <= self.min_members or (len(cur) < 5 and self.rng.random() < 0.5)):
            j = self.rng.choice(spare)
            action = "add"
            self.decommission.discard(j)
            # a new replica gets an empty disk: provisioned before the request or a while after;
            # a removed one still running is re-added as it is or wiped first
            if self.replicas[j] is not None or j in self.provision_at:
                if self.rng.random() < 0.5:
                    self.provision(j)
            elif self.rng.random() < 0.5:
                self.provision(j)
            else:
                self.provision_at[j] = self.now + self.rng.randint(0, 2000)
        else:
            j = self.rng.choice([self._index(x) for x in cur])
            action = "remove"
            if self.rng.random() < 0.5:
                self.decommission.add(j)
        self.reconfigs_issued += 1
        k = self.reconfigs_issued
        self.note(f"reconfig {k}: {action} {self.names[j]} via primary {self.names[i]} {cur}")
        body = {"kind": "reconfig", "action": action, "replica": self.names[j]}
        self.apply(i, p.on_request(None, None, body, ("reconfig", k)))

    def _index(self, name: str) -> int:
        return self.names.index(name)

    def decommission_removed(self) -> None:
        cfg = self.committed_cfg()
        if cfg is None or cfg[1] is not None:
            return
        for j in list(self.decommission):
            if self.names[j] not in cfg[0] and self.replicas[j] is not None:
                self.replicas[j] = None
                self.restart_at.pop(j, None)
                self.decommission.discard(j)
                self.decommissioned.add(j)
                self.note(f"decommission {self.names[j]} (removal committed)")

    # -------------------------------------------------------------- stepping
    def step(self) -> None:
        self.steps += 1
        self.now += self.step_ms
        if self.faults:
            self.random_faults()
        for i, at in list(self.restart_at.items()):
            if self.now >= at:
                self.restart(i)
        for j, at in list(self.provision_at.items()):
            if self.now >= at:
                self.provision(j)
        for due, i, inc, op in list(self.scrub_due):
            if self.now >= due:
                self.scrub_due.remove((due, i, inc, op))
                r = self.replicas[i]
                d = self.disks[i]
                if r is not None and self.incarnation[i] == inc and d.log.verify_range(op, op):
                    d.known_bad.add(op)
                    self.apply(i, r.on_corruption(op))
        if self.decommission and self.steps % 10 == 0:
            self.decommission_removed()
        if self.steps % 50 == 0:  # the scrubber's tour: re-reports what is still corrupt
            for i, r in enumerate(self.replicas):
                bad = self.disks[i].log.scrub() if r is not None and r.clean else []
                if bad:
                    self.disks[i].known_bad.update(bad)
                    self.apply(i, r.on_corruption(min(bad)))
        while self.net and self.net[0][0] <= self.now:
            _, _, src, dst, msg = heapq.heappop(self.net)
            r = self.replicas[dst]
            if r is None or (src, dst) in self.blocked:
                continue
            self.apply(dst, r.on_message(msg, self.now))
        for i, r in enumerate(self.replicas):
            if r is not None:
                self.apply(i, r.tick(self.now))
                if self.rng.random() < 0.3 and self.replicas[i] is r:
                    self.save_hint(i, r.commit)
        self.drive_clients()
        self.check()

    def drive_clients(self) -> None:
        for c in self.clients:
            if not c.pending and self.rng.random() < 0.05:
                c.req += 1
                c.pending = True
                c.sent_at = -(10**9)
            if c.pending and self.now - c.sent_at >= 300:
                c.sent_at = self.now
                r = self.replicas[c.target]
                if r is None or self.rng.random() < 0.2:
                    c.target = self.rng.randrange(self.u)
                    r = self.replicas[c.target]
                if r is not None:
                    body = {"stream": f"s{c.req % 3}", "event": f"{c.cid}-{c.req}"}
                    self.apply(c.target, r.on_request(c.cid, c.req, body, (c.cid, c.req)))

    # -------------------------------------------------------------- invariants
    def check(self) -> None:
        full = self.steps % 50 == 0
        normal_primary: dict[int, Replica] = {}
        for i, r in enumerate(self.replicas):
            if r is None:
                continue
            if r.view < self.last_view[i]:
                self.fail(f"{r.name} view went down {self.last_view[i]} -> {r.view}")
            self.last_view[i] = r.view
            if r.commit < self.last_commit[i]:
                self.fail(f"{r.name} commit went down {self.last_commit[i]} -> {r.commit}")
            self.last_commit[i] = r.commit
            if r.executed > max(r.commit, r.sm.op) or r.commit > r.op:
                self.fail(f"{r.name} executed {r.executed} commit {r.commit} op {r.op}")
            self.record_commits(i, r, full)
            if full and self.reconfig_rate:
                self.check_config_entries(r)
            if r.status == NORMAL and r.is_primary:
                if r.name not in r.participants():
                    self.fail(f"{r.name} is a normal primary but not in its configuration")
                prev = self.primaries.setdefault(r.view, i)
                if prev != i:
                    self.fail(f"two primaries in view {r.view}: {prev} and {i}")
                if r.view in normal_primary:
                    self.fail(f"two normal primaries in view {r.view}")
                normal_primary[r.view] = r
        for (cid, req), (op, ack_view) in self.acked.items():
            if op not in self.committed:
                self.fail(f"durability: acknowledged {cid}/{req} at op {op} not committed anywhere")
            if self.committed[op][2:] != (cid, req):
                self.fail(
                    f"durability: acknowledged {cid}/{req} but op {op} is {self.committed[op]}"
                )
            for p in normal_primary.values():
                if p.view < ack_view:
                    continue  # a stale primary of an older view (partitioned); cannot commit
                if op > p.op or entry_id(p.log[op - 1]) != self.committed[op]:
                    self.fail(f"durability: primary {p.name} view {p.view} lost acked op {op}")
        if full:
            for r in self.replicas:
                if r is None or r.status != NORMAL or r.is_primary:
                    continue
                p = normal_primary.get(r.view)
                if p is None:
                    continue
                for a, b in zip(r.log, p.log, strict=False):
                    if entry_id(a) != entry_id(b):
                        self.fail(
                            f"{r.name}'s log is not a prefix of primary {p.name}'s, view {r.view}"
                        )

    def record_commits(self, i: int, r: Replica, full: bool = False) -> None:
        """Agreement: what ``r`` knows committed matches what any replica ever knew committed."""
        start = 0 if full else self.checked[i]
        for e in r.log[start : r.commit]:
            eid = entry_id(e)
            have = self.committed.setdefault(e["op"], eid)
            if have != eid:
                self.fail(f"agreement: op {e['op']} committed as {have} and as {eid} ({r.name})")
        self.checked[i] = r.commit

    def check_config_entries(self, r: Replica) -> None:
        """The configuration entries of a log alternate begin / end, each begin starts from the
        stable configuration before it and changes one member; at most one change is open."""
        cfg = (tuple(self.initial), None)
        for e in r.log:
            if not is_config_entry(e):
                continue
            body = e["body"]
            if body["kind"] == "reconfig_begin":
                if cfg[1] is not None or tuple(body["old"]) != cfg[0]:
                    self.fail(f"{r.name} op {e['op']}: begin {body} while in {cfg}")
                if len(set(body["old"]) ^ set(body["new"])) != 1:
                    self.fail(f"{r.name} op {e['op']}: begin changes more than one member")
            elif cfg[1] is None:
                self.fail(f"{r.name} op {e['op']}: reconfig_end without a begin")
            cfg = cfg_apply(cfg, e)
        if cfg != r.cfg:
            self.fail(f"{r.name}: cached configuration {r.cfg} != log's {cfg}")

    # -------------------------------------------------------------- run
    def run(self) -> dict:
        try:
            return self._run()
        except InvariantViolation:
            raise
        except Exception as exc:  # a crash of the simulation itself: replayable like the rest
            self.fail(f"simulation error {exc.__class__.__name__}: {exc}")
        finally:
            self._cleanup()  # the simulated disks

    def _run(self) -> dict:
        while self.now < self.fault_ms:
            self.step()
        self.faults = False
        self.blocked = set()
        for j in list(self.provision_at):
            self.provision(j)
        for i in range(self.u):
            if self.replicas[i] is None and i in self.provisioned and i not in self.decommissioned:
                self.restart_at[i] = self.now
        healed_at = self.now
        probe = Client("probe")
        self.clients.append(probe)
        converged = False
        while self.now < healed_at + self.heal_ms:
            self.step()
            if self.converged():
                if not probe.pending and probe.req == 0:
                    probe.req, probe.pending, probe.sent_at = 1, True, -(10**9)
                elif not probe.pending and self.converged():
                    converged = True
                    break
        if not converged:
            states = [
                (r.name, r.status, r.view, r.op, r.commit, r.corrupt_from, r.cfg) if r else None
                for r in self.replicas
            ]
            self.fail(f"liveness: no convergence {self.heal_ms}ms after heal: {states}")
        for c in self.clients:
            c.pending = False
        self.check_final()
        res = {
            "seed": self.seed,
            "ops": max(r.commit for r in self.replicas if r),
            "acked": len(self.acked),
            "views": max(r.view for r in self.replicas if r),
            "sim_ms": self.now,
        }
        if self.wipe_rate:
            res["wipes"] = self.wipes
        if self.midcrash_rate:
            res.update(midcrashes=self.midcrashes, torn=self.torn, torn_dropped=self.torn_dropped)
        if self.oneway:
            res["oneway_partitions"] = self.oneways
        if self.length_rate:
            res["length_faults"] = self.length_faults
        if self.reconfig_rate:
            leader = self.final_leader()
            res["reconfigs"] = sum(
                1 for e in leader.log if (e.get("body") or {}).get("kind") == "reconfig_end"
            )
            res["members"] = list(leader.cfg[0])
        return res

    def final_leader(self) -> Replica | None:
        prims = [r for r in self.replicas if r is not None and r.status == NORMAL and r.is_primary]
        return max(prims, key=lambda r: r.view, default=None)

    def converged(self) -> bool:
        if not self.reconfig_rate:
            rs = self.replicas
            if any(r is None or r.status != NORMAL for r in rs):
                return False
            return len({r.view for r in rs}) == 1 and len({(r.op, r.commit) for r in rs}) == 1
        p = self.final_leader()
        if p is None or p.reconfig_pending():
            return False
        for name in cfg_members(p.cfg):
            r = self.replicas[self._index(name)]
            if (
                r is None
                or r.status != NORMAL
                or (r.view, r.op, r.commit)
                != (
                    p.view,
                    p.op,
                    p.commit,
                )
            ):
                return False
        return True

    def check_final(self) -> None:
        self.check()
        leader = self.final_leader()
        if self.reconfig_rate:
            for r in self.replicas:
                removed = r is not None and r.status == NORMAL and r.name not in leader.cfg[0]
                if removed and r.member and r.commit >= leader.last_cfg_op:
                    self.fail(f"{r.name} was removed but reports itself a member")
        seen: dict[str, int] = {}
        for events in leader.sm.streams.values():
            for ev, _op in events:
                seen[ev] = seen.get(ev, 0) + 1
        for cid, req in self.acked:
            if seen.get(f"{cid}-{req}", 0) != 1:
                self.fail(
                    f"acknowledged write {cid}-{req} present {seen.get(f'{cid}-{req}', 0)} times"
                )
        dups = [ev for ev, k in seen.items() if k > 1]
        if dups:
            self.fail(f"duplicated events after exactly-once client table: {dups[:5]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--fault-ms", type=int, default=15000)
    ap.add_argument("--drop", type=float, default=0.05)
    ap.add_argument("--crash-rate", type=float, default=0.0015)
    ap.add_argument("--partition-rate", type=float, default=0.001)
    ap.add_argument("--corrupt-rate", type=float, default=0.0008)
    ap.add_argument(
        "--reconfig-rate",
        type=float,
        default=0.0,
        help="chance per step of an add/remove reconfiguration (e.g. 0.002)",
    )
    ap.add_argument("--min-members", type=int, default=3, help="removes keep at least this many")
    ap.add_argument("--wipe-rate", type=float, default=0.0, help="chance per step of a disk wipe")
    ap.add_argument(
        "--midcrash-rate",
        type=float,
        default=0.0,
        help="chance per persisting batch of a crash at a persist: before, after or tearing it",
    )
    ap.add_argument("--oneway", type=float, default=0.0, help="share of one-way partitions")
    ap.add_argument(
        "--length-rate",
        type=float,
        default=0.0,
        help="share of disk corruptions that flip a bit of a record's length field",
    )
    ap.add_argument("--count", type=int, default=1, help="run seeds seed..seed+count-1")
    args = ap.parse_args(argv)
    rc = 0
    for seed in range(args.seed, args.seed + args.count):
        try:
            sim = Simulation(
                seed,
                n=args.n,
                fault_ms=args.fault_ms,
                drop=args.drop,
                crash_rate=args.crash_rate,
                partition_rate=args.partition_rate,
                corrupt_rate=args.corrupt_rate,
                reconfig_rate=args.reconfig_rate,
                min_members=args.min_members,
                wipe_rate=args.wipe_rate,
                midcrash_rate=args.midcrash_rate,
                oneway=args.oneway,
                length_rate=args.length_rate,
            )
            print(sim.run())
        except InvariantViolation as exc:
            print(f"FAIL {exc}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
