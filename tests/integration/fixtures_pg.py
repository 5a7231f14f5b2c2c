"""A throw-away PostgreSQL server for the lab tests (playbooks run through playbook_harness).

``pg_server`` (module-scoped fixture) initdb's a cluster in a temp dir as the ``postgres``
system user (postgres refuses root), starts it on a free port of ``pg_host`` (127.0.0.1
unless a test module overrides that fixture with its own loopback address) with its unix
socket in the temp dir, and stops it (immediate) and removes everything in ``finally``.
It fails loudly when it cannot: no skip.

``StallingServer`` is the other kind of server: a real listener that accepts and then never
answers, either before the login or (``login=True``) right after it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("FIREBREAK_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER_PASSWORD = "su-Secret-4711"
APP_PASSWORD = "app-Secret-0815"
MAX_CONNECTIONS = 40


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    base: Path
    port: int
    socket_dir: Path
    host: str = "127.0.0.1"

    def conninfo(self, user: str = "postgres", password: str = SUPERUSER_PASSWORD, **kw) -> dict:
        params = {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "dbname": "postgres",
            "connect_timeout": 5,
        }
        params.update(kw)
        return params

    def connect(self, user="postgres", password=SUPERUSER_PASSWORD, autocommit=True, **kw):
        import psycopg

        return psycopg.connect(autocommit=autocommit, **self.conninfo(user, password, **kw))


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str], what: str, timeout: float = 60) -> None:
    proc = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (rc={proc.returncode}): {' '.join(argv)}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )


@pytest.fixture(scope="module")
def pg_host():
    """The loopback address the server listens on; a test module may override it."""
    return "127.0.0.1"


@pytest.fixture(scope="module")
def pg_server(pg_host):
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            pytest.fail(
                f"PostgreSQL server binary {PG_BIN / tool} is missing (apt-get install postgresql)"
            )
    base = Path(tempfile.mkdtemp(prefix="fb-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    started = False
    try:
        sock.mkdir()
        pwfile = base / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            for p in (base, sock, pwfile):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D", str(data),
                "-U", "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E", "UTF8",
                "--no-sync",
            ],
            "initdb",
        )  # fmt: skip
        port = free_port(pg_host)
        opts = (
            f"-c port={port} -c listen_addresses={pg_host} -c unix_socket_directories={sock} "
            f"-c max_connections={MAX_CONNECTIONS} -c fsync=off -c synchronous_commit=off "
            "-c max_wal_senders=4"
        )
        _run(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "30",
             "start"],
            "pg_ctl start",
        )  # fmt: skip
        started = True
        server = PgServer(base=base, port=port, socket_dir=sock, host=pg_host)
        with server.connect() as conn:
            conn.execute(f"CREATE ROLE app_user LOGIN PASSWORD '{APP_PASSWORD}'")
            conn.execute(f"CREATE ROLE replicator LOGIN REPLICATION PASSWORD '{APP_PASSWORD}'")
            conn.execute("CREATE TABLE locked_t (id int)")
            conn.execute("GRANT SELECT ON locked_t TO app_user")
            conn.execute("ALTER TABLE locked_t OWNER TO app_user")
        yield server
    finally:
        if started:
            try:
                _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                     "pg_ctl stop")  # fmt: skip
            except Exception:
                _kill_postmaster(data)
        shutil.rmtree(base, ignore_errors=True)


def _kill_postmaster(data: Path) -> None:
    pidfile = data / "postmaster.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 9)


class StallingServer:
    """A listener on ``host`` that accepts every connection and then stays silent.

    With ``login=True`` it first speaks just enough of the PostgreSQL protocol for a client
    to log in (no TLS, no password), then never answers a query: a server that stalls after
    the connection is up. ``close()`` (or the ``with`` block's end) stops it.
    """

    def __init__(self, host: str, login: bool = False):
        self.login = login
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.endpoint = (host, self.sock.getsockname()[1])
        self.clients: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.clients.append(client)
            if self.login:
                with contextlib.suppress(OSError):  # the client gave up: nothing to answer
                    _log_in(client)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        for client in self.clients:
            client.close()


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed the connection")
        data += chunk
    return data


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _log_in(conn: socket.socket) -> None:
    """Refuse TLS/GSS encryption, accept the startup packet: AuthenticationOk, ReadyForQuery."""
    conn.settimeout(10)
    while True:
        (length,) = struct.unpack("!I", _recv_exact(conn, 4))
        body = _recv_exact(conn, length - 4)
        if struct.unpack("!I", body[:4])[0] in (80877103, 80877104):  # SSLRequest, GSSENCRequest
            conn.sendall(b"N")
            continue
        break  # the StartupMessage
    params = {
        "server_version": "15.0",
        "client_encoding": "UTF8",
        "DateStyle": "ISO, MDY",
        "standard_conforming_strings": "on",
        "integer_datetimes": "on",
        "TimeZone": "UTC",
    }
    reply = _message(b"R", struct.pack("!I", 0))
    for key, value in params.items():
        reply += _message(b"S", key.encode() + b"\0" + value.encode() + b"\0")
    reply += _message(b"K", struct.pack("!II", 4242, 1234567))
    reply += _message(b"Z", b"I")
    conn.sendall(reply)
