"""kimberlite-admin: operate the local replica through its admin HTTP endpoints.

The replica's admin API lives on its API port (8080) under ``/admin/``. ``--host``/``--port``
default to this replica's address from ``/etc/kimberlite/replica.json`` (or ``--config`` /
``$KIMBERLITE_CONFIG``) when present, else ``127.0.0.1:8080``.

Commands::

    kimberlite-admin status                     # JSON status of the replica
    kimberlite-admin reconfig add|remove NAME [--address HOST[:API_PORT[:METRICS_PORT]]] [--wait S]
                                                # joint consensus: vsr_reconfig_state 1 then 0
    kimberlite-admin state-transfer             # force a state transfer (status 3 while it runs)
    kimberlite-admin checkpoints                # list checkpoints (op, file, size, valid)
    kimberlite-admin checkpoint                 # write a checkpoint now
    kimberlite-admin isolate | rejoin           # stop / resume accepting client requests
    kimberlite-admin scrub                      # run one scrubber tour now
    kimberlite-admin cleanup [--dry-run] [--data-dir DIR]
                                                # log cleanup, offline (the replica may be down):
                                                # remove the log.old.<first>-<last> segments that
                                                # the latest valid checkpoint covers, nothing else

``cleanup`` is the seed's FM-007 "trigger checkpoint, then log cleanup" (``checkpoint`` first,
while the replica runs). It reads the data dir itself (``--data-dir``, default the config's
``data_dir``) and prints ``{"removed": [...], "kept": [...], "freed_bytes": N,
"checkpoint_op": OP, "dry_run": bool, "data_dir": DIR}``: ``kept`` are the ``log.old.*`` names
it left (beyond the checkpoint, malformed, or no valid checkpoint at all); ``log.dat``, meta,
the commit hint and the checkpoints are never touched. Exit 0, or 2 when the data dir is not
there.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from pathlib import Path

from firebreak.kimberlite import storage

DEFAULT_CONFIG = "/etc/kimberlite/replica.json"


def _config_path(config: str | None) -> Path:
    return Path(config or os.environ.get("KIMBERLITE_CONFIG") or DEFAULT_CONFIG)


def _default_data_dir(config: str | None) -> str:
    try:
        return str(json.loads(_config_path(config).read_text())["data_dir"])
    except (OSError, ValueError, KeyError):
        return "/var/lib/kimberlite"


def cleanup(data_dir: str | os.PathLike, dry_run: bool = False) -> dict:
    """Remove the rotated log segments the latest valid checkpoint covers (offline)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"no data dir {d}")
    names = [p.name for p in d.iterdir() if p.name.startswith("log.old.")]
    plan = storage.cleanup_selection(names, storage.list_checkpoints(d))
    remove, keep = [], list(plan["keep"])
    for name in plan["remove"]:  # a segment's name on something else than a file: kept
        p = d / name
        (remove if p.is_file() and not p.is_symlink() else keep).append(name)
    if dry_run:
        freed = sum((d / n).stat().st_size for n in remove)
    else:
        freed = storage.remove_segments(d, remove)
    return {
        "removed": remove,
        "kept": sorted(keep),
        "freed_bytes": freed,
        "checkpoint_op": plan["checkpoint_op"],
        "dry_run": dry_run,
        "data_dir": str(d),
    }


def _defaults(config: str | None) -> tuple[str, int]:
    path = _config_path(config)
    try:
        cfg = json.loads(path.read_text())
        me = next(r for r in cfg["replicas"] if r["name"] == cfg["replica"])
        return me["host"], int(me.get("api_port", 8080))
    except (OSError, ValueError, KeyError, StopIteration):
        return "127.0.0.1", 8080


def call(host: str, port: int, method: str, path: str, body: dict | None = None, timeout=15):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    data = json.dumps(body or {}) if method == "POST" else None
    conn.request(method, path, data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw or b"{}")
    except ValueError:
        return resp.status, {"raw": raw.decode(errors="replace")}


def _wait_stable(host: str, port: int, action: str, name: str, timeout: float) -> bool:
    """Poll /admin/status until the committed configuration is stable and reflects the change."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            code, st = call(host, port, "GET", "/admin/status", timeout=5)
        except OSError:
            code, st = 0, {}
        if code == 200 and st.get("reconfig_state") == 0:
            members = st.get("configuration") or []
            if (name in members) == (action == "add"):
                return True
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kimberlite-admin", description="Kimberlite VSR admin")
    ap.add_argument("--config", help=f"replica config (default {DEFAULT_CONFIG})")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status")
    rc = sub.add_parser("reconfig")
    rc.add_argument("action", choices=["add", "remove"])
    rc.add_argument("replica")
    rc.add_argument(
        "--address",
        help="add: where the new replica listens, HOST[:API_PORT[:METRICS_PORT]] "
        "(default: its entry in the config file)",
    )
    rc.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="S",
        help="then wait up to S seconds for the stable configuration (vsr_reconfig_state 0)",
    )
    sub.add_parser("state-transfer")
    sub.add_parser("checkpoints")
    sub.add_parser("checkpoint")
    sub.add_parser("isolate")
    sub.add_parser("rejoin")
    sub.add_parser("scrub")
    cl = sub.add_parser(
        "cleanup", help="remove log.old.* segments the latest valid checkpoint covers (offline)"
    )
    cl.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    cl.add_argument("--data-dir", help="the replica's data dir (default: the config's data_dir)")
    args = ap.parse_args(argv)
    if args.cmd == "cleanup":
        try:
            out = cleanup(args.data_dir or _default_data_dir(args.config), args.dry_run)
        except OSError as exc:
            print(f"kimberlite-admin: cleanup: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(out, indent=2))
        return 0
    host, port = _defaults(args.config)
    host, port = args.host or host, args.port or port
    try:
        if args.cmd in ("status", "checkpoints"):
            code, out = call(host, port, "GET", f"/admin/{args.cmd}")
        elif args.cmd == "reconfig":
            body = {"action": args.action, "replica": args.replica}
            if args.address:
                body["address"] = args.address
            code, out = call(host, port, "POST", "/admin/reconfig", body, timeout=40)
            if code == 200 and args.wait > 0:
                out["stable"] = _wait_stable(host, port, args.action, args.replica, args.wait)
                if not out["stable"]:
                    code = 1
        else:
            code, out = call(host, port, "POST", f"/admin/{args.cmd}")
    except OSError as exc:
        print(f"kimberlite-admin: cannot reach replica at {host}:{port}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0 if code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
