"""The lab's backend interface and the helpers every backend shares.

A backend runs the replicas of one lab in one *mode*:

* ``processes`` (:mod:`firebreak.lab.processes`): local processes on 127.0.<net>.<i>;
* ``containers`` (``firebreak.lab.containers``, written separately and imported lazily): podman
  containers booting systemd. It must provide ``ContainersBackend(lab_dir)`` implementing
  :class:`Backend`.

The state of a running lab lives in ``lab_dir()/state.json`` (``<state dir>/labs/default``
unless ``$FIREBREAK_LAB_DIR`` is set; see :mod:`firebreak.paths`: never in the source tree);
:func:`load_state` tells which backend owns it. :func:`known_labs` lists every lab of this
machine's state dir, and those kept elsewhere that registered themselves
(:func:`register_lab`), so that ``lab down --all`` finds them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.parse
from abc import ABC, abstractmethod
from pathlib import Path
from types import MappingProxyType

import yaml

from firebreak import paths
from firebreak.lab.node_fault import (  # noqa: F401 (re-exported to the backends)
    DEFAULT_CLOCK_SKEW_MS,
    DEFAULT_SLOW_COMMIT_MS,
    FAKETIME_LIB,
    NodeFaultError,
    faketime_env,
    positive_ms,
)

REPO = Path(__file__).resolve().parents[3]
MODES = ("processes", "containers")
FAULT_KINDS = (
    "kill",
    "stop",
    "pause",
    "partition",
    "corrupt",
    "disk-full",
    "clock-skew",
    "latency",
    "slow-commit",
    "viewchange-stuck",
    "heal",
)
SERVICE_NAME = "kimberlite-vsr"


def slow_commit_ms(arg) -> int:
    """The slow-commit fault's argument (ms per executed op; default DEFAULT_SLOW_COMMIT_MS)."""
    try:
        return positive_ms(arg, DEFAULT_SLOW_COMMIT_MS, "slow-commit")
    except NodeFaultError as exc:
        raise LabError(str(exc)) from exc


class LabError(RuntimeError):
    """A lab operation that cannot be done; the CLI prints it and exits non-zero."""


# Faults a replica holds in its memory, set through its admin API (a restart clears them):
# kind -> (the body that sets it from the fault's argument, the body that ends it, the key of
# the answer that says whether it was set).
MEMORY_FAULTS = MappingProxyType(
    {
        "slow-commit": (lambda arg: {"ms": slow_commit_ms(arg)}, {"ms": 0}, "was_ms"),
        "viewchange-stuck": (lambda arg: {"on": True}, {"on": False}, "was"),
    }
)


def memory_fault(api_url: str, kind: str, arg, replica: str, timeout: float = 5) -> dict:
    """Set the memory fault ``kind`` on the replica at ``api_url``; LabError names why not."""
    body = MEMORY_FAULTS[kind][0](arg)
    try:
        code, resp = http_json(f"{api_url}/admin/{kind}", "POST", body, timeout=timeout)
    except OSError as exc:
        raise LabError(f"{kind} on {replica}: {exc}") from exc
    if code != 200:
        raise LabError(f"{kind} on {replica}: {code} {resp}")
    return body


def end_memory_faults(api_url: str) -> list[str]:
    """End every memory fault of a running replica; the kinds it had."""
    ended = []
    for kind, (_set, off, was) in MEMORY_FAULTS.items():
        try:
            code, resp = http_json(f"{api_url}/admin/{kind}", "POST", off, timeout=2)
        except OSError:
            continue
        if code == 200 and resp.get(was):
            ended.append(kind)
    return ended


def lab_dir() -> Path:
    return Path(os.environ.get("FIREBREAK_LAB_DIR") or paths.labs_dir() / "default")


def _index_entry(d: Path) -> Path:
    key = hashlib.sha256(str(Path(d).resolve()).encode()).hexdigest()[:16]
    return paths.labs_dir() / ".index" / key


def register_lab(d: Path) -> None:
    """Make a lab kept outside ``<state dir>/labs`` findable by :func:`known_labs`."""
    d = Path(d).resolve()
    if d.parent == paths.labs_dir().resolve():
        return
    entry = _index_entry(d)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(d)
    tmp.replace(entry)


def unregister_lab(d: Path) -> None:
    _index_entry(d).unlink(missing_ok=True)


