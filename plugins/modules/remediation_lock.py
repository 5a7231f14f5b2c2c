#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediation_lock
short_description: Take or release a cluster's remediation lock on the controller
version_added: "0.2.0"
description:
  - "One remediation at a time per cluster: the lock is the directory
    C(<lock_dir>/<cluster>.lock/) with C(owner.json) inside (run id, incident id, controller
    host, the pid of C(ansible-playbook) with its start time, the pid of the C(firebreak)
    wrapper, user, time)."
  - The lock is created whole (owner file written in a temp dir renamed into place), and
    every change to it runs under C(flock) on C(<lock_dir>/.<cluster>.guard), so of two runs
    taking over one stale lock exactly one wins.
  - "A held lock is stale only when its holder is gone: on this host, its C(ansible-playbook)
    is not alive (same pid and start time) and no process carries its run's marker; from
    another host, or without an owner file, after O(stale_after) seconds. A stale lock is
    taken over only with O(break_stale)."
  - A live lock is broken only with O(override) (the reason) and O(override_confirm=true).
  - "Meant to run on the controller (C(delegate_to: localhost), C(run_once: true)), as the
    C(firebreak.incident.remediation_lock) role does."
author:
  - Firebreak maintainers (@firebreak)
attributes:
  check_mode:
    description: >-
      Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: In check mode the lock is only read; the result says whether a real run would take it.
  diff_mode:
    description: Will return details on what has changed.
    support: none
options:
  state:
    description: C(acquired) takes the lock, C(released) removes it when O(run_id) holds it.
    type: str
    choices: [acquired, released]
    default: acquired
  lock_dir:
    description: Directory of the locks on the controller (created 0700 when missing).
    type: path
    required: true
  cluster:
    description: The cluster the lock is for.
    type: str
    required: true
  run_id:
    description: Id of the run taking (or releasing) the lock.
    type: str
    required: true
  incident_id:
    description: The incident the run works on, named in the owner file.
    type: str
  incident_dir:
    description: Directory of that incident's record, so that a release can be recorded.
    type: path
  purpose:
    description: What the run does, shown to a refused run.
    type: str
  owner:
    description: Who takes the lock (default the controller user).
    type: str
  stale_after:
    description: >-
      Seconds after which a lock whose holder's liveness cannot be checked (held from another
      host, or without an owner file) counts as stale; > 0. A holder on this host is stale only
      when it is gone.
    type: int
    default: 3600
  break_stale:
    description: Take over a stale lock (its holder gone) instead of refusing.
    type: bool
    default: false
  override:
    description: >-
      The operator's reason to break a lock whose holder may be alive (recorded by the role);
      needs O(override_confirm).
    type: str
  override_confirm:
    description: Confirms O(override).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Lock | take the cluster's remediation lock
  firebreak.incident.remediation_lock:
    lock_dir: /var/tmp/firebreak/locks
    cluster: prod-east
    run_id: "{{ firebreak_run_id }}"
    incident_id: INC-20260205-001
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
lock:
  description: The lock directory (named so, not C(path), which makes Ansible add file attributes).
  returned: always
  type: str
acquired:
  description: Whether this call took the lock (state=acquired).
  returned: always
  type: bool
released:
  description: Whether this call removed the lock (state=released).
  returned: always
  type: bool
holder:
  description: The owner record this call wrote (acquired).
  returned: always
  type: dict
broken:
  description: >-
    The previous holder set aside (a stale lock taken over, or a live one overridden), else null.
  returned: always
  type: dict
broken_why:
  description: Why the previous holder counted as gone (or was alive, on an override).
  returned: always
  type: str
override:
  description: The override's reason when a live lock was broken with it, else null.
  returned: always
  type: str
held_by:
  description: The holder of a held lock (C(holder)) and why it is not broken (C(status), C(why)).
  returned: on refusal, and in check mode when the lock is held
  type: dict
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.firebreak.incident.plugins.module_utils import (  # noqa: E402
    remediation_lock as lock,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["acquired", "released"], default="acquired"),
            lock_dir=dict(type="path", required=True),
            cluster=dict(type="str", required=True),
            run_id=dict(type="str", required=True),
            incident_id=dict(type="str"),
            incident_dir=dict(type="path"),
            purpose=dict(type="str"),
            owner=dict(type="str"),
            stale_after=dict(type="int", default=3600),
            break_stale=dict(type="bool", default=False),
            override=dict(type="str"),
            override_confirm=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    out = dict(
        changed=False,
        acquired=False,
        released=False,
        holder={},
        broken=None,
        broken_why=None,
        override=None,
    )
    try:
        out["lock"] = path = lock.lock_path(p["lock_dir"], p["cluster"])
        if p["state"] == "released":
            if module.check_mode:
                module.exit_json(**out)
            released = lock.release(p["lock_dir"], p["cluster"], p["run_id"])
            out.update(released=released, changed=released)
            module.exit_json(**out)
        lock.check_stale_after(p["stale_after"])
        if p["override"] and not p["override_confirm"]:
            raise lock.LockError("override %r needs override_confirm=true" % p["override"])
        if module.check_mode:
            if os.path.lexists(path):
                owner = lock.read_owner(path)
                status, why = lock.holder_status(path, owner, p["stale_after"])
                out["held_by"] = dict(holder=owner, status=status, why=why)
            module.exit_json(**out)
        owner = lock.new_owner(
            p["cluster"], p["run_id"], p["incident_id"], p["incident_dir"], p["purpose"], p["owner"]
        )
        taken = lock.acquire(
            p["lock_dir"],
            owner,
            p["stale_after"],
            p["break_stale"],
            p["override"] if p["override_confirm"] else None,
        )
    except lock.LockHeld as exc:
        out["held_by"] = dict(holder=exc.holder, status=exc.status, why=str(exc))
        module.fail_json(msg="remediation lock %s: %s" % (p["cluster"], exc), **out)
    except (lock.LockError, OSError) as exc:
        module.fail_json(msg="remediation lock %s: %s" % (p["cluster"], exc), **out)
    out.update(
        changed=True,
        acquired=True,
        holder=taken["owner"],
        broken=taken["broken"],
        broken_why=taken["broken_why"],
        override=taken["override"],
    )
    module.exit_json(**out)


if __name__ == "__main__":
    main()
