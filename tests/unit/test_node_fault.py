"""The node-local fault injector (python3 -m firebreak.lab.node_fault), no lab.

The Molecule side effect runs it on a scenario's node for whatever fault the registry names;
here each kind is run against a data directory in tmp_path, a loopback HTTP server standing
in for the replica's API, or a `systemctl` on PATH, and each refusal leaves things as they were.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import pytest
from firebreak.collection import module_utils
from firebreak.kimberlite import storage, timesync
from firebreak.lab import backend, node_fault

pytestmark = pytest.mark.unit

failure_modes = module_utils("failure_modes")


def test_every_lab_fault_is_injected_on_a_node_or_refused_with_the_way_to_inject_it() -> None:
    kinds = {k for k in backend.FAULT_KINDS if k != "heal"}
    assert set(node_fault.KINDS) | set(node_fault.NOT_ON_A_NODE) == kinds
    assert not set(node_fault.KINDS) & set(node_fault.NOT_ON_A_NODE)


def test_every_runbook_fault_can_be_injected_on_a_node() -> None:
    # what the Molecule side effect relies on: a runbook's registry fault runs on its node
    runbooks = [e for e in failure_modes.all_modes() if e["role"]]
    assert len(runbooks) >= 4
    for entry in runbooks:
        for argv in entry["fault"]:
            assert argv[0] in node_fault.KINDS, (entry["id"], argv)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    log = storage.Log(tmp_path)
    log.load()
    log.write(
        1, [{"op": op, "view": 0, "client": None, "req": None, "body": {}} for op in range(1, 7)]
    )
    storage.save_commit_hint(tmp_path, 6)
    monkeypatch.setattr(node_fault, "DATA_DIR", str(tmp_path))
    return tmp_path


def test_corrupt_flips_the_named_entry(data_dir, capsys) -> None:
    assert node_fault.main(["corrupt", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"fault": "corrupt", "arg": "3", "op": 3}
    assert storage.Log(data_dir).load().corrupt == [3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["melt"], r"unknown fault 'melt'; a node injects: kill, stop, corrupt"),
        (["pause"], r"pause is not a node-local fault .*firebreak lab fault pause"),
        (["partition"], r"partition is not a node-local fault"),
        (["corrupt", "x1"], r"corrupt: .*op number or 'unrepairable'"),
        (["disk-full", "everything"], r"disk-full: ARG is 'old-logs' or none"),
        (["slow-commit", "-5"], r"slow-commit: MS must be > 0"),
        (["latency", "soon"], r"latency: MS is a whole number"),
        (["clock-skew", "later"], r"clock-skew: MS is a number"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(data_dir, capsys, argv, message) -> None:
    before = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}
    assert node_fault.main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.search(message, captured.err), captured.err
    assert {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()} == before


@pytest.fixture
def api(monkeypatch):
    """A loopback HTTP server in the replica API's place; the POSTs it received."""
    seen: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            code = 500 if self.path == "/admin/latency" and body.get("ms") == 999 else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(node_fault, "API_URL", f"http://127.0.0.1:{server.server_port}")
    yield seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("argv", "post"),
    [
        (["slow-commit"], ("/admin/slow-commit", {"ms": node_fault.DEFAULT_SLOW_COMMIT_MS})),
        (["slow-commit", "150"], ("/admin/slow-commit", {"ms": 150})),
        (["latency", "40"], ("/admin/latency", {"ms": 40})),
    ],
)
def test_api_faults_post_to_the_replica(api, capsys, argv, post) -> None:
    assert node_fault.main([*argv, "--json"]) == 0
    assert api == [post]
    assert json.loads(capsys.readouterr().out)["ms"] == post[1]["ms"]


def test_an_api_that_refuses_is_an_error(api, capsys) -> None:
    assert node_fault.main(["latency", "999"]) == 2
    assert "POST http://127.0.0.1" in capsys.readouterr().err and len(api) == 1


def test_a_bad_input_sends_nothing(api) -> None:
    assert node_fault.main(["slow-commit", "0"]) == 2
    assert api == []


