"""FM-007 (Disk Full): the log cleanup's selection, the node exporter's exposition, and
vsr_metrics folding a node endpoint's disk figures into a replica's entry."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from firebreak.kimberlite import admin, node_exporter, storage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import endpoints as ep
from ansible_collections.firebreak.incident.plugins.module_utils import failure_modes, vsr
from ansible_collections.firebreak.incident.plugins.module_utils import prometheus_text as pt
from ansible_collections.firebreak.incident.plugins.modules import vsr_metrics

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "exposition"
ORDER = ["replica-1", "replica-2", "replica-3"]


def _ck(op, valid=True):
    return {"file": f"checkpoints/checkpoint-{op:012d}.json", "op": op, "valid": valid}


# ------------------------------------------------------------------ cleanup selection
CLEANUP_CASES = [
    # (names in the data dir, checkpoints, removed, kept, checkpoint op)
    pytest.param(
        ["log.old.1-50", "log.old.51-100", "log.dat"],
        [_ck(100)],
        ["log.old.1-50", "log.old.51-100"],
        [],
        100,
        id="covered-segments-go-live-log-never",
    ),
    pytest.param(
        ["log.old.1-100", "log.old.101-150"],
        [_ck(100)],
        ["log.old.1-100"],
        ["log.old.101-150"],
        100,
        id="segment-beyond-the-checkpoint-kept",
    ),
    pytest.param(
        ["log.old.1-100", "log.old.101-200"],
        [_ck(100), _ck(200, valid=False)],
        ["log.old.1-100"],
        ["log.old.101-200"],
        100,
        id="invalid-latest-checkpoint-ignored",
    ),
    pytest.param(
        ["log.old.1-10"],
        [_ck(300, valid=False), {"file": "x", "op": None, "valid": False}],
        [],
        ["log.old.1-10"],
        None,
        id="no-valid-checkpoint-nothing-goes",
    ),
    pytest.param(
        [
            "log.old.abc",
            "log.old.9-3",
            "log.old.0-5",
            "log.old.1-5.tmp",
            "log.old.-1-5",
            "log.old.",
            "log.old.1-5",
        ],
        [_ck(50)],
        ["log.old.1-5"],
        [
            "log.old.",
            "log.old.-1-5",
            "log.old.0-5",
            "log.old.1-5.tmp",
            "log.old.9-3",
            "log.old.abc",
        ],
        50,
        id="malformed-names-kept",
    ),
    pytest.param(
        [
            "log.dat",
            "log.dat.corrupt-op7",
            "meta.json",
            "commit.json",
            "checkpoints",
            "control.json",
            "log.old.1-5",
        ],
        [_ck(50)],
        ["log.old.1-5"],
        [],
        50,
        id="nothing-but-segments-considered",
    ),
    pytest.param(["log.old.1-5"], [], [], ["log.old.1-5"], None, id="no-checkpoint-at-all"),
]


@pytest.mark.parametrize(("names", "checkpoints", "removed", "kept", "op"), CLEANUP_CASES)
def test_cleanup_selection(names, checkpoints, removed, kept, op):
    plan = storage.cleanup_selection(names, checkpoints)
    assert plan == {"remove": removed, "keep": kept, "checkpoint_op": op}
    assert "log.dat" not in plan["remove"] + plan["keep"]


def test_cleanup_on_a_data_dir_removes_only_covered_segments(tmp_path, capsys):
    """kimberlite-admin cleanup against files on disk: a real checkpoint, the live files stay."""
    log = storage.Log(tmp_path)
    log.load()
    entries = [
        {"op": op, "view": 0, "client": None, "req": None, "body": {"stream": "s", "event": op}}
        for op in range(1, 31)
    ]
    log.write(1, entries)
    storage.save_meta(tmp_path, {"view": 0, "last_normal_view": 0})
    storage.save_commit_hint(tmp_path, 30)
    storage.write_checkpoint(tmp_path, 20, {"op": 20, "streams": {}}, keep=3)
    (tmp_path / "log.old.1-10").write_bytes(b"a" * 1000)
    (tmp_path / "log.old.11-20").write_bytes(b"b" * 500)
    (tmp_path / "log.old.21-30").write_bytes(b"c" * 10)
    (tmp_path / "log.old.2-3").mkdir()  # a segment's name on a directory: not a file, kept
    before = {p.name for p in tmp_path.iterdir()}

    rc = admin.main(["cleanup", "--dry-run", "--data-dir", str(tmp_path)])
    dry = json.loads(capsys.readouterr().out)
    assert rc == 0 and dry["dry_run"] is True and dry["freed_bytes"] == 1500
    assert {p.name for p in tmp_path.iterdir()} == before  # dry run: nothing removed

    rc = admin.main(["cleanup", "--data-dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["removed"] == ["log.old.1-10", "log.old.11-20"]
    assert out["kept"] == ["log.old.2-3", "log.old.21-30"]
    assert out["freed_bytes"] == 1500 and out["checkpoint_op"] == 20
    assert {p.name for p in tmp_path.iterdir()} == before - {"log.old.1-10", "log.old.11-20"}
    assert [e["op"] for e in storage.Log(tmp_path).load().entries] == list(range(1, 31))


def test_cleanup_of_a_missing_data_dir_fails_clearly(tmp_path, capsys):
    assert admin.main(["cleanup", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "no data dir" in capsys.readouterr().err


def test_cleanup_defaults_to_the_config_data_dir(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    cfg = tmp_path / "replica.json"
    cfg.write_text(json.dumps({"replica": "r", "replicas": [], "data_dir": str(data)}))
    assert admin.main(["--config", str(cfg), "cleanup"]) == 0
    assert json.loads(capsys.readouterr().out)["data_dir"] == str(data)


def test_fill_refuses_without_a_valid_checkpoint(tmp_path):
    """No segment the fault writes may be unsafe to remove: without a checkpoint, no fault."""
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, [{"op": 1, "view": 0, "client": None, "req": None, "body": {}}])
    with pytest.raises(RuntimeError, match="no valid checkpoint"):
        storage.fill_with_old_segments(tmp_path)
    assert not list(tmp_path.glob("log.old.*"))


# ------------------------------------------------------------------ the node exporter
MOUNTS = (
    "sysfs /sys sysfs rw 0 0\n"
    "/dev/sda1 / ext4 rw 0 0\n"
    "/dev/loop7 /var/lib/kim\\040berlite ext4 rw 0 0\n"
    "/dev/loop3 /var/lib/kimberlite ext4 rw 0 0\n"
)


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("/var/lib/kimberlite", ("/dev/loop3", "ext4")),
        ("/var/lib/kimberlite/checkpoints", ("/dev/loop3", "ext4")),
        ("/var/lib/kimberlite2", ("/dev/sda1", "ext4")),
        ("/var/lib/kim berlite", ("/dev/loop7", "ext4")),
        ("/etc", ("/dev/sda1", "ext4")),
    ],
)
def test_mount_of(path, found):
    assert node_exporter.mount_of(path, MOUNTS) == found


def test_exposition_parses_and_reads_as_the_disk_figures(tmp_path):
    text = node_exporter.exposition(tmp_path, "/var/lib/kimberlite", MOUNTS)
    samples = pt.parse_samples(text)
    by_name = {s.name: s for s in samples}
    st = os.statvfs(tmp_path)
    avail = by_name["node_filesystem_avail_bytes"]
    assert avail.labels == {
        "device": "/dev/sda1",
        "fstype": "ext4",
        "mountpoint": "/var/lib/kimberlite",
    }
    assert by_name["node_filesystem_size_bytes"].value == st.f_blocks * st.f_frsize
    assert by_name["node_filesystem_device_error"].value == 0
    assert by_name["node_load1"].labels == {} and by_name["node_load1"].value >= 0
    # what vsr_metrics takes from it: the same numbers, through the roles of metric_names
    got_avail, used = vsr.node_filesystem(samples)
    assert abs(got_avail - st.f_bavail * st.f_frsize) < 64 * 1024 * 1024  # moved meanwhile
    assert 0 <= used <= 100
    # the recorded fixture has the live exporter's families and labels
    fixture = {s.name: s for s in pt.parse_samples((FIXTURES / "node" / "full.prom").read_text())}
    assert set(fixture) == set(by_name)
    assert set(fixture["node_filesystem_avail_bytes"].labels) == set(avail.labels)


def test_exposition_of_a_missing_dir_is_a_device_error(tmp_path):
    samples = pt.parse_samples(node_exporter.exposition(tmp_path / "gone", "/x", MOUNTS))
    names = {s.name: s.value for s in samples}
    assert names["node_filesystem_device_error"] == 1
    assert "node_filesystem_avail_bytes" not in names
    assert vsr.node_filesystem(samples) == (None, None)


def test_label_values_are_escaped(tmp_path):
    text = node_exporter.exposition(tmp_path, 'a"b\\c\nd', MOUNTS)
    avail = next(s for s in pt.parse_samples(text) if s.name == "node_filesystem_avail_bytes")
    assert avail.labels["mountpoint"] == 'a"b\\c\nd'


# ------------------------------------------------------------------ vsr_metrics node merge
def _fetched(endpoint, body=None, error=None, ctype="text/plain; version=0.0.4"):
    f = ep.FetchResult(endpoint, f"http://{endpoint}/metrics", elapsed=0.001)
    if body is None:
        f.error = error or "connection refused"
    else:
        f.ok, f.status, f.body, f.content_type = True, 200, body, ctype
    return f


def _result(node_bodies, scenario="one_down"):
    """vsr_metrics' result for a recorded scenario with a node endpoint per replica (a body,
    None for a refused one, or "-" for none)."""
    replicas = []
    for i, name in enumerate(ORDER):
        path = FIXTURES / "vsr" / scenario / f"{name}.prom"
        fetched = _fetched(f"127.0.40.{i + 1}:9090", path.read_text() if path.exists() else None)
        entry = vsr_metrics.read_replica(i, fetched, None, "replica", False)
        body = node_bodies[i]
        node = (
            None
            if body == "-"
            else vsr_metrics.read_node(_fetched(f"127.0.40.{i + 1}:9100", body), None)
        )
        replicas.append(vsr_metrics.merge_node(entry, node))
    return {"cluster": vsr.cluster_summary(replicas, ORDER), "replicas": replicas}


def _down(result):
    return next(r for r in result["replicas"] if not r["reachable"])


FULL = (FIXTURES / "node" / "full.prom").read_text()
ROOMY = (FIXTURES / "node" / "roomy.prom").read_text()


def test_crashed_replica_with_a_full_disk_is_fm007_not_fm005():
    down_at = next(
        i for i, n in enumerate(ORDER) if not (FIXTURES / "vsr" / "one_down" / f"{n}.prom").exists()
    )
    bodies = [ROOMY] * 3
    bodies[down_at] = FULL
    result = _result(bodies)
    down = _down(result)
    assert down["filesystem_avail_bytes"] == 0 and down["filesystem_used_percent"] == 100
    assert down["node"]["reachable"] and down["node"]["error"] is None
    assert down["errors"] == ["connection refused"]
    out = vsr.classify(result)
    assert out["overall"]["failure_mode"] == "FM-007"
    assert out["overall"]["targets"] == [ORDER[down_at]]
    fm005 = next(f for f in out["findings"] if f["fm"] == "FM-005")
    assert fm005["explained_by"] == ["FM-007"]
    assert vsr.verdict(out["findings"])["fm"] == "FM-007"


def test_crash_without_node_figures_stays_fm005():
    result = _result(["-", "-", "-"])
    assert _down(result)["node"] is None and _down(result)["filesystem_avail_bytes"] is None
    assert vsr.classify(result)["overall"]["failure_mode"] == "FM-005"
    roomy = _result([ROOMY] * 3)
    assert _down(roomy)["filesystem_used_percent"] == 50
    assert vsr.classify(roomy)["overall"]["failure_mode"] == "FM-005"


def test_failing_node_endpoints_are_replica_errors_never_a_failure():
    html = "<!DOCTYPE html><html><body>Sign in</body></html>"
    entries = []
    for body, ctype, words in (
        (None, None, "connection refused"),
        (html, "text/html", "HTML page"),
        ("a 1\nb{ 2\n", None, "malformed exposition: line 2"),
        ("node_load1 0.3\n", None, "no node_filesystem_avail_bytes"),
    ):
        fetched = _fetched("h:9100", body, ctype=ctype or "text/plain")
        node = vsr_metrics.read_node(fetched, None)
        replica = vsr_metrics.read_replica(
            0, _fetched("h:9090", "vsr_replica_status 0\n"), None, "replica", False
        )
        entry = vsr_metrics.merge_node(replica, node)
        assert words in node["error"]
        assert entry["reachable"] and entry["error"] is None
        assert entry["errors"] == [f"node endpoint h:9100: {node['error']}"]
        assert entry["filesystem_avail_bytes"] is None
        entries.append(entry)
    assert len(entries) == 4


def test_both_sources_lowest_avail_highest_used_win():
    own = "vsr_replica_status 0\n" + ROOMY.replace("5.0e+07", "7.0e+07")
    entry = vsr_metrics.read_replica(0, _fetched("h:9090", own), None, "replica", False)
    assert entry["filesystem_avail_bytes"] == 70_000_000
    vsr_metrics.merge_node(entry, vsr_metrics.read_node(_fetched("h:9100", ROOMY), None))
    assert entry["filesystem_avail_bytes"] == 50_000_000
    assert entry["filesystem_used_percent"] == 50


def test_node_urls_parallel_and_validated():
    assert vsr_metrics.node_urls(None, 3, "http") == []
    assert vsr_metrics.node_urls(["h:9100", "", None], 3, "https") == [
        "https://h:9100/metrics",
        None,
        None,
    ]
    with pytest.raises(ep.EndpointError, match="parallel to endpoints: 2 items for 3") as e:
        vsr_metrics.node_urls(["a:1", "b:1"], 3, "http")
    assert e.value.option == "node_endpoints"
    with pytest.raises(ep.EndpointError, match=r"node_endpoints\[1\]: .*no port") as e:
        vsr_metrics.node_urls(["a:1", "b", None], 3, "http")
    assert e.value.option == "node_endpoints"
    with pytest.raises(ep.EndpointError, match=r"node_endpoints\[0\]: .*must be a string"):
        vsr_metrics.node_urls([9100], 1, "http")


def test_fm005_is_explained_by_fm007_in_the_registry():
    assert "FM-007" in failure_modes.explained_by("FM-005")
