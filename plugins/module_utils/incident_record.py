# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident record's hash chain: one implementation, shared by the collection's
``incident_record`` module and the ``firebreak.record`` Python package.

Standard library only: it runs inside the module on the controller (AWX included), and is
loaded by file path from the wrapper. The format is described in docs/record.md.
"""

from __future__ import absolute_import, division, print_function

import copy
import hashlib
import json
import os
import re
import tempfile
from datetime import datetime, timezone

try:
    from ansible_collections.firebreak.incident.plugins.module_utils import escalation
except ImportError:  # loaded by file path outside a collection (the wrapper): the file beside
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_firebreak_escalation",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "escalation.py"),
    )
    escalation = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(escalation)

__metaclass__ = type

SCHEMA_VERSION = 1
HASH_ALGORITHM = "sha256"
# The first entry's prev_hash: a fixed, documented constant (SHA-256 of this label).
GENESIS_LABEL = "firebreak.incident record genesis v1"
GENESIS_HASH = hashlib.sha256(GENESIS_LABEL.encode("utf-8")).hexdigest()

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
STATES = (
    "detected",
    "acknowledged",
    "investigating",
    "mitigating",
    "mitigated",
    "resolved",
    "escalated",
)
ENTRY_TYPES = (
    "fault",  # the fault began (rehearsal injection time, or a known start); feeds MTTD
    "state",  # the incident moved to `outcome` (one of STATES)
    "severity",  # the severity became `outcome` (one of SEVERITIES)
    "classification",  # the suspected failure mode became `outcome`
    "observation",  # something read (diagnose): `detail` holds the values
    "guard",  # a guard decided: `decision` is allow / deny / skip, `detail` the inputs
    "action",  # something done to `target`; `outcome` tells how it went
    "evidence",  # an evidence item was attached; `detail` carries its id and sha256
    "run",  # a playbook run started/finished (detail: playbook, status)
    "note",  # free text in `detail.text`
    "task",  # a step only a person can take: `detail.text` (the seed's wording), `target` its owner
)
EVIDENCE_KINDS = ("metric_snapshot", "log_excerpt", "file_hash", "command_output", "other")
ENTRY_FIELDS = (
    "type",
    "at",
    "phase",
    "host",
    "action",
    "target",
    "decision",
    "outcome",
    "detail",
    "run_id",
)
EVIDENCE_FIELDS = ("kind", "phase", "host", "target", "at", "summary", "data")
MILESTONES = ("fault_started", "detected", "acknowledged", "mitigated", "resolved")
# derived fields added after schema version 1 was first written: optional in a record
DERIVED_LATER = ("escalation", "updates")


class RecordError(Exception):
    """Bad input or a record that cannot be read; the message names what is wrong."""


def canonical_json(obj):
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sha256_of(obj):
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def entry_hash(entry):
    """SHA-256 of an entry's canonical JSON, its own `hash` field left out."""
    return sha256_of(dict((k, v) for k, v in entry.items() if k != "hash"))


def utc_now():
    return format_time(datetime.now(timezone.utc))


