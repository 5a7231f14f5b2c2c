"""The lab's ``containers`` mode: each replica is a podman container booting systemd.

Layout (what an operator of the seed's runbooks sees):

- podman network ``firebreak-lab`` (DNS between containers: replicas address each other, and
  the smoke test addresses ``replica-1``, by name);
- containers ``<prefix>replica-1..N`` (hostname and network alias ``replica-i``) from
  ``localhost/firebreak-lab:<hash>`` (:mod:`firebreak.lab.image`), started with
  ``--systemd=always`` and ``--cap-add NET_ADMIN`` (nftables partitions inside the container),
  labelled ``firebreak.lab=1``;
- in each: ``kimberlite-vsr.service`` (``Restart=no``: a killed replica stays down until the
  operator starts it, as the FM-005 runbook expects), ``journalctl -u kimberlite-vsr``,
  ``/usr/local/bin/kimberlite-admin``, the config ``/etc/kimberlite/replica.json`` and the data
  dir ``/var/lib/kimberlite``;
- the firebreak source: the checkout's ``python/`` bind-mounted read-only at
  ``/opt/firebreak/python`` (code changes need no image rebuild, only a unit restart);
- the data dir: a loop-mounted ext4 image on the host (``<lab>/containers/disks/replica-i.img``
  mounted on ``<lab>/containers/mnt/replica-i``), bind-mounted into the container, so that the
  ``disk-full`` fault fills a real filesystem and never the machine's own disk;
- host access, loopback only: replica *i*'s API is published on ``127.0.<net>.<i>:8080``, its
  metrics on ``127.0.<net>.<i>:9090`` and its node exporter (``node-exporter.service``, the
  container's disk and load, running apart from the replica) on ``127.0.<net>.<i>:9100``
  (``net`` defaults to 30; the processes mode uses 20).
  The Ansible inventory carries these host-reachable URLs (``vsr_api_url``,
  ``vsr_metrics_url`` = the metrics port's base URL, as in processes mode, ``node_metrics_url``)
  and
  ``ansible_connection: containers.podman.podman`` with ``ansible_host`` = the container.

Entry points: ``firebreak lab up --mode containers`` (through :class:`ContainersBackend`, the
:class:`firebreak.lab.backend.Backend` of this mode) or :class:`ContainerLab` directly (tests).

State: ``<lab>/state.json`` in the layout the processes mode shares (``mode``, ``cluster``,
``replicas`` with ``api_url``/``metrics_url``/``data_dir``, ``faults``) plus this mode's keys
(``network``, ``prefix``, ``lab_id``, ``image``, ``initial_members``, ``decommissioned``,
``replica_opts``); ``<lab>/inventory.yml``; and
``<lab>/containers/``: per replica ``etc/replica.json`` (bind-mounted at ``/etc/kimberlite``),
disk images and mount points. The lab dir is ``$FIREBREAK_LAB_DIR``, default ``<repo>/.lab``.
``down`` removes exactly what ``up`` created (containers and network carry the labels
``firebreak.lab=1`` and ``firebreak.lab.id=<id of this lab>``), and is idempotent.

Faults (``fault(kind, replica, arg)``), all real:

============ =======================================================================
kill         ``systemctl kill -s SIGKILL kimberlite-vsr`` (unit ends ``failed``; stays down)
stop         ``systemctl stop kimberlite-vsr``
pause        ``systemctl kill -s SIGSTOP kimberlite-vsr`` (heal sends SIGCONT)
partition    nftables table ``firebreak_partition`` in the replica's container dropping tcp
             8080 to and from the other replicas (``arg``: comma-separated peers, default
             all); the host's port-forwarded access stays open
corrupt      flips bits inside a committed log entry (``arg``: op, default a middle committed
             one) on the bind-mounted data dir with
             :func:`firebreak.kimberlite.storage.corrupt_entry`;
             ``arg`` ``unrepairable`` garbles ``meta.json`` too (the replica refuses to boot)
disk-full    fills the loop-mounted filesystem with ``.firebreak-fill``; ``arg`` ``old-logs``
             fills it with rotated log segments ``log.old.<first>-<last>`` instead (copies
             of the log's records, all covered by the latest checkpoint: a failed log
             cleanup; ``kimberlite-admin cleanup`` frees them). Heal removes both
clock-skew   ``arg`` ``MS[:HOW]``: on the node (``node_fault``), the time-sync daemon
             (``kimberlite-timesync``) stopped (``HOW`` default), cut from its sources
             (``unreachable``) or left running (``running``), its offset set to MS, and a
             systemd drop-in runs the unit under libfaketime reading that offset
             (``FAKETIME_TIMESTAMP_FILE``), then the unit restarts; heal removes the
             drop-in, restarts the unit and resets and starts the daemon
latency      ``arg`` ms: the replica delays its outbound protocol sends (``latency_ms`` in
             its control file ``<data_dir>/control.json``, as ``/admin/latency`` sets it;
             netem is not available on this kernel); heal sets it back to 0
slow-commit  ``arg`` ms (default 200): the backup executes at most one committed op per ``arg``
             ms while it keeps acknowledging prepares (``POST /admin/slow-commit``, held in the
             replica's memory): its commit number falls behind (FM-006). A restart of the unit
             (``systemctl restart kimberlite-vsr``) or heal clears it
============ =======================================================================

``heal()`` undoes every fault above except ``corrupt`` (that one is the replica's to repair)
and starts units that are not active.
``reset(config_extra)`` is what a lab shared by tests does between them: the workload stopped
and its history emptied, ``heal()``, the replica config options applied where they changed
(units restarted), then verified: every replica Normal, in one view, with equal commits (and
no slow commit, none isolated, no known corruption). It does not rejoin an isolated replica nor
repair a corrupted one (a runbook's business): the verification names them instead.

Reconfiguration (the seed's "Replace Failed Replica"; ``lab reconfig add|remove``):

- ``add_replica(name)`` (``ContainersBackend.add_replica``, called by ``lab reconfig add NAME``
  when the lab does not have NAME yet) provisions ``replica-k`` as the others: its own data disk,
  a config listing every replica the lab knows plus itself with ``members`` = the cluster's
  initial members (as the processes mode), container ``<prefix>replica-k`` on the lab network
  (alias ``replica-k``) with ``127.0.<net>.k:8080/9090`` published; it waits for the unit to be
  active and ``/health`` to answer, records it in the state and rewrites the inventory (group
  ``kimberlite_vsr``). The replica stays Recovering, not a member, until it is added
  (``kimberlite-admin reconfig add replica-k --address replica-k:8080:9090``).
- **A removed replica is decommissioned, not left running** (unlike the processes mode, where it
  keeps running as a non-member): ``lab reconfig remove NAME`` waits for the Stable
  configuration without NAME and then ``decommission(NAME)`` stops and disables its unit, saves
  its journal to ``<lab>/containers/NAME/journal.txt`` and stops its container; NAME moves from
  ``replicas`` to ``decommissioned`` in the state, so the inventory, ``status``, ``heal`` and new
  workloads no longer see it. Its container (stopped) and its data disk (still loop-mounted on
  the host) are kept as evidence until ``lab down``, which removes them with the rest. When NAME
  was removed by hand (``kimberlite-admin reconfig remove`` in a container) ``lab reconfig
  remove NAME`` only decommissions it; ``decommission`` refuses while a member's committed
  configuration is joint or still includes NAME. A decommissioned name cannot be re-added in
  the same lab (its container still exists): add the next number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import MappingProxyType
from typing import Any

from firebreak.collection import module_utils
from firebreak.kimberlite import storage
from firebreak.lab import backend as _backend
from firebreak.lab import image as lab_image
from firebreak.lab import node_fault, workload
from firebreak.lab.backend import (
    CONFIG_OPTS,
    REPO,
    SERVICE_NAME,
    Backend,
    LabError,
    config_options,
    end_memory_faults,
    http_json,
    lab_dir,
    memory_fault,
    read_admin_status,
    replica_config,
    wait_settled,
    write_inventory,
)

_prometheus_text = module_utils("prometheus_text")

LABEL = "firebreak.lab"
UNIT = SERVICE_NAME  # kimberlite-vsr
API_PORT = 8080
METRICS_PORT = 9090
NODE_PORT = 9100
NODE_UNIT = "node-exporter"
DATA_DIR = "/var/lib/kimberlite"
CONFIG_PATH = "/etc/kimberlite/replica.json"
SOURCE_MOUNT = "/opt/firebreak/python"
CLOCK_DROPIN = node_fault.CLOCK_DROPIN
TIMESYNC_UNIT = node_fault.TIMESYNC_UNIT
NFT_TABLE = "firebreak_partition"
FILL_FILE = node_fault.FILL_FILE
FAULT_KINDS = tuple(k for k in _backend.FAULT_KINDS if k != "heal")
REPO_ROOT = REPO


class ContainerLabError(LabError):
    """The containers-mode lab could not do what was asked."""


DEFAULT_NET = 30  # processes mode defaults to 20
#: Replica config keys that ``up(**opts)`` passes through (as the processes mode does).


def default_lab_dir() -> Path:
    return lab_dir()


def _lab_id(lab_dir: Path, prefix: str, network: str) -> str:
    return hashlib.sha256(f"{lab_dir.resolve()}|{prefix}|{network}".encode()).hexdigest()[:12]


def _run(argv: list[str], check: bool = False, timeout: float = 120, **kw) -> Any:
    res = subprocess.run(argv, check=False, text=True, capture_output=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise ContainerLabError(
            f"{' '.join(argv)} failed ({res.returncode}): {(res.stderr or res.stdout).strip()}"
        )
    return res


def _number(replica: str) -> int:
    """k of ``replica-k`` (the last octet of its host address)."""
    try:
        k = int(replica.rsplit("-", 1)[1])
    except (IndexError, ValueError) as exc:
        raise ContainerLabError(f"replica names are replica-<k> here, not {replica!r}") from exc
    if not 1 <= k <= 254:
        raise ContainerLabError(f"no loopback address for {replica}")
    return k


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return resp.status, resp.read().decode("utf-8", "replace")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format to {sample name: value}; series with labels are summed by name.

    Read by the collection's module_utils/prometheus_text.py; malformed text raises its
    PrometheusTextError (a ValueError) naming the line."""
    out: dict[str, float] = {}
    for sample in _prometheus_text.parse_samples(text):
        out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


