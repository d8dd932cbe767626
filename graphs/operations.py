"""How convomem is running (a window of run records) and whether it is healthy, for the CLI and the API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import httpx

from checkpoint.ids import validate_user_id
from checkpoint.migrations import applied_migrations, pending_migrations
from checkpoint.persistence import Pool
from checkpoint.pool import open_pool
from checkpoint.retention import parse_duration
from checkpoint.run_records import ErrorGroup, SeriesPoint, read_series, read_window
from graphs.database import database_url
from graphs.settings import Settings
from nodes.errors import InvalidInput
from nodes.model_server import running_server

__all__ = [
    "ERROR_RATE_LIMIT",
    "ERROR_RATE_MIN_RUNS",
    "ERROR_RATE_WINDOW",
    "HealthCheck",
    "HealthReport",
    "OpsReport",
    "OpsSeries",
    "check_health",
    "ops_report",
    "ops_series",
]

Verdict = Literal["healthy", "degraded", "down"]
_EXIT_CODES: dict[Verdict, int] = {"healthy": 0, "degraded": 1, "down": 2}
_ORDER: tuple[Verdict, ...] = ("healthy", "degraded", "down")

ERROR_RATE_WINDOW = timedelta(minutes=15)
ERROR_RATE_LIMIT = 0.2
"""Above this share of failed runs in the window (with at least ERROR_RATE_MIN_RUNS runs): degraded."""
ERROR_RATE_MIN_RUNS = 5
MODEL_TIMEOUT_SECONDS = 3.0
DATABASE_TIMEOUT = 3.0
_OPENAI_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class OpsReport:
    """The runs started in a window: counts, latency percentiles in seconds (None without data), tokens,
    the average time per node (over the runs that ran it), and the errors grouped by class."""

    since: datetime
    window_seconds: float
    user_id: str | None
    turns: int
    errors: int
    error_rate: float
    by_status: dict[str, int]
    turn_seconds: dict[str, float | None]
    first_token_seconds: dict[str, float | None]
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool
    node_seconds: dict[str, float]
    error_report: tuple[ErrorGroup, ...]


def _window(window: timedelta | str, user_id: str | None) -> tuple[timedelta, str | None]:
    window = parse_duration(window) if isinstance(window, str) else window
    if window <= timedelta(0):
        raise InvalidInput(f"The window must be longer than zero, not {window}.")
    return window, validate_user_id(user_id) if user_id is not None else None


async def ops_report(
    pool: Pool, *, window: timedelta | str, now: datetime, user_id: str | None = None
) -> OpsReport:
    """The window ending `now`: a timedelta or a duration such as "1h", "30m", "7d"."""
    window, user_id = _window(window, user_id)
    since = now - window
    stats = await read_window(pool, since, user_id=user_id)
    return OpsReport(
        since=since,
        window_seconds=window.total_seconds(),
        user_id=user_id,
        turns=stats.turns,
        errors=stats.errors,
        error_rate=stats.errors / stats.turns if stats.turns else 0.0,
        by_status=stats.by_status,
        turn_seconds=stats.turn_seconds,
        first_token_seconds=stats.first_token_seconds,
        input_tokens=stats.input_tokens,
        output_tokens=stats.output_tokens,
        tokens_estimated=stats.tokens_estimated,
        node_seconds=stats.node_seconds,
        error_report=stats.error_report,
    )


MAX_BUCKETS = 500


@dataclass(frozen=True)
class OpsSeries:
    """The window ending at `now` cut into `bucket_seconds` buckets (those with runs), for charts."""

    since: datetime
    bucket_seconds: float
    points: list[SeriesPoint]


async def ops_series(
    pool: Pool, *, window: timedelta | str, now: datetime, buckets: int = 48, user_id: str | None = None
) -> OpsSeries:
    """Turn time, time to first token, tokens and errors over the window, in `buckets` buckets."""
    window, user_id = _window(window, user_id)
    if not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidInput(f"Ask for 1-{MAX_BUCKETS} buckets, not {buckets}.")
    since = now - window
    bucket_seconds = max(window.total_seconds() / buckets, 1.0)
    points = await read_series(pool, since, bucket_seconds, user_id=user_id)
    return OpsSeries(since=since, bucket_seconds=bucket_seconds, points=points)


@dataclass(frozen=True)
class HealthCheck:
    name: str
    status: Verdict
    detail: str


@dataclass(frozen=True)
class HealthReport:
    """The worst of the checks: healthy, degraded (works, with a problem) or down (turns cannot run)."""

    checks: tuple[HealthCheck, ...]

    @property
    def status(self) -> Verdict:
        return max((check.status for check in self.checks), key=_ORDER.index, default="healthy")

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self.status]


async def check_health(settings: Settings, *, now: datetime, pool: Pool | None = None) -> HealthReport:
    """Database (connect, SELECT 1), migrations (none pending), the model server, the recent error rate.
    Without `pool`, a small one is opened on the configured database for the checks."""
    model = await _model_check(settings)
    async with AsyncExitStack() as stack:
        if pool is None:
            try:
                url = await database_url(settings)
                pool = await stack.enter_async_context(open_pool(url, max_size=1, timeout=DATABASE_TIMEOUT))
            except Exception as error:
                return HealthReport((HealthCheck("database", "down", _one_line(error)), model))
        opened = pool
        return HealthReport(
            (
                await _guarded("database", lambda: _database_check(opened)),
                await _guarded("migrations", lambda: _migrations_check(opened)),
                model,
                await _guarded("error rate", lambda: _error_rate_check(opened, now)),
            )
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def _guarded(name: str, check: Callable[[], Awaitable[HealthCheck]]) -> HealthCheck:
    try:
        return await asyncio.wait_for(check(), DATABASE_TIMEOUT)
    except Exception as error:
        return HealthCheck(name, "down", _one_line(error) or type(error).__name__)


async def _database_check(pool: Pool) -> HealthCheck:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT 1 AS one, current_setting('server_version') AS v")).fetchone()
    return HealthCheck("database", "healthy", f"Postgres {row['v'] if row else '?'} answers")


async def _migrations_check(pool: Pool) -> HealthCheck:
    pending = pending_migrations(await applied_migrations(pool))
    if pending:
        return HealthCheck(
            "migrations",
            "degraded",
            f"{len(pending)} pending ({', '.join(pending)}): run `convomem db setup`",
        )
    return HealthCheck("migrations", "healthy", "all applied")


async def _error_rate_check(pool: Pool, now: datetime) -> HealthCheck:
    report = await ops_report(pool, window=ERROR_RATE_WINDOW, now=now)
    minutes = int(ERROR_RATE_WINDOW.total_seconds() // 60)
    detail = f"{report.errors} of {report.turns} runs failed in the last {minutes} min"
    high = report.turns >= ERROR_RATE_MIN_RUNS and report.error_rate > ERROR_RATE_LIMIT
    return HealthCheck("error rate", "degraded" if high else "healthy", detail)


async def _model_check(settings: Settings) -> HealthCheck:
    if settings.uses_local_model:
        server = await asyncio.to_thread(running_server, settings.data_dir)
        if server is None:
            return HealthCheck(
                "model", "healthy", "embedded model server not running (starts on the next turn)"
            )
        return HealthCheck("model", "healthy", f"embedded model server answers on port {server.port}")
    base = (settings.openai_base_url or _OPENAI_URL).rstrip("/")
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(timeout=MODEL_TIMEOUT_SECONDS) as client:
            response = await client.get(f"{base}/models", headers=headers)
    except httpx.HTTPError as error:
        return HealthCheck("model", "down", f"{base} does not answer ({type(error).__name__})")
    if response.status_code >= 500:
        return HealthCheck("model", "down", f"{base}/models answered HTTP {response.status_code}")
    if response.status_code >= 400:
        return HealthCheck("model", "degraded", f"{base}/models answered HTTP {response.status_code}")
    return HealthCheck("model", "healthy", f"{base} answers")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
