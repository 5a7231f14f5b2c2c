"""The checksummed log, meta and checkpoints on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from firebreak.kimberlite import storage

pytestmark = pytest.mark.unit


def _entries(n: int, view: int = 0, start: int = 1) -> list[dict]:
    return [
        {"op": op, "view": view, "client": None, "req": None, "body": {"stream": "s", "event": op}}
        for op in range(start, start + n)
    ]


def test_roundtrip_and_truncating_rewrite(tmp_path) -> None:
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(5))
    log.write(4, _entries(3, view=1, start=4))
    res = storage.Log(tmp_path).load()
    assert [e["op"] for e in res.entries] == [1, 2, 3, 4, 5, 6]
    assert [e["view"] for e in res.entries] == [0, 0, 0, 1, 1, 1]
    assert res.corrupt == [] and not res.torn_tail
    assert storage.Log(tmp_path).read is not None


def test_checksum_mismatch_found_at_startup_on_read_and_by_scrub(tmp_path) -> None:
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(10))
    storage.save_commit_hint(tmp_path, 10)
    op = storage.corrupt_entry(tmp_path, 4)
    assert op == 4
    assert log.scrub() == [4]
    with pytest.raises(storage.ChecksumError, match="op=4"):
        log.read(4)
    assert log.read(5)["op"] == 5
    fresh = storage.Log(tmp_path)
    res = fresh.load()
    assert res.corrupt[0] == 4
    assert [e["op"] for e in res.entries] == [1, 2, 3]
    assert (tmp_path / "log.dat.corrupt-op4").exists(), "evidence kept"
    fresh.write(4, _entries(7, start=4))  # repair from a healthy replica
    assert fresh.scrub() == []
    assert len(storage.Log(tmp_path).load().entries) == 10


def test_corruption_found_at_startup_is_found_again_until_repaired(tmp_path) -> None:
    """Simulation seed 911 (rough profile): a backup found op 52 corrupt at start-up, the load
    cut its file there, it crashed before the repair and booted again with a clean, shorter log,
    voted in a view change and a committed op was lost. The damaged record stays on disk (the
    range held) until the repair rewrites it."""
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(10))
    storage.save_commit_hint(tmp_path, 10)
    storage.corrupt_entry(tmp_path, 4)
    assert storage.Log(tmp_path).load(commit_hint=10).corrupt == [4]
    again = storage.Log(tmp_path).load(commit_hint=10)  # crashed before the repair
    assert again.corrupt == [4], "the corruption is forgotten at the second start"
    assert [e["op"] for e in again.entries] == [1, 2, 3]
    repaired = storage.Log(tmp_path)
    repaired.load(commit_hint=10)
    repaired.write(4, _entries(2, start=4))  # shorter than what it replaces
    res = storage.Log(tmp_path).load(commit_hint=10)
    assert [e["op"] for e in res.entries] == [1, 2, 3, 4, 5]
    assert res.corrupt == [] and not res.torn_tail


def test_torn_tail_is_dropped_not_counted(tmp_path) -> None:
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(3))
    with open(tmp_path / "log.dat", "ab") as fh:
        fh.write(storage.encode(_entries(1, start=4)[0])[:20])
    res = storage.Log(tmp_path).load()
    assert res.torn_tail and res.corrupt == [] and len(res.entries) == 3


def test_corrupt_refuses_uncommitted(tmp_path) -> None:
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(3))
    storage.save_commit_hint(tmp_path, 2)
    with pytest.raises(RuntimeError, match="not committed"):
        storage.corrupt_entry(tmp_path, 3)


def test_checkpoints_every_n_keep_k_listable(tmp_path) -> None:
    for op in (100, 200, 300, 400):
        storage.write_checkpoint(tmp_path, op, {"op": op, "streams": {}}, keep=3)
    cps = storage.list_checkpoints(tmp_path)
    assert [c["op"] for c in cps] == [200, 300, 400]
    assert all(c["valid"] for c in cps)
    assert storage.load_latest_checkpoint(tmp_path)["op"] == 400
    # a damaged checkpoint is skipped
    path = cps[-1]["file"]
    p = Path(path)
    p.write_text(p.read_text().replace("400", "401"))
    assert storage.load_latest_checkpoint(tmp_path)["op"] == 300


def test_meta_roundtrip(tmp_path) -> None:
    assert storage.load_meta(tmp_path) is None
    storage.save_meta(tmp_path, {"view": 4, "last_normal_view": 3})
    assert storage.load_meta(tmp_path) == {"view": 4, "last_normal_view": 3}


def test_meta_fails_its_checksum_when_garbled_or_edited(tmp_path) -> None:
    storage.save_meta(tmp_path, {"view": 7, "last_normal_view": 7})
    meta = tmp_path / "meta.json"
    # A plausible edit (a view moved back) still fails: the crc covers both numbers.
    meta.write_text(meta.read_text().replace('"view": 7', '"view": 6'))
    with pytest.raises(storage.MetaCorruptError, match="checksum mismatch"):
        storage.load_meta(tmp_path)
    storage.save_meta(tmp_path, {"view": 7, "last_normal_view": 7})
    storage.corrupt_meta(tmp_path)
    with pytest.raises(storage.MetaCorruptError, match=r"checksum mismatch.*unreadable"):
        storage.load_meta(tmp_path)


def test_inject_corruption_arguments(tmp_path) -> None:
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(6))
    storage.save_commit_hint(tmp_path, 6)
    storage.save_meta(tmp_path, {"view": 1, "last_normal_view": 1})
    assert storage.inject_corruption(tmp_path, "2") == {"op": 2}
    assert storage.load_meta(tmp_path) == {"view": 1, "last_normal_view": 1}
    done = storage.inject_corruption(tmp_path, "unrepairable")
    assert done["meta"] is True and 1 <= done["op"] <= 6
    with pytest.raises(storage.MetaCorruptError):
        storage.load_meta(tmp_path)
    assert set(storage.Log(tmp_path).load().corrupt) == {2, done["op"]}
    with pytest.raises(RuntimeError, match="op number or 'unrepairable'"):
        storage.inject_corruption(tmp_path, "everything")


def test_scan_verifies_without_touching_the_file(tmp_path) -> None:
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(5))
    storage.save_commit_hint(tmp_path, 5)
    storage.corrupt_entry(tmp_path, 3)
    before = (tmp_path / "log.dat").read_bytes()
    res = storage.scan(tmp_path / "log.dat")
    assert res.corrupt == [3] and len(res.entries) == 2
    assert (tmp_path / "log.dat").read_bytes() == before
    assert not list(tmp_path.glob("log.dat.corrupt-*"))
    # load() is the replica's: it keeps a copy as evidence and uses the log up to op 2; the
    # damaged range stays in the file until a repair rewrites it (found again at every start)
    assert storage.Log(tmp_path).load().corrupt == [3]
    assert (tmp_path / "log.dat.corrupt-op3").read_bytes() == before
    assert (tmp_path / "log.dat").read_bytes() == before


@pytest.mark.parametrize("k", [1, 31, 60])
def test_enlarged_length_is_corruption_not_a_torn_tail(tmp_path, k: int) -> None:
    """A bit flip that makes record k's length run past the end of the file is corruption of
    op k (counted, evidence kept), never a torn tail that silently drops k..N."""
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(60))
    storage.corrupt_length(tmp_path, k)
    damaged = (tmp_path / "log.dat").read_bytes()
    assert storage.scan(tmp_path / "log.dat").corrupt[:1] == [k]
    res = storage.Log(tmp_path).load()
    assert res.corrupt[:1] == [k] and not res.torn_tail
    assert [e["op"] for e in res.entries] == list(range(1, k))
    assert (tmp_path / f"log.dat.corrupt-op{k}").read_bytes() == damaged, "evidence kept"


def _torn(tmp_path, records: int, keep: int) -> None:
    """A log of ``records`` whose last one was cut after ``keep`` of its bytes."""
    log = storage.Log(tmp_path)
    log.load()
    entries = _entries(records)
    log.write(1, entries[:-1])
    with open(tmp_path / "log.dat", "ab") as fh:
        fh.write(storage.encode(entries[-1])[:keep])


def test_torn_body_of_the_last_record_is_still_a_torn_tail(tmp_path) -> None:
    _torn(tmp_path, 5, storage.HEADER.size + 10)
    res = storage.Log(tmp_path).load(commit_hint=4)
    assert res.torn_tail and res.corrupt == [] and len(res.entries) == 4
    assert not list(tmp_path.glob("log.dat.corrupt-*"))
    assert storage.Log(tmp_path).load().entries == res.entries  # cut once, clean afterwards


@pytest.mark.parametrize("keep", [20, storage.HEADER.size + 10])
def test_cut_record_at_or_below_the_commit_hint_is_corruption(tmp_path, keep: int) -> None:
    """The replica fsyncs a record before it acknowledges it, and the commit hint never runs
    ahead of what it holds: a record it knew committed cannot be a torn write."""
    _torn(tmp_path, 5, keep)
    res = storage.Log(tmp_path).load(commit_hint=5)
    assert res.corrupt == [5] and not res.torn_tail
    assert (tmp_path / "log.dat.corrupt-op5").exists()


def _damage_last(tmp_path, records: int) -> bytes:
    """A log of ``records`` written as the replica writes (each ``write`` fsync'd before it
    returns, i.e. before any PrepareOK), commit hint lazily behind, whose last record then had
    both its length (past the end of the file) and its body damaged."""
    log = storage.Log(tmp_path)
    log.load()
    for e in _entries(records):
        log.write(e["op"], [e])
    storage.save_commit_hint(tmp_path, records - 2)
    start, length = storage.record_spans(tmp_path / "log.dat")[-1]
    storage.corrupt_length(tmp_path, records)
    storage.damage_body(tmp_path / "log.dat", start, length)
    return (tmp_path / "log.dat").read_bytes()


def test_acknowledged_last_record_with_length_and_body_damaged_is_corruption(tmp_path) -> None:
    """Issue 11: the last record, PrepareOK'd above the lazily written commit hint, with both
    length and body damaged, was taken for a torn tail and cut (no evidence, not counted). The
    replica may have acknowledged it: corruption, counted, the damaged file kept."""
    damaged = _damage_last(tmp_path, 5)
    res = storage.Log(tmp_path).load(commit_hint=storage.load_commit_hint(tmp_path))
    assert res.corrupt == [5] and not res.torn_tail
    assert [e["op"] for e in res.entries] == [1, 2, 3, 4]
    assert (tmp_path / "log.dat.corrupt-op5").read_bytes() == damaged, "evidence kept"
    assert (tmp_path / "log.dat").read_bytes() == damaged, "not cut"
    assert storage.scan(tmp_path / "log.dat").corrupt == [5]
    again = storage.Log(tmp_path).load(commit_hint=3)  # restarted before its repair
    assert again.corrupt == [5] and not again.torn_tail, "forgotten at the second start"


def test_a_write_cut_before_its_held_count_is_a_torn_tail(tmp_path) -> None:
    """A crash inside ``write`` (records written, held count not yet raised, so never
    acknowledged) leaves a torn tail that is cut; a whole record loaded above the held count
    raises it (the replica may acknowledge it now), so its later damage is corruption."""
    log = storage.Log(tmp_path)
    log.load()
    log.write(1, _entries(4))
    log.write_records(5, _entries(1, start=5))
    with open(tmp_path / "log.dat", "r+b") as fh:
        fh.truncate(log.end - 7)
    assert storage.load_held(tmp_path) == 4
    res = storage.Log(tmp_path).load()
    assert res.torn_tail and res.corrupt == [] and len(res.entries) == 4
    assert not list(tmp_path.glob("log.dat.corrupt-*"))

    log = storage.Log(tmp_path)
    log.load()
    log.write_records(5, _entries(1, start=5))  # whole, the held count still 4
    assert len(storage.Log(tmp_path).load().entries) == 5
    assert storage.load_held(tmp_path) == 5
    start, length = storage.record_spans(tmp_path / "log.dat")[-1]
    storage.corrupt_length(tmp_path, 5)
    storage.damage_body(tmp_path / "log.dat", start, length)
    assert storage.Log(tmp_path).load().corrupt == [5]


def test_unknown_held_count_never_takes_a_cut_record_for_a_torn_tail(tmp_path) -> None:
    """A data dir without ``log.held`` (written before it existed) or with a garbled one: any
    record cut short is corruption, and stays so until repaired."""
    _torn(tmp_path, 5, storage.HEADER.size + 10)
    (tmp_path / "log.held").write_bytes(b"garbled garbage!")
    assert storage.load_held(tmp_path) is None
    res = storage.Log(tmp_path).load()
    assert res.corrupt == [5] and not res.torn_tail
    assert storage.load_held(tmp_path) is None, "not lowered under the damaged range"
    (tmp_path / "log.held").unlink()
    assert storage.Log(tmp_path).load().corrupt == [5]
    fresh = tmp_path / "fresh"
    storage.Log(fresh)
    assert storage.load_held(fresh) == 0, "a new log starts with a known count"