def format_time(dt):
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def parse_time(value, what="time"):
    """An ISO-8601 string with a zone (or a trailing Z) -> aware datetime, in UTC."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise RecordError("%s %r is not an ISO-8601 timestamp" % (what, value)) from None
    if dt.tzinfo is None:
        raise RecordError("%s %r has no time zone; use UTC (a trailing Z)" % (what, value))
    return dt.astimezone(timezone.utc)


def normalize_time(value, what="time"):
    return format_time(parse_time(value, what))


def new_record(incident_id, cluster, now=None):
    if not incident_id or not str(incident_id).strip():
        raise RecordError("incident id is empty")
    now = now or utc_now()
    return {
        "schema_version": SCHEMA_VERSION,
        "id": str(incident_id),
        "cluster": str(cluster or "unknown"),
        "failure_mode": None,
        "severity": None,
        "state": None,
        "created_at": now,
        "updated_at": now,
        "milestones": dict((m, None) for m in MILESTONES),
        "metrics": {"mttd_seconds": None, "mttr_seconds": None},
        "evidence": [],
        "timeline": [],
        "chain": {"algorithm": HASH_ALGORITHM, "genesis": GENESIS_HASH, "head": GENESIS_HASH},
    }


def _clean_text(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    return str(value)


def normalize_entry(raw, default_at, default_host=None, run_id=None):
    """A role's event dict -> a timeline entry with every field present (None when absent)."""
    if not isinstance(raw, dict):
        raise RecordError("a record event must be a mapping, got %r" % (raw,))
    unknown = sorted(set(raw) - set(ENTRY_FIELDS))
    if unknown:
        raise RecordError(
            "record event %r has unknown key(s) %s; allowed: %s"
            % (raw.get("action") or raw.get("type"), ", ".join(unknown), ", ".join(ENTRY_FIELDS))
        )
    etype = raw.get("type") or "action"
    if etype not in ENTRY_TYPES:
        raise RecordError("record event type %r is not one of %s" % (etype, ", ".join(ENTRY_TYPES)))
    entry = {}
    entry["type"] = etype
    entry["at"] = normalize_time(raw.get("at") or default_at, "event time")
    for key in ("phase", "action", "target", "decision", "outcome"):
        entry[key] = _clean_text(raw.get(key))
    entry["host"] = _clean_text(raw.get("host")) or default_host
    detail = raw.get("detail")
    if detail is None or detail == "":
        detail = {}
    if not isinstance(detail, dict):
        detail = {"text": str(detail)}
    entry["detail"] = copy.deepcopy(detail)
    entry["run_id"] = _clean_text(raw.get("run_id")) or run_id
    if etype == "state" and entry["outcome"] not in STATES:
        raise RecordError(
            "state event outcome %r is not one of %s" % (entry["outcome"], ", ".join(STATES))
        )
    if etype == "severity" and entry["outcome"] not in SEVERITIES:
        raise RecordError(
            "severity event outcome %r is not one of %s" % (entry["outcome"], ", ".join(SEVERITIES))
        )
    if etype == "classification" and not entry["outcome"]:
        raise RecordError("classification event needs the failure mode in `outcome`")
    return entry


def normalize_evidence(raw, default_at, default_host=None):
    if not isinstance(raw, dict):
        raise RecordError("an evidence item must be a mapping, got %r" % (raw,))
    unknown = sorted(set(raw) - set(EVIDENCE_FIELDS))
    if unknown:
        raise RecordError(
            "evidence item has unknown key(s) %s; allowed: %s"
            % (", ".join(unknown), ", ".join(EVIDENCE_FIELDS))
        )
    kind = raw.get("kind") or "other"
    if kind not in EVIDENCE_KINDS:
        raise RecordError("evidence kind %r is not one of %s" % (kind, ", ".join(EVIDENCE_KINDS)))
    return {
        "kind": kind,
        "phase": _clean_text(raw.get("phase")),
        "host": _clean_text(raw.get("host")) or default_host,
        "target": _clean_text(raw.get("target")),
        "at": normalize_time(raw.get("at") or default_at, "evidence time"),
        "summary": _clean_text(raw.get("summary")),
        "data": copy.deepcopy(raw.get("data")),
    }


def merge_host_items(items_by_host):
    """{host: [item, ...]} -> [(item, host_or_None)], in order, identical items once.

    A `run_once` set_fact lands on every host of the play; such an item is kept once and
    attributed to no host (unless it names one itself)."""
    order = []
    hosts_of = {}
    for host in sorted(items_by_host or {}):
        for item in items_by_host[host] or []:
            key = canonical_json(item)
            if key not in hosts_of:
                hosts_of[key] = []
                order.append((key, item))
            if host not in hosts_of[key]:
                hosts_of[key].append(host)
    merged = []
    for key, item in order:
        hosts = hosts_of[key]
        merged.append((item, hosts[0] if len(hosts) == 1 else None))
    return merged


def _stamp(item, default_at):
    """(time, to_the_second) of an item's `at`; a bad one sorts as `default_at` (and is refused
    with its own message when normalized)."""
    at = item.get("at") if isinstance(item, dict) else None
    try:
        dt = parse_time(at or default_at)
    except RecordError:
        return parse_time(default_at), False
    text = at if isinstance(at, str) else ""
    return dt, bool(_WHOLE_SECOND.search(text))


# A stamp to the whole second ("...:25Z", "...:25+00:00"): no sub-second part.
_WHOLE_SECOND = re.compile(r":\d{2}(Z|[+-]\d{2}:?\d{2})\s*$", re.IGNORECASE)


