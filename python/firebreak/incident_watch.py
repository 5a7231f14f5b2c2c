"""While a run goes on: the escalations that come due and the comms cadence's update drafts.

The record holds the due times (``escalation`` and ``updates``, derived from its severity and
milestones by the collection's module_utils/escalation.py). ``IncidentWatch`` learns the
record's path from the run's incident_record tasks, re-reads it every few seconds on a thread
of its own, prints an escalation the moment it is overdue (with the contact from the contacts
table, configuration) and writes an update draft (``<record>.update-N.md``, the seed's "Incident
Update" template) each time one is due while the incident is open. It only reads the record:
the drafts are files beside it, sending them is a person's step.

The contacts table: ``$FIREBREAK_CONTACTS``, else ``$XDG_CONFIG_HOME/firebreak/contacts.yml``
(``~/.config/firebreak/contacts.yml``); a mapping of the escalation's role (``secondary
on-call``, ``manager on-call``...) to ``{name, phone, email, backup}``. docs/contacts.example.yml
is an example. Without one, the role alone is shown.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from firebreak.collection import module_utils
from firebreak.runner import FirebreakError

escalation = module_utils("escalation")
CONTACT_KEYS = ("name", "phone", "email", "backup")


class ContactsError(FirebreakError):
    """The contacts table cannot be read; the message names the file and the problem."""


def contacts_path() -> Path:
    explicit = os.environ.get("FIREBREAK_CONTACTS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "firebreak" / "contacts.yml"


def load_contacts(path: Path | None = None) -> dict[str, dict[str, str]]:
    """The contacts table ({} when there is none); ContactsError when it is malformed."""
    path = path or contacts_path()
    if not path.is_file():
        if os.environ.get("FIREBREAK_CONTACTS"):
            raise ContactsError(f"contacts table {path}: no such file (FIREBREAK_CONTACTS)")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContactsError(f"contacts table {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ContactsError(f"contacts table {path}: a mapping of role to contact, not {data!r}")
    out = {}
    for role, contact in data.items():
        if not isinstance(contact, dict) or not set(contact) <= set(CONTACT_KEYS):
            raise ContactsError(
                f"contacts table {path}: {role!r} must map to {', '.join(CONTACT_KEYS)}"
            )
        out[str(role)] = {k: str(v) for k, v in contact.items() if v is not None}
    return out


def who(role: str, contacts: dict[str, dict[str, str]]) -> str:
    contact = contacts.get(role)
    if not contact:
        return role
    parts = [contact.get(k) for k in ("name", "phone", "email") if contact.get(k)]
    backup = f"; backup {contact['backup']}" if contact.get("backup") else ""
    return f"{role} ({', '.join(parts)}{backup})"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def escalation_lines(
    record: dict[str, Any], contacts: dict[str, dict[str, str]], now: str | None = None
) -> list[str]:
    """One line per escalation of the record, with its state at ``now``."""
    now = now or _now()
    lines = []
    for item in record.get("escalation") or []:
        state = escalation.status_at(item, now)
        when = f"met {item['met_at'][11:16]}" if state == "met" else state
        lines.append(
            f"escalation {item['due'][11:16]} UTC  {when:<9} {who(item['to'], contacts)}: "
            f"{item['because']}"
        )
    return lines


class IncidentWatch:
    """Watches a run's incident record; ``on_task`` is chained into the run's task callback."""

    def __init__(
        self,
        out: TextIO,
        contacts: dict[str, dict[str, str]] | None = None,
        interval: float = 5.0,
        clock: Callable[[], str] = _now,
    ) -> None:
        self.out, self.contacts = out, contacts or {}
        self.interval, self.clock = interval, clock
        self.record_path: Path | None = None
        self.announced: set[str] = set()
        self.drafts: list[Path] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def on_task(self, task: Any) -> None:
        action, result = getattr(task, "action", "") or "", getattr(task, "result", None) or {}
        if action.endswith("incident_record") and result.get("path"):
            self.record_path = Path(result["path"])
            self.check()

    def check(self, now: str | None = None) -> None:
        """Announce what came due and write the update drafts due, once each."""
        if self.record_path is None or not self.record_path.is_file():
            return
        from firebreak.record import RecordError, load_document

        with self._lock:
            try:
                record = load_document(self.record_path)
            except (RecordError, OSError, ValueError):
                return  # being written: the next look reads it
            now = now or self.clock()
            self._announce(record, now)
            self._draft_updates(record, now)

    def _announce(self, record: dict[str, Any], now: str) -> None:
        for item in record.get("escalation") or []:
            key = f"{record.get('id')}:{item['id']}"
            if key in self.announced or escalation.status_at(item, now) != "overdue":
                continue
            self.announced.add(key)
            self.out.write(
                f"ESCALATE now ({item['due'][11:16]} UTC was due): "
                f"{who(item['to'], self.contacts)}: {item['because']}\n"
            )
            self.out.flush()

    def _draft_updates(self, record: dict[str, Any], now: str) -> None:
        if record.get("state") == "resolved" or not record.get("severity"):
            return
        cadence = escalation.updates(record["severity"], record.get("milestones") or {}, until=now)
        if not cadence:
            return
        from firebreak.comms import render
        from firebreak.record import load

        number = len(cadence["due"])  # the latest update due; earlier ones are not backfilled
        path = self.record_path.with_name(f"{self.record_path.stem}.update-{number}.md")
        if number == 0 or path.exists():
            return
        path.write_text(render(load(self.record_path), "update", "md"), encoding="utf-8")
        self.drafts.append(path)
        self.out.write(f"update #{number} due: draft {path} (send it: a person's step)\n")
        self.out.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def __enter__(self) -> IncidentWatch:
        self._thread = threading.Thread(target=self._loop, name="incident-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self.check()
