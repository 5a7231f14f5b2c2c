"""The Molecule rehearsals, as `make test` runs them: `molecule test -s SCENARIO` must pass.

Each scenario creates three systemd containers of the lab image, runs the runbook against an
injected fault and verifies recovery with testinfra (lost = 0, hashes of the evidence).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rehearsal

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(
    p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml") if p.parent.name[0] != "_"
)


def test_every_failure_mode_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (ROOT / "roles").glob("fm[0-9][0-9][0-9]_*"))
    assert roles and roles == SCENARIOS


# `make test` runs one scenario (the base config, the shared plays and testinfra, end to end);
# every runbook is rehearsed on containers there by `firebreak rehearse`
# (tests/rehearsal/test_cli_rehearse.py). `make test-molecule` runs every scenario.
SMOKE = "fm005_replica_crash"


@pytest.mark.parametrize(
    "scenario",
    [s if s == SMOKE else pytest.param(s, marks=pytest.mark.molecule) for s in SCENARIOS],
)
def test_molecule_scenario(scenario: str, tmp_path: Path) -> None:
    log = tmp_path / f"molecule-{scenario}.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    # The scenarios run localhost/firebreak-lab:latest: this checkout's image, built if stale.
    subprocess.run([ROOT / "scripts" / "build-lab-image"], cwd=ROOT, env=env, check=True)
    with log.open("w") as out:
        proc = subprocess.run(
            # scripts/molecule: the venv's molecule, the registry's network of the scenario
            [ROOT / "scripts" / "molecule", "test", "-s", scenario],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
            check=False,
        )
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{text[-6000:]}"
    assert "verify" in text.lower()