def in_order(items, default_at):
    """[(item, rank, ...), ...] in emission order -> the same tuples in the order they happened.

    By the stamps' time (the roles stamp from one clock, with sub-seconds); on equal times the
    lower `rank` first, then emission order. A stamp to the whole second cannot be told apart
    from the sub-second stamps of its second: within such a second, emission order alone."""
    stamps = [_stamp(t[0], default_at) for t in items]
    coarse = set(dt.replace(microsecond=0) for dt, whole in stamps if whole)

    def key(index):
        dt, _whole = stamps[index]
        second = dt.replace(microsecond=0)
        if second in coarse:
            return (second, 0, 0, index)
        return (second, dt.microsecond, items[index][1], index)

    return [items[i] for i in sorted(range(len(items)), key=key)]


def derive(record):
    """Fields computed from the chained timeline: state, severity, failure mode, milestones,
    MTTD and MTTR. `verify` recomputes them to catch an edit outside the chain."""
    state = severity = failure_mode = None
    milestones = dict((m, None) for m in MILESTONES)
    for entry in record.get("timeline", []):
        etype, outcome, at = entry.get("type"), entry.get("outcome"), entry.get("at")
        if etype == "fault" and milestones["fault_started"] is None:
            milestones["fault_started"] = at
        elif etype == "state":
            state = outcome
            if outcome in milestones and milestones[outcome] is None:
                milestones[outcome] = at
        elif etype == "severity":
            severity = outcome
        elif etype == "classification":
            failure_mode = outcome
    metrics = {"mttd_seconds": None, "mttr_seconds": None}
    if milestones["detected"] and milestones["fault_started"]:
        metrics["mttd_seconds"] = _seconds(milestones["fault_started"], milestones["detected"])
    if milestones["detected"] and milestones["resolved"]:
        metrics["mttr_seconds"] = _seconds(milestones["detected"], milestones["resolved"])
    return {
        "state": state,
        "severity": severity,
        "failure_mode": failure_mode,
        "milestones": milestones,
        "metrics": metrics,
        # seed 000's escalation paths and comms cadence, due from the detection
        "escalation": escalation.due(severity, milestones),
        "updates": escalation.updates(severity, milestones),
    }


def _seconds(start, end):
    return round((parse_time(end) - parse_time(start)).total_seconds(), 3)


def _chain_entry(record, entry):
    timeline = record["timeline"]
    entry = dict(entry)
    entry["seq"] = len(timeline)
    entry["prev_hash"] = timeline[-1]["hash"] if timeline else GENESIS_HASH
    entry["hash"] = entry_hash(entry)
    timeline.append(entry)
    record["chain"]["head"] = entry["hash"]
    return entry


def _chain_tasks(record, tasks, now, run_id):
    """Chain each task not yet in the record (same failure mode and text) as a ``task`` entry."""
    recorded = set(
        (e["detail"].get("failure_mode"), e["detail"].get("text"))
        for e in record["timeline"]
        if e["type"] == "task"
    )
    added = []
    for task in tasks or []:
        if (task.get("failure_mode"), task.get("text")) in recorded:
            continue
        raw = {
            "type": "task",
            "phase": "decide",
            "action": "task_for_person",
            "target": task.get("owner"),
            "outcome": "open",
            "detail": dict(task),
        }
        added.append(_chain_entry(record, normalize_entry(raw, now, run_id=run_id)))
    return added


def _chain_raw(record, raw, now, run_id):
    """Chain one incident-level entry (no host) given in its raw form."""
    return _chain_entry(record, normalize_entry(raw, now, run_id=run_id))


def _chain_fault_start(record, current, fault_started_at, now, run_id):
    """The fault's start, when the run gives it and the record does not have it yet."""
    if fault_started_at and current["milestones"]["fault_started"] is None:
        raw = {"type": "fault", "at": fault_started_at, "phase": "inject"}
        return [_chain_raw(record, raw, now, run_id)]
    return []


def _chain_incident_changes(record, current, failure_mode, severity, tasks, now, run_id):
    """The run's conclusions the record does not have yet: classification, the tasks for
    people, severity, in that order (stamped now: they come after what the run saw)."""
    added = []
    if failure_mode and failure_mode != current["failure_mode"]:
        raw = {"type": "classification", "outcome": failure_mode}
        added.append(_chain_raw(record, raw, now, run_id))
    added.extend(_chain_tasks(record, tasks, now, run_id))
    if severity and severity != current["severity"]:
        added.append(_chain_raw(record, {"type": "severity", "outcome": severity}, now, run_id))
    return added


def _chain_evidence(record, item, now, run_id):
    """Keep one (normalized) evidence item and chain the ``evidence`` entry that points at it."""
    item["id"] = "ev-%04d" % (len(record["evidence"]) + 1)
    record["evidence"].append(item)
    raw = {
        "type": "evidence",
        "at": item["at"],
        "phase": item["phase"],
        "target": item["target"],
        "outcome": item["kind"],
        "detail": {"evidence_id": item["id"], "sha256": sha256_of(item)},
    }
    return _chain_entry(record, normalize_entry(raw, now, item["host"], run_id))


