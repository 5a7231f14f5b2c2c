"""The lab workload: unique events to several streams at a steady rate, every attempt and every
acknowledgement recorded, reads while it writes, then read back and checked.

``start`` runs ``python -m firebreak.lab.workload run`` in the background (own session, pid in
``<lab>/workload/pid``); ``stop`` stops it (SIGTERM, in-flight requests finish); ``check`` reads
every stream back and reports attempted / acknowledged / lost (acknowledged but missing) /
unexpected (present but never attempted) / duplicated (present more than once), then checks the
recorded history (:func:`check_history`, in the way etcd's robustness tests check client
histories): every read (``reads.jsonl``: invoked ``t0``, completed ``t1``, the replica asked and
the one that served it, the events) is a prefix of the stream's final order; a read begun after
an acknowledgement contains that write; no read sees less than a read that ended before it began.
With ``per_replica`` it also reads every replica locally and compares their streams
(:func:`compare_replicas`): each a prefix of the others', all equal once caught up.

A workload belongs to one lab: the one whose ``state.json`` it found at start. It stops by
itself once that lab is gone (taken down, or replaced by a new lab in the same directory), so it
never writes into a later lab's history; ``reset`` empties the history for a new lab. Each
history writes streams of its own (``wl-<history id>-<k>``; the id in ``<lab>/workload/history``,
new after ``reset``), so that a fresh history in a lab that keeps its data (one lab shared by
tests, reset between them) never finds an earlier history's events ("unexpected").

Each worker is one client (``client`` id, sequential ``request`` numbers) so that retries of a
request after a timeout or a leader change are exactly-once through the replicated client table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from firebreak.lab.backend import http_json, load_state


def _dir(lab: Path) -> Path:
    return Path(lab) / "workload"


def _urls(lab: Path) -> list[str]:
    st = load_state(lab)
    if st is None:
        raise SystemExit(f"no lab running in {lab}")
    return [r["api_url"] for r in st["replicas"]]


def _history(lab: Path) -> str:
    """The id of the lab's current workload history (made on first use, forgotten by reset)."""
    path = _dir(lab) / "history"
    with contextlib.suppress(OSError):
        if hid := path.read_text().strip():
            return hid
    hid = uuid.uuid4().hex[:8]
    path.write_text(hid)
    return hid


def _lab_identity(lab: Path) -> tuple | None:
    st = load_state(lab)
    return None if st is None else (st.get("mode"), st.get("lab_id"), st.get("started"))


def _watch_lab(lab: Path, stop: threading.Event, period: float = 0.5) -> None:
    """Stop the workload once the lab it was started for is no longer the lab in ``lab``."""
    mine = _lab_identity(lab)
    while not stop.wait(period):
        try:
            now = _lab_identity(lab)
        except (OSError, ValueError):
            continue  # a state file being rewritten: look again
        if now != mine:
            print(f"workload: the lab it was started for is gone ({now}); stopping", flush=True)
            stop.set()


class _Load:
    """One workload run: writers at ``rate`` over ``streams`` streams and readers, every
    attempt, acknowledgement and read recorded (jsonl files in ``d``) until ``stop``."""

    def __init__(
        self,
        d: Path,
        urls: list[str],
        stop: threading.Event,
        rate: float,
        streams: int,
        workers: int,
        read_period: float,
        prefix: str = "wl-",
    ) -> None:
        self.urls, self.stop, self.prefix = urls, stop, prefix
        self.rate, self.streams, self.workers, self.read_period = (
            rate,
            streams,
            workers,
            read_period,
        )
        self.run_id = uuid.uuid4().hex[:8]
        self.lock = threading.Lock()
        self.attempts = open(d / "attempts.jsonl", "a")  # noqa: SIM115
        self.acks = open(d / "acks.jsonl", "a")  # noqa: SIM115
        self.reads = open(d / "reads.jsonl", "a")  # noqa: SIM115

    def close(self) -> None:
        self.attempts.close()
        self.acks.close()
        self.reads.close()

    def record(self, fh, row: dict) -> None:
        with self.lock:
            fh.write(json.dumps(row) + "\n")
            fh.flush()

    def worker(self, w: int) -> None:
        rng = random.Random(f"{self.run_id}-{w}")
        client = f"wl-{self.run_id}-{w}"
        period = self.workers / self.rate
        nxt = time.monotonic()
        req = 0
        while not self.stop.is_set():
            nxt += period
            req += 1
            self._write(rng, client, req)
            delay = nxt - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                nxt = time.monotonic()

    def _write(self, rng: random.Random, client: str, req: int) -> None:
        """One write, recorded as attempted, retried (any replica) until acknowledged or 30 s."""
        event = f"{client}-{req}"
        stream = f"{self.prefix}{rng.randrange(self.streams)}"
        body = {"stream": stream, "event": event, "client": client, "request": req}
        self.record(
            self.attempts,
            {"t": time.time(), "client": client, "req": req, "stream": stream, "event": event},
        )
        give_up = time.monotonic() + 30
        url = rng.choice(self.urls)
        while time.monotonic() < give_up:
            try:
                code, resp = http_json(url + "/api/write", "POST", body, timeout=6)
            except OSError:
                code, resp = 0, {}
            if code == 200 and resp.get("acknowledged"):
                self.record(
                    self.acks,
                    {
                        "t": time.time(),
                        "client": client,
                        "req": req,
                        "stream": stream,
                        "event": event,
                        "op": resp.get("op"),
                        "replica": resp.get("replica"),
                    },
                )
                return
            if self.stop.is_set() and time.monotonic() > give_up - 24:
                return
            url = rng.choice(self.urls)
            time.sleep(0.1)

    def reader(self, k: int) -> None:
        """Linearizable reads (through whichever replica, which forwards to the leader)."""
        rng = random.Random(f"{self.run_id}-r{k}")
        while not self.stop.wait(self.read_period * rng.uniform(0.5, 1.5)):
            stream, url = f"{self.prefix}{rng.randrange(self.streams)}", rng.choice(self.urls)
            t0 = time.time()
            try:
                code, resp = http_json(f"{url}/api/read?stream={stream}", timeout=8)
            except OSError:
                continue
            if code == 200:
                row = {"t0": t0, "t1": time.time(), "stream": stream, "via": url}
                row.update(replica=resp.get("served_by"), events=resp.get("events", []))
                self.record(self.reads, row)


