"""The lab workload: unique events to several streams at a steady rate, every attempt and every
acknowledgement recorded, then read back and checked.

``start`` runs ``python -m firebreak.lab.workload run`` in the background (own session, pid in
``<lab>/workload/pid``); ``stop`` stops it (SIGTERM, in-flight requests finish); ``check`` reads
every stream back and reports attempted / acknowledged / lost (acknowledged but missing) /
unexpected (present but never attempted) / duplicated (present more than once).

A workload belongs to one lab: the one whose ``state.json`` it found at start. It stops by
itself once that lab is gone (taken down, or replaced by a new lab in the same directory), so it
never writes into a later lab's history; ``reset`` empties the history for a new lab.

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


def run(lab: Path, rate: float, streams: int, workers: int) -> int:
    d = _dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    urls = _urls(lab)
    stop = threading.Event()
    threading.Thread(target=_watch_lab, args=(lab, stop), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_id = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    attempts = open(d / "attempts.jsonl", "a")  # noqa: SIM115
    acks = open(d / "acks.jsonl", "a")  # noqa: SIM115

    def record(fh, row: dict) -> None:
        with lock:
            fh.write(json.dumps(row) + "\n")
            fh.flush()

    def worker(w: int) -> None:
        rng = random.Random(f"{run_id}-{w}")
        client = f"wl-{run_id}-{w}"
        period = workers / rate
        nxt = time.monotonic()
        req = 0
        while not stop.is_set():
            nxt += period
            req += 1
            event = f"{client}-{req}"
            stream = f"wl-{rng.randrange(streams)}"
            body = {"stream": stream, "event": event, "client": client, "request": req}
            record(
                attempts,
                {"t": time.time(), "client": client, "req": req, "stream": stream, "event": event},
            )
            give_up = time.monotonic() + 30
            url = rng.choice(urls)
            while time.monotonic() < give_up:
                try:
                    code, resp = http_json(url + "/api/write", "POST", body, timeout=6)
                except OSError:
                    code, resp = 0, {}
                if code == 200 and resp.get("acknowledged"):
                    record(
                        acks,
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
                    break
                if stop.is_set() and time.monotonic() > give_up - 24:
                    break
                url = rng.choice(urls)
                time.sleep(0.1)
            delay = nxt - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                nxt = time.monotonic()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    attempts.close()
    acks.close()
    return 0


def start(lab: Path, rate: float = 20, streams: int = 4, workers: int = 4) -> int:
    d = _dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    if _running(lab):
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
    """Forget the workload history of an earlier lab in this directory (never while running)."""
    if running(lab):
        raise SystemExit("workload still running; stop it first")
    for name in ("attempts.jsonl", "acks.jsonl", "workload.log", "pid"):
        (_dir(lab) / name).unlink(missing_ok=True)


def running(lab: Path) -> int | None:
    """The pid of this lab's running workload, or None."""
    return _running(lab)


def _running(lab: Path) -> int | None:
    try:
        pid = int((_dir(lab) / "pid").read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return pid if b"firebreak.lab.workload" in cmd and stat != "Z" else None


def stop(lab: Path, timeout: float = 40) -> bool:
    pid = _running(lab)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running(lab) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _running(lab):
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


def check(lab: Path, timeout: float = 30) -> dict:
    d = _dir(lab)
    attempts = _read_jsonl(d / "attempts.jsonl")
    acks = _read_jsonl(d / "acks.jsonl")
    attempted = {a["event"] for a in attempts}
    acked = {a["event"] for a in acks}
    streams = sorted({a["stream"] for a in attempts})
    urls = _urls(lab)
    found: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    errors = []
    for s in streams:
        while True:
            url = random.choice(urls)
            try:
                code, resp = http_json(f"{url}/api/read?stream={s}", timeout=5)
            except OSError as exc:
                code, resp = 0, {"error": str(exc)}
            if code == 200:
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
    return {
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
        # "nothing lost" proves something only if something was acknowledged
        "ok": bool(acked) and not lost and not unexpected and not duplicated and not errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firebreak.lab.workload")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--lab-dir", required=True)
    r.add_argument("--rate", type=float, default=20)
    r.add_argument("--streams", type=int, default=4)
    r.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)
    return run(Path(args.lab_dir), args.rate, args.streams, args.workers)


if __name__ == "__main__":
    sys.exit(main())
