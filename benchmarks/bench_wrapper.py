"""Wrapper overhead: firebreak.runner.run_playbook against bare ansible-playbook.

Same playbook, same inventory, same ansible.cfg; runs interleaved (bare, wrapper, bare, ...) so
that drift in machine load hits both alike. Prints the medians and their ratio.

    .venv/bin/python benchmarks/bench_wrapper.py [--runs 5] [--playbook PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from firebreak import runner

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "tests/integration/playbooks/selftest_ok.yml"
INVENTORY = REPO / "tests/integration/playbooks/inventory/hosts.yml"


def bare(playbook: Path) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(runner.ANSIBLE_CFG))
    t0 = time.perf_counter()
    subprocess.run(
        [runner.ansible_playbook_binary(), "-i", str(INVENTORY), str(playbook)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - t0


def wrapped(playbook: Path) -> float:
    t0 = time.perf_counter()
    result = runner.run_playbook(playbook, inventory=INVENTORY)
    elapsed = time.perf_counter() - t0
    if result.status != "successful":
        sys.exit(f"wrapper run {result.status}")
    shutil.rmtree(result.private_data_dir, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--playbook", type=Path, default=PLAYBOOK)
    args = parser.parse_args()
    bare(args.playbook)  # warm caches (bytecode, collection loader) for both
    times: dict[str, list[float]] = {"bare": [], "wrapper": []}
    for _ in range(args.runs):
        times["bare"].append(bare(args.playbook))
        times["wrapper"].append(wrapped(args.playbook))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"playbook: {args.playbook.relative_to(REPO)} ({args.runs} runs each, interleaved)")
    for name, values in times.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<8} median {med[name]:.3f}s  runs: {runs}")
    print(f"overhead: {med['wrapper'] - med['bare']:+.3f}s per run")
    print(f"ratio wrapper/bare: {med['wrapper'] / med['bare']:.2f}")


if __name__ == "__main__":
    main()
