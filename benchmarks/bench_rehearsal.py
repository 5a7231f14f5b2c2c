"""Rehearsal benchmark: MTTR of each runbook in the containers lab, and Molecule wall times.

MTTR here is the time from fault injection to *verified* recovery: the runbook's own verify
passed and the harness saw every replica Normal in one view with level commit numbers. Each
rehearsal prints its phase breakdown (from the task timings of the runbook run, split at the
runbook's phase boundaries), plus the time the fault took to show. The baseline, measured in
the same run on the same lab, is one read-only triage pass: the fixed cost of an Ansible pass
over the cluster; the ratio says how many such passes a repair costs.

    .venv/bin/python benchmarks/bench_rehearsal.py [--rehearsals fm003,fm006] [--no-molecule]
        [--molecule-scenarios fm003_corruption,fm005_replica_crash] [--json]

Every runbook of the failure-mode registry by default, each with the registry's fault and
rehearsal vars.

Needs root, podman and the lab image (as the rehearsal tests). Leaves nothing running: its lab
has names of its own (``bench-replica-i``, network ``firebreak-lab-bench``, ``127.0.39.i``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    failure_modes,
)
from firebreak.lab import workload  # noqa: E402
from firebreak.lab.containers import ContainerLab  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"
REPLICAS = ["replica-1", "replica-2", "replica-3"]

# Where each runbook's phases begin: the first task of the phase, as the runbook skeleton
# (roles/runbook) names it; the same for every runbook.
PHASE_MARKERS = [
    ("preflight", "Preflight | the failure mode, its runbook and this run's ids"),
    ("diagnose", "Runbook | diagnose (read-only triage)"),
    ("decide", "Decide | the plan"),
    ("act", "Act | say what would be done (check mode)"),
    ("verify", "Verify | wait until every replica is Normal"),
    ("record", "Runbook | release the remediation lock"),
]


def _registry() -> dict[str, tuple[str, str, str | None, list[str]]]:
    """{fmNNN: (role, fault kind, fault arg, extra vars)} of every runbook in the registry."""
    out = {}
    for fm_id, role in failure_modes.runbooks().items():
        entry = failure_modes.get(fm_id)
        argv = entry["fault"][0]  # [kind, --replica, backup|leader, arg?]
        extra = [f"{k}={v}" for k, v in (entry.get("rehearsal_vars") or {}).items()]
        out[role.split("_", 1)[0]] = (role, argv[0], argv[3] if len(argv) > 3 else None, extra)
    return out


REHEARSALS = _registry()
# How long after the injection the fault shows, by fault kind (the lab's own numbers).
FAULT_SHOWS = {
    "corrupt": ("the checksum failure to show", lambda c, t: c["checksum"] > 0),
    "kill": ("the replica to be down", lambda c, t: t in c["down"]),
    "disk-full": ("the replica to stop on the full disk", lambda c, t: t in c["down"]),
    "slow-commit": ("op - commit > 100 on it", lambda c, t: c["lag"].get(t, 0) > 100),
}


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def cluster(lab: ContainerLab) -> dict:
    out = {"normal": 0, "views": set(), "commits": set(), "down": [], "checksum": 0, "lag": {}}
    for r in REPLICAS:
        try:
            m = lab.metrics(r, timeout=2)
        except OSError:
            out["down"].append(r)
            continue
        out["normal"] += int(m.get("vsr_replica_status", -1) == 0)
        out["views"].add(int(m.get("vsr_view_number", -1)))
        out["commits"].add(int(m.get("vsr_commit_number", -1)))
        out["checksum"] += int(m.get("vsr_checksum_failures_total", 0))
        out["lag"][r] = int(m.get("vsr_op_number", 0)) - int(m.get("vsr_commit_number", 0))
    return out


def healthy(c: dict) -> bool:
    return c["normal"] == len(REPLICAS) and len(c["views"]) == 1 and len(c["commits"]) == 1


def wait(pred, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def leader(lab: ContainerLab) -> str:
    return REPLICAS[max(cluster(lab)["views"]) % len(REPLICAS)]


def playbook(lab: ContainerLab, work: Path, name: str, *extra: str) -> tuple[int, dict, float]:
    argv = [
        str(VENV_BIN / "ansible-playbook"),
        str(REPO / "playbooks" / f"{name}.yml"),
        "-i",
        str(lab.inventory_path()),
        "-e",
        f"firebreak_incident_dir={work / 'incidents'}",
        "-e",
        f"firebreak_lock_dir={work / 'locks'}",
        "-e",
        f"firebreak_evidence_dir={work / 'evidence'}",
        "-e",
        f"firebreak_incident_id=BENCH-{name}-{int(time.time())}",
        *[a for x in extra for a in ("-e", x)],
    ]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - t0
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        data = {}
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-2000:], file=sys.stderr)
    return proc.returncode, data, seconds


def phases(name: str, data: dict) -> dict[str, float]:
    """Seconds per runbook phase, from the task timings between the phase markers."""
    tasks = [t for play in data.get("plays", []) for t in play.get("tasks", [])]
    marks = PHASE_MARKERS
    spans: dict[str, float] = {}
    current = None
    for t in tasks:
        # Tasks of a role are named "<role> : <name>"; the runbook's markers are the names.
        title = t["task"]["name"].split(" : ", 1)[-1]
        for phase, prefix in marks:
            if title.startswith(prefix) and phase not in spans:
                current = phase
                spans[phase] = 0.0
        dur = t["task"].get("duration") or {}
        if current and dur.get("start") and dur.get("end"):
            spans[current] += _ts(dur["end"]) - _ts(dur["start"])
    return spans


def rehearse(lab: ContainerLab, work: Path, key: str) -> dict:
    name, fault, arg, extra = REHEARSALS[key]
    wait(lambda: healthy(cluster(lab)), 120, "a healthy lab")
    target = next(r for r in reversed(REPLICAS) if r != leader(lab))
    workload.start(lab.lab_dir, rate=10, streams=2, workers=2)
    time.sleep(2)
    t_fault = time.monotonic()
    lab.fault(fault, target, arg)
    what, shown = FAULT_SHOWS[fault]
    shows = wait(lambda: shown(cluster(lab), target), 60, what)
    rc, data, run_seconds = playbook(lab, work, name, *extra)
    if rc != 0:
        raise RuntimeError(f"{name} failed (rc={rc})")
    settle = wait(lambda: healthy(cluster(lab)), 120, "verified recovery")
    mttr = time.monotonic() - t_fault
    workload.stop(lab.lab_dir)
    check = workload.check(lab.lab_dir)
    # A clean slate for the next rehearsal: faults healed, no checksum failure left counted.
    lab.heal()
    if cluster(lab)["checksum"]:
        for r in REPLICAS:
            lab.systemctl(r, "restart", "kimberlite-vsr")
    return {
        "rehearsal": name,
        "fault": f"{fault} {target}" + (f" {arg}" if arg else ""),
        "mttr_s": round(mttr, 1),
        "fault_visible_s": round(shows, 1),
        "runbook_s": round(run_seconds, 1),
        "settle_after_runbook_s": round(settle, 1),
        "phases_s": {k: round(v, 1) for k, v in phases(name, data).items()},
        "workload": {k: check.get(k) for k in ("acknowledged", "lost", "duplicated")},
    }


def molecule(scenario: str) -> dict:
    """`molecule test -s SCENARIO` wall time, split by Molecule action."""
    env = dict(
        os.environ,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        NO_COLOR="1",
        PY_COLORS="0",
        ANSIBLE_NOCOLOR="1",
    )
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    actions: dict[str, float] = {}
    current, since = None, time.monotonic()
    t0 = since
    pattern = re.compile(
        r"\b(destroy|create|prepare|converge|idempotence|side_effect|verify|cleanup)\b"
        r".*(Executing|Starting|Running|starting|executing)"
    )
    proc = subprocess.Popen(
        [str(REPO / "scripts" / "molecule"), "test", "-s", scenario],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = ansi.sub("", line)
        tail = [*tail[-60:], line]
        m = pattern.search(line)
        if m and m.group(1) != current:
            now = time.monotonic()
            if current:
                actions[current] = actions.get(current, 0.0) + now - since
            current, since = m.group(1), now
    rc = proc.wait()
    if current:
        actions[current] = actions.get(current, 0.0) + time.monotonic() - since
    if rc != 0:
        print("".join(tail), file=sys.stderr)
    return {
        "scenario": scenario,
        "rc": rc,
        "wall_s": round(time.monotonic() - t0, 1),
        "actions_s": {k: round(v, 1) for k, v in actions.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rehearsals", default=",".join(sorted(REHEARSALS)))
    ap.add_argument("--no-molecule", action="store_true")
    ap.add_argument(
        "--molecule-scenarios", default=",".join(sorted(r[0] for r in REHEARSALS.values()))
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report: dict = {"rehearsals": [], "molecule": []}
    with tempfile.TemporaryDirectory(prefix="bench-rehearsal-") as tmp:
        work = Path(tmp)
        lab = ContainerLab(
            work / "lab",
            net=39,
            network="firebreak-lab-bench",
            name_prefix="bench-",
            config_extra={"scrub_interval_s": 2},
        )
        try:
            t0 = time.monotonic()
            lab.up()
            report["lab_up_s"] = round(time.monotonic() - t0, 1)
            # A log to corrupt: some committed writes before anything else.
            workload.start(lab.lab_dir, rate=20, streams=2, workers=2)
            time.sleep(3)
            workload.stop(lab.lab_dir)
            rc, _data, base = playbook(lab, work, "triage")
            if rc != 0:
                raise RuntimeError("baseline triage failed")
            report["baseline_triage_s"] = round(base, 1)
            for key in [k.strip() for k in args.rehearsals.split(",") if k.strip()]:
                result = rehearse(lab, work, key)
                result["mttr_vs_triage"] = round(result["mttr_s"] / base, 2)
                report["rehearsals"].append(result)
        finally:
            try:
                workload.stop(lab.lab_dir)
            finally:
                lab.down()
    if not args.no_molecule:
        for scenario in [s.strip() for s in args.molecule_scenarios.split(",") if s.strip()]:
            report["molecule"].append(molecule(scenario))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"lab up {report['lab_up_s']}s; baseline: one triage pass {report['baseline_triage_s']}s")
    for r in report["rehearsals"]:
        print(
            f"{r['rehearsal']:<22} MTTR {r['mttr_s']:>6.1f}s ({r['mttr_vs_triage']}x triage)  "
            f"fault visible {r['fault_visible_s']}s, runbook {r['runbook_s']}s, "
            f"settle {r['settle_after_runbook_s']}s; workload {r['workload']}"
        )
        print("    phases: " + ", ".join(f"{k} {v}s" for k, v in r["phases_s"].items()))
    for m in report["molecule"]:
        print(
            f"molecule {m['scenario']:<22} rc={m['rc']} wall {m['wall_s']}s: "
            + ", ".join(f"{k} {v}s" for k, v in m["actions_s"].items())
        )
    ok = all(m["rc"] == 0 for m in report["molecule"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
