"""`convomem ops` and `convomem health` as a user runs them: numbers that match the run records, and
exit codes that match the verdict."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok, closed_port, wait_until
from tests.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.slow


def records(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM convomem_run_records ORDER BY started_at").fetchall()


def percentile(values: list[float], fraction: float) -> float:
    """Postgres percentile_cont: linear interpolation between the sorted values."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_ops_json_matches_the_run_records(cli: Cli, fake_model: FakeOpenAIServer, database_url: str) -> None:
    assert_ok(cli.run("chat", "--thread", "a", "--user", "u1", "--message", "I work at Acme."))
    assert_ok(cli.run("chat", "--thread", "b", "--user", "u2", "--message", "I live in Lisbon."))
    fake_model.fail_next("respond", 1, status=400)
    assert_clean_error(cli.run("chat", "--thread", "a", "--user", "u1", "--message", "This one fails."))
    rows = records(database_url)
    assert [row["status"] for row in rows] == ["ok", "ok", "error"]

    report = json.loads(assert_ok(cli.run("ops", "--json", "--window", "1h")).stdout)

    assert report["turns"] == 3 and report["errors"] == 1
    assert report["error_rate"] == pytest.approx(1 / 3)
    assert report["by_status"] == {"ok": 2, "error": 1}
    assert report["input_tokens"] == sum(row["input_tokens"] for row in rows) > 0
    assert report["output_tokens"] == sum(row["output_tokens"] for row in rows) > 0
    durations = [row["duration_seconds"] for row in rows]
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert report["turn_seconds"][name] == pytest.approx(percentile(durations, fraction))
    first_tokens = [row["first_token_seconds"] for row in rows if row["first_token_seconds"] is not None]
    assert report["first_token_seconds"]["p50"] == pytest.approx(percentile(first_tokens, 0.5))
    assert set(report["node_seconds"]) >= {"load_memory", "respond"}
    [error] = report["error_report"]
    assert error["error_class"] == "ModelUnavailable" and error["count"] == 1
    assert error["last_message"] == rows[2]["error_message"]

    mine = json.loads(assert_ok(cli.run("ops", "--json", "--user", "u2")).stdout)
    assert (mine["turns"], mine["errors"], mine["user_id"]) == (1, 0, "u2")
    assert mine["input_tokens"] == rows[1]["input_tokens"]

    table = assert_ok(cli.run("ops")).stdout
    assert "3 turns" in table and "ModelUnavailable" in table


@pytest.mark.parametrize("args", [("--window", "soon"), ("--user", "no spaces"), ("--watch", "--json")])
def test_ops_refuses_bad_options_in_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    assert_clean_error(cli.run("ops", *args))


def test_ops_watch_ends_cleanly_on_ctrl_c(cli: Cli, tmp_path: Path) -> None:
    assert_ok(cli.run("db", "setup"))
    out, err = tmp_path / "out", tmp_path / "err"
    child = cli.start("ops", "--watch", stdout=out, stderr=err)
    try:
        wait_until(lambda: "latency" in out.read_text(), timeout=60, what="the first table", alive=child)
        os.kill(child.pid, signal.SIGINT)
        assert child.wait(timeout=30) == 0, err.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "Traceback" not in err.read_text()


def test_health_is_healthy_with_exit_0(cli: Cli) -> None:
    assert_ok(cli.run("db", "setup"))
    result = assert_ok(cli.run("health"))
    verdict, *checks = result.stdout.strip().splitlines()
    assert verdict == "healthy"
    assert [line.split("  ")[0].strip() for line in checks] == [
        "database",
        "migrations",
        "model",
        "error rate",
    ]
    as_json = json.loads(assert_ok(cli.run("health", "--json")).stdout)
    assert as_json["status"] == "healthy" and as_json["exit_code"] == 0
    assert {check["status"] for check in as_json["checks"]} == {"healthy"}


def test_health_is_degraded_with_exit_1_when_runs_keep_failing(cli: Cli, database_url: str) -> None:
    assert_ok(cli.run("db", "setup"))
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n in range(5):
            conn.execute(
                "INSERT INTO convomem_run_records (run_id, started_at, ended_at, status, duration_seconds, "
                "error_class, error_message) VALUES (%s, %s, %s, %s, 0.1, %s, %s)",
                (f"r{n}", now, now, "error" if n < 2 else "ok", "ModelUnavailable" if n < 2 else None, "x"),
            )
    result = cli.run("health")
    assert result.returncode == 1, result.describe()
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "degraded"
    assert any(line.startswith("error rate") and "degraded" in line and "2 of 5" in line for line in lines)


def test_health_is_down_with_exit_2_when_the_database_is_unreachable(cli: Cli) -> None:
    url = f"postgresql://nobody@127.0.0.1:{closed_port()}/nothing"
    result = cli.run("health", env={"DATABASE_URL": url})
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr
    verdict, *checks = result.stdout.strip().splitlines()
    assert verdict == "down"
    [database] = [line for line in checks if line.startswith("database")]
    assert "down" in database and "DATABASE_URL" in database
