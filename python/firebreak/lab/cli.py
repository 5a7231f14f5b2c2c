"""``lab`` commands: up, status, down, inventory, fault, heal, reset, workload, reconfig.

``add_parser(subparsers)`` registers the ``lab`` group on the top-level ``firebreak`` CLI;
``python -m firebreak.lab.cli ...`` runs it standalone (``main(argv)``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from firebreak import paths
from firebreak.lab import workload
from firebreak.lab.backend import (
    FAULT_KINDS,
    MODES,
    Backend,
    LabError,
    known_labs,
    lab_dir,
    load_state,
    register_lab,
    unregister_lab,
)
from firebreak.lab.backends import current_backend, get_backend


def add_parser(subparsers) -> argparse.ArgumentParser:
    lab = subparsers.add_parser("lab", help="the VSR reference cluster (the lab)")
    sub = lab.add_subparsers(dest="lab_cmd", required=True)
    _add_up(sub)
    _add_rest(sub)
    lab.set_defaults(func=run)
    return lab


def _add_up(sub) -> None:
    up = sub.add_parser("up", help="start a fresh lab")
    up.add_argument("--mode", choices=MODES, default="processes")
    up.add_argument("--replicas", type=int, default=3)
    up.add_argument(
        "--net",
        type=int,
        help="host addresses 127.0.NET.i (processes mode: default 20 or $FIREBREAK_LAB_NET; "
        "containers mode: default 30 or $FIREBREAK_CONTAINERS_NET)",
    )
    up.add_argument("--cluster", default="lab")
    up.add_argument(
        "--name-prefix", default="", help="containers mode: container names PREFIXreplica-i"
    )
    up.add_argument(
        "--network", help="containers mode: podman network name (default firebreak-lab)"
    )
    up.add_argument("--checkpoint-interval", type=int)
    up.add_argument("--scrub-interval", type=float, dest="scrub_interval_s")
    up.add_argument(
        "--hold-repair",
        action="store_true",
        default=None,
        help="a replica that finds corruption while running fences itself and waits for a "
        "forced state transfer or a restart (the damaged bytes stay on disk as evidence)",
    )
    up.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="leave what a failed `lab up` started (for inspection); by default it is taken down",
    )


def _add_rest(sub) -> None:
    st = sub.add_parser("status", help="replica status")
    st.add_argument("--json", action="store_true")
    dn = sub.add_parser(
        "down",
        help="take a lab down: everything it started (replicas, workload, containers, network, "
        "mounts); default: this lab ($FIREBREAK_LAB_DIR or <state dir>/labs/default)",
    )
    which = dn.add_mutually_exclusive_group()
    which.add_argument("--dir", type=Path, help="the lab in this lab directory")
    which.add_argument("--name", help="the lab of this name (see `lab list`)")
    which.add_argument("--all", action="store_true", help="every lab `lab list` shows")
    ls = sub.add_parser("list", help="the labs of the state dir: name, mode, status, dir")
    ls.add_argument("--json", action="store_true")
    sub.add_parser("inventory", help="write the Ansible inventory and print its path")
    f = sub.add_parser("fault", help=f"inject a fault: {', '.join(FAULT_KINDS)}")
    f.add_argument("kind", choices=FAULT_KINDS)
    # nargs="+" so that `lab fault KIND --replica NAME ARG` parses with plain parse_args
    f.add_argument("--replica", nargs="+", default=["leader"], help="NAME, leader or backup")
    f.add_argument(
        "arg",
        nargs="?",
        help="MS for clock-skew/latency/slow-commit (clock-skew in containers: MS[:HOW], HOW "
        "stopped|unreachable|running, what the time-sync daemon does); corrupt: an op or "
        "'unrepairable'; "
        "disk-full: MB (processes) or 'old-logs' (rotated log segments fill it)",
    )
    sub.add_parser("heal", help="undo faults, restart stopped replicas")
    rs = sub.add_parser(
        "reset",
        help="a fresh start for the next test: workload stopped and emptied, faults healed, "
        "replica options applied (units restarted), then verified: every replica Normal, "
        "one view, equal commits",
    )
    rs.add_argument("--checkpoint-interval", type=int, help="change this replica option")
    rs.add_argument(
        "--scrub-interval", type=float, dest="scrub_interval_s", help="change this replica option"
    )
    rs.add_argument("--timeout", type=float, default=90, help="seconds to settle (90)")
    rs.add_argument("--json", action="store_true")
    rc = sub.add_parser(
        "reconfig",
        help="joint-consensus reconfiguration: add (provisions the replica when the lab does "
        "not have it yet) or remove a replica, then wait for the stable configuration",
    )
    rc.add_argument("action", choices=["add", "remove"])
    rc.add_argument("replica", help="replica name (e.g. replica-4)")
    rc.add_argument("--wait", type=float, default=30, help="seconds to wait for Stable (30)")
    w = sub.add_parser("workload", help="background workload: start, stop, check")
    w.add_argument("action", choices=["start", "stop", "check"])
    w.add_argument("--json", action="store_true")
    w.add_argument("--rate", type=float, default=20)
    w.add_argument("--streams", type=int, default=4)
    w.add_argument(
        "--readers", type=int, default=1, help="start: threads reading while it writes (1)"
    )
    w.add_argument(
        "--per-replica",
        action="store_true",
        help="check: also read every replica locally and compare their streams",
    )


def _print_status(rows: list[dict]) -> None:
    print(f"{'replica':<11} {'pid':>7} {'status':<14} {'view':>5} {'op':>7} {'commit':>7}  notes")
    for r in rows:
        notes = []
        if r.get("is_primary"):
            notes.append("leader")
        if r.get("paused"):
            notes.append("paused")
        if r.get("fault"):
            notes.append(f"fault={r['fault']['fault']}")
        if r.get("corrupt_from"):
            notes.append(f"corrupt from op {r['corrupt_from']}")
        if r.get("member") is False:
            notes.append("not a member")
        if r.get("reconfig_state"):
            notes.append("reconfig Joint")
        unreachable = [p for p, link in (r.get("peers") or {}).items() if not link["reachable"]]
        if unreachable:
            notes.append(f"unreachable {','.join(unreachable)}")
        if r.get("error"):
            notes.append(r["error"])
        status = r.get("status_name") or ("down" if not r.get("running") else "?")
        print(
            f"{r['name']:<11} {r.get('pid') or '-':>7} {status:<14} {r.get('view', '-'):>5} "
            f"{r.get('op', '-'):>7} {r.get('commit', '-'):>7}  {', '.join(notes)}"
        )


def take_down(d: Path) -> list[str]:
    """Stop everything the lab in ``d`` started, its workload first; what was taken down."""
    done = []
    if workload.stop(d):
        done.append("workload")
    if load_state(d) is not None:
        current_backend(d).down()
        done.append("lab" if load_state(d) is None else "lab (partly: its state remains)")
    unregister_lab(d)
    return done


def _labs_named(args: argparse.Namespace, default: Path) -> list[Path]:
    if args.all:
        return known_labs()
    if args.dir:
        return [args.dir]
    if args.name:
        for d in known_labs():
            if d.name == args.name:
                return [d]
        names = ", ".join(d.name for d in known_labs()) or "none"
        raise LabError(f"no lab named {args.name!r} (labs: {names})")
    return [default]


def lab_rows() -> list[dict]:
    rows = []
    for d in known_labs():
        st = load_state(d) or {}
        rows.append(
            {
                "name": d.name,
                "dir": str(d),
                "mode": st.get("mode"),
                "status": st.get("status") or ("up" if st else "workload only"),
                "replicas": len(st.get("replicas") or []),
                "workload": workload.running(d) is not None,
            }
        )
    return rows


def _list(args: argparse.Namespace, d: Path) -> int:
    rows = lab_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    for r in rows if not args.json else ():
        print(f"{r['name']:<40} {r['mode'] or '-':<10} {r['status']:<14} {r['dir']}")
    if not rows and not args.json:
        print(f"no labs under {paths.labs_dir()}")
    return 0


def up(args: argparse.Namespace, d: Path) -> dict:
    """`lab up` (``args`` as parsed) for the lab in ``d``: its state. What a failed start
    started is taken down unless ``args.keep_on_failure``; LabError says what failed."""
    opts = {
        "net": args.net,
        "cluster": args.cluster,
        "name_prefix": args.name_prefix,
        "network": args.network,
        "checkpoint_interval": args.checkpoint_interval,
        "scrub_interval_s": args.scrub_interval_s,
        "hold_repair": args.hold_repair,
    }
    # A fresh lab: no workload of an earlier lab in this dir keeps writing, and its
    # history (attempts, acknowledgements) is not this lab's.
    workload.stop(d)
    workload.reset(d)
    register_lab(d)
    try:
        return get_backend(args.mode, d).up(replicas=args.replicas, **opts)
    except (LabError, OSError) as exc:
        if args.keep_on_failure:
            raise LabError(f"lab up failed, kept for inspection in {d}: {exc}") from exc
        try:
            take_down(d)
        except (LabError, OSError) as down_exc:
            raise LabError(
                f"lab up failed: {exc}\nand taking it down failed too: {down_exc}"
            ) from exc
        raise LabError(f"lab up failed (what it started was taken down): {exc}") from exc


def up_line(state: dict) -> str:
    """What `lab up` prints: the mode and every replica's API URL."""
    return f"lab up ({state['mode']}): " + ", ".join(r["api_url"] for r in state["replicas"])