def _chain_host_items(record, events_by_host, evidence_by_host, now, run_id):
    """The hosts' events and evidence, in the order they happened, less what the record has."""
    items = [(raw, 0, host, "event") for raw, host in merge_host_items(events_by_host)]
    items += [(raw, 1, host, "evidence") for raw, host in merge_host_items(evidence_by_host)]
    # A step appends its events right after it acts (a killed run keeps them) and the record
    # phase appends the run's events again: what is already in the record is skipped.
    recorded = set(_event_key(e) for e in record["timeline"])
    recorded |= set(_evidence_key(e) for e in record["evidence"])
    added = []
    for raw, _rank, host, what in in_order(items, now):
        if what == "event":
            entry = normalize_entry(raw, now, host, run_id)
            if not (raw.get("at") and _event_key(entry) in recorded):
                added.append(_chain_entry(record, entry))
            continue
        item = normalize_evidence(raw, now, host)
        if raw.get("at") and _evidence_key(item) in recorded:
            continue
        added.append(_chain_evidence(record, item, now, run_id))
    return added


def append(
    record,
    events_by_host=None,
    evidence_by_host=None,
    severity=None,
    failure_mode=None,
    state=None,
    fault_started_at=None,
    run_id=None,
    now=None,
    tasks=None,
):
    """Append a run's contribution to `record` (in place) and return the new entries.

    ``tasks``: steps only a person can take ({failure_mode, text, owner}), recorded once each
    (as ``task`` entries, outcome ``open``) right after the classification.

    Order, the order things happened: the fault's start first, then the hosts' events and
    evidence in the order they happened (`in_order`), then the run's conclusions
    (classification, tasks, severity, stamped now), then the final state. The entries' `seq`
    is that order."""
    now = now or utc_now()
    current = derive(record)
    added = _chain_fault_start(record, current, fault_started_at, now, run_id)
    added.extend(_chain_host_items(record, events_by_host, evidence_by_host, now, run_id))
    added.extend(
        _chain_incident_changes(record, current, failure_mode, severity, tasks, now, run_id)
    )
    if state and state != derive(record)["state"]:
        added.append(_chain_raw(record, {"type": "state", "outcome": state}, now, run_id))
    record.update(derive(record))
    record["updated_at"] = now
    return added


def _event_key(entry):
    """What makes two entries the same event (its own `at`, to the millisecond, included);
    the host is left out: a run_once fact is attributed to no host or to the first."""
    return ("event", canonical_json(dict((k, entry.get(k)) for k in ENTRY_FIELDS if k != "host")))


def _evidence_key(item):
    fields = [k for k in EVIDENCE_FIELDS if k != "host"]
    return ("evidence", canonical_json(dict((k, item.get(k)) for k in fields)))


def _problem(index, seq, reason):
    return {"index": index, "seq": seq, "reason": reason}


def _entry_problem(entry, index, prev):
    """Why timeline entry ``index`` breaks the chain (``prev``: the hash before it), or None."""
    if not isinstance(entry, dict):
        return _problem(index, None, "entry is not an object")
    seq = entry.get("seq")
    label = _label(entry)
    if seq != index:
        return _problem(
            index,
            seq,
            "entry %s is at position %d: an entry was deleted, inserted or moved" % (label, index),
        )
    if entry.get("hash") != entry_hash(entry):
        return _problem(
            index, seq, "entry %s was edited: its content does not match its hash" % label
        )
    if entry.get("prev_hash") != prev:
        return _problem(
            index,
            seq,
            "entry %s does not follow the entry before it (prev_hash mismatch): the chain was "
            "rewritten before it" % label,
        )
    return None


def _chain_problems(record, timeline):
    """(problems, broken): a wrong genesis, then the first break of the chain (an entry, the
    head), after which nothing else is checked."""
    problems = []
    chain = record.get("chain") or {}
    if chain.get("genesis") != GENESIS_HASH:
        problems.append(_problem(None, None, "chain.genesis is not the genesis"))
    prev = GENESIS_HASH
    for index, entry in enumerate(timeline):
        problem = _entry_problem(entry, index, prev)
        if problem:
            problems.append(problem)
            return problems, True
        prev = entry["hash"]
    if chain.get("head") != prev:
        last = len(timeline) - 1 if timeline else None
        problems.append(
            _problem(
                last,
                last,
                "chain.head does not match the last entry: entries were removed "
                "from the end or the last entry was replaced",
            )
        )
        return problems, True
    return problems, False


