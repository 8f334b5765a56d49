"""Real backing services for the production-profile tests and the stress benchmark,
all on loopback and all owned by the caller:

- `PostgresCluster`: a throwaway PostgreSQL cluster from Debian's binaries
  (`apt-get install postgresql`), initialised in a temporary directory, run as a
  non-root user (initdb refuses root), stopped and deleted by `stop()`;
- `start_moto` / `MotoServer`: moto's S3 server (`python -m ml_pipelines_tests.moto_server`) in its
  own process group, run through servers.running and stopped by PID (`stop()`, or
  the end of a `with` block);
- `TcpProxy`: a TCP forwarder in front of a server that can make it unreachable
  for a while (listener closed: connections are refused), by hand or when a
  request line containing a given text passes through it.

Nothing here skips: a missing binary is an error that says what to install.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from ml_pipelines_tests.servers import ServerProcess, free_port, running

LOOPBACK = "127.0.0.1"
PG_SUPERUSER = "dagster"
PG_SERVICE_USER = "ml_pipelines_pg"  # created when the machine has no `postgres` account


class ServiceError(RuntimeError):
    pass


# ---------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin that has initdb and pg_ctl."""
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        raise ServiceError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb): "
            "apt-get install -y postgresql"
        )
    return candidates[-1]


def _service_user() -> str | None:
    """The account PostgreSQL runs as: None (ourselves) unless we are root, where
    initdb refuses to run; then `postgres` if the package created it, else our own."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", PG_SERVICE_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SERVICE_USER],
        check=True, capture_output=True,
    )
    return PG_SERVICE_USER


@dataclass
class PostgresCluster:
    base: Path
    port: int
    password: str
    user: str | None
    bindir: Path
    host: str = LOOPBACK
    stopped: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{PG_SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={PG_SUPERUSER} password={self.password} dbname={database}"

    def _run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.bindir / command[0]), *command[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.base,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise ServiceError(f"{' '.join(command[:2])} failed ({result.returncode}):\n{result.stdout}\n"
                               f"{result.stderr}\n{log}")
        return result

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(self.dsn(database))

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        connection = self.connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def stop(self, delete: bool = True) -> None:
        if not self.stopped:
            pid = self.postmaster_pid()
            error = ""
            try:
                self._run("pg_ctl", "-D", str(self.data), "stop", "-m", "fast", "-w", "-t", "60")
            except ServiceError as exc:
                error = str(exc)
            self.stopped = True
            # pg_ctl returns once postmaster.pid is gone, which the postmaster removes just before it exits
            deadline = time.monotonic() + 30
            while pid is not None and _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid is not None and _pid_alive(pid):
                # a server that does not stop is a bug to report, after it is killed and deleted
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if delete:
                    shutil.rmtree(self.base, ignore_errors=True)
                raise ServiceError(f"postmaster {pid} still ran 30 s after pg_ctl stop; killed it. {error}")
        if delete:
            shutil.rmtree(self.base, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def start_postgres(max_connections: int = 200) -> PostgresCluster:
    """initdb into a new temporary directory and start the server on a free loopback port.

    Durability settings are off (fsync, full-page writes): the cluster is thrown away."""
    bindir = postgres_bindir()
    user = _service_user()
    base = Path(tempfile.mkdtemp(prefix="ml_pipelines-pg-"))
    password = secrets.token_hex(12)
    cluster = PostgresCluster(base=base, port=free_port(), password=password, user=user, bindir=bindir)
    try:
        (base / "pwfile").write_text(password + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (base, base / "pwfile"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(base, 0o700)
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", PG_SUPERUSER, f"--pwfile={base / 'pwfile'}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
        )
        options = (
            f"-c listen_addresses={LOOPBACK} -p {cluster.port} -k {base} -c max_connections={max_connections}"
            " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log_path), "-o", options,
                     "-w", "-t", "60", "start")
    except BaseException:
        cluster.stop(delete=True)
        raise
    return cluster


# ---------------------------------------------------------------- moto (S3)


@dataclass
class MotoServer:
    process: ServerProcess
    port: int
    host: str = LOOPBACK
    _running: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server by process group (servers.running's exit); a second call does nothing."""
        self._running.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto(log_path: Path, port: int | None = None) -> MotoServer:
    """moto's S3 server (ml_pipelines_tests.moto_server: its creates atomic, as on S3), answering;
    stopped by `stop()` or at the end of `with start_moto(...) as moto:`."""
    port = port or free_port()
    stack = contextlib.ExitStack()
    command = [sys.executable, "-m", "ml_pipelines_tests.moto_server", "-H", LOOPBACK, "-p", str(port)]
    process = stack.enter_context(running(
        "moto", command, log_path=log_path,
        ready=f"http://{LOOPBACK}:{port}/moto-api/", ready_timeout=60, stop_timeout=30,
    ))
    return MotoServer(process, port, _running=stack)


def s3_client(endpoint: str):
    """A real boto3 client for the endpoint, with moto's credentials."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def s3_environment(endpoint: str) -> dict[str, str]:
    """What a process needs to reach the endpoint through boto3's own configuration chain."""
    return {"AWS_ENDPOINT_URL": endpoint, **MOTO_CREDENTIALS}


# ---------------------------------------------------------------- a proxy that can fail


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port. `outage(seconds)` closes the listener
    and every open connection, so the endpoint refuses connections, then listens again
    on the same port. `cut_when(text, seconds)` starts such an outage when a request
    whose bytes contain `text` passes (that request gets no answer)."""

    def __init__(self, target_port: int, host: str = LOOPBACK):
        self.target = (host, target_port)
        self.host = host
        self.port = free_port(host)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closed = threading.Event()
        self._up = threading.Event()
        self._trigger: tuple[bytes, float] | None = None
        self.outages: list[tuple[float, float]] = []  # (start, end) in time.time()
        self.cut_requests: list[bytes] = []
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        with self._lock:
            self._listener = listener
        self._up.set()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            if not self._up.wait(timeout=0.1):
                continue
            with self._lock:
                listener = self._listener
            if listener is None:
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
            with self._lock:
                self._connections.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, inspect: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if inspect and self._trigger is not None and self._trigger[0] in data:
                    with self._lock:
                        trigger, self._trigger = self._trigger, None
                    if trigger is not None:
                        self.cut_requests.append(data.split(b"\r\n", 1)[0])
                        threading.Thread(target=self.outage, args=(trigger[1],), daemon=True).start()
                        break  # this request never reaches the server
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)

    def cut_when(self, text: str | bytes, seconds: float) -> None:
        self._trigger = (text.encode() if isinstance(text, str) else text, seconds)

    def outage(self, seconds: float) -> None:
        """Unreachable for `seconds`: nothing listens and every open connection is cut."""
        start = time.time()
        self._up.clear()
        with self._lock:
            listener, self._listener = self._listener, None
            connections = list(self._connections)
            self._connections.clear()
        if listener is not None:
            listener.close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        time.sleep(seconds)
        if not self._closed.is_set():
            self._listen()
        self.outages.append((start, time.time()))

    def stop(self) -> None:
        self._closed.set()
        with self._lock:
            listener, self._listener = self._listener, None
            connections = list(self._connections)
        if listener is not None:
            listener.close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
