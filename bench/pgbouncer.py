"""PgBouncer (Debian's package, `make pgbouncer`) in transaction pooling mode in front of a Postgres server.

Shared by the PgBouncer connection test (tests/integration/test_connection_faults.py) and the scale-out
bench (bench/scale_out.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["PgBouncer", "free_port", "pgbouncer"]

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PgBouncer:
    pid: int
    port: int

    def url(self, dbname: str) -> str:
        """The URL of database `dbname` through PgBouncer."""
        return make_conninfo(host="127.0.0.1", port=str(self.port), user="postgres", dbname=dbname)


def _binary() -> str:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed: `make pgbouncer` (or `apt-get install pgbouncer`)")
    return binary


@contextmanager
def pgbouncer(server_url: str, workdir: Path, *, pool_size: int = 5) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode for every database of the server of `server_url`, with `pool_size`
    server connections per database; stopped when the block ends. As root it runs as the embedded server's
    user (pgserver), since PgBouncer refuses to run as root."""
    binary = _binary()
    target = conninfo_to_dict(server_url)
    server = f"host={target['host']}" + (f" port={target['port']}" if target.get("port") else "")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pgbouncer.ini").write_text(
        f"[databases]\n* = {server} user=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = trust\nauth_file = " + str(workdir / "users.txt") + "\n"
        f"pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = {pool_size}\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    (workdir / "users.txt").write_text('"postgres" ""\n')
    run_as = "pgserver" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    shutil.chown(workdir, user=run_as)
    for child in workdir.iterdir():
        shutil.chown(child, user=run_as)
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", run_as]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(process, port)
        yield PgBouncer(process.pid, port)
    finally:
        process.terminate()
        process.wait(10)


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited at start (exit {process.returncode})")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not listen on port {port} within {START_TIMEOUT_S:.0f} s")
