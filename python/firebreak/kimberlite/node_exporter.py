"""A node_exporter stand-in: the replica host's disk and load, read apart from the replica.

The seed's FM-007 (Disk Full) is seen in ``node_filesystem_avail_bytes``: Prometheus's
node_exporter runs beside the database and keeps answering when the replica has fail-stopped
on ENOSPC. The lab has no node_exporter binary (no registry), so this module serves the few
series the runbooks read, in node_exporter's names and labels, from the standard library:

* ``node_filesystem_avail_bytes`` / ``node_filesystem_size_bytes`` /
  ``node_filesystem_free_bytes`` ``{device, fstype, mountpoint}`` from ``statvfs`` of the
  replica's data dir, read at every scrape (a disk mounted there later is seen at once);
  ``mountpoint`` is the data dir as the inventory knows it (``vsr_data_dir``);
* ``node_filesystem_device_error`` (1 when ``statvfs`` fails, and then no size series);
* ``node_load1`` from ``os.getloadavg()``.

Run: ``python3 -m firebreak.kimberlite.node_exporter --config /etc/kimberlite/replica.json`` (the
data dir and the address come from the replica's config: its ``bind_host`` or ``host``, port
9100); ``--listen``, ``--port``, ``--path`` and ``--mountpoint`` override them. Containers run
it as ``node-exporter.service``; the processes mode runs one process per replica.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_PORT = 9100
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _unescape_mount(field: str) -> str:
    """/proc/self/mounts escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(path: str | os.PathLike, mounts_text: str | None = None) -> tuple[str, str]:
    """(device, fstype) of the filesystem that holds ``path``: the last mount listed whose
    mount point is the longest prefix of its real path."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/self/mounts").read_text()
        except OSError:
            return "unknown", "unknown"
    target = os.path.realpath(path)
    best, found = -1, ("unknown", "unknown")
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = _unescape_mount(parts[1])
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= best:
            best, found = len(mnt), (_unescape_mount(parts[0]), parts[2])
    return found


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(path: str | os.PathLike, mountpoint: str, mounts_text: str | None = None) -> str:
    """The text exposition (format 0.0.4) of the filesystem holding ``path`` and the load."""
    device, fstype = mount_of(path, mounts_text)
    labels = (
        f'device="{_label(device)}",fstype="{_label(fstype)}",mountpoint="{_label(mountpoint)}"'
    )
    lines = []

    def gauge(name: str, help_text: str, value: float, with_labels: bool = True) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name}{{{labels}}} {value!r}" if with_labels else f"{name} {value!r}")

    try:
        st = os.statvfs(path)
    except OSError:
        gauge("node_filesystem_device_error", "Whether an error occurred reading the fs.", 1.0)
    else:
        gauge("node_filesystem_device_error", "Whether an error occurred reading the fs.", 0.0)
        gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            float(st.f_bavail * st.f_frsize),
        )
        gauge(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            float(st.f_bfree * st.f_frsize),
        )
        gauge(
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            float(st.f_blocks * st.f_frsize),
        )
    gauge("node_load1", "1m load average.", float(os.getloadavg()[0]), with_labels=False)
    return "\n".join(lines) + "\n"


def _handler(path: str, mountpoint: str):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route == "/metrics":
                body, ctype, code = exposition(path, mountpoint).encode(), CONTENT_TYPE, 200
            elif route == "/":
                body, ctype, code = b"node exporter (firebreak lab): /metrics\n", "text/plain", 200
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # scrapes are not worth a log line each
            return

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # As the replica's server: no reverse lookup of the bind address (a dead resolver
        # would hold up the listen for seconds).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def settings(args: argparse.Namespace) -> tuple[str, int, str, str]:
    """(listen address, port, path to stat, mountpoint label) from the flags and the config."""
    cfg: dict = {}
    if args.config:
        cfg = json.loads(Path(args.config).read_text())
    me = next((r for r in cfg.get("replicas", []) if r.get("name") == cfg.get("replica")), {})
    listen = args.listen or cfg.get("bind_host") or me.get("host") or "127.0.0.1"
    port = args.port or int(cfg.get("node_exporter_port") or DEFAULT_PORT)
    path = args.path or cfg.get("data_dir")
    if not path:
        raise SystemExit("node_exporter: give --path or a --config with data_dir")
    return listen, port, path, args.mountpoint or path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m firebreak.kimberlite.node_exporter", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--config", help="the replica's JSON config (data_dir, address)")
    ap.add_argument("--listen", help="address to listen on (default the replica's)")
    ap.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT})")
    ap.add_argument("--path", help="directory whose filesystem is read (default data_dir)")
    ap.add_argument("--mountpoint", help="the mountpoint label (default the path)")
    args = ap.parse_args(argv)
    listen, port, path, mountpoint = settings(args)
    server = _Server((listen, port), _handler(path, mountpoint))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"node exporter on {listen}:{port}, filesystem of {path}", file=sys.stderr, flush=True)
    done.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