def _systemctl(tmp_path, monkeypatch, rc: int) -> Path:
    """A `systemctl` first on PATH that logs its argv and exits ``rc``."""
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    script = bindir / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\n[ {rc} = 0 ] || echo "Unit not loaded." >&2\nexit {rc}\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return calls


@pytest.mark.parametrize(
    ("kind", "argv"),
    [("kill", "kill --signal=SIGKILL kimberlite-vsr"), ("stop", "stop kimberlite-vsr")],
)
def test_unit_faults_go_through_systemctl(tmp_path, monkeypatch, kind, argv) -> None:
    calls = _systemctl(tmp_path, monkeypatch, 0)
    assert node_fault.inject(kind)["fault"] == kind
    assert calls.read_text().split("\n")[0] == argv


def test_a_failing_systemctl_is_an_error_with_its_message(tmp_path, monkeypatch, capsys) -> None:
    _systemctl(tmp_path, monkeypatch, 5)
    assert node_fault.main(["kill"]) == 2
    assert (
        "systemctl kill --signal=SIGKILL kimberlite-vsr: Unit not loaded."
        in capsys.readouterr().err
    )


@pytest.fixture
def clock(tmp_path, monkeypatch):
    calls = _systemctl(tmp_path, monkeypatch, 0)
    dropin = tmp_path / "unit.d" / "50-skew.conf"
    monkeypatch.setattr(node_fault, "CLOCK_DROPIN", str(dropin))
    monkeypatch.setattr(node_fault, "TIMESYNC_DIR", str(tmp_path / "timesync"))
    return calls, dropin, timesync.State(tmp_path / "timesync")


def test_clock_skew_stops_the_time_sync_daemon_and_restarts_the_replica_on_its_offset(
    clock,
) -> None:
    calls, dropin, state = clock
    assert node_fault.inject("clock-skew", "-250") == {
        "fault": "clock-skew",
        "arg": "-250",
        "faketime": "-0.250",
        "timesync": "stopped",
    }
    text = dropin.read_text()
    assert f'Environment="FAKETIME_TIMESTAMP_FILE={state.offset_file}"' in text
    assert "FAKETIME=" not in text  # the offset is the daemon's file, not a fixed one
    assert state.offset_ms() == -250.0
    assert all(s["reachable"] for s in state.sources())
    assert calls.read_text().split("\n")[:3] == [
        "stop kimberlite-timesync",
        "daemon-reload",
        "restart kimberlite-vsr",
    ]


@pytest.mark.parametrize(("how", "reachable"), [("unreachable", False), ("running", True)])
def test_clock_skew_can_leave_the_daemon_running(clock, how, reachable) -> None:
    calls, _dropin, state = clock
    assert node_fault.inject("clock-skew", f"5000:{how}")["timesync"] == how
    assert state.offset_ms() == 5000.0
    assert [s["reachable"] for s in state.sources()] == [reachable]
    assert "stop kimberlite-timesync" not in calls.read_text()


def test_a_bad_clock_skew_how_is_refused_before_anything_changes(clock) -> None:
    calls, dropin, state = clock
    with pytest.raises(node_fault.NodeFaultError, match="HOW is one of stopped, unreachable"):
        node_fault.inject("clock-skew", "500:later")
    assert not dropin.exists() and not state.offset_file.exists() and not calls.exists()


def test_heal_clock_skew_puts_the_replica_back_on_the_real_clock(clock) -> None:
    calls, dropin, state = clock
    node_fault.inject("clock-skew", "800")
    calls.write_text("")
    done = node_fault.inject("heal", "clock-skew")["healed"]
    assert not dropin.exists() and not state.offset_file.exists()
    assert state.offset_ms() == 0.0 and "clock-skew" in done
    assert calls.read_text().split("\n")[:3] == [
        "daemon-reload",
        "restart kimberlite-vsr",
        "is-active kimberlite-timesync",
    ]


def test_heal_of_a_kind_a_node_cannot_heal_is_refused(clock) -> None:
    with pytest.raises(node_fault.NodeFaultError, match="a node heals clock-skew"):
        node_fault.inject("heal", "partition")
