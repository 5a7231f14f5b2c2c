"""Benchmark of firebreak.incident.vsr_metrics (not a test).

Run: `.venv/bin/python benchmarks/bench_vsr_metrics.py [--delay-ms 20 --workers 16]`.


1. Fetch + parse core against 3, 30 and 300 endpoints served by a local server (recorded
   expositions, an injected delay per answer), calling the module_utils directly - the same
   work the module does, without AnsibleModule - against the floor: the same URLs fetched
   with urllib + ThreadPoolExecutor and the same number of workers, bodies read and dropped.
2. The same through one real ansible-playbook run per size (the task's wall time, as the play
   measured it), against the same floor.
3. Parser throughput against prometheus_client's parser on a 10,000-sample exposition.

Everything is printed as ratios to a baseline measured in the same run (lower is better for
times). Only loopback addresses are used (127.0.44.x); the servers stop when it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    endpoints as ep,
)
from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    prometheus_text as pt,
)
from ansible_collections.firebreak.incident.plugins.module_utils import vsr  # noqa: E402
from ansible_collections.firebreak.incident.plugins.modules import vsr_metrics  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "exposition" / "vsr" / "healthy"
BODIES = [p.read_bytes() for p in sorted(FIXTURES.glob("*.prom"))]
HOSTS = ["127.0.44.1", "127.0.44.2", "127.0.44.3"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(self.server.delay)
        body = BODIES[int(self.path.split("/")[2]) % len(BODIES)]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def start_servers(delay: float):
    servers = []
    for host in HOSTS:
        httpd = _Server((host, 0), _Handler)
        httpd.delay = delay
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    return servers


def urls_for(servers, n):
    return [
        f"http://{servers[i % len(servers)].server_address[0]}:"
        f"{servers[i % len(servers)].server_address[1]}/r/{i}/metrics"
        for i in range(n)
    ]


def floor(urls, workers):
    def get(url):
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()

    with ThreadPoolExecutor(max_workers=min(workers, len(urls))) as pool:
        bodies = list(pool.map(get, urls))
    assert all(bodies)


def core(urls, workers):
    """What vsr_metrics does between AnsibleModule and exit_json."""
    options = ep.FetchOptions(timeout=5, concurrency=workers)
    replicas = ep.fetch_endpoints(
        urls,
        options,
        process=lambda f: vsr_metrics.read_replica(f.index, f, None, "replica", False),
    )
    cluster = vsr.cluster_summary(replicas)
    assert cluster["reachable_count"] == len(urls), [r["error"] for r in replicas][:3]


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def playbook_seconds(urls, workers):
    """Wall time of the vsr_metrics task inside one ansible-playbook run (set_fact around it)."""
    with tempfile.TemporaryDirectory(prefix="bench-vsr-") as tmp:
        out = Path(tmp) / "out.json"
        play = [
            {
                "hosts": "localhost",
                "gather_facts": False,
                "tasks": [
                    # the fixed cost of one module task on localhost, for comparison
                    {"ansible.builtin.set_fact": {"p0": "{{ now().timestamp() }}"}},
                    {"ansible.builtin.ping": {}},
                    {"ansible.builtin.set_fact": {"t0": "{{ now().timestamp() }}"}},
                    {
                        "firebreak.incident.vsr_metrics": {
                            "endpoints": urls,
                            "concurrency": workers,
                            "timeout": 5,
                        },
                        "register": "r",
                    },
                    {"ansible.builtin.set_fact": {"t1": "{{ now().timestamp() }}"}},
                    {
                        "ansible.builtin.copy": {
                            "dest": str(out),
                            "content": "{{ {'task': (t1 | float) - (t0 | float), "
                            "'ping': (t0 | float) - (p0 | float), "
                            "'reachable': r.cluster.reachable_count, "
                            "'module_elapsed': r.elapsed} | to_json }}",
                        }
                    },
                ],
            }
        ]
        path = Path(tmp) / "play.yml"
        path.write_text(json.dumps(play))
        started = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                f"ansible_python_interpreter={sys.executable}",
                str(path),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
        )
        wall = time.perf_counter() - started
        result = json.loads(out.read_text())
        assert result["reachable"] == len(urls), result
        return result["task"], result["ping"], result["module_elapsed"], wall


def big_exposition(samples=10_000):
    """A 10,000-sample exposition: gauges, counters with escaped labels, histograms."""
    lines = []
    count = 0
    family = 0
    while count < samples:
        name = f"bench_metric_{family}"
        kind = ("gauge", "counter", "histogram")[family % 3]
        lines.append(f"# HELP {name} Benchmark family {family} with an escaped \\\\ help")
        if kind == "counter":
            lines.append(f"# TYPE {name}_total counter")
            for i in range(50):
                lines.append(f'{name}_total{{path="/api/v{i}",msg="a \\"quoted\\" value"}} {i * 7}')
            count += 50
        elif kind == "gauge":
            lines.append(f"# TYPE {name} gauge")
            for i in range(50):
                lines.append(f'{name}{{replica="replica-{i}",cluster="lab"}} {i * 0.5}')
            count += 50
        else:
            lines.append(f"# TYPE {name} histogram")
            for op in range(4):
                total = 0
                for le in ("1.0", "5.0", "10.0", "50.0", "100.0", "+Inf"):
                    total += op + 3
                    lines.append(f'{name}_bucket{{le="{le}",op="op{op}"}} {total}')
                lines.append(f'{name}_sum{{op="op{op}"}} {total * 3.5}')
                lines.append(f'{name}_count{{op="op{op}"}} {total}')
            count += 32
        family += 1
    return "\n".join(lines) + "\n", count


def row(*cells):
    print(" ".join(f"{cell:>13}" for cell in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16, help="concurrency, both sides")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="3,30,300")
    parser.add_argument("--no-playbook", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    servers = start_servers(args.delay_ms / 1000)
    try:
        print(
            f"fetch + parse, {args.delay_ms:g} ms per answer, {args.workers} workers, "
            f"median of {args.repeat}"
        )
        row("endpoints", "floor s", "fetch s", "core s", "fetch/floor", "core/floor")
        for n in sizes:
            urls = urls_for(servers, n)
            floor(urls, args.workers)  # warm up
            base, _ = best_of(lambda urls=urls: floor(urls, args.workers), args.repeat)
            fetch_only, _ = best_of(
                lambda urls=urls: ep.fetch_all(
                    urls, ep.FetchOptions(timeout=5, concurrency=args.workers)
                ),
                args.repeat,
            )
            ours, _ = best_of(lambda urls=urls: core(urls, args.workers), args.repeat)
            row(n, f"{base:.4f}", f"{fetch_only:.4f}", f"{ours:.4f}",
                f"{fetch_only / base:.2f}", f"{ours / base:.2f}")  # fmt: skip

        if not args.no_playbook:
            print("\nend to end: one ansible-playbook run per size; task = the vsr_metrics task's")
            print(
                "wall time as the play saw it, ping = an ansible.builtin.ping task's (fixed cost)"
            )
            row(
                "endpoints",
                "floor s",
                "task s",
                "ping s",
                "module s",
                "task/floor",
                "(task-ping)/fl",
            )
            for n in sizes:
                urls = urls_for(servers, n)
                base, _ = best_of(lambda urls=urls: floor(urls, args.workers), args.repeat)
                task, ping, module_elapsed, _wall = playbook_seconds(urls, args.workers)
                row(n, f"{base:.4f}", f"{task:.3f}", f"{ping:.3f}", f"{module_elapsed:.4f}",
                    f"{task / base:.1f}", f"{(task - ping) / base:.1f}")  # fmt: skip
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()

    text, count = big_exposition()
    theirs_families = list(text_string_to_metric_families(text))
    ours_families = pt.parse_families(text)
    assert [f.name for f in ours_families] == [f.name for f in theirs_families]
    assert sum(len(f.samples) for f in ours_families) == count
    theirs, _ = best_of(lambda: list(text_string_to_metric_families(text)), args.repeat)
    ours, _ = best_of(lambda: pt.parse_families(text), args.repeat)
    print(f"\nparser, {count} samples ({len(text) // 1024} KiB), median of {args.repeat}")
    print(f"  prometheus_client: {theirs * 1000:8.1f} ms  {count / theirs:>10,.0f} samples/s")
    print(f"  prometheus_text:   {ours * 1000:8.1f} ms  {count / ours:>10,.0f} samples/s")
    print(f"  throughput ratio (ours / prometheus_client): {theirs / ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
