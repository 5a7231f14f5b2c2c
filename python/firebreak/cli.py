"""The `firebreak` command: parse, call, print (a table for people, --json for machines).

Exit codes
  run       0 successful, 1 failed, 2 usage/setup error, 3 timeout, 130 canceled
  triage    0 healthy, 10 + N for SEV N (11 SEV1, 12 SEV2, 13 SEV3, 14 SEV4), 2 usage/setup
            error or a cluster that cannot be read: no severity ever shares a code with an error
  rehearse  0 passed, 1 failed, 2 setup error (unknown FM, missing runbook, no lab)
  report    0 rendered, 1 record does not verify / template not applicable, 2 usage error
  record verify  0 chain intact, 1 tampered or unreadable
  lock show      0 shown (also when no lock is held), 2 usage error
  lock release   0 released, 1 refused (the holder is alive), 2 no such lock / usage error
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import yaml

from firebreak import paths, runner
from firebreak.runner import FirebreakError, RunResult

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_TIMEOUT, EXIT_CANCELED = 0, 1, 2, 3, 130
RUN_EXIT = {
    "successful": EXIT_OK,
    "failed": EXIT_FAILED,
    "timeout": EXIT_TIMEOUT,
    "canceled": EXIT_CANCELED,
}
TRIAGE_EXIT = {None: 0, "none": 0, "SEV1": 11, "SEV2": 12, "SEV3": 13, "SEV4": 14}


class UsageError(FirebreakError):
    pass


def parse_extra_vars(items: Sequence[str] | None) -> dict[str, Any]:
    """-e k=v (a string, as ansible-playbook takes it), -e '{"k": 1}' (JSON/YAML), -e @file."""
    out: dict[str, Any] = {}
    for item in items or []:
        if item.startswith("@"):
            path = Path(item[1:])
            if not path.is_file():
                raise UsageError(f"extra vars file not found: {path}")
            data = yaml.safe_load(path.read_text("utf-8")) or {}
        elif item.lstrip().startswith("{"):
            data = yaml.safe_load(item)
        else:
            data = {}
            for pair in item.split():
                key, sep, value = pair.partition("=")
                if not sep or not key:
                    raise UsageError(f"extra var {pair!r} is not key=value")
                data[key] = value
        if not isinstance(data, dict):
            raise UsageError(f"extra vars {item!r} are not a mapping")
        out.update(data)
    return out


def _emit_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _error(message: str, err: TextIO) -> int:
    err.write(f"firebreak: error: {message.splitlines()[0] if message else 'unknown error'}\n")
    return EXIT_ERROR


def _with_cancel(call: Callable[[threading.Event], Any]) -> Any:
    """Ctrl-C or SIGTERM cancels the run (runner kills it, a rehearsal takes its lab down)
    instead of killing us mid-way, with the lab, the workload or the lock left behind."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return call(cancel)
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda *_: cancel.set()) for s in signals}
    try:
        return call(cancel)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _on_task(*callbacks: Callable[[Any], None] | None) -> Callable[[Any], None]:
    def call(task: Any) -> None:
        for callback in callbacks:
            if callback is not None:
                callback(task)

    return call


def _run(args: argparse.Namespace, playbook: str, out: TextIO, **extra: Any) -> RunResult:
    from firebreak.incident_watch import IncidentWatch, load_contacts
    from firebreak.progress import ProgressPrinter

    printer = None if args.json else ProgressPrinter(out)
    # escalations that come due and the update drafts, printed while the run goes on
    watch = IncidentWatch(io.StringIO() if args.json else out, load_contacts())
    with watch:
        return _with_cancel(
            lambda cancel: runner.run_playbook(
                playbook,
                inventory=args.inventory,
                extra_vars=parse_extra_vars(getattr(args, "extra_vars", None)),
                tags=_split(getattr(args, "tags", None)),
                skip_tags=_split(getattr(args, "skip_tags", None)),
                limit=getattr(args, "limit", None),
                check=getattr(args, "check", False),
                timeout=args.timeout,
                incident_id=getattr(args, "incident_id", None),
                incident_dir=getattr(args, "incident_dir", None),
                on_task=_on_task(printer, watch.on_task),
                cancel=cancel,
                **extra,
            )
        )


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _unreachable_message(result: RunResult) -> str:
    hosts = result.unreachable_hosts
    why = next((t.message for t in result.tasks if t.status == "unreachable" and t.message), "")
    return f"cannot reach the cluster: {', '.join(hosts)} unreachable ({why})"


