"""Why a connection failed, as one line (checkpoint.pool.connection_error): libpq reports refused logins
without a SQLSTATE, so the server's words decide. The refusals a real server gives are also tested in
tests/integration/test_cli_lookups.py; a refused password needs a server with password auth, so its
wording is pinned here."""

from __future__ import annotations

import pytest
from psycopg import OperationalError

from checkpoint.pool import connection_error
from nodes.errors import ConfigError

URL = "postgresql://ada:s3cret@db.example:6543/app"
FAILED = 'connection failed: connection to server at "10.0.0.1", port 6543 failed: FATAL:  '


@pytest.mark.parametrize(
    ("server_says", "expected"),
    [
        ('password authentication failed for user "ada"', "refused the password of role 'ada'"),
        ('role "ada" does not exist', "has no role 'ada'"),
        ('no pg_hba.conf entry for host "10.0.0.2", user "ada"', "does not let role 'ada' connect"),
        ('database "app" does not exist', "has no database 'app'"),
        ("Connection refused", "Cannot reach Postgres at db.example:6543/app"),
    ],
)
def test_each_refusal_names_its_cause(server_says: str, expected: str) -> None:
    message = str(connection_error(URL, OperationalError(FAILED + server_says)))
    assert expected in message
    assert "db.example:6543/app" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_a_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Postgres connection URL"):
        connection_error("notaurl", OperationalError("whatever"))