def known_labs() -> list[Path]:
    """Every lab directory that holds a lab (its state, or a workload), by name."""
    root = paths.labs_dir()
    found: dict[Path, None] = {}
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                found[child.resolve()] = None
        index = root / ".index"
        for entry in sorted(index.iterdir()) if index.is_dir() else ():
            target = entry.resolve()
            if target.is_dir():
                found[target] = None
            else:
                entry.unlink(missing_ok=True)  # its lab dir is gone
    return [d for d in found if state_path(d).exists() or (d / "workload" / "pid").exists()]


def state_path(d: Path | None = None) -> Path:
    return (d or lab_dir()) / "state.json"


def load_state(d: Path | None = None) -> dict | None:
    p = state_path(d)
    if not p.exists():
        return None
    return json.loads(p.read_text())


def save_state(state: dict, d: Path | None = None) -> None:
    p = state_path(d)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(p)


def replica_config(
    cluster: str,
    replicas: list[dict],
    name: str,
    data_dir: str,
    **extra,
) -> dict:
    """The JSON config of one replica (the keys ``firebreak.kimberlite.replica`` reads)."""
    cfg = {
        "cluster": cluster,
        "replica": name,
        "replicas": [
            {
                "name": r["name"],
                "host": r["host"],
                "api_port": r["api_port"],
                "metrics_port": r["metrics_port"],
            }
            for r in replicas
        ],
        "data_dir": data_dir,
        "checkpoint_interval": 100,
        "checkpoint_keep": 3,
        "scrub_interval_s": 5,
    }
    cfg.update(extra)
    return cfg


# The replica config keys `lab up` passes through (both modes; see firebreak.kimberlite.replica).
CONFIG_OPTS = (
    "checkpoint_interval",
    "checkpoint_keep",
    "scrub_interval_s",
    "hold_repair",
    "heartbeat_ms",
    "view_change_min_ms",
    "view_change_max_ms",
    "request_timeout_s",
)

# What `lab status` shows of each replica's /admin/status, in both modes.
STATUS_FIELDS = (
    "status",
    "status_name",
    "view",
    "op",
    "commit",
    "leader",
    "is_primary",
    "isolated",
    "corrupt_from",
    "repair_held",
    "checksum_failures",
    "clock_offset_ms",
    "slow_commit_ms",
    "viewchange_stuck",
    "member",
    "reconfig_state",
    "configuration",
    "peers",
)


def read_admin_status(api_url: str, row: dict) -> None:
    """Copy a replica's /admin/status fields into its status row; an error goes in row["error"]."""
    try:
        code, status = http_json(api_url + "/admin/status", timeout=1)
    except OSError as exc:
        row["error"] = str(exc)
        return
    if code == 200:
        row.update({k: status[k] for k in STATUS_FIELDS if k in status})


def with_options(cfg: dict, options: dict) -> dict:
    """A replica config ``cfg`` with its :data:`CONFIG_OPTS` keys replaced by ``options``: a key
    ``options`` leaves out goes back to :func:`replica_config`'s default (or away)."""
    defaults = replica_config("", [], "", "")
    out = {k: v for k, v in cfg.items() if k not in CONFIG_OPTS}
    out.update({k: defaults[k] for k in CONFIG_OPTS if k in defaults})
    out.update(options)
    return out


def config_options(options: dict | None) -> dict:
    """``options`` checked to be replica config keys of :data:`CONFIG_OPTS`; LabError if not."""
    unknown = sorted(set(options or {}) - set(CONFIG_OPTS))
    if unknown:
        raise LabError(f"not replica config keys: {', '.join(unknown)} (known: {CONFIG_OPTS})")
    return dict(options or {})


def unsettled(rows: dict[str, dict]) -> dict[str, str]:
    """Why each replica is not reset (pure; ``rows``: name -> its /admin/status fields, or
    ``error``): a reset lab has every replica Normal, in one view, with equal commit numbers,
    no slow-commit, no stuck view change, not isolated, no known corruption. ``{}`` when it is."""
    why: dict[str, str] = {}
    normal = {}
    for name, row in rows.items():
        if "error" in row or "status" not in row:
            why[name] = f"not answering ({row.get('error', 'no status')})"
        elif row["status"] != 0:
            why[name] = f"status {row.get('status_name', row['status'])}"
        else:
            normal[name] = row
    view = max((r["view"] for r in normal.values()), default=None)
    commit = max((r["commit"] for r in normal.values()), default=None)
    for name, row in normal.items():
        if row["view"] != view:
            why[name] = f"Normal in view {row['view']}, others in view {view}"
        elif row["commit"] != commit:
            why[name] = f"commit {row['commit']}, highest {commit}"
        elif row.get("slow_commit_ms"):
            why[name] = f"slow_commit_ms {row['slow_commit_ms']}"
        elif row.get("viewchange_stuck"):
            why[name] = "viewchange_stuck"
        elif row.get("isolated"):
            why[name] = "isolated"
        elif row.get("corrupt_from") is not None:
            why[name] = f"corrupt from op {row['corrupt_from']}"
    return why