_OWN_ERROR = re.compile(r"\b(CRITICAL|ERROR|WARNING|Traceback|refusing)\b")


def not_ready_reason(replica: str, last: str, status: dict | None, journal: str) -> str:
    """Why a replica is not ready, in its own words: what it answered, the peers it reports
    unreachable, and the last warning or error of its journal (not merely its last line)."""
    parts = [f"{replica}: {last}"]
    peers = (status or {}).get("peers") or {}
    down = [
        f"{name} ({p.get('error') or 'unreachable'})"
        for name, p in sorted(peers.items())
        if isinstance(p, dict) and not p.get("reachable", True)
    ]
    if down:
        parts.append("peers unreachable: " + ", ".join(down))
    own = [line.strip() for line in journal.splitlines() if _OWN_ERROR.search(line)]
    if own:
        parts.append(f"its last error: {own[-1]}")
    return ", ".join(parts)


class ContainerLab:
    """A VSR cluster of systemd containers on one podman network (see the module docstring)."""

    mode = "containers"

    def __init__(
        self,
        lab_dir: Path | str | None = None,
        replicas: int = 3,
        *,
        net: int = DEFAULT_NET,
        network: str = "firebreak-lab",
        name_prefix: str = "",
        cluster: str = "lab",
        disk_size_mb: int = 64,
        config_extra: dict[str, Any] | None = None,
        source_dir: Path | str | None = None,
    ) -> None:
        self.lab_dir = Path(lab_dir) if lab_dir else default_lab_dir()
        self.dir = self.lab_dir / "containers"
        self.n = replicas
        self.net = net
        self.network = network
        self.prefix = name_prefix
        self.cluster = cluster
        self.disk_size_mb = disk_size_mb
        self.config_extra = dict(config_extra or {})
        self.source_dir = Path(source_dir) if source_dir else REPO_ROOT / "python"
        self.image_ref: str | None = None
        self.faults: dict[str, dict[str, Any]] = {}
        # After a reconfiguration the replicas are no longer replica-1..n: ``_names`` is the
        # explicit list then (None: replica-1..n), ``initial_members`` the configuration the
        # lab came up with, ``decommissioned`` the state entries of replicas removed from the
        # cluster whose containers were stopped (see :meth:`decommission`).
        self._names: list[str] | None = None
        self.initial_members: list[str] | None = None
        self.decommissioned: list[dict[str, Any]] = []
        self.lab_id = _lab_id(self.lab_dir, self.prefix, self.network)
        self._load_state()

    # ------------------------------------------------------------------ names and addresses
    def replica_names(self) -> list[str]:
        """The lab's replicas (decommissioned ones excluded), in order."""
        if self._names is not None:
            return list(self._names)
        return [f"replica-{i}" for i in range(1, self.n + 1)]

    def decommissioned_names(self) -> list[str]:
        return [d["name"] for d in self.decommissioned]

    def container(self, replica: str) -> str:
        return f"{self.prefix}{replica}"

    def _index(self, replica: str) -> int:
        if replica not in self.replica_names():
            raise ContainerLabError(f"no replica {replica!r} in this lab ({self.replica_names()})")
        return int(replica.rsplit("-", 1)[1])

    def host_address(self, replica: str) -> str:
        return f"127.0.{self.net}.{self._index(replica)}"

    def api_url(self, replica: str) -> str:
        return f"http://{self.host_address(replica)}:{API_PORT}"

    def metrics_url(self, replica: str) -> str:
        """Base URL of the metrics port (``/metrics``, ``/health``), as in processes mode."""
        return f"http://{self.host_address(replica)}:{METRICS_PORT}"

    def node_metrics_url(self, replica: str) -> str:
        """Base URL of the replica's node exporter (``/metrics``: its disk and load)."""
        return f"http://{self.host_address(replica)}:{NODE_PORT}"

    def _rdir(self, replica: str) -> Path:
        return self.dir / replica

    def _disk(self, replica: str) -> Path:
        return self.dir / "disks" / f"{replica}.img"

    def _mnt(self, replica: str) -> Path:
        return self.dir / "mnt" / replica

    def data_path(self, replica: str) -> Path:
        """The replica's data dir as the host sees it (the loop mount)."""
        return self._mnt(replica)

    # ------------------------------------------------------------------ state
    # The lab's state is ``<lab>/state.json`` in the layout firebreak.lab.backend shares with
    # the processes mode (mode, cluster, replicas[{name, api_url, metrics_url, data_dir, ...}],
    # faults), plus this mode's own keys. Disks, mount points and configs live in
    # ``<lab>/containers/``.
    def _state_file(self) -> Path:
        return self.lab_dir / "state.json"

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return None

    def _load_state(self) -> None:
        st = self._read_state()
        if not st or st.get("mode") != self.mode:
            return
        names = [r["name"] for r in st.get("replicas", [])]
        self.n = len(names) or self.n
        self._names = names or None
        self.initial_members = st.get("initial_members")
        self.decommissioned = list(st.get("decommissioned") or [])
        if not self.config_extra:
            self.config_extra = dict(st.get("replica_opts") or {})
        self.net = int(st.get("net", self.net))
        self.network = st.get("network", self.network)
        self.prefix = st.get("prefix", self.prefix)
        self.cluster = st.get("cluster", self.cluster)
        self.faults = st.get("faults", {})
        self.image_ref = st.get("image")
        self.lab_id = _lab_id(self.lab_dir, self.prefix, self.network)

    def _member(self, replica: str) -> dict[str, Any]:
        return {
            "name": replica,
            "host": replica,  # the container's name on the podman network
            "api_port": API_PORT,
            "metrics_port": METRICS_PORT,
            "api_url": self.api_url(replica),
            "metrics_url": self.metrics_url(replica),
            "node_metrics_url": self.node_metrics_url(replica),
            "data_dir": DATA_DIR,
            "host_data_dir": str(self.data_path(replica)),
            "config": str(self._rdir(replica) / "etc" / "replica.json"),
            "service": UNIT,
            "container": self.container(replica),
            "host_address": self.host_address(replica),
            "host_vars": {
                "ansible_connection": "containers.podman.podman",
                "ansible_host": self.container(replica),
                "ansible_python_interpreter": "/usr/bin/python3",
                "vsr_config_path": CONFIG_PATH,
            },
        }

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "cluster": self.cluster,
            "net": self.net,
            "network": self.network,
            "prefix": self.prefix,
            "lab_id": self.lab_id,
            "image": self.image_ref,
            "replicas": [self._member(r) for r in self.replica_names()],
            "initial_members": self.initial_members or self.replica_names(),
            "decommissioned": self.decommissioned,
            "replica_opts": self.config_extra,
            "faults": self.faults,
        }

    def _save_state(self, **extra: Any) -> None:
        cur = self._read_state()
        if cur and cur.get("mode") not in (None, self.mode):
            raise ContainerLabError(
                f"{self._state_file()} belongs to a {cur.get('mode')} lab; `lab down` it first"
            )
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        st = {**self.state(), **extra}
        if cur and cur.get("started") and "started" not in extra:
            st["started"] = cur["started"]
        tmp = self._state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2) + "\n")
        tmp.replace(self._state_file())

    # ------------------------------------------------------------------ podman helpers
    def _labels(self) -> list[str]:
        return [
            "--label",
            f"{LABEL}=1",
            "--label",
            f"{LABEL}.id={self.lab_id}",
            "--label",
            f"{LABEL}.dir={self.lab_dir.resolve()}",
        ]

    def exec(
        self, replica: str, *argv: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run a command inside the replica's container (as root)."""
        return _run(
            ["podman", "exec", self.container(replica), *argv], check=check, timeout=timeout
        )

    def systemctl(self, replica: str, *args: str, check: bool = False) -> Any:
        return self.exec(replica, "systemctl", *args, check=check)

    def unit_state(self, replica: str) -> str:
        res = self.systemctl(replica, "is-active", UNIT)
        return res.stdout.strip() or f"unknown ({res.stderr.strip()})"

    def container_state(self, replica: str) -> str:
        res = _run(
            [
                "podman",
                "container",
                "inspect",
                "--format",
                "{{.State.Status}}",
                self.container(replica),
            ]
        )
        return res.stdout.strip() if res.returncode == 0 else "absent"

    def container_ip(self, replica: str) -> str:
        fmt = f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}'
        res = _run(["podman", "container", "inspect", "--format", fmt, self.container(replica)])
        ip = res.stdout.strip()
        if res.returncode != 0 or not ip:
            raise ContainerLabError(f"no IP address for {replica}: {res.stderr.strip()}")
        return ip

    def main_pid(self, replica: str) -> int | None:
        """Host pid of the unit's main process (None when the unit is not running)."""
        inner = self.exec(replica, "systemctl", "show", "-p", "MainPID", "--value", UNIT)
        pid = inner.stdout.strip()
        if inner.returncode != 0 or pid in ("", "0"):
            return None
        res = _run(["podman", "top", self.container(replica), "pid", "hpid"])
        for line in res.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) == 2 and parts[0] == pid and parts[1].isdigit():
                return int(parts[1])
        return None

    def journal(self, replica: str, lines: int = 200, unit: str | None = UNIT) -> str:
        argv = ["journalctl", "--no-pager", "-n", str(lines)]
        if unit:
            argv += ["-u", unit]
        res = self.exec(replica, *argv)
        return res.stdout + res.stderr

    # ------------------------------------------------------------------ config
    def replica_config(self, replica: str) -> dict[str, Any]:
        """The replica's config. A replica that is not one of the initial members (provisioned
        by :meth:`add_replica`) lists every replica the lab knows, itself and the decommissioned
        ones included, and ``members`` = the initial members (as the processes mode does): it
        learns the current configuration from the log before it takes part."""
        initial = self.initial_members or self.replica_names()
        if replica in initial:
            everyone = [self._member(r) for r in self.replica_names()]
        else:
            known = {r: self._member(r) for r in self.replica_names()}
            for d in self.decommissioned:
                known.setdefault(d["name"], d)
            everyone = [known[r] for r in sorted(known, key=_number)]
        # In a container the server listens on every interface: port publishing and the podman
        # network both reach it through eth0.
        extra = {"bind_host": "0.0.0.0", **self.config_extra}  # noqa: S104
        cfg = replica_config(self.cluster, everyone, replica, DATA_DIR, **extra)
        if replica not in initial:
            cfg["members"] = list(initial)
        return cfg

    def _write_config(self, replica: str) -> Path:
        etc = self._rdir(replica) / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        path = etc / "replica.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.replica_config(replica), indent=2) + "\n")
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ disks
    def _is_mounted(self, path: Path) -> bool:
        target = str(path.resolve())
        with open("/proc/self/mounts") as fh:
            return any(line.split()[1] == target for line in fh if len(line.split()) > 1)

    def _mounts_below(self, path: Path) -> list[str]:
        root = str(path.resolve()).rstrip("/") + "/"
        with open("/proc/self/mounts") as fh:
            return [p[1] for line in fh if len(p := line.split()) > 1 and p[1].startswith(root)]

    def _make_disk(self, replica: str) -> None:
        disk, mnt = self._disk(replica), self._mnt(replica)
        disk.parent.mkdir(parents=True, exist_ok=True)
        mnt.mkdir(parents=True, exist_ok=True)
        if self._is_mounted(mnt):
            _run(["umount", str(mnt)], check=True)
        disk.unlink(missing_ok=True)
        _run(["truncate", "-s", f"{self.disk_size_mb}M", str(disk)], check=True)
        # -m 0: no blocks reserved for root (the replica runs as root): full means full.
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", replica, str(disk)], check=True)
        _run(["mount", "-o", "loop", str(disk), str(mnt)], check=True)

    def _drop_disk(self, replica: str) -> None:
        mnt = self._mnt(replica)
        if mnt.exists() and self._is_mounted(mnt):
            res = _run(["umount", str(mnt)])
            if res.returncode != 0:
                _run(["umount", "-l", str(mnt)])
        self._disk(replica).unlink(missing_ok=True)

    # ------------------------------------------------------------------ lifecycle
    def up(
        self, replicas: int | None = None, *, wait: bool = True, timeout: float = 90
    ) -> dict[str, Any]:
        """Create network, disks, configs and containers; wait until every replica serves."""
        if replicas:
            self.n = int(replicas)
        self._names = None  # a fresh lab is replica-1..n again
        t0 = time.monotonic()
        cur = self._read_state()
        if cur and cur.get("mode") not in (None, self.mode):
            raise ContainerLabError(
                f"a {cur.get('mode')} lab is recorded in {self._state_file()}; `lab down` it first"
            )
        self.image_ref = lab_image.ensure_image(verbose=False)
        self.down()
        self.reclaim_stale()
        if not (self.source_dir / "firebreak").is_dir():
            raise ContainerLabError(f"firebreak source not found under {self.source_dir}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.faults = {}
        self.initial_members = self.replica_names()
        self.decommissioned = []
        self._save_state(status="starting", started=time.time())
        try:
            _run(["podman", "network", "create", *self._labels(), self.network], check=True)
            for r in self.replica_names():
                self._make_disk(r)
                self._write_config(r)
                self._start_container(r)
            if wait:
                self.wait_ready(timeout=timeout)
        except BaseException:
            self._save_state(status="failed")
            raise
        elapsed = time.monotonic() - t0
        self._save_state(status="up", up_seconds=round(elapsed, 1))
        self.write_inventory()
        return {"mode": self.mode, "replicas": self.replica_names(), "seconds": elapsed}

    def reclaim_stale(self) -> list[str]:
        """Remove another lab's leftovers that hold this lab's container or network names.

        A lab is stale when its lab dir no longer records it (the dir or its ``state.json``
        is gone, or names another lab) or when podman still calls one of its containers
        running while that container's process is gone (its host was killed under it: a
        crashed CI job, a restored machine). Its containers, network and loop mounts go.
        A live lab holding the names is never touched: that is a clear error instead.
        Returns one line per reclaimed lab (also written to stderr)."""
        wanted = {self.container(r) for r in self.replica_names()}
        rows = json.loads(_run(["podman", "ps", "-a", "--format", "json"]).stdout or "[]")
        holders: dict[str, str] = {}  # lab id -> its lab dir

        def holder(what: str, labels: dict[str, str], other: str) -> None:
            lab_id = labels.get(f"{LABEL}.id")
            if labels.get(LABEL) != "1" or not lab_id:
                raise ContainerLabError(
                    f"{what} exists and is not a firebreak lab's; remove it or choose {other}"
                )
            holders.setdefault(lab_id, labels.get(f"{LABEL}.dir", ""))

        for row in rows:
            names = set(row.get("Names") or [])
            if names & wanted:
                holder(
                    f"container {', '.join(sorted(names))}",
                    row.get("Labels") or {},
                    "another name prefix",
                )
        res = _run(["podman", "network", "inspect", self.network])
        if res.returncode == 0:
            labels = (json.loads(res.stdout or "[]") or [{}])[0].get("labels") or {}
            holder(f"podman network {self.network}", labels, "another network name")
        reclaimed = []
        for lab_id, owner_dir in holders.items():
            if lab_id == self.lab_id:
                continue
            why = self._stale_reason(lab_id, owner_dir, rows)
            if why is None:
                raise ContainerLabError(
                    f"a lab that is still up (lab dir {owner_dir or '?'}) holds the names "
                    f"{', '.join(sorted(wanted))} or network {self.network}: bring it down "
                    f"(FIREBREAK_LAB_DIR={owner_dir or '?'} firebreak lab down) or choose "
                    "another name prefix, network and net"
                )
            self._remove_lab(lab_id, owner_dir)
            line = f"reclaimed stale lab {lab_id} (lab dir {owner_dir or '?'}): {why}"
            print(line, file=sys.stderr)
            reclaimed.append(line)
        return reclaimed

    @staticmethod
    def _stale_reason(lab_id: str, owner_dir: str, rows: list[dict[str, Any]]) -> str | None:
        state = None
        if owner_dir:
            try:
                state = json.loads((Path(owner_dir) / "state.json").read_text())
            except (OSError, ValueError):
                state = None
        if not state or state.get("lab_id") != lab_id:
            return "its lab dir no longer records it"
        for row in rows:
            if (row.get("Labels") or {}).get(f"{LABEL}.id") != lab_id:
                continue
            pid = int(row.get("Pid") or 0)
            if row.get("State") == "running" and (pid <= 0 or not Path(f"/proc/{pid}").exists()):
                return f"podman calls {row['Names'][0]} running but its process {pid} is gone"
        return None

    @staticmethod
    def _remove_lab(lab_id: str, owner_dir: str) -> None:
        ids = _run(["podman", "ps", "-a", "-q", "--filter", f"label={LABEL}.id={lab_id}"])
        if ids.stdout.split():
            _run(["podman", "rm", "--force", "--time", "2", *ids.stdout.split()], timeout=180)
        nets = _run(["podman", "network", "ls", "-q", "--filter", f"label={LABEL}.id={lab_id}"])
        for net in nets.stdout.split():
            _run(["podman", "network", "rm", net], check=True)
        mnt_root = Path(owner_dir) / "containers" / "mnt" if owner_dir else None
        if mnt_root and mnt_root.is_dir():
            for mnt in mnt_root.iterdir():
                mounted = _run(["mountpoint", "-q", str(mnt)]).returncode == 0
                if mounted and _run(["umount", str(mnt)]).returncode != 0:
                    _run(["umount", "-l", str(mnt)])

    def _start_container(self, replica: str) -> None:
        addr = self.host_address(replica)
        name = self.container(replica)
        argv = [
            "podman",
            "run",
            "--detach",
            "--name",
            name,
            "--hostname",
            replica,
            "--network",
            self.network,
            *(["--network-alias", replica] if name != replica else []),
            "--systemd=always",
            "--cap-add",
            "NET_ADMIN",
            "--stop-timeout",
            "10",
            *self._labels(),
            "--label",
            f"{LABEL}.replica={replica}",
            "--publish",
            f"{addr}:{API_PORT}:{API_PORT}",
            "--publish",
            f"{addr}:{METRICS_PORT}:{METRICS_PORT}",
            "--publish",
            f"{addr}:{NODE_PORT}:{NODE_PORT}",
            "--volume",
            f"{self.source_dir.resolve()}:{SOURCE_MOUNT}:ro",
            "--volume",
            f"{(self._rdir(replica) / 'etc').resolve()}:/etc/kimberlite",
            "--volume",
            f"{self._mnt(replica).resolve()}:{DATA_DIR}",
            self.image_ref,
        ]
        _run(argv, check=True)

    def wait_ready(
        self, timeout: float = 90, replicas: list[str] | None = None, *, normal: bool = True
    ) -> None:
        """Until ``systemctl is-active kimberlite-vsr``, ``/health`` and Normal status in each."""
        deadline = time.monotonic() + timeout
        pending = list(replicas or self.replica_names())
        last: dict[str, str] = {}
        status: dict[str, dict[str, Any]] = {}
        while pending:
            for r in list(pending):
                unit = self.unit_state(r)
                if unit != "active":
                    last[r] = f"unit {unit}"
                    continue
                try:
                    code, _ = _http_get(f"{self.api_url(r)}/health", timeout=2)
                    if code != 200:
                        last[r] = f"/health answered {code}"
                        continue
                    # As the processes mode: ready means in Normal status.
                    code, st = http_json(f"{self.api_url(r)}/admin/status", timeout=2)
                except (OSError, urllib.error.URLError) as exc:
                    last[r] = f"not answering: {exc}"
                    continue
                if normal and code == 200 and st.get("status") not in (None, 0):
                    last[r] = f"status {st.get('status_name', st.get('status'))}"
                    status[r] = st
                    continue
                pending.remove(r)
            if not pending:
                break
            if time.monotonic() > deadline:
                journals = {r: self.journal(r, 40) for r in pending}
                reasons = "; ".join(
                    not_ready_reason(r, last.get(r, "?"), status.get(r), journals[r])
                    for r in pending
                )
                tails = "\n".join(f"--- {r}\n{journals[r]}" for r in pending)
                raise ContainerLabError(
                    f"replicas not ready after {timeout:.0f}s: {reasons}\njournal tails:\n{tails}"
                )
            time.sleep(0.5)

    # ------------------------------------------------------------------ reconfiguration
    def add_replica(
        self, name: str | None = None, *, timeout: float = 60, **opts: Any
    ) -> dict[str, Any]:
        """Provision one more replica: data disk, config, container on the lab network with its
        published ports; wait for its unit to be active and ``/health`` to answer. It is not a
        member yet (it stays Recovering until ``reconfig add``). Returns its state entry."""
        self._load_state()
        st = self._read_state()
        if not st or st.get("mode") != self.mode or st.get("lab_id") != self.lab_id:
            raise ContainerLabError(f"no containers lab is running in {self.lab_dir}")
        names = self.replica_names()
        gone = self.decommissioned_names()
        if name is None:
            name = f"replica-{max(map(_number, names + gone), default=0) + 1}"
        k = _number(name)
        if name in names:
            raise ContainerLabError(f"{name} already exists in this lab")
        if name in gone:
            raise ContainerLabError(
                f"{name} was decommissioned in this lab (its container and disk are kept until "
                "`lab down`); pick another name"
            )
        container = self.container(name)
        if _run(["podman", "container", "exists", container]).returncode == 0:
            raise ContainerLabError(f"a container named {container} already exists")
        addr = f"127.0.{self.net}.{k}"
        for port in (API_PORT, METRICS_PORT, NODE_PORT):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((addr, port))
                except OSError as exc:
                    raise ContainerLabError(f"{addr}:{port} is busy ({exc})") from exc
        if not self.config_extra:
            self.config_extra = self._opts_from_configs()
        self.config_extra.update(
            {k2: v for k2, v in opts.items() if k2 in CONFIG_OPTS and v is not None}
        )
        if not self.initial_members:
            self.initial_members = names
        if not self.image_ref:
            self.image_ref = lab_image.ensure_image(verbose=False)
        self._names = [*names, name]
        self.n = len(self._names)
        try:
            self._make_disk(name)
            self._write_config(name)
            self._start_container(name)
            self._save_state(status="up")
            self.wait_ready(timeout=timeout, replicas=[name], normal=False)
            why = self._wait_health(name, timeout)
            if why:
                raise ContainerLabError(f"{name}: metrics /health: {why}")
        except BaseException as exc:
            journal = ""
            with contextlib.suppress(Exception):
                journal = self.journal(name, 60)
            _run(["podman", "rm", "--force", "--time", "5", container], timeout=120)
            self._drop_disk(name)
            self._names = names
            self.n = len(names)
            self._save_state(status="up")
            if isinstance(exc, ContainerLabError):
                raise ContainerLabError(f"add {name} failed: {exc}\n{journal}") from exc
            raise
        self.write_inventory()
        return {**self._member(name), "added": time.time()}

    def _opts_from_configs(self) -> dict[str, Any]:
        """The :data:`CONFIG_OPTS` of a running replica's config (labs from before
        ``replica_opts`` was recorded in the state)."""
        for r in self.replica_names():
            try:
                cfg = json.loads((self._rdir(r) / "etc" / "replica.json").read_text())
            except (OSError, ValueError):
                continue
            return {k: cfg[k] for k in CONFIG_OPTS if k in cfg}
        return {}

    def committed_configuration(self, exclude: str | None = None) -> dict[str, Any] | None:
        """``/admin/status`` of a replica in Normal status that is a member (not ``exclude``),
        the leader when it answers: ``configuration`` and ``reconfig_state`` are committed."""
        best = None
        for r in self.replica_names():
            if r == exclude:
                continue
            try:
                code, s = http_json(f"{self.api_url(r)}/admin/status", timeout=1)
            except OSError:
                continue
            if code != 200 or s.get("status") != 0 or not s.get("member", True):
                continue
            if s.get("is_primary"):
                return s
            best = best or s
        return best

    def decommission(self, name: str, *, force: bool = False) -> dict[str, Any]:
        """Decommission a replica removed from the cluster: stop and disable its unit, save its
        journal to ``<lab>/containers/<name>/journal.txt``, stop its container, and move it
        from ``replicas`` to ``decommissioned`` in the state (so the inventory, ``status``,
        ``heal`` and new workloads no longer see it). The container and the data disk stay
        (evidence) until ``lab down``. Refuses while a member's committed configuration is not
        stable without ``name`` (``force`` skips that check)."""
        self._load_state()
        self._index(name)
        if not force:
            s = self.committed_configuration(exclude=name)
            if s is None:
                raise ContainerLabError(
                    f"cannot decommission {name}: no member in Normal status answers"
                )
            if s.get("reconfig_state") != 0 or name in (s.get("configuration") or []):
                raise ContainerLabError(
                    f"refusing to decommission {name}: {s['replica']}'s committed configuration "
                    f"is {s.get('configuration')} (reconfig_state {s.get('reconfig_state')}); "
                    f"remove it first (`lab reconfig remove {name}`)"
                )
        entry = self._member(name)
        journal = self._rdir(name) / "journal.txt"
        if self.container_state(name) == "running":
            self.systemctl(name, "disable", "--now", UNIT)
            with contextlib.suppress(Exception):
                journal.write_text(self.journal(name, 100000))
            _run(["podman", "stop", "--time", "10", self.container(name)], check=True)
        self._names = [r for r in self.replica_names() if r != name]
        self.n = len(self._names)
        self.faults.pop(name, None)
        entry.update(
            {
                "decommissioned": time.time(),
                "container_state": self.container_state(name),
                "journal": str(journal) if journal.exists() else None,
            }
        )
        self.decommissioned.append(entry)
        self._save_state(status="up")
        self.write_inventory()
        return entry

    def down(self) -> None:
        """Remove this lab's containers, network and loop mounts. Idempotent."""
        ids = _run(
            [
                "podman",
                "ps",
                "-a",
                "-q",
                "--filter",
                f"label={LABEL}=1",
                "--filter",
                f"label={LABEL}.id={self.lab_id}",
            ]
        ).stdout.split()
        if ids:
            _run(["podman", "rm", "--force", "--time", "5", *ids], timeout=180)
        nets = _run(
            [
                "podman",
                "network",
                "ls",
                "-q",
                "--filter",
                f"label={LABEL}.id={self.lab_id}",
            ]
        ).stdout.split()
        for net in nets:
            # No --force: that would also remove containers that are not ours.
            _run(["podman", "network", "rm", net])
        mnt_root = self.dir / "mnt"
        if mnt_root.is_dir():
            for mnt in mnt_root.iterdir():
                if self._is_mounted(mnt):
                    res = _run(["umount", str(mnt)])
                    if res.returncode != 0:
                        _run(["umount", "-l", str(mnt)])
        # Remove the mode's files, but never while anything is still mounted below them.
        if self.dir.is_dir() and not self._mounts_below(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.faults = {}
        self.decommissioned = []
        st = self._read_state()
        if st and st.get("mode") == self.mode and st.get("lab_id") == self.lab_id:
            self._state_file().unlink(missing_ok=True)
            (self.lab_dir / "inventory.yml").unlink(missing_ok=True)

    # ------------------------------------------------------------------ status, inventory
    def metrics(self, replica: str, timeout: float = 2) -> dict[str, float]:
        _, text = _http_get(f"{self.metrics_url(replica)}/metrics", timeout=timeout)
        return parse_metrics(text)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "lab_dir": str(self.lab_dir),
            "network": self.network,
            "faults": self.faults,
            "replicas": {},
        }
        for r in self.replica_names():
            entry: dict[str, Any] = {
                "container": self.container(r),
                "container_state": self.container_state(r),
                "api_url": self.api_url(r),
                "metrics_url": self.metrics_url(r),
            }
            if entry["container_state"] == "running":
                entry["unit_state"] = self.unit_state(r)
            else:
                entry["unit_state"] = "n/a"
            try:
                m = self.metrics(r)
                entry["metrics"] = {
                    k: v
                    for k, v in m.items()
                    if k.startswith("vsr_") and not k.endswith(("_bucket", "_created"))
                }
            except (OSError, urllib.error.URLError, ValueError) as exc:  # ValueError: bad text
                entry["metrics"] = None
                entry["metrics_error"] = str(exc)
            out["replicas"][r] = entry
        return out

    def inventory_path(self) -> Path:
        """Write (or rewrite) the Ansible inventory for this lab and return its path."""
        return self.write_inventory()

    def write_inventory(self) -> Path:
        """``<lab>/inventory.yml`` through the shared writer, with podman connection vars."""
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        return write_inventory(self.state(), self.lab_dir / "inventory.yml", connection="podman")

    # ------------------------------------------------------------------ faults
    def fault(self, kind: str, replica: str, arg: Any = None) -> dict[str, Any]:
        """Inject a real fault into one replica (see the module docstring)."""
        self._index(replica)
        handler = self.FAULT_HANDLERS.get(kind)
        if handler is None:
            raise ContainerLabError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        detail = handler(self, replica, arg) or {}
        self.faults.setdefault(replica, {})[kind] = {"arg": arg, **detail}
        self._save_state(status="up")
        return {"fault": kind, "replica": replica, "arg": arg, **detail}

    def _kill(self, replica: str, _arg: Any) -> dict[str, Any]:
        self.systemctl(replica, "kill", "-s", "SIGKILL", UNIT, check=True)
        return {}

    def _stop(self, replica: str, _arg: Any) -> dict[str, Any]:
        self.systemctl(replica, "stop", UNIT, check=True)
        return {}

    def _pause(self, replica: str, _arg: Any) -> dict[str, Any]:
        self.systemctl(replica, "kill", "-s", "SIGSTOP", UNIT, check=True)
        return {}

    def _partition(self, replica: str, arg: Any) -> dict[str, Any]:
        if arg in (None, "", "all"):
            peers = [r for r in self.replica_names() if r != replica]
        elif isinstance(arg, str):
            peers = [p.strip() for p in arg.split(",") if p.strip()]
        else:
            peers = list(arg)
        for p in peers:
            self._index(p)
        ips = [self.container_ip(p) for p in peers]
        ipset = ", ".join(ips)
        rules = (
            f"table inet {NFT_TABLE} {{\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    ip saddr {{ {ipset} }} tcp dport {API_PORT} drop\n"
            f"    ip saddr {{ {ipset} }} tcp sport {API_PORT} drop\n"
            "  }\n"
            "  chain output {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {{ {ipset} }} tcp dport {API_PORT} drop\n"
            f"    ip daddr {{ {ipset} }} tcp sport {API_PORT} drop\n"
            "  }\n"
            "}\n"
        )
        self._nft_delete(replica)
        res = _run(["podman", "exec", "-i", self.container(replica), "nft", "-f", "-"], input=rules)
        if res.returncode != 0:
            raise ContainerLabError(f"nft on {replica} failed: {res.stderr.strip()}")
        return {"peers": peers, "peer_ips": ips}

    def _nft_delete(self, replica: str) -> None:
        self.exec(replica, "nft", "delete", "table", "inet", NFT_TABLE)

    def _corrupt(self, replica: str, arg: Any) -> dict[str, Any]:
        """Flip bits in a committed entry of log.dat, on the host side of the bind mount."""
        try:
            return storage.inject_corruption(self.data_path(replica), arg)
        except (OSError, RuntimeError) as exc:
            raise ContainerLabError(f"corrupt on {replica}: {exc}") from exc

    def _disk_full(self, replica: str, arg: Any) -> dict[str, Any]:
        mnt = self._mnt(replica)
        if not self._is_mounted(mnt):
            raise ContainerLabError(f"{replica}'s data dir is not a loop mount ({mnt})")
        try:
            return node_fault.fill_disk(mnt, arg, f"{self.api_url(replica)}/admin/checkpoint")
        except node_fault.NodeFaultError as exc:
            raise ContainerLabError(f"{exc} (on {replica})") from exc

    def node_fault(self, replica: str, kind: str, arg: Any = None) -> dict[str, Any]:
        """Run :mod:`firebreak.lab.node_fault` inside the replica's container (its answer)."""
        argv = ["env", f"PYTHONPATH={SOURCE_MOUNT}", "python3", "-m", "firebreak.lab.node_fault"]
        res = self.exec(replica, *argv, kind, *([str(arg)] if arg is not None else []), "--json")
        if res.returncode != 0:
            raise ContainerLabError(f"{kind} on {replica}: {res.stderr.strip()}")
        return json.loads(res.stdout)

    def _clock_skew(self, replica: str, arg: Any) -> dict[str, Any]:
        """``arg`` ``MS[:HOW]`` (node_fault.clock_skew_arg): the replica restarts under
        libfaketime reading the offset of its time-sync daemon, which is stopped (default), cut
        from its sources or left running; on the node, as the Molecule side effect does it."""
        try:  # a bad argument is refused before the container is asked
            node_fault.clock_skew_arg(arg)
        except node_fault.NodeFaultError as exc:
            raise ContainerLabError(str(exc)) from exc
        out = self.node_fault(replica, "clock-skew", arg if arg is not None else None)
        return {"faketime": out["faketime"], "timesync": out["timesync"]}

    def _control(self, replica: str, **update: Any) -> dict[str, Any]:
        """Read (and update) the replica's control file ``<data_dir>/control.json``.

        The replica re-reads it every 0.2 s (``latency_ms``; ``partition`` is the processes
        mode's simulated partition, unused here). Written on the host side of the bind mount,
        so it works while the replica is paused or down."""
        path = self.data_path(replica) / "control.json"
        try:
            ctl = json.loads(path.read_text())
        except (OSError, ValueError):
            ctl = {}
        if update:
            ctl.update(update)
            tmp = path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(ctl))
                tmp.replace(path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise ContainerLabError(f"cannot write {path}: {exc}") from exc
        return ctl

    def _latency(self, replica: str, arg: Any) -> dict[str, Any]:
        """Delay the replica's outbound protocol sends by ``arg`` ms.

        netem is not available on this kernel, so this uses the replica's own knob, the
        ``latency_ms`` of its control file (what ``POST /admin/latency`` sets too)."""
        ms = int(float(arg if arg is not None else 200))
        self._control(replica, latency_ms=ms)
        # A running replica picks it up within 0.2 s; wait for that so that callers can measure.
        deadline = time.monotonic() + 3
        applied = False
        while not applied and time.monotonic() < deadline:
            try:
                code, st = http_json(f"{self.api_url(replica)}/admin/status", timeout=1)
                applied = code == 200 and st.get("latency_ms") == ms
            except OSError:
                break
            if not applied:
                time.sleep(0.1)
        return {"latency_ms": ms, "applied": applied}

    def _slow_commit(self, replica: str, arg: Any) -> dict[str, Any]:
        """The backup executes at most one committed op per ``arg`` ms (``POST /admin/slow-commit``
        on its published API); held in the replica's memory, so a unit restart clears it."""
        return self._memory_fault(replica, "slow-commit", arg)

    def _viewchange_stuck(self, replica: str, arg: Any) -> dict[str, Any]:
        """The replica starts a view change and drops every DoViewChange and StartView it gets
        (``POST /admin/viewchange-stuck``, memory only): on every replica, FM-002."""
        return self._memory_fault(replica, "viewchange-stuck", arg)

    def _memory_fault(self, replica: str, kind: str, arg: Any) -> dict[str, Any]:
        try:
            return memory_fault(self.api_url(replica), kind, arg, replica)
        except LabError as exc:
            raise ContainerLabError(str(exc)) from exc

    # kind -> handler (every kind of FAULT_KINDS; heal is heal()).
    FAULT_HANDLERS = MappingProxyType(
        {
            "kill": _kill,
            "stop": _stop,
            "pause": _pause,
            "partition": _partition,
            "corrupt": _corrupt,
            "disk-full": _disk_full,
            "clock-skew": _clock_skew,
            "latency": _latency,
            "slow-commit": _slow_commit,
            "viewchange-stuck": _viewchange_stuck,
        }
    )

    def _is_stopped(self, replica: str) -> bool:
        """Whether the unit's main process is stopped (SIGSTOP, state T)."""
        script = (
            f"pid=$(systemctl show -p MainPID --value {UNIT}); "
            '[ "${pid:-0}" != 0 ] && ps -o stat= -p "$pid" | grep -q "^T"'
        )
        return self.exec(replica, "sh", "-c", script).returncode == 0

    def heal(self, replica: str | None = None) -> dict[str, Any]:
        """Undo the faults (all replicas, or one) and start units that are not active."""
        targets = [replica] if replica else self.replica_names()
        healed: dict[str, list[str]] = {}
        for r in targets:
            done: list[str] = []
            if self.container_state(r) != "running":
                _run(["podman", "start", self.container(r)], check=True)
                done.append("container-start")
            kinds = self.faults.get(r, {})
            self._nft_delete(r)
            if "partition" in kinds:
                done.append("partition")
            fill = self._mnt(r) / FILL_FILE
            if fill.exists():
                fill.unlink()
                done.append("disk-full")
            old_logs = (kinds.get("disk-full") or {}).get("segments") or []
            if old_logs:
                storage.remove_segments(self._mnt(r), old_logs)
                if "disk-full" not in done:
                    done.append("disk-full")
            ctl = self._control(r)
            if ctl.get("latency_ms") or ctl.get("partition"):
                self._control(r, latency_ms=0, partition=[])
                done.append("latency")
            done += self._heal_clock(r)
            if "pause" in kinds or self._is_stopped(r):
                self.systemctl(r, "kill", "-s", "SIGCONT", UNIT)
                done.append("pause")
            done += end_memory_faults(self.api_url(r))
            if self.unit_state(r) != "active":
                self.systemctl(r, "reset-failed", UNIT)
                self.systemctl(r, "start", UNIT)
                done.append("start")
            if self.systemctl(r, "is-active", NODE_UNIT).stdout.strip() != "active":
                self.systemctl(r, "reset-failed", NODE_UNIT)
                self.systemctl(r, "start", NODE_UNIT)
                done.append("node-exporter-start")
            self.faults.pop(r, None)
            healed[r] = done
        self._save_state(status="up")
        # A start is only a heal when the replica comes up: one that refuses to boot (its
        # journal says why) is reported, not counted as healed.
        failed = {
            r: why
            for r, done in healed.items()
            if "start" in done and (why := self._wait_health(r))
        }
        return {"healed": healed, "failed": failed}

    def _heal_clock(self, replica: str) -> list[str]:
        """The replica back on the real clock and its time-sync daemon reset and running (an
        image without the daemon: only the clock drop-in)."""
        loaded = self.systemctl(replica, "show", "-p", "LoadState", "--value", TIMESYNC_UNIT)
        if loaded.stdout.strip() == "loaded":
            return self.node_fault(replica, "heal", "clock-skew")["healed"]
        if self.exec(replica, "test", "-e", CLOCK_DROPIN).returncode != 0:
            return []
        self.exec(replica, "rm", "-f", CLOCK_DROPIN)
        self.systemctl(replica, "daemon-reload")
        self.systemctl(replica, "restart", UNIT)
        return ["clock-skew"]

    def reset(self, config_extra: dict[str, Any] | None = None, timeout: float = 90) -> dict:
        """Put the lab back to a fresh start (what a shared lab does between tests): stop its
        workload and empty its history (:func:`firebreak.lab.workload.reset`: the next one
        writes streams of its own), :meth:`heal` every replica, apply ``config_extra`` (the
        replica config keys of :data:`CONFIG_OPTS` the lab runs with from now on, replacing
        those it had; None keeps them) to the replicas whose config differs, restarting their
        units, then wait until every replica is Normal in one view with equal commit numbers, no
        slow commit, none isolated, no known corruption (:func:`firebreak.lab.backend.unsettled`,
        read from each replica's /admin/status; within ``timeout`` s of the start).

        Returns ``{normal, view, commit, restarted, config, healed, seconds}``; raises
        ContainerLabError naming each replica that is not reset and why (a unit that does not
        start says so at once, from its journal, without waiting out ``timeout``)."""
        t0 = time.monotonic()
        workload.stop(self.lab_dir)
        workload.reset(self.lab_dir)
        healed = self.heal()
        restarted = self._apply_config(config_extra)
        failed = {r: why for r, why in healed["failed"].items() if r not in restarted}
        failed.update({r: why for r in restarted if (why := self._wait_health(r))})
        if failed:
            raise ContainerLabError(
                "lab not reset: " + "; ".join(f"{r}: {why}" for r, why in sorted(failed.items()))
            )
        left = timeout - (time.monotonic() - t0)
        try:
            settled = wait_settled(self.state()["replicas"], left, ContainerLabError)
        except ContainerLabError as exc:
            raise ContainerLabError(f"lab not reset within {timeout:g}s: {exc}") from exc
        return {
            **settled,
            "restarted": restarted,
            "config": dict(self.config_extra),
            "healed": {r: done for r, done in healed["healed"].items() if done},
            "seconds": round(time.monotonic() - t0, 1),
        }

    def _apply_config(self, config_extra: dict[str, Any] | None) -> list[str]:
        """Make ``config_extra`` the lab's replica options (None: keep them); rewrite the config
        of each replica whose file differs and restart its unit. The replicas restarted."""
        if config_extra is None:
            return []
        self.config_extra = config_options(config_extra)
        self._save_state(status="up")
        restarted = []
        for r in self.replica_names():
            path = self._rdir(r) / "etc" / "replica.json"
            try:
                current = json.loads(path.read_text())
            except (OSError, ValueError):
                current = None
            if current == self.replica_config(r):
                continue
            self._write_config(r)
            self.systemctl(r, "reset-failed", UNIT)
            self.systemctl(r, "restart", UNIT)
            restarted.append(r)
        return restarted

    def _wait_health(self, replica: str, timeout: float = 10) -> str | None:
        """None once the started unit's replica answers /health; else why not (its journal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if _http_get(f"{self.metrics_url(replica)}/health", timeout=1)[0] == 200:
                    return None
            if self.unit_state(replica) in ("failed", "inactive"):
                break
            time.sleep(0.2)
        else:
            return f"{replica} did not answer /health within {timeout:g}s"
        last = self.journal(replica, 20).strip().splitlines()
        errors = [line for line in last if "CRITICAL" in line or "ERROR" in line]
        return (
            f"{replica} did not stay up ({self.unit_state(replica)}): "
            + ((errors or last or ["no journal"])[-1])
        )


class ContainersBackend(Backend):
    """:class:`firebreak.lab.backend.Backend` for ``lab --mode containers`` over ContainerLab.

    ``up`` options: ``net`` (host addresses 127.0.NET.i, default 30 or
    ``$FIREBREAK_CONTAINERS_NET``), ``cluster``, ``network``, ``name_prefix``, ``timeout``,
    ``disk_size_mb`` and the replica config keys of :data:`CONFIG_OPTS`."""

    mode = "containers"

    def __init__(self, lab_dir: Path) -> None:
        super().__init__(lab_dir)
        self.lab = ContainerLab(self.dir)

    def state(self) -> dict:
        """The saved state; also refreshes :attr:`lab` from it (another ``lab`` command, e.g.
        ``lab reconfig``, may have changed the lab since this backend was made)."""
        st = super().state()
        self.lab._load_state()
        return st

    def up(self, replicas: int = 3, **opts: Any) -> dict:
        net = int(opts.get("net") or os.environ.get("FIREBREAK_CONTAINERS_NET") or DEFAULT_NET)
        if not 1 <= net <= 254 or not 1 <= replicas <= 9:
            raise LabError("need 1 <= net <= 254 and 1 <= replicas <= 9")
        self.lab = ContainerLab(
            self.dir,
            replicas,
            net=net,
            network=opts.get("network") or "firebreak-lab",
            name_prefix=opts.get("name_prefix") or "",
            cluster=opts.get("cluster") or "lab",
            disk_size_mb=int(opts.get("disk_size_mb") or 64),
            config_extra={k: opts[k] for k in CONFIG_OPTS if opts.get(k) is not None},
        )
        self.lab.up(timeout=float(opts.get("timeout") or 90))
        return self.state()

    def down(self) -> None:
        workload.stop(self.dir)  # everything the lab started, its workload included
        self.lab.down()

    def status(self) -> list[dict]:
        st = self.state()
        rows = []
        for m in st["replicas"]:
            name = m["name"]
            cstate = self.lab.container_state(name)
            unit = self.lab.unit_state(name) if cstate == "running" else "n/a"
            paused = unit == "active" and self.lab._is_stopped(name)
            kinds = st.get("faults", {}).get(name)
            row: dict[str, Any] = {
                "name": name,
                "container": m["container"],
                "container_state": cstate,
                "unit_state": unit,
                "api_url": m["api_url"],
                "metrics_url": m["metrics_url"],
                "pid": self.lab.main_pid(name) if unit == "active" else None,
                "running": unit == "active",
                "paused": paused,
                "fault": {"fault": ",".join(kinds), **kinds} if kinds else None,
            }
            if row["running"] and not paused:
                read_admin_status(m["api_url"], row)
                try:
                    m_ = self.lab.metrics(name, timeout=1)
                    row["metrics"] = {
                        k: v
                        for k, v in m_.items()
                        if k.startswith("vsr_") and not k.endswith(("_bucket", "_created"))
                    }
                except (OSError, urllib.error.URLError, ValueError) as exc:  # ValueError: bad text
                    row.setdefault("error", str(exc))
            rows.append(row)
        return rows

    def inventory(self) -> Path:
        self.state()  # raises when no lab is running
        return self.lab.inventory_path()

    def add_replica(self, name: str | None = None, **opts: Any) -> dict:
        """Provision ``name`` (default the next free ``replica-k``) as a container on
        ``127.0.<net>.k``; see :meth:`ContainerLab.add_replica`."""
        self.state()
        return self.lab.add_replica(name, **opts)

    def reconfig(self, action: str, name: str, wait: float = 30.0) -> dict:
        """As :meth:`Backend.reconfig`; after a ``remove`` has reached the stable configuration
        the removed replica is decommissioned (:meth:`ContainerLab.decommission`: unit and
        container stopped, disk kept until ``lab down``). A replica already removed with
        ``kimberlite-admin reconfig remove`` (committed configuration stable without it) is
        only decommissioned."""
        if action == "remove":
            names = [r["name"] for r in self.state()["replicas"]]
            s = self.lab.committed_configuration(exclude=name) if name in names else None
            if s and s.get("reconfig_state") == 0 and name not in (s.get("configuration") or []):
                out: dict = {
                    "action": action,
                    "replica": name,
                    "via": s["replica"],
                    "already_removed": True,
                    "stable": s["configuration"],
                }
                out["decommissioned"] = self._decommission(name)
                return out
        out = super().reconfig(action, name, wait=wait)
        if action == "remove":
            out["decommissioned"] = self._decommission(name)
        return out

    def _decommission(self, name: str) -> dict:
        e = self.lab.decommission(name)
        return {k: e.get(k) for k in ("container", "container_state", "host_data_dir", "journal")}

    def inventory_path(self) -> Path:
        return self.inventory()

    def fault(self, kind: str, target: str, arg: str | None = None) -> dict:
        if kind == "heal":
            return self.heal()
        return self.lab.fault(kind, self.resolve(target), arg)

    def heal(self) -> dict:
        self.state()
        return self.lab.heal()

    def reset(self, config_extra: dict | None = None, timeout: float = 90) -> dict:
        """:meth:`ContainerLab.reset` of the running lab."""
        self.state()
        return self.lab.reset(config_extra, timeout=timeout)

    def replica_pids(self) -> dict[str, int | None]:
        self.state()
        return {r: self.lab.main_pid(r) for r in self.lab.replica_names()}
