#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: incident_record
short_description: Append a run's events and evidence to a hash-chained incident record
version_added: "0.1.0"
description:
  - Creates or continues the incident record C(<incident_dir>/<incident_id>.json), one JSON
    document per incident (format in docs/record.md of the collection).
  - Every timeline entry carries the SHA-256 of the previous entry's canonical JSON (the first
    one a fixed genesis hash), so any later edit, deletion or reordering is detected by
    C(firebreak record verify).
  - Runs with the same incident id continue the same chain; a record whose chain does not
    verify is never appended to.
  - "Meant to run on the controller (C(delegate_to: localhost), C(run_once: true)), as the
    C(firebreak.incident.incident_record) role does."
author:
  - Firebreak maintainers (@firebreak)
attributes:
  check_mode:
    description: >-
      Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: >-
      In check mode the entries are computed and returned (C(appended), C(path), C(created) and
      C(changed) say what a real run would do); nothing is written: no directory, no lock file,
      no record.
  diff_mode:
    description: >-
      Will return details on what has changed (or possibly needs changing in check_mode),
      when in diff mode.
    support: none
options:
  incident_dir:
    description: Directory holding the incident records (created when missing; not in check mode).
    type: path
    required: true
  incident_id:
    description: The incident id; the record file is C(<incident_id>.json).
    type: str
    required: true
  cluster:
    description: Cluster name; must match the record's when the record exists.
    type: str
    default: unknown
  failure_mode:
    description:
      - Suspected failure mode (e.g. C(fm003_corruption)); chained as a C(classification) entry
        when it changes.
      - The seed's steps for this failure mode that only a person can take (the failure-mode
        registry's C(person) steps) are chained once each as C(task) entries (C(target) the
        owner role, C(outcome) V(open), C(detail.text) the seed's wording); the comms and the
        post-mortem list them.
    type: str
  severity:
    description: Severity; chained as a C(severity) entry when it changes.
    type: str
    choices: [SEV1, SEV2, SEV3, SEV4]
  state:
    description: Incident state at the end of this run; chained as a C(state) entry when it
      changes. Appended after the events.
    type: str
    choices: [detected, acknowledged, investigating, mitigating, mitigated, resolved, escalated]
  fault_started_at:
    description: When the fault began, when known (a rehearsal's injection time); UTC
      ISO-8601. Recorded once; MTTD is measured from it.
    type: str
  run_id:
    description: Id of the run, stamped on every entry it adds.
    type: str
  events:
    description:
      - "Timeline events by host, C({host: [event, ...]}); usually the hosts'
        C(firebreak_record_events) facts."
      - An event has the keys C(type), C(at), C(phase), C(host), C(action), C(target),
        C(decision), C(outcome), C(detail), C(run_id); only C(type) is required
        (default C(action)). Identical events on several hosts are recorded once.
      - An event or evidence item with its own C(at) that is already in the record (same
        content, time and run id; the host aside) is not appended again, so a step can append
        its events right after it acts and the record phase append the whole run at the end.
    type: dict
    default: {}
  evidence:
    description:
      - "Evidence items by host, C({host: [item, ...]}); usually the hosts'
        C(firebreak_record_evidence) facts."
      - An item has the keys C(kind) (metric_snapshot, log_excerpt, file_hash, command_output,
        other), C(phase), C(host), C(target), C(at), C(summary), C(data).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Record | append this run to the incident record
  firebreak.incident.incident_record:
    incident_dir: /var/lib/firebreak/incidents
    incident_id: INC-20260205-001
    cluster: prod-east
    failure_mode: fm003_corruption
    severity: SEV1
    state: mitigated
    events:
      replica-2:
        - type: action
          phase: act
          action: replica_stop
          target: replica-2
          outcome: stopped
          at: "2026-02-05T14:40:00.123456Z"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: The record file.
  returned: always
  type: str
created:
  description: Whether this run created the record.
  returned: always
  type: bool
appended:
  description: The timeline entries this run added, chained (seq, prev_hash, hash).
  returned: always
  type: list
  elements: dict
head:
  description: SHA-256 of the last entry after the append.
  returned: always
  type: str
incident_state:
  description: State of the incident after the append.
  returned: always
  type: str
severity:
  description: Severity after the append.
  returned: always
  type: str
milestones:
  description: fault_started, detected, acknowledged, mitigated, resolved (UTC ISO-8601 or null).
  returned: always
  type: dict
metrics:
  description: mttd_seconds and mttr_seconds (null until both ends are known).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    failure_modes,
)
from ansible_collections.firebreak.incident.plugins.module_utils.incident_record import (  # noqa: E402
    RecordError,
    append_to_file,
    record_path,
)


def _tasks_for_people(failure_mode):
    """The registry's steps for a person of ``failure_mode`` (none for an unknown name)."""
    try:
        entry = failure_modes.get(failure_mode)
    except failure_modes.UnknownFailureMode:
        return []
    return failure_modes.tasks_for_people(entry["id"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            incident_dir=dict(type="path", required=True),
            incident_id=dict(type="str", required=True),
            cluster=dict(type="str", default="unknown"),
            failure_mode=dict(type="str"),
            severity=dict(type="str", choices=["SEV1", "SEV2", "SEV3", "SEV4"]),
            state=dict(
                type="str",
                choices=[
                    "detected",
                    "acknowledged",
                    "investigating",
                    "mitigating",
                    "mitigated",
                    "resolved",
                    "escalated",
                ],
            ),
            fault_started_at=dict(type="str"),
            run_id=dict(type="str"),
            events=dict(type="dict", default={}),
            evidence=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        path = record_path(p["incident_dir"], p["incident_id"])
        record, added, created = append_to_file(
            path,
            p["incident_id"],
            p["cluster"],
            write=not module.check_mode,
            events_by_host=_lists(p["events"], "events"),
            evidence_by_host=_lists(p["evidence"], "evidence"),
            severity=p["severity"],
            failure_mode=p["failure_mode"] or None,
            state=p["state"],
            fault_started_at=p["fault_started_at"] or None,
            run_id=p["run_id"] or None,
            tasks=_tasks_for_people(p["failure_mode"]) if p["failure_mode"] else [],
        )
    except RecordError as exc:
        module.fail_json(msg="incident record %s: %s" % (p["incident_id"], exc))
    module.exit_json(
        changed=bool(added) or created,
        path=path,
        created=created,
        appended=added,
        head=record["chain"]["head"],
        incident_state=record["state"],
        severity=record["severity"],
        milestones=record["milestones"],
        metrics=record["metrics"],
    )


def _lists(by_host, what):
    out = {}
    for host, items in (by_host or {}).items():
        if items in (None, ""):
            continue
        if not isinstance(items, list):
            raise_msg = "%s for host %s must be a list, got %s" % (what, host, type(items).__name__)
            raise RecordError(raise_msg)
        out[host] = items
    return out


if __name__ == "__main__":
    main()
