"""Durable state of a replica: a checksummed log, meta, commit hint and checkpoints.

Layout of ``data_dir``::

    log.dat                  records, one per op, in op order
    log.held                 the number of records the log held at its last write or load
                             (``<4sQI``: magic, count, CRC-32; fdatasync'd in place)
    meta.json                {"view", "last_normal_view", "crc"} (fsync'd, atomic rename)
    commit.json              {"commit"}: a lower bound of the commit number (written lazily)
    checkpoints/checkpoint-<op>.json   state-machine snapshots, the last K kept
    log.old.<first>-<last>   rotated log segments (ops first..last), never read by the replica:
                             only ``lab fault disk-full old-logs`` writes them (a failed log
                             cleanup) and ``kimberlite-admin cleanup`` removes those that the
                             latest valid checkpoint covers (:func:`cleanup_selection`)

A log record is a 28-byte header ``<4sIIQQ`` (magic ``VSR1``, body length, CRC-32, op, view)
followed by the JSON body (the entry). The CRC covers length, op, view and body. A mismatch found
at start-up, on a read (:meth:`Log.read`) or by the scrubber (:meth:`Log.scrub`) is reported to
the caller; the replica then never serves the range (see ``core.Replica.on_corruption``).

A torn tail (a write cut short by a crash) is only ever the last record, and only one the replica
never acknowledged; anything else that looks cut short is corruption. How the replica knows it
never acknowledged a record: :meth:`Log.write` fsyncs the records, then records how many the log
holds in ``log.held`` (fdatasync) and only then returns, and the replica sends nothing that
depends on a record (PrepareOK, DoViewChange, a recovery answer) before that; :meth:`Log.load`
raises it to what it loaded. A record above the held count was never acknowledged; one at or
below it may have been. The rule at start-up (:func:`_torn`): a record whose header or length
runs past the end of the file is a torn tail only if its op is above the held count (unknown, as
in a data dir written before ``log.held``: never) and above the commit hint, its bytes are not
the whole record under its checksum (then only the length was damaged), and no verifiable record
follows it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import struct
import time
import zlib
from pathlib import Path

MAGIC = b"VSR1"
HEADER = struct.Struct("<4sIIQQ")
MAX_BODY = 16 * 1024 * 1024


def _crc(length: int, op: int, view: int, body: bytes) -> int:
    return zlib.crc32(struct.pack("<IQQ", length, op, view) + body) & 0xFFFFFFFF


def encode(entry: dict) -> bytes:
    body = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()
    crc = _crc(len(body), entry["op"], entry["view"], body)
    return HEADER.pack(MAGIC, len(body), crc, entry["op"], entry["view"]) + body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict, fsync: bool = True) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


class LoadResult:
    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.corrupt: list[int] = []  # ops whose checksum failed
        self.torn_tail = False


def _verifies(data: bytes, pos: int, length: int) -> bool:
    """Does a whole record of body ``length`` stand at ``pos`` under its checksum?"""
    if pos + HEADER.size + length > len(data):
        return False
    magic, _, crc, rop, rview = HEADER.unpack_from(data, pos)
    body = data[pos + HEADER.size : pos + HEADER.size + length]
    return magic == MAGIC and _crc(length, rop, rview, body) == crc


def _torn(data: bytes, pos: int, op: int, commit_hint: int, held: int | None) -> bool:
    """Is record ``op`` at ``pos``, cut short by the end of the file, a torn write?

    Not if the replica may have acknowledged it (``op <= held``, or ``held`` unknown), nor if it
    knew it committed (``op <= commit_hint``), nor if its bytes are the whole record with only
    the length field damaged, nor if a verifiable record of a later op follows (a torn write is
    the last thing in the file; a torn body is ASCII JSON and cannot hold a header, whose length
    and op fields carry zero bytes)."""
    if held is None or op <= held or op <= commit_hint:
        return False
    if len(data) - pos < HEADER.size:
        return True
    if _verifies(data, pos, len(data) - pos - HEADER.size):
        return False
    at = data.find(MAGIC, pos + HEADER.size)
    while at != -1 and len(data) - at >= HEADER.size:
        _, length, _, rop, _ = HEADER.unpack_from(data, at)
        if rop > op and length <= MAX_BODY and _verifies(data, at, length):
            return False
        at = data.find(MAGIC, at + 1)
    return True


def _parse(
    data: bytes, commit_hint: int = 0, held: int | None = None
) -> tuple[LoadResult, list[int], int]:
    """Verify a log file's bytes: the result, each record's offset, where the scan stopped."""
    res = LoadResult()
    pos, op = 0, 1
    offsets: list[int] = []
    while pos < len(data):
        short = len(data) - pos < HEADER.size
        if not short:
            magic, length, crc, rop, rview = HEADER.unpack_from(data, pos)
            if magic != MAGIC or length > MAX_BODY:
                res.corrupt.append(op)
                break
        if short or pos + HEADER.size + length > len(data):
            if _torn(data, pos, op, commit_hint, held):
                res.torn_tail = True
            else:
                res.corrupt.append(op)
            break
        body = data[pos + HEADER.size : pos + HEADER.size + length]
        if rop != op or _crc(length, rop, rview, body) != crc:
            res.corrupt.append(op)
            # keep indexing so the scrubber/reads know where later records are
            offsets.append(pos)
            pos += HEADER.size + length
            op += 1
            continue
        offsets.append(pos)
        if not res.corrupt:
            res.entries.append(json.loads(body))
        pos += HEADER.size + length
        op += 1
    return res, offsets, pos


def boot_args(res: LoadResult, meta: dict | None, commit_hint: int, snapshot: dict | None) -> dict:
    """The keyword arguments of ``core.Replica`` for a replica booting from its durable state: the
    log as :meth:`Log.load` left it, the views of :func:`load_meta`, the commit hint and the latest
    checkpoint. No durable state at all (no meta, nothing in the log) is a fresh boot; anything
    else is a restart (the replica and the simulation boot the same way)."""
    restarted = meta is not None or bool(res.entries) or bool(res.corrupt)
    meta = meta or {"view": 0, "last_normal_view": 0}
    return {
        "log": res.entries,
        "view": meta["view"],
        "last_normal_view": meta["last_normal_view"],
        "commit_hint": commit_hint,
        "corrupt_from": res.corrupt[0] if res.corrupt else None,
        "snapshot": snapshot,
        "restarted": restarted,
        "fresh": not restarted,
    }


def scan(path: str | os.PathLike, commit_hint: int = 0) -> LoadResult:
    """Verify a log file without touching it (a live replica's, or a copy kept as evidence,
    judged by the ``log.held`` beside it); :meth:`Log.load`, by contrast, keeps a copy of a
    damaged file as evidence and cuts a torn tail."""
    path = Path(path)
    return _parse(path.read_bytes(), commit_hint, load_held(path.parent))[0]


HELD = struct.Struct("<4sQI")
HELD_MAGIC = b"VSRH"


def load_held(data_dir: str | os.PathLike) -> int | None:
    """How many records the log held at its last completed write or load (``log.held``), or
    None when that is unknown (no file, or one that fails its checksum)."""
    try:
        raw = (Path(data_dir) / "log.held").read_bytes()
        magic, count, crc = HELD.unpack(raw)
    except (OSError, struct.error):
        return None
    if magic != HELD_MAGIC or crc != zlib.crc32(struct.pack("<Q", count)) & 0xFFFFFFFF:
        return None
    return count


class Log:
    """The append-only (truncatable) log file with an in-memory offset index."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "log.dat"
        self.held_path = self.dir / "log.held"
        new = not self.path.exists() or (
            self.path.stat().st_size == 0 and not self.held_path.exists()
        )
        self.path.touch(exist_ok=True)
        self.offsets: list[int] = []  # offsets[op-1] = start of record op
        self.end = 0
        self.past_end = False  # bytes after ``end`` (a damaged range kept until rewritten)
        self.held: int | None = 0 if new else load_held(self.dir)
        if new:
            self._save_held(0)

    def _save_held(self, count: int) -> None:
        """Record (fdatasync) that the log holds ``count`` records: after they are durable,
        before anything that depends on them is sent. A 16-byte write in place, checksummed."""
        crc = zlib.crc32(struct.pack("<Q", count)) & 0xFFFFFFFF
        fd = os.open(self.held_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, HELD.pack(HELD_MAGIC, count, crc), 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self.held = count

    # -------------------------------------------------------------- loading / verifying
    def load(self, commit_hint: int = 0) -> LoadResult:
        """Read and verify the whole file. Returns the entries up to the first bad record, and
        the ops whose checksum failed (the first one ends the usable prefix). ``commit_hint``
        (:func:`load_commit_hint`): no record up to it is taken for a torn tail, nor any up to
        the held count (``log.held``), which is then raised to the records loaded.

        A torn tail is cut off. A damaged range is not: it stays in the file (and is found again
        by the next start) until a write replaces it, as a repair does; cutting it would make a
        replica that restarts before its repair boot with a clean but shorter log, and vote."""
        data = self.path.read_bytes()
        res, self.offsets, pos = _parse(data, commit_hint, self.held)
        if res.corrupt:
            first = res.corrupt[0]
            # the range from the first bad record on is unusable until repaired (it is rewritten
            # then); keep the damaged file as evidence before cutting it
            self.end = self.offsets[first - 1] if first <= len(self.offsets) else pos
            self.offsets = self.offsets[: first - 1]
            evidence = self.path.with_name(f"log.dat.corrupt-op{first}")
            evidence.write_bytes(data)
        else:
            self.end = pos
        self.past_end = bool(res.corrupt)
        if res.torn_tail and not res.corrupt:
            with open(self.path, "r+b") as fh:
                fh.truncate(self.end)
                fh.flush()
                os.fsync(fh.fileno())
        # the replica may acknowledge what it loaded (a crash came between a write's fsync and
        # its held count): raise the count to it, never lower it (a damaged range stays in the
        # file, under the count it had, until a repair rewrites it)
        unknown = self.held is None
        if (unknown and not res.corrupt) or (not unknown and len(self.offsets) > self.held):
            self._save_held(len(self.offsets))
        return res

    def read(self, op: int) -> dict:
        """Read and verify one entry; raises :class:`ChecksumError` on a mismatch."""
        if op < 1 or op > len(self.offsets):
            raise IndexError(op)
        with open(self.path, "rb") as fh:
            fh.seek(self.offsets[op - 1])
            head = fh.read(HEADER.size)
            magic, length, crc, rop, rview = HEADER.unpack(head)
            if magic != MAGIC or length > MAX_BODY:
                raise ChecksumError(op)
            body = fh.read(length)
        if rop != op or len(body) != length or _crc(length, rop, rview, body) != crc:
            raise ChecksumError(op)
        return json.loads(body)

    def verify_range(self, first: int, last: int) -> list[int]:
        """Checksum-verify ops first..last; returns the failing ops."""
        bad = []
        last = min(last, len(self.offsets))
        if first > last:
            return bad
        with open(self.path, "rb") as fh:
            fh.seek(self.offsets[first - 1])
            data = fh.read(self.end - self.offsets[first - 1])
        pos = 0
        for op in range(first, last + 1):
            if len(data) - pos < HEADER.size:
                bad.append(op)
                break
            magic, length, crc, rop, rview = HEADER.unpack_from(data, pos)
            if magic != MAGIC or length > MAX_BODY:
                bad.append(op)
                break
            body = data[pos + HEADER.size : pos + HEADER.size + length]
            if rop != op or _crc(length, rop, rview, body) != crc:
                bad.append(op)
            pos += HEADER.size + length
        return bad

    def scrub(self) -> list[int]:
        """One scrubber tour over the whole log."""
        return self.verify_range(1, len(self.offsets))

    # -------------------------------------------------------------- writing
    def write(self, from_op: int, entries: list[dict]) -> None:
        """Make the file hold ``log[:from_op-1] + entries``; fsync it, then record the held count
        (``log.held``) before returning."""
        self.write_records(from_op, entries)
        self._save_held(len(self.offsets))

    def write_records(self, from_op: int, entries: list[dict]) -> None:
        """The records of :meth:`write` alone (fsync'd), the held count not yet raised: what a
        crash in the middle of ``write`` leaves (the simulation tears writes with it)."""
        from_op = min(from_op, len(self.offsets) + 1)
        start = self.offsets[from_op - 1] if from_op <= len(self.offsets) else self.end
        blob = b"".join(encode(e) for e in entries)
        with open(self.path, "r+b") as fh:
            if start != self.end or self.past_end:
                fh.truncate(start)
            fh.seek(start)
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        self.past_end = False
        del self.offsets[from_op - 1 :]
        pos = start
        for e in entries:
            self.offsets.append(pos)
            pos += HEADER.size + len(json.dumps(e, separators=(",", ":"), sort_keys=True).encode())
        self.end = pos

    def size(self) -> int:
        return self.end


class ChecksumError(Exception):
    def __init__(self, op: int) -> None:
        super().__init__(f"checksum mismatch in log entry op={op}")
        self.op = op


# ---------------------------------------------------------------------- meta, hint, checkpoints
class MetaCorruptError(Exception):
    """``meta.json`` exists but cannot be read back: the replica's durable view is lost."""


def _meta_crc(view: int, last_normal_view: int) -> int:
    return zlib.crc32(struct.pack("<QQ", view, last_normal_view)) & 0xFFFFFFFF


def load_meta(data_dir: Path) -> dict | None:
    """The durable view numbers, or None on a replica that never wrote them.

    Raises :class:`MetaCorruptError` when the file is there but fails its checksum or cannot
    be parsed: a replica must not guess its view (it could vote twice in one view), so it
    refuses to boot; the operator's way out is the seed's FM-003 step 5, wipe and resync."""
    p = Path(data_dir) / "meta.json"
    if not p.exists():
        return None
    try:
        meta = json.loads(p.read_bytes().decode())
        view, last_normal = int(meta["view"]), int(meta["last_normal_view"])
        crc = int(meta["crc"])
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise MetaCorruptError(
            f"checksum mismatch in {p}: unreadable ({exc.__class__.__name__}: {exc})"
        ) from exc
    if crc != _meta_crc(view, last_normal):
        raise MetaCorruptError(f"checksum mismatch in {p}: crc {crc} does not match its views")
    return {"view": view, "last_normal_view": last_normal}


def save_meta(data_dir: Path, meta: dict) -> None:
    view, last_normal = int(meta["view"]), int(meta["last_normal_view"])
    record = {"view": view, "last_normal_view": last_normal, "crc": _meta_crc(view, last_normal)}
    write_json_atomic(Path(data_dir) / "meta.json", record, fsync=True)


def corrupt_meta(data_dir: str | os.PathLike) -> None:
    """Garble ``meta.json`` in place (fault injection: the disk fails under the metadata too)."""
    p = Path(data_dir) / "meta.json"
    data = bytearray(p.read_bytes())
    if not data:
        raise RuntimeError(f"{p} is empty")
    for i in range(0, len(data), 3):
        data[i] ^= 0xA5
    with open(p, "r+b") as fh:
        fh.write(bytes(data))
        fh.flush()
        os.fsync(fh.fileno())


def load_commit_hint(data_dir: Path) -> int:
    try:
        return int(json.loads((Path(data_dir) / "commit.json").read_text())["commit"])
    except (OSError, ValueError, KeyError):
        return 0


def save_commit_hint(data_dir: Path, commit: int) -> None:
    write_json_atomic(Path(data_dir) / "commit.json", {"commit": commit}, fsync=False)


def _ckpt_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "checkpoints"


def write_checkpoint(data_dir: Path, op: int, state: dict, keep: int) -> Path:
    d = _ckpt_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    body = json.dumps(state, separators=(",", ":"), sort_keys=True)
    crc = zlib.crc32(body.encode()) & 0xFFFFFFFF
    path = d / f"checkpoint-{op:012d}.json"
    write_json_atomic(path, {"op": op, "crc32": crc, "state": body}, fsync=True)
    for old in sorted(d.glob("checkpoint-*.json"))[:-keep] if keep > 0 else []:
        with contextlib.suppress(OSError):
            old.unlink()
    return path


def list_checkpoints(data_dir: Path) -> list[dict]:
    out = []
    for p in sorted(_ckpt_dir(data_dir).glob("checkpoint-*.json")):
        info = {"file": str(p), "size": p.stat().st_size, "mtime": p.stat().st_mtime}
        try:
            doc = json.loads(p.read_text())
            info["op"] = doc["op"]
            info["valid"] = zlib.crc32(doc["state"].encode()) & 0xFFFFFFFF == doc["crc32"]
        except (OSError, ValueError, KeyError):
            info["op"], info["valid"] = None, False
        out.append(info)
    return out


def load_latest_checkpoint(data_dir: Path) -> dict | None:
    for info in reversed(list_checkpoints(data_dir)):
        if info["valid"]:
            doc = json.loads(Path(info["file"]).read_text())
            return json.loads(doc["state"])
    return None


# ---------------------------------------------------------------------- fault injection helper
def corrupt_entry(
    data_dir: str | os.PathLike, op: int | None = None, seed: int = 0, wait_s: float = 3.0
) -> int:
    """Flip bits inside the body of a committed entry (default: a middle committed op).

    Used by ``lab fault corrupt``; returns the op number damaged. The replica persists its
    commit hint periodically (every 0.5 s), so right after a write it may not be on disk yet:
    wait up to ``wait_s`` for a committed entry (or for ``op``) to show."""
    log = Log(data_dir)
    deadline = time.monotonic() + wait_s
    while True:
        offsets = record_spans(log.path)
        commit = min(load_commit_hint(Path(data_dir)), len(offsets))
        if commit >= max(1, op or 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if commit < 1:
        raise RuntimeError(f"no committed entry to corrupt in {data_dir}")
    if op is None:
        op = max(1, commit // 2 + (seed % max(1, commit // 2)))
    if op > commit:
        raise RuntimeError(f"op {op} is not committed (commit hint {commit})")
    damage_body(log.path, *offsets[op - 1])
    return op


def damage_body(path: Path, start: int, length: int) -> None:
    """Flip bits in the middle of the body of the record at ``start`` (body ``length``)."""
    target = start + HEADER.size + length // 2
    with open(path, "r+b") as fh:
        fh.seek(target)
        b = fh.read(1)
        fh.seek(target)
        fh.write(bytes([b[0] ^ 0x5A]))
        fh.flush()
        os.fsync(fh.fileno())


def damage_length(path: Path, start: int, bit: int) -> int:
    """Flip bit ``bit`` (0..31) of the length field of the record at ``start``: it may then
    claim to run past the end of the file, into the records after it, past ``MAX_BODY``, or
    stop short. Returns the new length."""
    at = start + 4  # the length follows the 4-byte magic
    with open(path, "r+b") as fh:
        fh.seek(at)
        (length,) = struct.unpack("<I", fh.read(4))
        length ^= 1 << bit
        fh.seek(at)
        fh.write(struct.pack("<I", length))
        fh.flush()
        os.fsync(fh.fileno())
    return length


def record_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, body length) of each whole record in a log file, read as it is on disk."""
    data = Path(path).read_bytes()
    spans, pos = [], 0
    while pos + HEADER.size <= len(data):
        _, length, _, _, _ = HEADER.unpack_from(data, pos)
        if pos + HEADER.size + length > len(data):
            break
        spans.append((pos, length))
        pos += HEADER.size + length
    return spans


def corrupt_length(data_dir: str | os.PathLike, op: int) -> int:
    """Flip one bit of record ``op``'s length field so that it claims to run past the end of
    the file (fault injection: the damage that mimics a torn tail). Returns the new length."""
    path = Path(data_dir) / "log.dat"
    data = path.read_bytes()
    offsets = _parse(data)[1]
    if not 1 <= op <= len(offsets):
        raise RuntimeError(f"no record op={op} in {path} ({len(offsets)} records)")
    at = offsets[op - 1] + 4  # the length follows the 4-byte magic
    (length,) = struct.unpack_from("<I", data, at)
    bit = max(len(data).bit_length(), length.bit_length())
    if bit >= MAX_BODY.bit_length() - 1:
        raise RuntimeError(f"{path} is too large for a length past its end below MAX_BODY")
    length |= 1 << bit
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(struct.pack("<I", length))
        fh.flush()
        os.fsync(fh.fileno())
    return length


def inject_corruption(data_dir: str | os.PathLike, arg: str | int | None, seed: int = 0) -> dict:
    """``lab fault corrupt``'s argument: empty (a middle committed entry), an op number, or
    ``unrepairable`` (a middle entry and ``meta.json``: the replica no longer boots, so a
    state transfer cannot repair it and only a wipe and resync can)."""
    text = "" if arg is None else str(arg).strip()
    if text == "unrepairable":
        op = corrupt_entry(data_dir, None, seed=seed)
        corrupt_meta(data_dir)
        return {"op": op, "meta": True}
    if text and not text.isdigit():
        raise RuntimeError(f"corrupt: ARG is an op number or 'unrepairable', not {text!r}")
    return {"op": corrupt_entry(data_dir, int(text) if text else None, seed=seed)}


# ---------------------------------------------------------------------- rotated log segments
OLD_LOGS = "old-logs"  # `lab fault disk-full --replica R old-logs`
_SEGMENT_RE = re.compile(r"^log\.old\.([0-9]+)-([0-9]+)$")


def segment_name(first: int, last: int) -> str:
    return f"log.old.{first}-{last}"


def parse_segment(name: str) -> tuple[int, int] | None:
    """(first op, last op) of a rotated segment's name, or None when it is not one."""
    m = _SEGMENT_RE.match(name)
    if not m:
        return None
    first, last = int(m.group(1)), int(m.group(2))
    return (first, last) if 1 <= first <= last else None


def latest_valid_checkpoint_op(checkpoints: list[dict]) -> int | None:
    """The op of the latest checkpoint whose checksum holds (:func:`list_checkpoints` rows)."""
    ops = [c["op"] for c in checkpoints if c.get("valid") and isinstance(c.get("op"), int)]
    return max(ops) if ops else None


def cleanup_selection(names: list[str], checkpoints: list[dict]) -> dict:
    """Which files of a data dir a log cleanup removes: pure, over names and checkpoint rows.

    Only ``log.old.<first>-<last>`` segments whose last op is at or below the latest valid
    checkpoint's op: the checkpoint holds what they hold. Every other ``log.old.*`` name (beyond
    the checkpoint, malformed, any segment when no checkpoint is valid) is kept; anything else
    (``log.dat``, meta, the commit hint, checkpoints...) is not a segment and never touched.
    Returns ``{"remove": [...], "keep": [...], "checkpoint_op": op or None}``, names sorted."""
    op = latest_valid_checkpoint_op(checkpoints)
    remove, keep = [], []
    for name in sorted(names):
        if not name.startswith("log.old."):
            continue
        span = parse_segment(name)
        if span is not None and op is not None and span[1] <= op:
            remove.append(name)
        else:
            keep.append(name)
    return {"remove": sorted(remove, key=parse_segment), "keep": keep, "checkpoint_op": op}


def remove_segments(data_dir: str | os.PathLike, names: list[str]) -> int:
    """Unlink the named segments (regular files only); returns the bytes freed."""
    freed = 0
    for name in names:
        if parse_segment(name) is None:
            continue
        p = Path(data_dir) / name
        with contextlib.suppress(FileNotFoundError):
            st = p.lstat()
            if not p.is_symlink() and p.is_file():
                p.unlink()
                freed += st.st_size
    with contextlib.suppress(OSError):
        _fsync_dir(Path(data_dir))
    return freed


def _write_until_full(fh, chunk: bytes, limit: int | None) -> tuple[int, bool]:
    """Write ``chunk`` over and over to an unbuffered file, ``limit`` bytes at most (None: no
    limit); returns (bytes written, whether the filesystem is full)."""
    written = 0
    while limit is None or written < limit:
        piece = chunk if limit is None else chunk[: limit - written]
        try:
            n = fh.write(piece)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return written, True
        if not n:
            return written, True
        written += n
    return written, False


def fill_with_old_segments(data_dir: str | os.PathLike, segments: int = 8) -> dict:
    """Fill the filesystem of ``data_dir`` with rotated log segments (fault injection: a log
    cleanup that failed). Each ``log.old.<first>-<last>`` holds copies of the log's own records
    first..last; all of them are at or below the latest valid checkpoint's op, so removing them
    is safe. Returns ``{segments, checkpoint_op, bytes, free_bytes}``."""
    d = Path(data_dir)
    op = latest_valid_checkpoint_op(list_checkpoints(d))
    if op is None:
        raise RuntimeError(f"no valid checkpoint in {d}: no segment would be safe to remove")
    data = (d / "log.dat").read_bytes()
    spans = record_spans(d / "log.dat")
    op = min(op, len(spans))
    if op < 1:
        raise RuntimeError(f"{d}/log.dat holds no record at or below the checkpoint")
    k = max(1, min(segments, op))
    bounds = [(j * op // k + 1, (j + 1) * op // k) for j in range(k)]
    st = os.statvfs(d)
    share = max(1, st.f_bavail * st.f_frsize // k)
    names, total = [], 0
    for j, (first, last) in enumerate(bounds):
        start = spans[first - 1][0]
        end = spans[last - 1][0] + HEADER.size + spans[last - 1][1]
        chunk = data[start:end]
        name = segment_name(first, last)
        names.append(name)
        with open(d / name, "wb", buffering=0) as fh:
            _, full = _write_until_full(fh, chunk, None if j == k - 1 else share)
            if full or j == k - 1:
                # full: top the filesystem up to its last byte with ever smaller pieces
                for size in (4096, 512, 1):
                    _write_until_full(fh, chunk[:size], None)
            with contextlib.suppress(OSError):
                os.fsync(fh.fileno())
            total += fh.tell()
        if full or j == k - 1:
            break
    st = os.statvfs(d)
    return {
        "segments": names,
        "checkpoint_op": op,
        "bytes": total,
        "free_bytes": st.f_bavail * st.f_frsize,
    }
