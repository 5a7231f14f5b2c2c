# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remediation lock: one implementation, shared by the ``remediation_lock`` module and the
``firebreak lock`` command (which loads this file by path, like the record's chain).

A lock is the directory ``<lock dir>/<cluster>.lock/`` holding ``owner.json``. It is created
whole: the owner file is written in a private temp dir that is then renamed into place, so a
lock never exists without its holder. Every change to a lock (take, take over, release) runs
under ``flock`` on ``<lock dir>/.<cluster>.guard``, which the kernel drops when its process
dies: of two runs taking over the same stale lock, one wins and the other sees the winner.

A lock is stale only when its holder is gone: on this host, its ``ansible-playbook`` is not
alive (a pid whose start time differs is another process) and no process carries the run's
marker; on another host (or a lock without an owner file), when it is older than
``stale_after`` seconds. Standard library only (it runs inside the module on the controller).
"""

from __future__ import absolute_import, division, print_function

import fcntl
import getpass
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid

__metaclass__ = type

OWNER_FILE = "owner.json"
# The roles' default firebreak_lock_dir: shared by every operator of the controller.
DEFAULT_LOCK_DIR = "/var/tmp/firebreak/locks"  # noqa: S108 created 0700, checked by flock
RUN_MARKER_ENV = "FIREBREAK_RUN_ID"  # every process of a `firebreak run` carries it
WRAPPER_PID_ENV = "FIREBREAK_WRAPPER_PID"  # the `firebreak` wrapper's pid, set by the runner


class LockError(Exception):
    """Bad input or a lock that cannot be handled; the message names what is wrong."""


class LockHeld(LockError):
    """The lock is held by a holder that is not gone (or not stale, or not to be broken)."""

    def __init__(self, message, holder, status):
        LockError.__init__(self, message)
        self.holder = holder
        self.status = status


def lock_path(lock_dir, cluster):
    if not cluster or not str(cluster).strip():
        raise LockError("the lock needs a cluster name")
    return os.path.join(lock_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", str(cluster)) + ".lock")


def process_start(pid):
    """The start time (clock ticks since boot) of process `pid`, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % int(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError, TypeError):
        return None
    return None if fields[0] == "Z" else fields[19]


def processes_with_env(name, value, exclude=()):
    """PIDs of live processes whose environment holds ``name=value`` (own processes only)."""
    needle = ("%s=%s" % (name, value)).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in environ.split(b"\0") and process_start(entry) is not None:
            found.append(int(entry))
    return found


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def _parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def controller_processes(environ=None):
    """Who runs this code: ``pid`` / ``pid_start``, the ``ansible-playbook`` (the topmost of
    its ancestors running it: its workers are forks with the same command line) and its start
    time, or None outside a playbook; ``wrapper_pid``, the ``firebreak`` wrapper that started
    it (for the operator: a wrapper outlives its runs, so it is not a sign of life)."""
    environ = os.environ if environ is None else environ
    playbook, pid = None, os.getppid()
    while pid > 1:
        if any(arg.endswith(b"ansible-playbook") for arg in _cmdline(pid)[:2]):
            playbook = pid
        elif playbook is not None:
            break
        pid = _parent(pid)
    wrapper = environ.get(WRAPPER_PID_ENV, "")
    return {
        "pid": playbook,
        "pid_start": process_start(playbook) if playbook else None,
        "wrapper_pid": int(wrapper) if wrapper.isdigit() else None,
    }


def new_owner(
    cluster,
    run_id,
    incident_id=None,
    incident_dir=None,
    purpose=None,
    user=None,
    processes=None,
    now=None,
):
    """The owner file's content: ``processes`` defaults to ``controller_processes()``."""
    now = time.time() if now is None else now
    owner = {
        "cluster": cluster,
        "run_id": run_id,
        "incident_id": incident_id or None,
        "incident_dir": incident_dir or None,
        "purpose": purpose or None,
        "owner": user or _user(),
        "host": socket.gethostname(),
        "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + ".%06dZ" % int((now % 1) * 1e6),
        "acquired_epoch": now,
    }
    owner.update(controller_processes() if processes is None else processes)
    return owner


def _user():
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid
        return str(os.getuid())


def read_owner(path):
    """The owner record of the lock at `path`: a dict, None when the lock has no (readable)
    owner file; LockError when there is no lock."""
    if not os.path.isdir(path):
        raise LockError("no lock at %s" % path)
    try:
        with open(os.path.join(path, OWNER_FILE), "rb") as handle:
            owner = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def holder_status(path, owner, stale_after, now=None):
    """(status, why): status ``alive`` (the holder lives, or may: not stale yet) or ``gone``."""
    stale_after = check_stale_after(stale_after)
    now = time.time() if now is None else now
    if owner is None:
        age = now - os.stat(path).st_mtime
        if age > stale_after:
            return "gone", "no owner file, %d s old (stale after %d s)" % (age, stale_after)
        return "alive", "no owner file yet, %d s old (stale after %d s)" % (age, stale_after)
    if owner.get("host") == socket.gethostname():
        pid, start = owner.get("pid"), owner.get("pid_start")
        live = [pid] if pid and start and process_start(pid) == start else []
        if owner.get("run_id"):
            live += processes_with_env(RUN_MARKER_ENV, owner["run_id"], [os.getpid(), *live])
        if live:
            return "alive", "holder alive on this host (pid %s)" % ", ".join(map(str, live))
        return "gone", "holder gone (no process of run %s is alive on this host)" % owner.get(
            "run_id"
        )
    age = now - float(owner.get("acquired_epoch") or 0)
    if age > stale_after:
        return "gone", "held from host %s, %d s old (stale after %d s)" % (
            owner.get("host"),
            age,
            stale_after,
        )
    return (
        "alive",
        "held from host %s, %d s old: liveness cannot be checked from here "
        "(stale after %d s)" % (owner.get("host"), age, stale_after),
    )


def check_stale_after(value):
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise LockError(
            "stale_after must be a whole number of seconds, got %r" % (value,)
        ) from None
    if seconds <= 0:
        raise LockError(
            "stale_after must be > 0 (got %r): it only applies to holders whose liveness "
            "cannot be checked; to break a live lock use the explicit override" % (value,)
        )
    return seconds


class _Guard:
    """flock on ``<lock dir>/.<name>.guard``: every change to one lock runs under it."""

    def __init__(self, path):
        directory, name = os.path.split(path)
        self.path = os.path.join(directory, "." + name[: -len(".lock")] + ".guard")
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # drops the flock


def _set_aside(path, why):
    """Rename the lock aside (kept for inspection), then remove it; returns the aside path."""
    aside = "%s.%s-%s" % (path, why, uuid.uuid4().hex[:12])
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
    return aside


def _place(path, owner):
    """Create the lock whole: owner file in a private temp dir, renamed into place."""
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".new-", dir=os.path.dirname(path))
    try:
        fd = os.open(os.path.join(tmp, OWNER_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(owner, indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)  # the caller checked, under the guard, that `path` is free
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def acquire(lock_dir, owner, stale_after, break_stale=False, override=None, now=None):
    """Take the lock of ``owner['cluster']`` for ``owner``; returns a dict:
    ``path``, ``owner``, ``broken`` (the previous holder when one was set aside, else None),
    ``broken_status`` / ``broken_why`` and ``override`` (the reason when a live lock was
    broken on the operator's explicit, confirmed override). LockHeld when refused."""
    stale_after = check_stale_after(stale_after)
    path = lock_path(lock_dir, owner.get("cluster"))
    if not os.path.isdir(lock_dir):
        os.makedirs(lock_dir, 0o700)
    result = {
        "path": path,
        "owner": owner,
        "broken": None,
        "broken_status": None,
        "broken_why": None,
        "override": None,
    }
    with _Guard(path):
        if os.path.lexists(path):
            previous = read_owner(path)
            status, why = holder_status(path, previous, stale_after, now)
            if status == "alive" and not override:
                raise LockHeld("held: %s" % why, previous, status)
            if status == "gone" and not break_stale and not override:
                raise LockHeld(
                    "stale: %s; release it with `firebreak lock release`, or take "
                    "it over with remediation_lock_break_stale" % why,
                    previous,
                    status,
                )
            _set_aside(path, "broken")
            result.update(
                broken=previous or {},
                broken_status=status,
                broken_why=why,
                override=override if status == "alive" else None,
            )
        _place(path, owner)
    return result


def release(lock_dir, cluster, run_id):
    """Remove the lock when ``run_id`` holds it; returns True when removed."""
    path = lock_path(lock_dir, cluster)
    with _Guard(path):
        if not os.path.isdir(path):
            return False
        owner = read_owner(path)
        if owner is None or owner.get("run_id") != run_id:
            return False
        _set_aside(path, "released")
        return True


def release_gone(path, stale_after):
    """The operator's release of a lock whose holder is gone: returns (the owner record, or {}
    without an owner file; why the holder counts as gone); LockHeld while it is alive."""
    if not path.endswith(".lock"):
        raise LockError("%s is not a lock (<lock dir>/<cluster>.lock)" % path)
    if not os.path.isdir(path):
        raise LockError("no lock at %s" % path)
    with _Guard(path):
        owner = read_owner(path)
        status, why = holder_status(path, owner, stale_after)
        if status != "gone":
            raise LockHeld("refused: %s" % why, owner, status)
        _set_aside(path, "released")
    return owner or {}, why
