"""Benchmark the lab (processes mode, 3 local replicas).

Measures, in one run:
* baseline: single-replica, no-replication fsync'd appends to the checksummed log (the floor:
  every replicated write costs at least one such append on each of f + 1 replicas);
* replicated writes per second with C concurrent clients, and p50/p99 commit latency;
* time from SIGKILL of the leader to a new view in normal status (several trials).

Prints results and ratios against the baseline. Usage:

    .venv/bin/python benchmarks/bench_lab.py [--seconds 5] [--clients 8] [--kills 3] [--net 45]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from firebreak.kimberlite import storage
from firebreak.lab.backend import http_json
from firebreak.lab.processes import ProcessesBackend


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def baseline(seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        log = storage.Log(d)
        log.load()
        lat, op, end = [], 0, time.monotonic() + seconds
        while time.monotonic() < end:
            op += 1
            e = {
                "op": op,
                "view": 0,
                "client": None,
                "req": None,
                "body": {"stream": "b", "event": f"e{op}"},
            }
            t = time.perf_counter()
            log.write(op, [e])
            lat.append((time.perf_counter() - t) * 1000)
    return {"appends_per_s": op / seconds, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def replicated(be: ProcessesBackend, seconds: float, clients: int) -> dict:
    urls = [r["api_url"] for r in be.state()["replicas"]]
    leader = be.resolve("leader")
    url = next(r["api_url"] for r in be.state()["replicas"] if r["name"] == leader)
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        tag = f"bench-{clients}-{k}"  # one client id per phase: request numbers restart at 1
        req = 0
        while time.monotonic() < stop:
            req += 1
            body = {
                "stream": f"bench-{k % 4}",
                "event": f"{tag}-{req}",
                "client": tag,
                "request": req,
            }
            t = time.perf_counter()
            try:
                code, _ = http_json(url + "/api/write", "POST", body, timeout=10)
            except OSError:
                code = 0
            ms = (time.perf_counter() - t) * 1000
            with lock:
                if code == 200:
                    lat.append(ms)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    del urls
    return {
        "clients": clients,
        "writes_per_s": len(lat) / seconds,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "errors": errors[0],
    }


def failover(be: ProcessesBackend, trials: int) -> dict:
    times = []
    for _ in range(trials):
        leader = be.resolve("leader")
        st = {r["name"]: r for r in be.state()["replicas"]}
        view0 = http_json(st[leader]["api_url"] + "/admin/status")[1]["view"]
        t0 = time.monotonic()
        be.fault("kill", leader)
        done = None
        while done is None and time.monotonic() - t0 < 15:
            for name, r in st.items():
                if name == leader:
                    continue
                try:
                    code, s = http_json(r["api_url"] + "/admin/status", timeout=0.5)
                except OSError:
                    continue
                if code == 200 and s["status"] == 0 and s["view"] > view0 and s["is_primary"]:
                    done = time.monotonic() - t0
                    break
            time.sleep(0.01)
        times.append(done if done is not None else float("nan"))
        be.heal()
        be.wait_ready(be.state(), timeout=20)
    return {"trials": trials, "seconds": times, "median_s": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--net", type=int, default=45)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    base = baseline(min(args.seconds, 3))
    with tempfile.TemporaryDirectory() as d:
        be = ProcessesBackend(Path(d))
        try:
            be.up(replicas=3, net=args.net)
            single = replicated(be, args.seconds, 1)
            multi = replicated(be, args.seconds, args.clients)
            fo = failover(be, args.kills)
        finally:
            be.down()
    res = {
        "baseline_fsync_append": base,
        "replicated_1_client": single,
        f"replicated_{args.clients}_clients": multi,
        "leader_kill_to_new_view": fo,
        "ratio_writes_vs_baseline": {
            "1_client": single["writes_per_s"] / base["appends_per_s"],
            f"{args.clients}_clients": multi["writes_per_s"] / base["appends_per_s"],
        },
        "ratio_p50_latency_vs_baseline": single["p50_ms"] / base["p50_ms"],
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"baseline (1 replica, fsync append, no replication): "
            f"{base['appends_per_s']:.0f} appends/s, p50 {base['p50_ms']:.2f} ms, "
            f"p99 {base['p99_ms']:.2f} ms"
        )
        for key in ("replicated_1_client", f"replicated_{args.clients}_clients"):
            r = res[key]
            print(
                f"3 replicas, {r['clients']} client(s): {r['writes_per_s']:.0f} writes/s "
                f"(x{r['writes_per_s'] / base['appends_per_s']:.2f} of baseline), "
                f"commit latency p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, "
                f"errors {r['errors']}"
            )
        print(
            f"leader kill -> new view in normal status: median {fo['median_s']:.2f} s "
            f"(trials {', '.join(f'{x:.2f}' for x in fo['seconds'])})"
        )
        print(
            f"p50 commit latency is x{res['ratio_p50_latency_vs_baseline']:.1f} "
            "the single fsync append"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