def _summary(result: RunResult, out: TextIO) -> None:
    if result.stats:
        out.write(
            f"\n{'host':<20} {'ok':>4} {'changed':>8} {'failed':>7} {'unreach':>8} {'skipped':>8}\n"
        )
        for host, s in sorted(result.stats.items()):
            out.write(
                f"{host:<20} {s.ok:>4} {s.changed:>8} {s.failures:>7} {s.unreachable:>8} "
                f"{s.skipped:>8}\n"
            )
    for task in result.failed_tasks:
        out.write(f"FAILED {task.host}: {task.task}: {task.message or '(no message)'}\n")
    if result.error:
        out.write(f"ERROR {result.error}\n")
    if result.leftover_killed:
        out.write(f"killed {len(result.leftover_killed)} leftover process(es) of the run\n")
    out.write(
        f"{result.status} (rc {result.rc}) in {result.duration:.1f}s"
        f"{' [check mode]' if result.check else ''}; artifacts: {result.private_data_dir}\n"
    )
    if result.record_path:
        out.write(f"incident record: {result.record_path}\n")
        out.writelines(line + "\n" for line in _escalations(result.record_path))


def _escalations(record_path: str) -> list[str]:
    """The record's escalations, as they stand now (seed 000's escalation paths)."""
    from firebreak.incident_watch import escalation_lines, load_contacts
    from firebreak.record import RecordError, load_document

    try:
        return escalation_lines(load_document(record_path), load_contacts())
    except (RecordError, OSError, ValueError) as exc:
        return [f"escalation: cannot read {record_path}: {exc}"]


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    result = _run(args, args.playbook, out)
    if args.json:
        _emit_json(result.to_dict(), out)
    else:
        _summary(result, out)
    if result.all_unreachable:
        return _error(_unreachable_message(result), err)
    if result.error and not result.tasks:
        return _error(f"{args.playbook}: {result.error}", err)
    return RUN_EXIT[result.status]


TRIAGE_COLUMNS = (
    ("replica", ("name", "replica", "host")),
    ("status", ("status_name", "status")),
    ("view", ("view",)),
    ("op", ("op",)),
    ("commit", ("commit",)),
    ("lag", ("lag",)),
    ("checksum failures", ("checksum_failures",)),
)


def triage_table(triage: dict[str, Any]) -> str:
    rows = []
    for replica in triage.get("replicas") or []:
        row = []
        for _title, keys in TRIAGE_COLUMNS:
            value = next((replica[k] for k in keys if k in replica and replica[k] is not None), "-")
            row.append(str(value))
        rows.append(row)
    titles = [t for t, _ in TRIAGE_COLUMNS]
    widths = [
        max(len(t), *(len(r[i]) for r in rows)) if rows else len(t) for i, t in enumerate(titles)
    ]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    failure_mode = triage.get("failure_mode")
    if failure_mode in (None, "", "none"):
        lines.append("suspected failure mode: none (healthy)")
    else:
        name = f" {triage['name']}" if triage.get("name") else ""
        runbook = triage.get("runbook")
        runbook = f" (runbook {runbook})" if runbook and runbook != "none" else ""
        lines.append(f"suspected failure mode: {failure_mode}{name}{runbook}")
    lines.append(f"severity: {triage.get('severity') or 'none'}")
    if triage.get("summary"):
        lines.append(f"summary: {triage['summary']}")
    targets = triage.get("targets") or []
    if targets:
        lines.append(f"targets: {', '.join(str(t) for t in targets)}")
    evidence = triage.get("evidence") or []
    if isinstance(evidence, dict):
        evidence = [f"{k}: {v}" for k, v in evidence.items()]
    for item in evidence:
        lines.append(f"evidence: {item if isinstance(item, str) else json.dumps(item)}")
    return "\n".join(lines) + "\n"


