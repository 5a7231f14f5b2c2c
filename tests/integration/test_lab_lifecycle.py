"""`firebreak lab up/down/list` leave nothing behind: a lab's workload stops with it, a new lab
starts with an empty history, and any lab can be taken down by directory, name or all at once.
Real labs driven through the CLI: processes mode (nets 48 and 49), and containers mode for the
workload's life (net 95, rehearsal tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from firebreak import paths
from processes_lab import leftover_pids

NETS = (48, 49)
CONTAINERS_NET = 95
UP = {
    "processes": ("--mode", "processes", "--net", str(NETS[0])),
    "containers": (
        "--mode",
        "containers",
        "--net",
        str(CONTAINERS_NET),
        "--name-prefix",
        "lc-",
        "--network",
        "firebreak-lifecycle",
    ),
}


def lab(*args: str, lab_dir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FIREBREAK_LAB_DIR", None)
    if lab_dir is not None:
        env["FIREBREAK_LAB_DIR"] = str(lab_dir)
    res = subprocess.run(
        [sys.executable, "-m", "firebreak.cli", "lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check:
        assert res.returncode == 0, res
    return res


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_of(d: Path) -> list[int]:
    """Every lab process (replicas, workload) whose command line names the lab dir."""
    return leftover_pids(d)


def _acks(d: Path) -> int:
    f = d / "workload" / "acks.jsonl"
    return len(f.read_text().splitlines()) if f.exists() else 0


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def labs(tmp_path):
    """Lab dirs this test uses; whatever happens, nothing of them stays running."""
    made: list[Path] = []
    yield made
    for d in made:
        lab("down", "--dir", str(d), check=False)
        for pid in _processes_of(d):
            subprocess.run(["kill", "-9", str(pid)], check=False)


def _containers_of(d: Path) -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label=firebreak.lab.dir={d.resolve()}", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("processes", marks=pytest.mark.lab),
        pytest.param("containers", marks=pytest.mark.rehearsal),
    ],
)
def test_down_stops_the_workload_and_a_new_lab_starts_with_no_history(labs, tmp_path, mode):
    d = tmp_path / "lab"
    labs.append(d)
    lab("up", *UP[mode], lab_dir=d)
    lab("workload", "start", "--rate", "40", lab_dir=d)
    pid = int((d / "workload" / "pid").read_text())
    _wait(lambda: _acks(d) >= 10, 20, "acknowledged writes")
    down = lab("down", lab_dir=d)
    assert "workload" in down.stdout and "lab" in down.stdout, down.stdout
    assert not _alive(pid)
    assert _processes_of(d) == []
    if mode == "containers":
        assert _containers_of(d) == []
    # The same dir, a new lab: the old lab's acknowledgements are not this lab's to check.
    lab("up", *UP[mode], lab_dir=d)
    fresh = lab("workload", "check", "--json", lab_dir=d, check=False)
    history = json.loads(fresh.stdout)
    assert history["attempted"] == 0 and history["acknowledged"] == 0, history
    assert fresh.returncode == 1 and not history["ok"]  # nothing acknowledged proves nothing
    lab("workload", "start", "--rate", "40", lab_dir=d)
    _wait(lambda: _acks(d) >= 10, 20, "acknowledged writes on the new lab")
    lab("workload", "stop", lab_dir=d)
    check = json.loads(lab("workload", "check", "--json", lab_dir=d).stdout)
    assert check["acknowledged"] >= 10 and check["lost"] == 0 and check["ok"], check


@pytest.mark.lab
def test_a_workload_whose_lab_is_replaced_stops_by_itself(labs, tmp_path) -> None:
    """However its lab went (a crashed `lab down`, a state dir restored), a workload never
    writes into the next lab's history."""
    d = tmp_path / "lab"
    labs.append(d)
    lab("up", "--mode", "processes", "--net", str(NETS[0]), lab_dir=d)
    lab("workload", "start", lab_dir=d)
    pid = int((d / "workload" / "pid").read_text())
    _wait(lambda: _acks(d) >= 3, 20, "acknowledged writes")
    state = json.loads((d / "state.json").read_text())
    state["started"] = time.time()  # what a new lab in this dir writes
    (d / "state.json").write_text(json.dumps(state))
    _wait(lambda: not _alive(pid), 10, "the orphaned workload to stop")
    assert "the lab it was started for is gone" in (d / "workload" / "workload.log").read_text()


@pytest.mark.lab
def test_down_by_dir_by_name_and_all(labs, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"  # FIREBREAK_LAB_DIR outside the state dir: registered
    named = paths.labs_dir() / "lifecycle-named"  # under the state dir: its name is its dir's
    labs.extend([elsewhere, named])
    lab("up", "--mode", "processes", "--net", str(NETS[0]), lab_dir=elsewhere)
    lab("up", "--mode", "processes", "--net", str(NETS[1]), lab_dir=named)
    listed = {r["name"]: r for r in json.loads(lab("list", "--json").stdout)}
    assert listed["elsewhere"]["dir"] == str(elsewhere.resolve())
    assert listed["lifecycle-named"]["mode"] == "processes"
    assert lab("down", "--name", "no-such-lab", check=False).returncode == 2

    lab("down", "--name", "lifecycle-named")
    assert _processes_of(named) == [] and _processes_of(elsewhere) != []
    lab("down", "--dir", str(elsewhere))
    assert _processes_of(elsewhere) == []
    assert "elsewhere" not in {r["name"] for r in json.loads(lab("list", "--json").stdout)}

    lab("up", "--mode", "processes", "--net", str(NETS[0]), lab_dir=elsewhere)
    lab("up", "--mode", "processes", "--net", str(NETS[1]), lab_dir=named)
    lab("workload", "start", lab_dir=named)
    lab("down", "--all")
    assert _processes_of(elsewhere) == [] and _processes_of(named) == []
    assert json.loads(lab("list", "--json").stdout) == []
