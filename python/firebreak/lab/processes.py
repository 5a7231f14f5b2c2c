"""processes mode: each replica is a local process on its own loopback address.

Replica *i* of net N listens on ``127.0.N.i`` (8080 API/protocol, 9090 metrics), runs in its own
session (``start_new_session``) and logs to ``<lab>/replicas/<name>/replica.log``. Beside each
replica runs its node exporter (:mod:`firebreak.kimberlite.node_exporter`, ``127.0.N.i:9100``, log
``node_exporter.log``): its own process, so a replica that fail-stopped still has its disk read.
It starts and stops with the lab (``up``, ``down``, ``add_replica``; ``heal`` restarts it).

Faults, and how they are done here:

* ``kill`` SIGKILL; ``stop`` SIGTERM (graceful); ``pause`` SIGSTOP (heal: SIGCONT).
* ``partition`` is **simulated** in this mode: the replica's control file lists the peers whose
  protocol traffic it drops in both directions (and the peers list it back). Containers mode
  uses real network faults.
* ``corrupt`` flips bits inside a committed log entry on disk of the running replica; the
  scrubber / read path must find it (vsr_checksum_failures_total, ERROR ``checksum`` line) and
  state transfer repairs it; with the argument ``unrepairable`` it garbles ``meta.json`` too,
  and the replica refuses to boot on its next start (only a wipe and resync bring it back).
* ``disk-full [MB|old-logs]`` moves the data dir onto a size-limited loop-mounted ext4
  filesystem (never tmpfs) of MB (16) and fills it; needs root. The replica fails stop on
  ENOSPC. ``old-logs`` fills it with rotated log segments ``log.old.<first>-<last>`` (copies of
  the log's own records, all covered by the latest checkpoint: a failed log cleanup, which
  ``kimberlite-admin cleanup`` undoes) instead of ``filler.bin``. Heal removes what the fault
  wrote and restarts the replica.
* ``clock-skew MS`` restarts the replica under libfaketime (``FAKETIME=+MS/1000``); the skew shows
  in its ``vsr_clock_offset_ms`` (measured against its peers' heartbeat timestamps).
* ``latency MS`` delays the replica's outbound protocol sends.
* ``slow-commit MS`` (``POST /admin/slow-commit``): the backup keeps appending and acknowledging
  prepares but executes at most one committed op per MS ms, so its commit number falls behind
  (FM-006). Held in the replica's memory: a restart or heal clears it.
* ``heal`` undoes what can be undone and restarts killed/stopped replicas.
* ``bad-reads stale|reorder`` (test-only, not offered by ``lab fault``): the replica answers
  reads wrongly (each stream frozen at its first read, or its last two events swapped), on local
  and forwarded reads; the workload's history checker must catch it. Heal clears it.

Reconfiguration: :meth:`ProcessesBackend.add_replica` provisions replica *k* (next free number)
on ``127.0.N.k`` with an empty data dir and starts it; it stays Recovering (not a member) until
``reconfig("add", name)`` (``lab reconfig add``) adds it. A removed replica keeps running as a
non-member (``member: false`` in its status) until ``lab down``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType

from firebreak.kimberlite import storage
from firebreak.lab.backend import (
    CONFIG_OPTS,
    DEFAULT_CLOCK_SKEW_MS,
    FAKETIME_LIB,
    SERVICE_NAME,
    Backend,
    LabError,
    config_options,
    end_memory_faults,
    faketime_env,
    http_json,
    load_state,
    memory_fault,
    read_admin_status,
    replica_config,
    save_state,
    state_path,
    wait_settled,
    with_options,
    write_inventory,
)

DEFAULT_NET = 20
NODE_PORT = 9100


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _paused(pid: int | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, TypeError):
        return False


def _ours(pid: int | None, config: str, module: str = "firebreak.kimberlite.replica") -> bool:
    """Is pid one of our replica (or node exporter) processes (never signal a recycled pid)?"""
    if not _alive(pid):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return module.encode() in cmd and config.encode() in cmd


NODE_MODULE = "firebreak.kimberlite.node_exporter"


def _node_ours(m: dict) -> bool:
    return _ours(m.get("node_pid"), m["config"], NODE_MODULE)


def _node_answers(m: dict) -> bool:
    try:
        u = m["node_metrics_url"].split("//", 1)[1]
        with socket.create_connection((u.split(":")[0], int(u.split(":")[1])), timeout=1):
            return True
    except (OSError, KeyError, IndexError, ValueError):
        return False


def _check_free(host: str, ports: tuple[int, ...], hint: str = "") -> None:
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise LabError(f"{host}:{port} is busy ({exc}){hint}") from exc


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class ProcessesBackend(Backend):
    mode = "processes"

    # ------------------------------------------------------------------ lifecycle
    def up(self, replicas: int = 3, **opts) -> dict:
        existing = load_state(self.dir)
        if existing and any(_alive(r.get("pid")) for r in existing["replicas"]):
            raise LabError(f"a lab is already running in {self.dir}; `lab down` first")
        if existing:
            for r in existing["replicas"]:  # a node exporter left by a lab whose replicas died
                self._stop_node(r)
            self._cleanup_mounts(existing)
        net = int(opts.get("net") or os.environ.get("FIREBREAK_LAB_NET") or DEFAULT_NET)
        if not 1 <= net <= 254 or not 1 <= replicas <= 9:
            raise LabError("need 1 <= net <= 254 and 1 <= replicas <= 9")
        cluster = opts.get("cluster") or "lab"
        rdir = self.dir / "replicas"
        if rdir.exists():
            shutil.rmtree(rdir)
        for f in ("workload",):
            if (self.dir / f).exists():
                shutil.rmtree(self.dir / f)
        members = []
        for i in range(1, replicas + 1):
            host = f"127.0.{net}.{i}"
            _check_free(host, (8080, 9090, NODE_PORT), "; pick another --net")
            members.append(self._new_member(f"replica-{i}", host, rdir / f"replica-{i}"))
        extra = {k: opts[k] for k in CONFIG_OPTS if opts.get(k) is not None}
        for m in members:
            Path(m["dir"]).mkdir(parents=True, exist_ok=True)
            cfg = replica_config(cluster, members, m["name"], m["data_dir"], **extra)
            Path(m["config"]).write_text(json.dumps(cfg, indent=2))
        state = {
            "mode": self.mode,
            "cluster": cluster,
            "net": net,
            "replicas": members,
            "initial_members": [m["name"] for m in members],
            "replica_opts": extra,
            "faults": {},
            "started": time.time(),
        }
        save_state(state, self.dir)
        for m in members:
            # saved after each start: a failed `lab up` takes down every process it started
            self._spawn_node(m)
            save_state(state, self.dir)
            self._spawn(state, m["name"])
            save_state(state, self.dir)
        self.wait_ready(state, timeout=float(opts.get("timeout", 20)))
        return state

    @staticmethod
    def _new_member(name: str, host: str, d: Path) -> dict:
        return {
            "name": name,
            "host": host,
            "api_port": 8080,
            "metrics_port": 9090,
            "api_url": f"http://{host}:8080",
            "metrics_url": f"http://{host}:9090",
            "node_port": NODE_PORT,
            "node_metrics_url": f"http://{host}:{NODE_PORT}",
            "dir": str(d),
            "data_dir": str(d / "data"),
            "config": str(d / "replica.json"),
            "log": str(d / "replica.log"),
            "node_log": str(d / "node_exporter.log"),
            "service": SERVICE_NAME,
            "pid": None,
            "node_pid": None,
        }

    def _spawn_node(self, m: dict) -> int:
        """Start the replica's node exporter (stat of its data dir, on its address:9100)."""
        log = open(m["node_log"], "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", NODE_MODULE, "--config", m["config"]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=m["dir"],
            )
        finally:
            log.close()
        m["node_pid"] = proc.pid
        return proc.pid

    @staticmethod
    def _stop_node(m: dict) -> None:
        pid = m.get("node_pid")
        if _node_ours(m):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 3
            while _node_ours(m) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _node_ours(m):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        if pid:
            _reap(pid)
        m["node_pid"] = None

    def add_replica(self, name: str | None = None, **opts) -> dict:
        """Provision and start one more replica process (empty data dir, not a member yet)."""
        st = self.state()
        net = int(st["net"])
        taken = {int(r["name"].rsplit("-", 1)[1]) for r in st["replicas"]}
        if name is None:
            k = max(taken, default=0) + 1
            name = f"replica-{k}"
        else:
            if any(r["name"] == name for r in st["replicas"]):
                raise LabError(f"{name} already exists in this lab")
            try:
                k = int(name.rsplit("-", 1)[1])
            except (IndexError, ValueError) as exc:
                raise LabError(f"replica names are replica-<k> here, not {name!r}") from exc
        if not 1 <= k <= 254:
            raise LabError(f"no loopback address for {name}")
        host = f"127.0.{net}.{k}"
        _check_free(host, (8080, 9090, NODE_PORT))
        d = self.dir / "replicas" / name
        if d.exists():
            shutil.rmtree(d)
        m = {**self._new_member(name, host, d), "added": time.time()}
        d.mkdir(parents=True, exist_ok=True)
        extra = dict(st.get("replica_opts") or {})
        extra.update({k2: v for k2, v in opts.items() if v is not None})
        everyone = [*st["replicas"], m]
        cfg = replica_config(st["cluster"], everyone, name, m["data_dir"], **extra)
        cfg["members"] = list(st.get("initial_members") or [r["name"] for r in st["replicas"]])
        Path(m["config"]).write_text(json.dumps(cfg, indent=2))
        st["replicas"].append(m)
        save_state(st, self.dir)
        self._spawn_node(m)
        save_state(st, self.dir)
        self._spawn(st, name)
        save_state(st, self.dir)
        why = self._wait_health(m)
        if why:
            raise LabError(why)
        return m

    @staticmethod
    def _wait_health(m: dict, timeout: float = 10) -> str | None:
        """None once the (re)started replica answers /health; else why not, from its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(m["pid"]):
                tail = Path(m["log"]).read_text()[-2000:] if Path(m["log"]).exists() else ""
                return f"{m['name']} exited during start-up; log tail:\n{tail}"
            try:
                if http_json(m["metrics_url"] + "/health", timeout=1)[0] == 200:
                    return None
            except OSError:
                pass
            time.sleep(0.1)
        return f"{m['name']} did not answer /health within {timeout:g}s"

    def _spawn(self, state: dict, name: str, env_extra: dict | None = None) -> int:
        m = self._member(state, name)
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.update(env_extra or {})
        log = open(m["log"], "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "firebreak.kimberlite.replica", "--config", m["config"]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=env,
                cwd=m["dir"],
            )
        finally:
            log.close()
        m["pid"] = proc.pid
        m["env"] = env_extra or {}
        return proc.pid

    def wait_ready(self, state: dict, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            ok = 0
            for m in state["replicas"]:
                for pid, log, what in (
                    (m["pid"], m["log"], m["name"]),
                    (m.get("node_pid"), m.get("node_log"), f"{m['name']}'s node exporter"),
                ):
                    if pid is not None and not _alive(pid):
                        tail = Path(log).read_text()[-2000:] if log and Path(log).exists() else ""
                        raise LabError(f"{what} exited during start-up; log tail:\n{tail}")
                try:
                    if m.get("node_pid") and not _node_answers(m):
                        last = f"{m['name']}: node exporter not answering yet"
                        continue
                    code, s = http_json(m["api_url"] + "/admin/status", timeout=1)
                    if code == 200 and s["status"] == 0:
                        ok += 1
                    last = f"{m['name']}: {s.get('status_name')}"
                except OSError as exc:
                    last = f"{m['name']}: {exc}"
            if ok == len(state["replicas"]):
                return
            time.sleep(0.1)
        raise LabError(f"lab not ready after {timeout}s ({last})")

    def down(self) -> None:
        state = load_state(self.dir)
        if state is None:
            return
        from firebreak.lab import workload

        workload.stop(self.dir)
        for m in state["replicas"]:
            pid = m.get("pid")
            if _ours(pid, m["config"]):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for m in state["replicas"]:
            pid = m.get("pid")
            while _ours(pid, m["config"]) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _ours(pid, m["config"]):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
            if pid:
                _reap(pid)
            m["pid"] = None
            self._stop_node(m)
        self._cleanup_mounts(state)
        state_path(self.dir).unlink(missing_ok=True)

    # ------------------------------------------------------------------ queries
    def _member(self, state: dict, name: str) -> dict:
        for m in state["replicas"]:
            if m["name"] == name:
                return m
        raise LabError(f"no replica {name}")

    def replica_pids(self) -> dict[str, int | None]:
        st = self.state()
        return {m["name"]: (m["pid"] if _alive(m["pid"]) else None) for m in st["replicas"]}

    def status(self) -> list[dict]:
        st = self.state()
        out = []
        for m in st["replicas"]:
            row = {
                "name": m["name"],
                "api_url": m["api_url"],
                "metrics_url": m["metrics_url"],
                "node_metrics_url": m.get("node_metrics_url"),
                "node_exporter_running": _node_ours(m),
                "pid": m["pid"] if _alive(m["pid"]) else None,
                "running": _alive(m["pid"]),
                "paused": _paused(m["pid"]),
                "fault": st["faults"].get(m["name"]),
            }
            if row["running"] and not row["paused"]:
                read_admin_status(m["api_url"], row)
            out.append(row)
        return out

    def inventory(self) -> Path:
        st = self.state()
        return write_inventory(st, self.dir / "inventory.yml", connection="local")

    # ------------------------------------------------------------------ faults
    def fault(self, kind: str, target: str, arg: str | None = None) -> dict:
        if kind == "heal":
            return self.heal()
        handler = self.FAULT_HANDLERS.get(kind)
        if handler is None:
            known = ", ".join(self.FAULT_HANDLERS)
            raise LabError(f"unknown fault {kind!r}; known: {known}")
        name = self.resolve(target)
        st = self.state()
        m = self._member(st, name)
        if kind in self.NEEDS_RUNNING and not _ours(m["pid"], m["config"]):
            raise LabError(f"{name} is not running")
        done: dict = {"fault": kind, "replica": name}
        done.update(handler(self, st, m, arg))
        st["faults"][name] = {**done, "at": time.time()}
        save_state(st, self.dir)
        return done

    # One small handler per fault kind: (state, replica's state entry, arg) -> what was done.
    def _kill(self, st: dict, m: dict, arg: str | None) -> dict:
        os.kill(m["pid"], signal.SIGKILL)
        time.sleep(0.05)
        _reap(m["pid"])
        return {}

    def _stop(self, st: dict, m: dict, arg: str | None) -> dict:
        pid = m["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _ours(pid, m["config"]) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        return {}

    def _pause(self, st: dict, m: dict, arg: str | None) -> dict:
        os.kill(m["pid"], signal.SIGSTOP)
        return {}

    def _partition(self, st: dict, m: dict, arg: str | None) -> dict:
        name = m["name"]
        names = [r["name"] for r in st["replicas"]]
        peers = arg.split(",") if arg else [n for n in names if n != name]
        for p in peers:
            if p not in names or p == name:
                raise LabError(f"bad partition peer {p!r}")
        self._control(m, partition=sorted(set(self._control(m).get("partition", [])) | set(peers)))
        for p in peers:
            pm = self._member(st, p)
            cur = set(self._control(pm).get("partition", []))
            self._control(pm, partition=sorted(cur | {name}))
        for x in [m, *(self._member(st, p) for p in peers)]:
            self._push_control(x)
        return {
            "peers": peers,
            "note": "simulated in processes mode (protocol traffic dropped by the replicas)",
        }

    def _corrupt(self, st: dict, m: dict, arg: str | None) -> dict:
        from firebreak.kimberlite import storage

        return storage.inject_corruption(m["data_dir"], arg, seed=int(time.time()))

    def _latency(self, st: dict, m: dict, arg: str | None) -> dict:
        ms = int(arg or 200)
        self._control(m, latency_ms=ms)
        self._push_control(m)
        return {"ms": ms}

    def _slow_commit(self, st: dict, m: dict, arg: str | None) -> dict:
        return memory_fault(m["api_url"], "slow-commit", arg, m["name"])

    def _viewchange_stuck(self, st: dict, m: dict, arg: str | None) -> dict:
        return memory_fault(m["api_url"], "viewchange-stuck", arg, m["name"])

    def _clock_skew(self, st: dict, m: dict, arg: str | None) -> dict:
        try:
            ms = int(arg or DEFAULT_CLOCK_SKEW_MS)
        except ValueError as exc:
            raise LabError(
                f"clock-skew: processes mode takes MS (a fixed skew), not {arg!r}; MS:HOW "
                "(the time-sync daemon stopped, unreachable or running) needs containers mode"
            ) from exc
        self._stop_pid(m)
        env = faketime_env(ms)
        if not Path(FAKETIME_LIB).exists():
            raise LabError(f"libfaketime not found at {FAKETIME_LIB}")
        self._spawn(st, m["name"], env)
        return {"ms": ms}

    def _bad_reads(self, st: dict, m: dict, arg: str | None) -> dict:
        if arg not in ("stale", "reorder"):
            raise LabError(f"bad-reads: ARG is stale or reorder, not {arg!r}")
        self._control(m, read_fault=arg)  # the replica polls its control file (0.2 s)
        return {"mode": arg}

    def _stop_pid(self, m: dict) -> None:
        pid = m["pid"]
        if _ours(pid, m["config"]):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _ours(pid, m["config"]) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _ours(pid, m["config"]):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
                _reap(pid)

    @staticmethod
    def _end_memory_faults(m: dict) -> list[str]:
        """End a running replica's memory faults (slow-commit, viewchange-stuck); those it had."""
        if not _ours(m.get("pid"), m["config"]) or _paused(m.get("pid")):
            return []
        return end_memory_faults(m["api_url"])

    def _push_control(self, m: dict) -> None:
        """Apply the control file at once through the admin API (the replica also polls it)."""
        ctl = self._control(m)
        if not _alive(m.get("pid")) or _paused(m.get("pid")):
            return
        with contextlib.suppress(OSError):
            http_json(
                m["api_url"] + "/admin/partition", "POST", {"peers": ctl.get("partition", [])}
            )
            http_json(m["api_url"] + "/admin/latency", "POST", {"ms": ctl.get("latency_ms", 0)})

    def _control(self, m: dict, **update) -> dict:
        path = Path(m["data_dir"]) / "control.json"
        try:
            ctl = json.loads(path.read_text())
        except (OSError, ValueError):
            ctl = {}
        if update:
            ctl.update(update)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ctl))
            tmp.replace(path)
        return ctl

    def _disk_full(self, st: dict, m: dict, arg: str | None) -> dict:
        if os.geteuid() != 0:
            raise LabError("disk-full needs root (it loop-mounts a size-limited ext4 filesystem)")
        for tool in ("mkfs.ext4", "mount", "umount"):
            if shutil.which(tool) is None:
                raise LabError(f"disk-full needs {tool}")
        old_logs = arg == storage.OLD_LOGS
        if not old_logs and arg not in (None, "") and not str(arg).isdigit():
            raise LabError(f"disk-full: ARG is a size in MB or {storage.OLD_LOGS!r}, not {arg!r}")
        size_mb = 16 if old_logs else int(arg or 16)
        data = Path(m["data_dir"])
        img = Path(m["dir"]) / "disk.img"
        if old_logs and _ours(m["pid"], m["config"]):
            # a fresh checkpoint first, so that the segments cover most of the log
            with contextlib.suppress(OSError):
                http_json(m["api_url"] + "/admin/checkpoint", "POST", {}, timeout=5)
        self._stop_pid(m)
        saved = data.with_name("data.orig")
        if saved.exists():
            shutil.rmtree(saved)
        data.rename(saved)
        data.mkdir()
        with open(img, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True)
        r = subprocess.run(
            ["mount", "-o", "loop", str(img), str(data)], capture_output=True, text=True
        )
        if r.returncode != 0:
            data.rmdir()
            saved.rename(data)
            raise LabError(f"loop mount failed: {r.stderr.strip()}")
        for item in saved.iterdir():
            if item.is_file():
                shutil.copy2(item, data / item.name)
            elif item.is_dir():
                shutil.copytree(item, data / item.name)
        shutil.rmtree(saved)
        m["mount"] = {"image": str(img), "mountpoint": str(data)}
        if old_logs:
            try:
                filled = storage.fill_with_old_segments(data)
            except (OSError, RuntimeError) as exc:
                self._cleanup_mounts(st)
                self._spawn(st, m["name"])
                raise LabError(f"disk-full old-logs on {m['name']}: {exc}") from exc
            m["mount"]["segments"] = filled["segments"]
            self._spawn(st, m["name"])
            return {"image": str(img), "size_mb": size_mb, "mountpoint": str(data), **filled}
        # fill what is left (keep nothing free)
        filler = data / "filler.bin"
        with open(filler, "wb") as fh, contextlib.suppress(OSError):
            chunk = b"\0" * (1 << 20)
            while True:
                fh.write(chunk)
                fh.flush()
        with open(data / "filler2.bin", "wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        self._spawn(st, m["name"])
        return {"image": str(img), "size_mb": size_mb, "mountpoint": str(data)}

    def _cleanup_mounts(self, state: dict) -> None:
        for m in state["replicas"]:
            mnt = m.get("mount")
            if not mnt:
                continue
            data = Path(mnt["mountpoint"])
            if os.path.ismount(data):
                tmp = data.with_name("data.copy")
                if tmp.exists():
                    shutil.rmtree(tmp)
                for name in ("filler.bin", "filler2.bin"):
                    (data / name).unlink(missing_ok=True)
                storage.remove_segments(data, mnt.get("segments") or [])
                shutil.copytree(data, tmp, ignore=shutil.ignore_patterns("lost+found"))
                subprocess.run(["umount", str(data)], capture_output=True)
                if not os.path.ismount(data):
                    shutil.rmtree(data)
                    tmp.rename(data)
            Path(mnt["image"]).unlink(missing_ok=True)
            m.pop("mount", None)

    def restart(self, name: str) -> dict:
        """Stop one replica and start it again (what a unit restart is in containers mode): its
        memory faults are gone, its disk is kept. LabError when it does not come up."""
        st = self.state()
        m = self._member(st, self.resolve(name))
        self._stop_pid(m)
        self._spawn(st, m["name"])
        save_state(st, self.dir)
        why = self._wait_health(m)
        if why:
            raise LabError(f"restart of {m['name']}: {why}")
        return {"restarted": m["name"], "pid": m["pid"]}

    def heal(self) -> dict:
        st = self.state()
        actions = []
        started: list[dict] = []
        for m in st["replicas"]:
            name = m["name"]
            pid = m["pid"]
            if _paused(pid):
                os.kill(pid, signal.SIGCONT)
                actions.append(f"SIGCONT {name}")
            actions += [f"cleared {kind} on {name}" for kind in self._end_memory_faults(m)]
            ctl = self._control(m)
            if ctl.get("partition") or ctl.get("latency_ms") or ctl.get("read_fault"):
                self._control(m, partition=[], latency_ms=0, read_fault=None)
                self._push_control(m)
                actions.append(f"cleared partition/latency/read fault on {name}")
            if m.get("mount"):
                self._stop_pid(m)
                self._cleanup_mounts(st)
                actions.append(f"disk-full undone on {name}")
            if m.get("env"):
                self._stop_pid(m)
                actions.append(f"clock-skew undone on {name}")
                m["env"] = {}
            if m.get("node_metrics_url") and not _node_ours(m):
                self._spawn_node(m)
                actions.append(f"restarted {name}'s node exporter")
            if not _ours(m["pid"], m["config"]):
                self._spawn(st, name)
                started.append(m)
                actions.append(f"restarted {name}")
        st["faults"] = {}
        save_state(st, self.dir)
        # A restart is only a heal when the replica comes up: one that refuses to boot (its
        # log says why) is reported, not counted as healed.
        failed = {m["name"]: why for m in started if (why := self._wait_health(m))}
        return {"healed": actions, "failed": failed}

    def reset(self, config_extra: dict | None = None, timeout: float = 90) -> dict:
        """As :meth:`Backend.reset`: workload stopped and emptied, :meth:`heal`, the replica
        options ``config_extra`` (replacing the lab's; None keeps them) written to the configs
        that differ and those replicas restarted, then :func:`wait_settled`."""
        from firebreak.lab import workload

        t0 = time.monotonic()
        workload.stop(self.dir)
        workload.reset(self.dir)
        healed = self.heal()
        restarted = self._apply_config(config_extra)
        st = self.state()
        failed = {r: why for r, why in healed["failed"].items() if r not in restarted}
        for name in restarted:
            if why := self._wait_health(self._member(st, name)):
                failed[name] = why
        if failed:
            raise LabError(
                "lab not reset: " + "; ".join(f"{r}: {why}" for r, why in sorted(failed.items()))
            )
        try:
            settled = wait_settled(st["replicas"], timeout - (time.monotonic() - t0))
        except LabError as exc:
            raise LabError(f"lab not reset within {timeout:g}s: {exc}") from exc
        return {
            **settled,
            "restarted": restarted,
            "config": dict(st.get("replica_opts") or {}),
            "healed": healed["healed"],
            "seconds": round(time.monotonic() - t0, 1),
        }

    def _apply_config(self, config_extra: dict | None) -> list[str]:
        """Make ``config_extra`` the lab's replica options (None: keep them): rewrite each
        config that differs and restart that replica. The replicas restarted."""
        if config_extra is None:
            return []
        st = self.state()
        st["replica_opts"] = config_options(config_extra)
        restarted = []
        for m in st["replicas"]:
            cfg = json.loads(Path(m["config"]).read_text())
            want = with_options(cfg, st["replica_opts"])
            if want == cfg:
                continue
            Path(m["config"]).write_text(json.dumps(want, indent=2))
            self._stop_pid(m)
            self._spawn(st, m["name"], m.get("env"))
            restarted.append(m["name"])
        save_state(st, self.dir)
        return restarted

    # kind -> handler; `heal` is fault()'s own. bad-reads is test-only (not in FAULT_KINDS).
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
            "bad-reads": _bad_reads,
        }
    )
    NEEDS_RUNNING = (
        "kill",
        "stop",
        "pause",
        "corrupt",
        "latency",
        "clock-skew",
        "slow-commit",
        "viewchange-stuck",
    )