def cmd_triage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    args.tags = args.skip_tags = args.limit = None
    args.check = False
    args.extra_vars = args.extra_vars or []
    result = _run(args, "triage", out)
    if result.all_unreachable:
        if args.json:
            _emit_json({"error": _unreachable_message(result), "run": result.to_dict()}, out)
        return _error(_unreachable_message(result), err)
    triage = result.facts("firebreak_triage")
    if result.status != "successful" or not isinstance(triage, dict):
        why = (
            f"triage {result.status}"
            if result.status != "successful"
            else "playbooks/triage.yml did not set the fact firebreak_triage"
        )
        if result.failed_tasks:
            t = result.failed_tasks[0]
            why += f": {t.host}: {t.task}: {t.message}"
        if args.json:
            _emit_json({"error": why, "run": result.to_dict()}, out)
        return _error(why, err)
    severity = triage.get("severity") or None
    if severity not in TRIAGE_EXIT:
        return _error(f"triage reported an unknown severity {severity!r}", err)
    if args.json:
        _emit_json(
            {
                "triage": triage,
                "exit_code": TRIAGE_EXIT[severity],
                "error": None,
                "run_id": result.run_id,
                "record_path": result.record_path,
            },
            out,
        )
    else:
        out.write("\n" + triage_table(triage))
    return TRIAGE_EXIT[severity]