def _evidence_problems(record, timeline):
    """Evidence not in the timeline, edited since, or missing."""
    problems = []
    referenced = {}
    for entry in timeline:
        if entry.get("type") == "evidence":
            referenced[entry["detail"].get("evidence_id")] = entry
    for item in record.get("evidence") or []:
        ref = referenced.pop(item.get("id") if isinstance(item, dict) else None, None)
        if ref is None:
            problems.append(
                _problem(None, None, "evidence %r is not in the timeline" % (item.get("id"),))
            )
        elif ref["detail"].get("sha256") != sha256_of(item):
            problems.append(
                _problem(
                    ref["seq"],
                    ref["seq"],
                    "evidence %s was edited (sha256 differs from entry %s)"
                    % (item.get("id"), _label(ref)),
                )
            )
    for eid, ref in referenced.items():
        problems.append(
            _problem(
                ref["seq"], ref["seq"], "evidence %s of entry %s is missing" % (eid, _label(ref))
            )
        )
    return problems


def verify(record):
    """Problems found in `record`, the first bad entry first; [] when the chain holds.

    Each problem is a dict {seq, index, reason}; index is the entry's position (or None
    for a problem outside the timeline)."""
    if not isinstance(record, dict):
        return [_problem(None, None, "the record is not a JSON object")]
    timeline = record.get("timeline")
    if not isinstance(timeline, list):
        return [_problem(None, None, "the record has no timeline list")]
    problems, broken = _chain_problems(record, timeline)
    if broken:
        return problems
    problems += _evidence_problems(record, timeline)
    derived = derive(record)
    for key in ("state", "severity", "failure_mode", "milestones", "metrics", *DERIVED_LATER):
        if key in DERIVED_LATER and key not in record:
            continue  # a record written before the field existed
        if record.get(key) != derived[key]:
            problems.append(
                _problem(
                    None,
                    None,
                    "%s %r does not match the timeline (%r)" % (key, record.get(key), derived[key]),
                )
            )
    return problems


def _label(entry):
    what = entry.get("action") or entry.get("outcome") or ""
    return "#%s (%s %s%s)" % (
        entry.get("seq"),
        entry.get("at"),
        entry.get("type"),
        (" " + what) if what else "",
    )


def load(path):
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError("cannot read incident record %s: %s" % (path, exc)) from exc
    if not isinstance(data, dict):
        raise RecordError("incident record %s is not a JSON object" % path)
    return data


def dumps(record):
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def save(path, record):
    """Atomic replace: a reader never sees half a record."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o750)
    fd, tmp = tempfile.mkstemp(prefix=".record-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dumps(record))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Lock:
    """An exclusive lock beside the record, so two runs appending at once both land."""

    def __init__(self, path):
        self.path = path + ".lock"
        self.handle = None

    def __enter__(self):
        import fcntl

        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o750)
        self.handle = open(self.path, "a")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()


class _NoLock:
    """Check mode reads without the lock: taking it would create the directory and lock file
    (a concurrent writer replaces the record atomically, so the read is still whole)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def record_path(incident_dir, incident_id):
    if "/" in incident_id or incident_id in (".", "..") or "\x00" in incident_id:
        raise RecordError("incident id %r cannot name a file" % incident_id)
    return os.path.join(incident_dir, incident_id + ".json")


def append_to_file(path, incident_id, cluster, write=True, **changes):
    """Load (or create) the record at `path`, refuse a broken chain, append, save.

    Returns (record, added_entries, created). With write=False (check mode) nothing is
    written at all: no directory, no lock file, no record; the result is what would be."""
    with _Lock(path) if write else _NoLock():
        created = not os.path.exists(path)
        if created:
            record = new_record(incident_id, cluster, changes.get("now"))
        else:
            record = load(path)
            if record.get("id") != incident_id:
                raise RecordError(
                    "%s holds incident %r, not %r" % (path, record.get("id"), incident_id)
                )
            if cluster and record.get("cluster") != cluster:
                raise RecordError(
                    "%s is for cluster %r, not %r" % (path, record.get("cluster"), cluster)
                )
            problems = verify(record)
            if problems:
                raise RecordError("refusing to append to %s: %s" % (path, problems[0]["reason"]))
        added = append(record, **changes)
        if write and (added or created):
            save(path, record)
        return record, added, created
