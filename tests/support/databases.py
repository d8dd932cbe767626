"""A fresh database on the test run's Postgres server, and its removal."""

from __future__ import annotations

import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["create_database", "drop_database"]


def create_database(root_url: str, prefix: str = "t") -> str:
    """A new, empty database on the server `root_url` names; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(root_url)
    params["dbname"] = name
    return make_conninfo(**params)  # type: ignore[arg-type]


def drop_database(root_url: str, url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
