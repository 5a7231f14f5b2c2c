"""A containers lab meets another lab's leftovers under its names: live ones stop it, stale go.

A crashed run (a CI job killed mid-test, a machine restored from a snapshot) leaves podman
containers and a network behind under the names the next run of the same test wants. ``up``
reclaims them when their lab is gone and refuses, naming the owner, when it is still up.
Names here: ``stl-replica-i``, network ``firebreak-lab-stale``, host addresses ``127.0.46.i``.
"""

from __future__ import annotations

import subprocess

import pytest
from firebreak.lab import image as lab_image
from firebreak.lab.containers import ContainerLab, ContainerLabError

pytestmark = pytest.mark.rehearsal

OPTS = {"replicas": 2, "net": 46, "network": "firebreak-lab-stale", "name_prefix": "stl-"}


def _holders(names: list[str]) -> dict[str, str]:
    """container name -> its firebreak.lab.id label."""
    out = subprocess.run(
        ["podman", "ps", "-a", "--format", '{{.Names}} {{index .Labels "firebreak.lab.id"}}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {n: rows[n] for n in names if n in rows}


def test_live_lab_is_refused_and_orphaned_lab_is_reclaimed(tmp_path, capfd):
    first = ContainerLab(tmp_path / "first", **OPTS)
    second = ContainerLab(tmp_path / "second", **OPTS)
    names = [first.container(r) for r in first.replica_names()]
    try:
        first.up(wait=False)
        assert set(_holders(names).values()) == {first.lab_id}

        # The first lab is recorded in its dir: still up, so the second must not touch it.
        with pytest.raises(ContainerLabError, match="still up") as refused:
            second.up(wait=False)
        assert str(tmp_path / "first") in str(refused.value)
        assert set(_holders(names).values()) == {first.lab_id}

        # Its dir forgets it (what a removed checkout or pytest's basetemp pruning does).
        (tmp_path / "first" / "state.json").unlink()
        second.up(wait=False)
        assert set(_holders(names).values()) == {second.lab_id}
        assert f"reclaimed stale lab {first.lab_id}" in capfd.readouterr().err
        net = subprocess.run(
            [
                "podman",
                "network",
                "inspect",
                "--format",
                '{{index .Labels "firebreak.lab.id"}}',
                OPTS["network"],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert net == second.lab_id
        # The reclaimed lab's loop mounts went with it.
        assert not first._mounts_below(tmp_path / "first")
    finally:
        second.down()
        first.down()
    assert _holders(names) == {}


def test_container_with_the_name_but_no_lab_labels_is_not_touched(tmp_path):
    lab = ContainerLab(tmp_path / "lab", **OPTS)
    name = lab.container("replica-1")
    image = lab_image.ensure_image(verbose=False)
    subprocess.run(
        ["podman", "run", "-d", "--name", name, image, "sleep", "300"],
        check=True,
        capture_output=True,
    )
    try:
        with pytest.raises(ContainerLabError, match="not a firebreak lab's"):
            lab.up(wait=False)
        state = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Status}}", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert state == "running"
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=False, capture_output=True)
        lab.down()
