"""The remediation lock's rules (plugins/module_utils/remediation_lock.py), on owner records."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from firebreak.lock import impl as rl  # plugins/module_utils/remediation_lock.py

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def _owner(**fields) -> dict:
    base = {"cluster": "c", "run_id": "run-x", "host": socket.gethostname(), "acquired_epoch": NOW}
    return {**base, **fields}


@pytest.fixture
def held(tmp_path):
    path = tmp_path / "c.lock"
    path.mkdir()
    return str(path)


@pytest.mark.parametrize("value", [0, -5, "soon", None])
def test_a_stale_period_that_is_not_positive_is_refused(value):
    with pytest.raises(rl.LockError, match="stale_after"):
        rl.check_stale_after(value)


def test_a_live_holder_on_this_host_is_alive_whatever_its_age(held):
    me = {"pid": os.getpid(), "pid_start": rl.process_start(os.getpid())}
    status, why = rl.holder_status(held, _owner(**me), 1, now=NOW + 10**6)
    assert (status, str(os.getpid()) in why) == ("alive", True)


def test_a_dead_pid_or_a_reused_one_is_gone(held):
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    gone = _owner(pid=pid_max + 1, pid_start="1")  # no process can have it
    reused = _owner(pid=os.getpid(), pid_start="1")  # a live pid, not the recorded process
    assert rl.holder_status(held, gone, 3600, now=NOW)[0] == "gone"
    assert rl.holder_status(held, reused, 3600, now=NOW)[0] == "gone"


@pytest.mark.parametrize(("age", "status"), [(100, "alive"), (3601, "gone")])
def test_a_holder_on_another_host_is_stale_after_the_period(held, age, status):
    other = _owner(host="elsewhere.example", pid=1, pid_start="1")
    assert rl.holder_status(held, other, 3600, now=NOW + age)[0] == status


@pytest.mark.parametrize(("age", "status"), [(100, "alive"), (3601, "gone")])
def test_a_lock_without_owner_file_is_stale_after_the_period(held, age, status):
    mtime = os.stat(held).st_mtime
    got, why = rl.holder_status(held, None, 3600, now=mtime + age)
    assert (got, "no owner file" in why) == (status, True)


def test_an_old_version_owner_file_without_host_is_judged_by_age(held):
    old = {"owner": "x", "run_id": "r", "acquired_epoch": NOW, "controller_pid": ""}
    assert rl.holder_status(held, old, 3600, now=NOW + 10)[0] == "alive"
    assert rl.holder_status(held, old, 3600, now=NOW + 3601)[0] == "gone"


def test_a_cluster_name_becomes_one_safe_path_component(tmp_path):
    assert rl.lock_path(str(tmp_path), "prod/east 1") == str(tmp_path / "prod_east_1.lock")
    with pytest.raises(rl.LockError):
        rl.lock_path(str(tmp_path), "")