def _record_summary(path: Path) -> str:
    """Three lines on a record for people: what, how bad, how fast, and whether it verifies."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return f"  (record unreadable: {exc})\n"
    from firebreak.record import verify_file

    metrics = doc.get("metrics") or {}
    chain = verify_file(path)
    return (
        f"  {doc.get('id')}: {doc.get('failure_mode')} {doc.get('severity')}, "
        f"state {doc.get('state')}, {len(doc.get('timeline') or [])} timeline entries\n"
        f"  MTTD {metrics.get('mttd_seconds')} s, MTTR {metrics.get('mttr_seconds')} s\n"
        f"  hash chain: {'intact, head ' + str(chain.head)[:16] if chain.ok else 'BROKEN'}\n"
    )


def cmd_rehearse(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from firebreak import rehearsal
    from firebreak.progress import ProgressPrinter

    def on_step(step: rehearsal.Step) -> None:
        if not args.json:
            extra = f": {step.detail['error']}" if "error" in step.detail else ""
            out.write(f"== {step.name}: {step.status}{extra}\n")

    try:
        result = _with_cancel(
            lambda cancel: rehearsal.rehearse(
                args.failure_mode,
                args.incident_dir or paths.incidents_dir(),
                on_task=None if args.json else ProgressPrinter(out),
                on_step=on_step,
                timeout=args.timeout,
                keep_lab=args.keep_lab,
                lab_dir=args.lab_dir,
                net=args.net,
                mode=args.mode,
                cancel=cancel,
            )
        )
    except FirebreakError as exc:
        return _error(str(exc), err)
    if args.json:
        _emit_json(asdict(result), out)
    else:
        why = f" ({result.error})" if result.error else ""
        out.write(f"rehearsal {result.failure_mode}: {result.status}{why}\n")
        if result.record_path:
            out.write(f"incident record: {result.record_path}\n")
            out.write(_record_summary(Path(result.record_path)))
        if result.report_path:
            out.write(f"post-mortem draft: {result.report_path}\n")
    return {"passed": EXIT_OK, "canceled": EXIT_CANCELED}.get(result.status, EXIT_FAILED)


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from firebreak.comms import CommsError, render
    from firebreak.record import RecordError, load

    try:
        record = load(args.record)
        text = render(record, args.template, args.format)
    except (RecordError, CommsError) as exc:
        err.write(f"firebreak: {exc}\n")
        return EXIT_FAILED
    if args.json:
        _emit_json(
            {"record": args.record, "template": args.template, "format": args.format, "text": text},
            out,
        )
    else:
        out.write(text)
    return EXIT_OK


def cmd_record_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from firebreak.record import verify_file

    result = verify_file(args.record)
    if args.json:
        _emit_json(asdict(result), out)
    elif result.ok:
        out.write(f"OK {result.path}: {result.entries} entries, head {result.head}\n")
    else:
        first = result.problems[0]
        where = (
            f"entry #{first.seq if first.seq is not None else first.index}: "
            if first.index is not None
            else ""
        )
        err.write(f"TAMPERED {result.path}: {where}{first.reason}\n")
    return EXIT_OK if result.ok else EXIT_FAILED


def _holder_text(info: Any) -> str:
    owner = info.owner
    if owner is None:
        return f"{info.path}: no owner file; {info.status}: {info.why}\n"
    procs = f"ansible-playbook pid {owner.get('pid')}, firebreak pid {owner.get('wrapper_pid')}"
    return (
        f"{info.path}: cluster {owner.get('cluster')}, run {owner.get('run_id')}, "
        f"incident {owner.get('incident_id')}\n"
        f"  held by {owner.get('owner')} on {owner.get('host')} ({procs}), "
        f"since {owner.get('acquired_at')}, {owner.get('purpose')}\n"
        f"  holder {info.status}: {info.why}\n"
    )


def cmd_lock_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from firebreak import lock

    found = [lock.resolve(args.lock, args.lock_dir)] if args.lock else lock.held(args.lock_dir)
    infos = [lock.describe(p, args.stale_after) for p in found]
    if args.json:
        _emit_json([asdict(i) for i in infos], out)
    elif not infos:
        out.write(f"no remediation lock held in {args.lock_dir or lock.default_lock_dir()}\n")
    for info in [] if args.json else infos:
        out.write(_holder_text(info))
    return EXIT_OK


def cmd_lock_release(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import getpass

    from firebreak import lock

    path = lock.resolve(args.lock, args.lock_dir)
    try:
        owner, record = lock.release(path, args.stale_after, operator=getpass.getuser())
    except lock.LockHeld as exc:
        if args.json:
            _emit_json({"released": False, "path": str(path), "why": str(exc)}, out)
        err.write(f"firebreak: lock {path} not released: {exc}\n")
        return EXIT_FAILED
    if args.json:
        _emit_json({"released": True, "path": str(path), "owner": owner, "record": record}, out)
    else:
        out.write(f"released {path} (run {owner.get('run_id')}, holder gone)\n")
        if record:
            out.write(f"recorded in {record}\n")
    return EXIT_OK


def _lab_unavailable(reason: str) -> Callable[..., int]:
    def handler(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        return _error(f"lab not available: {reason}", err)

    return handler


def _add_lab(subparsers: argparse._SubParsersAction) -> None:
    try:
        lab_cli = importlib.import_module("firebreak.lab.cli")
        add_parser = lab_cli.add_parser
    except ImportError:
        reason = "the firebreak.lab CLI (firebreak.lab.cli) is not installed"
    except Exception as exc:  # a broken lab must not take `record verify` down with it
        reason = f"firebreak.lab.cli failed to load: {exc}"
    else:
        add_parser(subparsers)
        return
    p = subparsers.add_parser("lab", help="the VSR lab (not available)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_lab_unavailable(reason), json=False)


def _common(p: argparse.ArgumentParser, inventory: bool = True) -> None:
    if inventory:
        p.add_argument("-i", "--inventory", help="inventory path (default: ansible.cfg's)")
        p.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds before the run is stopped (status timeout, nothing left running)",
        )
    p.add_argument("--json", action="store_true", help="machine output only, no progress")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a playbook of the collection")
    p.add_argument("playbook", help="path, short name (fm003_corruption) or FQCN")
    _common(p)
    p.add_argument("-e", "--extra-vars", action="append", default=[], metavar="K=V|@FILE|JSON")
    p.add_argument("--check", action="store_true", help="check mode: predict, change nothing")
    p.add_argument("--tags", help="comma-separated tags (e.g. diagnose)")
    p.add_argument("--skip-tags", help="comma-separated tags to skip")
    p.add_argument("--limit", help="host pattern")
    p.add_argument("--incident-id", help="sets firebreak_incident_id")
    p.add_argument("--incident-dir", help="sets firebreak_incident_dir")
    p.set_defaults(func=cmd_run)


def _add_triage(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("triage", help="run playbooks/triage.yml and show the suspected failure")
    _common(p)
    p.add_argument("-e", "--extra-vars", action="append", default=[], metavar="K=V|@FILE|JSON")
    p.add_argument("--incident-id", help="also record the triage in this incident")
    p.add_argument("--incident-dir", default=None)
    p.set_defaults(func=cmd_triage)


def _add_rehearse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rehearse", help="rehearse a failure mode end to end in the lab")
    p.add_argument("failure_mode", metavar="FM", help="e.g. fm003_corruption (or fm003)")
    p.add_argument(
        "--incident-dir",
        help="where the record goes (default: the state dir's incidents/, see firebreak.paths)",
    )
    p.add_argument("--timeout", type=float, default=900, help="per playbook run, seconds")
    p.add_argument(
        "--keep-lab",
        action="store_true",
        help="leave the lab up afterwards, also when the rehearsal fails (for inspection; "
        "`firebreak lab down --name INCIDENT-ID` takes it down later)",
    )
    p.add_argument("--net", type=int, help="lab network 127.0.NET.i (default: the lab's)")
    p.add_argument(
        "--lab-dir", help="lab state directory (default: <state dir>/labs/<incident id>)"
    )
    p.add_argument(
        "--mode",
        choices=["containers", "processes"],
        default="containers",
        help="lab mode (default containers: the runbooks need systemd and journald)",
    )
    _common(p, inventory=False)
    p.set_defaults(func=cmd_rehearse)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render a communication from an incident record")
    p.add_argument("record")
    p.add_argument(
        "--template", default="initial", choices=["initial", "update", "resolution", "postmortem"]
    )
    p.add_argument("--format", default="md", choices=["md", "txt"])
    _common(p, inventory=False)
    p.set_defaults(func=cmd_report)


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="incident record tools")
    record_sub = p.add_subparsers(dest="record_command", required=True)
    v = record_sub.add_parser("verify", help="check the record's schema and hash chain")
    v.add_argument("record")
    _common(v, inventory=False)
    v.set_defaults(func=cmd_record_verify)


def _add_lock(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lock", help="the remediation locks: who holds them, release a dead one")
    lock_sub = p.add_subparsers(dest="lock_command", required=True)
    for name, func, text in (
        ("show", cmd_lock_show, "print the holder of a lock (default: every lock held)"),
        ("release", cmd_lock_release, "release a lock whose holder is gone (recorded)"),
    ):
        q = lock_sub.add_parser(name, help=text)
        q.add_argument(
            "lock",
            nargs="?" if name == "show" else None,
            metavar="CLUSTER|PATH",
            help="the cluster name, or the lock's path (<lock dir>/<cluster>.lock)",
        )
        q.add_argument(
            "--lock-dir",
            help="the runbooks' firebreak_lock_dir (default: $FIREBREAK_LOCK_DIR, else "
            "/var/tmp/firebreak/locks)",
        )
        q.add_argument(
            "--stale-after",
            type=int,
            default=3600,
            help="seconds after which a holder on another host (or a lock without an owner "
            "file) counts as gone; a holder on this host counts as gone only when it is",
        )
        _common(q, inventory=False)
        q.set_defaults(func=func)


# The subcommands, in the order `firebreak --help` lists them.
SUBCOMMANDS = (_add_run, _add_triage, _add_rehearse, _add_report, _add_record, _add_lock, _add_lab)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firebreak",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The lab group's handlers (firebreak.lab.cli) may take (args) only.
        if len(inspect.signature(args.func).parameters) >= 3:
            return int(args.func(args, out, err) or 0)
        return int(args.func(args) or 0)
    except FirebreakError as exc:
        return _error(str(exc), err)


if __name__ == "__main__":
    sys.exit(main())