def run(
    lab: Path, rate: float, streams: int, workers: int, readers: int = 1, read_period: float = 0.5
) -> int:
    d = _dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    urls = _urls(lab)
    stop = threading.Event()
    threading.Thread(target=_watch_lab, args=(lab, stop), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    load = _Load(d, urls, stop, rate, streams, workers, read_period, f"wl-{_history(lab)}-")
    threads = [threading.Thread(target=load.worker, args=(w,)) for w in range(workers)]
    threads += [threading.Thread(target=load.reader, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.close()
    return 0


def start(
    lab: Path,
    rate: float = 20,
    streams: int = 4,
    workers: int = 4,
    readers: int = 1,
    read_period: float = 0.5,
) -> int:
    d = _dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    if running(lab):
        raise SystemExit("workload already running")
    log = open(d / "workload.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firebreak.lab.workload",
            "run",
            "--lab-dir",
            str(lab),
            "--rate",
            str(rate),
            "--streams",
            str(streams),
            "--workers",
            str(workers),
            "--readers",
            str(readers),
            "--read-period",
            str(read_period),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    (d / "pid").write_text(str(proc.pid))
    return proc.pid


def reset(lab: Path) -> None:
    """Forget the workload history of an earlier lab in this directory, or of an earlier test in
    a shared lab (never while running): the next workload starts a history of its own."""
    if running(lab):
        raise SystemExit("workload still running; stop it first")
    for name in ("attempts.jsonl", "acks.jsonl", "reads.jsonl", "workload.log", "pid", "history"):
        (_dir(lab) / name).unlink(missing_ok=True)


def running(lab: Path) -> int | None:
    """The pid of this lab's running workload, or None."""
    try:
        pid = int((_dir(lab) / "pid").read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return pid if b"firebreak.lab.workload" in cmd and stat != "Z" else None


def stop(lab: Path, timeout: float = 40) -> bool:
    pid = running(lab)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(lab) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if running(lab):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    (_dir(lab) / "pid").unlink(missing_ok=True)
    return True


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def check_history(acks: list[dict], reads: list[dict], final: dict[str, list]) -> list[dict]:
    """The violations in a recorded history (pure). ``acks``: rows with ``t`` (when the ack
    came back), ``stream``, ``event``; ``reads``: rows with ``t0``/``t1`` (invoked/completed),
    ``stream``, ``events`` (and ``replica``); ``final``: each stream's events in their final
    order. Kinds: ``not_prefix`` (a read is not a prefix of the final order), ``missing_ack``
    (a read begun after an acknowledgement lacks that write), ``went_back`` (a read sees less
    than a read that completed before it began)."""
    out: list[dict] = []
    for s in sorted({r["stream"] for r in reads}):
        order = final.get(s, [])
        pos = {ev: k for k, ev in enumerate(order)}
        valid = []
        for r in sorted((r for r in reads if r["stream"] == s), key=lambda r: r["t0"]):
            n = len(r["events"])
            if r["events"] == order[:n]:
                valid.append(r)
                continue
            at = next(k for k, ev in enumerate(r["events"]) if k >= len(order) or order[k] != ev)
            got = r["events"][max(0, at - 2) : at + 1]
            out.append({"kind": "not_prefix", **_about(s, r), "at": at, "events": got})
        # acks by time, each with its position in the final order (an event never read back is
        # the set check's "lost", not counted twice here)
        acked = sorted((a["t"], pos[a["event"]], a["event"]) for a in acks if a["event"] in pos)
        done = sorted(valid, key=lambda r: r["t1"])
        ai = di = 0
        need = (-1, "")  # (final position, event) of the furthest write acknowledged so far
        seen = 0  # the longest read completed so far
        for r in valid:
            while ai < len(acked) and acked[ai][0] < r["t0"]:
                need = max(need, acked[ai][1:])
                ai += 1
            while di < len(done) and done[di]["t1"] < r["t0"]:
                seen = max(seen, len(done[di]["events"]))
                di += 1
            n = len(r["events"])
            if need[0] >= n:
                out.append({"kind": "missing_ack", **_about(s, r), "event": need[1], "seen": n})
            if seen > n:
                out.append({"kind": "went_back", **_about(s, r), "seen": n, "earlier": seen})
    return out


def _about(stream: str, r: dict) -> dict:
    return {"stream": stream, "replica": r.get("replica"), "t0": r["t0"]}


def _read_stream(url: str, stream: str, local: bool = False) -> tuple[int, dict]:
    q = f"stream={stream}" + ("&local=1" if local else "")
    try:
        return http_json(f"{url}/api/read?{q}", timeout=8)
    except OSError as exc:
        return 0, {"error": str(exc)}


def compare_replicas(lab: Path, streams: list[str], timeout: float = 30) -> dict:
    """Read every replica locally (``local=1``) and compare their streams: each replica's stream
    must be a prefix of every other's (``diverged`` otherwise, at once), and all must be equal
    within ``timeout`` (``behind``: who still lacks events; ``unreadable``: who cannot serve)."""
    replicas = load_state(lab)["replicas"]
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, dict[str, list]] = {}
        unreadable: dict[str, str] = {}
        for r in replicas:
            for s in streams:
                code, resp = _read_stream(r["api_url"], s, local=True)
                if code != 200:
                    unreadable[r["name"]] = str(resp.get("error"))
                    break
                got.setdefault(r["name"], {})[s] = resp["events"]
        diverged, behind = [], {}
        for s in streams:
            longest = max((g[s] for g in got.values()), key=len, default=[])
            for name, g in got.items():
                if g[s] != longest[: len(g[s])]:
                    diverged.append({"replica": name, "stream": s})
                elif len(g[s]) < len(longest):
                    behind.setdefault(name, {})[s] = len(longest) - len(g[s])
        settled = not diverged and not behind and not unreadable
        if settled or diverged or time.monotonic() > deadline:
            return {
                "ok": settled,
                "diverged": diverged,
                "behind": behind,
                "unreadable": unreadable,
                "events": {name: sum(map(len, g.values())) for name, g in got.items()},
            }
        time.sleep(0.5)


def check(lab: Path, timeout: float = 30, per_replica: bool = False) -> dict:
    d = _dir(lab)
    attempts = _read_jsonl(d / "attempts.jsonl")
    acks = _read_jsonl(d / "acks.jsonl")
    reads = _read_jsonl(d / "reads.jsonl")
    attempted = {a["event"] for a in attempts}
    acked = {a["event"] for a in acks}
    streams = sorted({a["stream"] for a in attempts})
    urls = _urls(lab)
    found: dict[str, int] = {}
    final: dict[str, list] = {}
    deadline = time.monotonic() + timeout
    errors = []
    for s in streams:
        while True:
            code, resp = _read_stream(random.choice(urls), s)
            if code == 200:
                final[s] = resp["events"]
                for ev in resp["events"]:
                    found[ev] = found.get(ev, 0) + 1
                break
            if time.monotonic() > deadline:
                errors.append(f"cannot read stream {s}: {resp.get('error')}")
                break
            time.sleep(0.2)
    lost = sorted(acked - set(found))
    unexpected = sorted(set(found) - attempted)
    duplicated = sorted(e for e, k in found.items() if k > 1)
    violations = [] if errors else check_history(acks, reads, final)
    res = {
        "attempted": len(attempted),
        "acknowledged": len(acked),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "duplicated": len(duplicated),
        "present_unacknowledged": len((set(found) & attempted) - acked),
        "lost_events": lost[:20],
        "unexpected_events": unexpected[:20],
        "duplicated_events": duplicated[:20],
        "streams": streams,
        "errors": errors,
        "reads": len(reads),
        "history_violations": len(violations),
        "violations": violations[:20],
        # "nothing lost" proves something only if something was acknowledged
        "ok": bool(acked)
        and not lost
        and not unexpected
        and not duplicated
        and not errors
        and not violations,
    }
    if per_replica:
        res["per_replica"] = compare_replicas(lab, streams, timeout)
        res["ok"] = res["ok"] and res["per_replica"]["ok"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firebreak.lab.workload")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--lab-dir", required=True)
    r.add_argument("--rate", type=float, default=20)
    r.add_argument("--streams", type=int, default=4)
    r.add_argument("--workers", type=int, default=4)
    r.add_argument("--readers", type=int, default=1, help="threads reading while it writes")
    r.add_argument("--read-period", type=float, default=0.5, help="seconds between reads")
    args = ap.parse_args(argv)
    return run(
        Path(args.lab_dir),
        args.rate,
        args.streams,
        args.workers,
        args.readers,
        args.read_period,
    )


if __name__ == "__main__":
    sys.exit(main())
