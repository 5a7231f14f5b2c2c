"""The rehearsal tier's shared containers lab: one for the session, reset before each test.

Tests that need a containers lab but do not test the lab's own lifecycle or topology take the
``lab`` fixture: the session's one lab (containers ``sh-replica-i``, network
``firebreak-shared``, host addresses ``127.0.77.i``: a net no other test and no failure mode's
``rehearsal_net`` uses), running a snapshot of the source (:func:`shared_lab.snapshot_lab`).
Before each test ``lab.reset(config_extra=lab_config)`` stops and empties the workload, heals
every replica, applies the test's replica options (``lab_config``; a module overrides that
fixture, e.g. a scrubber that tours only when asked) and verifies the lab: every replica
Normal, in one view, with equal commits; a lab that cannot be reset fails the test's set-up
and says which replica is not. After a failed test the journals of every replica are printed.
``work`` gives a test its own incident, lock and evidence dirs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from firebreak.lab import workload
from firebreak.lab.containers import ContainerLab
from shared_lab import REPLICAS, left_behind, snapshot_lab

SHARED_NET = 77
SHARED_NETWORK = "firebreak-shared"
SHARED_PREFIX = "sh-"
#: The replica options a test gets unless its module overrides ``lab_config``.
DEFAULT_CONFIG = {"scrub_interval_s": 2}


@pytest.fixture(scope="session")
def shared_lab(tmp_path_factory: pytest.TempPathFactory):
    """The session's shared containers lab (up at its first test, down at the session's end)."""
    with snapshot_lab(
        tmp_path_factory,
        "shared",
        net=SHARED_NET,
        network=SHARED_NETWORK,
        name_prefix=SHARED_PREFIX,
        config_extra=DEFAULT_CONFIG,
    ) as lab:
        yield lab
    assert not left_behind(lab), f"containers left behind: {left_behind(lab)}"


@pytest.fixture
def lab_config() -> dict:
    """The replica options (``CONFIG_OPTS`` keys) of the test's lab; a module may override."""
    return dict(DEFAULT_CONFIG)


@pytest.fixture
def lab(shared_lab: ContainerLab, lab_config: dict, request: pytest.FixtureRequest):
    """The shared lab, reset (and verified) for this test; journals printed if it fails."""
    report = shared_lab.reset(config_extra=lab_config)
    print(f"lab reset: {report}")
    failed_before = request.session.testsfailed
    try:
        yield shared_lab
    finally:
        if request.session.testsfailed > failed_before:
            for r in REPLICAS:
                print(f"----- journal of {shared_lab.container(r)}\n{shared_lab.journal(r, 80)}")
        with contextlib.suppress(Exception):  # no workload left writing after the test
            workload.stop(shared_lab.lab_dir)


@pytest.fixture
def work(lab: ContainerLab, tmp_path: Path) -> dict[str, Path]:
    """Per test: its own incident, lock and evidence dirs (on a freshly reset lab)."""
    return {name: tmp_path / name for name in ("incidents", "locks", "evidence")}


@pytest.fixture(scope="module")
def shared_lab_dir_env(shared_lab: ContainerLab):
    """``$FIREBREAK_LAB_DIR`` is the shared lab's dir while the module that asks for it runs
    (``firebreak lab`` commands and runbooks' lab lookups then find it)."""
    saved = os.environ.get("FIREBREAK_LAB_DIR")
    os.environ["FIREBREAK_LAB_DIR"] = str(shared_lab.lab_dir)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("FIREBREAK_LAB_DIR", None)
        else:
            os.environ["FIREBREAK_LAB_DIR"] = saved