def wait_settled(members: list[dict], timeout: float, error: type[LabError] = LabError) -> dict:
    """Until :func:`unsettled` finds nothing in the replicas' /admin/status (``members``: state
    entries with ``name`` and ``api_url``): ``{"normal": names, "view": V, "commit": C}``.
    After ``timeout`` s raises ``error`` naming each replica not reset and its status
    (``replica-2: status Recovering; ...``)."""
    if not members:
        raise error("the lab has no replicas")
    deadline = time.monotonic() + timeout
    while True:
        rows: dict[str, dict] = {}
        for m in members:
            rows[m["name"]] = {}
            read_admin_status(m["api_url"], rows[m["name"]])
        why = unsettled(rows)
        if not why:
            first = rows[members[0]["name"]]
            return {"normal": sorted(rows), "view": first["view"], "commit": first["commit"]}
        if time.monotonic() > deadline:
            raise error("; ".join(f"{name}: {w}" for name, w in sorted(why.items())))
        time.sleep(0.25)


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 2.0):
    """(status, json) for an HTTP call; raises OSError when the replica is unreachable."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw or b"{}")
        except ValueError:
            return resp.status, {"raw": raw.decode(errors="replace")}
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


# Seconds a runbook monitors the lab after a repair (production: the seed's 900).
LAB_MONITOR_SECONDS = 2


def write_inventory(state: dict, path: Path, connection: str = "local") -> Path:
    """Ansible YAML inventory: group ``kimberlite_vsr``, one host per replica."""
    hosts = {}
    for r in state["replicas"]:
        hv = {
            "vsr_replica_name": r["name"],
            "vsr_api_url": r["api_url"],
            "vsr_metrics_url": r["metrics_url"],
            "vsr_data_dir": r["data_dir"],
            "vsr_service_name": r.get("service", SERVICE_NAME),
            "vsr_lab_mode": state["mode"],
        }
        if r.get("node_metrics_url"):  # the node exporter beside the replica (disk, load)
            hv["node_metrics_url"] = r["node_metrics_url"]
        if connection == "local":
            hv["ansible_connection"] = "local"
            hv["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
        hv.update(r.get("host_vars", {}))
        hosts[r["name"]] = hv
    inv = {
        "all": {
            "children": {
                "kimberlite_vsr": {
                    "hosts": hosts,
                    "vars": {
                        "vsr_cluster": state["cluster"],
                        "vsr_lab_dir": str(path.parent),
                        # a lab: the runbooks' watch after a repair (seed 000: 15 minutes)
                        # is shortened, and the record says so
                        "firebreak_monitor_seconds": LAB_MONITOR_SECONDS,
                    },
                }
            }
        }
    }
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


class Backend(ABC):
    """What ``lab`` needs from a mode. ``target`` is a replica name, ``leader`` or ``backup``."""

    mode: str

    def __init__(self, lab_dir: Path) -> None:
        self.dir = Path(lab_dir)

    @abstractmethod
    def up(self, replicas: int = 3, **opts) -> dict:
        """Start a fresh lab; returns the saved state."""

    @abstractmethod
    def down(self) -> None:
        """Stop everything the lab started and undo host changes (mounts, loops)."""

    @abstractmethod
    def status(self) -> list[dict]:
        """One dict per replica: name, running, pid/container, and its /admin/status fields."""

    @abstractmethod
    def inventory(self) -> Path:
        """Write the Ansible inventory of the running lab and return its path."""

    @abstractmethod
    def fault(self, kind: str, target: str, arg: str | None = None) -> dict:
        """Inject a fault (see FAULT_KINDS); returns what was done."""

    @abstractmethod
    def heal(self) -> dict:
        """Undo what can be undone; restart killed/stopped replicas."""

    @abstractmethod
    def replica_pids(self) -> dict[str, int | None]:
        """Main pid of each replica (None when not running)."""

    def add_replica(self, name: str | None = None, **opts) -> dict:
        """Provision and start one more replica (empty data dir, not yet a member: it stays
        Recovering until ``reconfig("add", name)``). Returns its state entry (with ``host``,
        ``api_port``, ``metrics_port``, ``api_url``, ``metrics_url``)."""
        raise LabError(f"add_replica is not supported in {self.mode} mode")

    def reset(self, config_extra: dict | None = None, timeout: float = 90) -> dict:
        """Put the running lab back to a fresh start for the next test: its workload stopped and
        its history emptied, every fault healed, the replica config keys ``config_extra``
        (:data:`CONFIG_OPTS`; None: unchanged) applied where they differ (units restarted), then
        verified (:func:`wait_settled`). Returns the report ``normal``, ``view``, ``commit``,
        ``restarted``, ``config``, ``healed``, ``seconds``; LabError names what is not reset."""
        raise LabError(f"reset is not supported in {self.mode} mode")

    def reconfig(self, action: str, name: str, wait: float = 30.0) -> dict:
        """``add`` (provisioning the replica first when the lab does not have it) or ``remove``
        ``name`` through a member's ``/admin/reconfig``; then wait for the stable configuration
        (``reconfig_state`` 0 with the change in it) on that member."""
        if action not in ("add", "remove"):
            raise LabError("reconfig action must be add or remove")
        st = self.state()
        names = [r["name"] for r in st["replicas"]]
        body: dict = {"action": action, "replica": name}
        if action == "add":
            m = next((r for r in st["replicas"] if r["name"] == name), None)
            if m is None:
                m = self.add_replica(name)
                st = self.state()
            body["address"] = {
                "host": m["host"],
                "api_port": int(m["api_port"]),
                "metrics_port": int(m["metrics_port"]),
            }
        elif name not in names:
            raise LabError(f"unknown replica {name!r} (have {names})")
        via = self._reconfig_via(st, exclude=name)
        code, resp = http_json(via["api_url"] + "/admin/reconfig", "POST", body, timeout=45)
        if code != 200:
            raise LabError(f"reconfig {action} {name} via {via['name']}: {code} {resp}")
        out = {"action": action, "replica": name, "via": via["name"], "joint": resp}
        deadline = time.monotonic() + wait
        last: dict = {}
        while time.monotonic() < deadline:
            try:
                code, last = http_json(via["api_url"] + "/admin/status", timeout=2)
            except OSError:
                code = 0
            stable = code == 200 and last.get("reconfig_state") == 0
            if stable and (name in last.get("configuration", [])) == (action == "add"):
                out["stable"] = last["configuration"]
                return out
            time.sleep(0.05)
        raise LabError(f"reconfig {action} {name}: not stable after {wait}s (last {last})")

    def _reconfig_via(self, st: dict, exclude: str) -> dict:
        """A running member in normal status (the leader if it answers), not ``exclude``."""
        best = None
        for r in st["replicas"]:
            if r["name"] == exclude:
                continue
            try:
                code, s = http_json(r["api_url"] + "/admin/status", timeout=1.0)
            except OSError:
                continue
            if code != 200 or s.get("status") != 0 or not s.get("member", True):
                continue
            if s.get("is_primary"):
                return r
            best = best or r
        if best is None:
            raise LabError("no member in normal status answers; cannot reconfigure")
        return best

    # shared helpers ---------------------------------------------------------
    def state(self) -> dict:
        st = load_state(self.dir)
        if st is None:
            raise LabError(f"no lab is running (no {state_path(self.dir)}); run `lab up` first")
        return st

    def resolve(self, target: str) -> str:
        """Map ``leader`` / ``backup`` / a name to a replica name, asking the live replicas."""
        st = self.state()
        names = [r["name"] for r in st["replicas"]]
        if target in names:
            return target
        if target not in ("leader", "backup"):
            raise LabError(f"unknown replica {target!r} (have {names}, leader, backup)")
        views = {}
        for r in st["replicas"]:
            try:
                code, s = http_json(r["api_url"] + "/admin/status", timeout=1.0)
            except OSError:
                continue
            if code == 200 and s.get("status") == 0 and s.get("member", True):
                views.setdefault(s["view"], []).append(s)
        if not views:
            raise LabError("no replica in normal status answers; cannot find the leader")
        v = max(views)
        leader = views[v][0]["leader"]
        if target == "leader":
            return leader
        backups = [s["replica"] for s in views[v] if s["replica"] != leader]
        if not backups:
            raise LabError("no backup in normal status answers")
        return sorted(backups)[-1]