def up_refusal(args: argparse.Namespace) -> str | None:
    """Why `lab up` refuses these options before it starts anything, or None."""
    if args.mode != "containers" and (args.name_prefix or args.network):
        return "lab up: --name-prefix and --network apply to --mode containers only"
    return None


def _up(args: argparse.Namespace, d: Path) -> int:
    refusal = up_refusal(args)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    print(up_line(up(args, d)))
    return 0


def down_line(target: Path, done: list[str]) -> str:
    """What `lab down` prints of one lab (``done``: what take_down took down)."""
    return f"lab down {target}: {', '.join(done) or 'nothing was running'}"


def _down(args: argparse.Namespace, d: Path) -> int:
    targets = _labs_named(args, d)
    for target in targets:
        print(down_line(target, take_down(target)))
    if not targets:
        print(f"no labs under {paths.labs_dir()}")
    return 0


def _status(args: argparse.Namespace, be: Backend) -> int:
    rows = be.status()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_status(rows)
    return 0


def _heal(be: Backend) -> int:
    healed = be.heal()
    print(json.dumps(healed))
    for why in (healed.get("failed") or {}).values():
        print(f"lab heal: {why}", file=sys.stderr)
    return 1 if healed.get("failed") else 0


def reset_options(args: argparse.Namespace, state: dict | None) -> dict | None:
    """The replica options `lab reset` asks for: the lab's own with those given changed; None
    (keep them) when none is given."""
    given = {
        k: v
        for k in ("checkpoint_interval", "scrub_interval_s")
        if (v := getattr(args, k)) is not None
    }
    if not given:
        return None
    return {**((state or {}).get("replica_opts") or {}), **given}


def reset_line(report: dict) -> str:
    """What `lab reset` prints without --json."""
    restarted = ", ".join(report["restarted"]) or "none"
    return (
        f"lab reset in {report['seconds']}s: {len(report['normal'])} Normal in view "
        f"{report['view']}, commit {report['commit']}; restarted {restarted}; "
        f"options {json.dumps(report['config'], sort_keys=True)}"
    )


def _reset(args: argparse.Namespace, be: Backend, d: Path) -> int:
    report = be.reset(reset_options(args, load_state(d)), timeout=args.timeout)
    print(json.dumps(report, indent=2) if args.json else reset_line(report))
    return 0


def workload_started_line(pid: int) -> str:
    return f"workload started (pid {pid})"


def _workload(args: argparse.Namespace, d: Path) -> int:
    if args.action == "start":
        pid = workload.start(d, rate=args.rate, streams=args.streams, readers=args.readers)
        print(workload_started_line(pid))
        return 0
    if args.action == "stop":
        print("workload stopped" if workload.stop(d) else "workload not running")
        return 0
    result = workload.check(d, per_replica=args.per_replica)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            "attempted {attempted} acknowledged {acknowledged} lost {lost} "
            "unexpected {unexpected} duplicated {duplicated} reads {reads} "
            "history violations {history_violations}".format(**result)
        )
    return 0 if result["ok"] else 1


def fault_request(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(kind, target, arg) of a parsed `lab fault KIND --replica TARGET [ARG]`, as run's fault
    branch reads them (kept there, as it was, for the fault kinds being added concurrently)."""
    target, *rest = args.replica
    arg = args.arg if args.arg is not None else (rest[0] if rest else None)
    return args.kind, target, arg


# The commands that need no running lab.
_WITHOUT_A_LAB = {"list": _list, "up": _up, "down": _down}


def run(args: argparse.Namespace) -> int:
    d = lab_dir()
    try:
        cmd = args.lab_cmd
        if cmd in _WITHOUT_A_LAB:
            return _WITHOUT_A_LAB[cmd](args, d)
        be = current_backend(d)
        if cmd == "status":
            return _status(args, be)
        if cmd == "inventory":
            print(be.inventory())
            return 0
        if cmd == "fault":
            target, *rest = args.replica
            arg = args.arg if args.arg is not None else (rest[0] if rest else None)
            print(json.dumps(be.fault(args.kind, target, arg)))
            return 0
        if cmd == "heal":
            return _heal(be)
        if cmd == "reset":
            return _reset(args, be, d)
        if cmd == "reconfig":
            print(json.dumps(be.reconfig(args.action, args.replica, wait=args.wait)))
            return 0
        if cmd == "workload":
            return _workload(args, d)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    return 2


def parse(argv: list[str]) -> argparse.Namespace:
    """`lab ARGV` (without the word lab) as the firebreak CLI parses it."""
    ap = argparse.ArgumentParser(prog="firebreak")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_parser(sub)
    return ap.parse_args(["lab", *argv])


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
