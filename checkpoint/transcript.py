"""The transcript: every message of every thread, archived before it leaves the working set, searchable."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, message_to_dict, messages_from_dict
from psycopg.types.json import Jsonb

from checkpoint.connections import Pool
from checkpoint.ids import validate_id, validate_user_id
from checkpoint.locks import try_thread_lock_in_transaction
from checkpoint.metadata import USER_KEY
from checkpoint.saver import ConvomemSaver
from checkpoint.thread_info import UPSERT_SQL, thread_title
from nodes.errors import ConfigError, InvalidInput, ThreadBusy
from nodes.namespaces import entity_namespace, user_prefix
from nodes.tokens import count_tokens, text_of

__all__ = [
    "HIGHLIGHT_END",
    "HIGHLIGHT_START",
    "MAX_SEARCH_RESULTS",
    "TRANSCRIPT_DDL",
    "USER_KEY",
    "ForgetReport",
    "SearchHit",
    "TranscriptArchive",
    "TranscriptEntry",
    "UserStats",
    "forget_user",
    "open_transcript",
    "read_messages",
    "read_transcript",
    "search_transcript",
    "user_stats",
]

TRANSCRIPT_DDL = (
    """
    CREATE TABLE IF NOT EXISTS convomem_transcript (
        thread_id text NOT NULL,
        message_id text NOT NULL,
        user_id text NOT NULL,
        position bigint GENERATED ALWAYS AS IDENTITY,
        role text NOT NULL,
        content text NOT NULL,
        message jsonb NOT NULL,
        tokens integer NOT NULL,
        language text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        tsv tsvector NOT NULL,
        PRIMARY KEY (thread_id, message_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS convomem_transcript_thread_idx ON convomem_transcript (thread_id, position)",
    "CREATE INDEX IF NOT EXISTS convomem_transcript_user_idx ON convomem_transcript (user_id, thread_id)",
    "CREATE INDEX IF NOT EXISTS convomem_transcript_tsv_idx ON convomem_transcript USING gin (tsv)",
)
"""The table and its indexes, created together (migration 0003): a new table is empty, so building its
indexes concurrently would buy nothing. `position` is the global archive order. `tsv` is computed on insert
with the row's `language` (kept as text, not regconfig: a regconfig column makes pg_upgrade refuse the
database)."""

REMEMBERED_THREADS = 4096
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"
"""Around the matched words of a search snippet: control characters (start/end of text) that chat text
does not use, so a renderer styles them without mistaking the user's own brackets or markup for them."""
MAX_SEARCH_RESULTS = 1000

INSERT_SQL = (
    """
    WITH inserted AS (
    INSERT INTO convomem_transcript
        (thread_id, message_id, user_id, role, content, message, tokens, language, tsv)
    SELECT %(thread)s, m.id, %(user)s, m.role, m.content, m.message, m.tokens, %(language)s::text,
        to_tsvector(%(language)s::text::regconfig, m.content)
    FROM unnest(%(ids)s::text[], %(roles)s::text[], %(contents)s::text[], %(messages)s::jsonb[],
                %(tokens)s::int[]) WITH ORDINALITY AS m(id, role, content, message, tokens, ord)
    WHERE NOT EXISTS (
        SELECT 1 FROM convomem_transcript t WHERE t.thread_id = %(thread)s AND t.message_id = m.id
    )
    ORDER BY m.ord
    ON CONFLICT (thread_id, message_id) DO NOTHING
    RETURNING 1
    )
"""
    + UPSERT_SQL
)
"""The working set is archived every turn: rows already kept are skipped before their search vector is
computed or a position drawn; ON CONFLICT covers two writers racing on one new message. The same statement
upserts the thread's row (checkpoint.thread_info): its title, message count and time."""
ENTRIES_SQL = """
    SELECT position, thread_id, message_id, user_id, role, content, message, tokens, created_at
    FROM convomem_transcript WHERE {where} ORDER BY position
"""
"""The columns `_entries` reads, for every query of whole transcript entries."""
READ_SQL = ENTRIES_SQL.format(where="thread_id = %s")
MESSAGES_SQL = ENTRIES_SQL.format(where="user_id = %s AND message_id = ANY(%s)")
SEARCH_SQL = """
    WITH q AS (SELECT websearch_to_tsquery(%(language)s::regconfig, %(query)s) AS query),
    hits AS (
        SELECT t.*, ts_rank(t.tsv, q.query) AS rank, q.query
        FROM convomem_transcript t, q
        WHERE t.tsv @@ q.query
            AND (%(user)s::text IS NULL OR t.user_id = %(user)s)
            AND (%(thread)s::text IS NULL OR t.thread_id = %(thread)s)
        ORDER BY rank DESC, t.position DESC
        LIMIT %(limit)s
    )
    SELECT thread_id, message_id, user_id, role, created_at, position, rank,
        ts_headline(language::regconfig, content, query, %(headline)s) AS snippet
    FROM hits ORDER BY rank DESC, position DESC
"""
HEADLINE_OPTIONS = (
    f"StartSel={HIGHLIGHT_START}, StopSel={HIGHLIGHT_END}, MaxWords=24, MinWords=8, MaxFragments=2"
)
STATS_SQL = """
    SELECT count(DISTINCT thread_id) AS conversations, count(*) AS messages,
        min(created_at) AS first_at, max(created_at) AS last_at, coalesce(sum(tokens), 0) AS tokens,
        (SELECT count(*) FROM store WHERE prefix = %(entities)s) AS entities
    FROM convomem_transcript WHERE user_id = %(user)s
"""
USER_THREADS_SQL = """
    SELECT thread_id FROM convomem_transcript WHERE user_id = %(user)s
    UNION SELECT thread_id FROM checkpoints WHERE metadata ->> %(key)s = %(user)s
    ORDER BY thread_id
"""
FORGET_STORE_SQL = r"DELETE FROM store WHERE prefix LIKE %s ESCAPE '\'"
"""Every namespace under `convomem.users.<id>.` (store labels cannot contain dots, so no other user's)."""
LANGUAGE_SQL = "SELECT oid::regconfig::text AS name FROM pg_ts_config WHERE cfgname = %s ORDER BY oid LIMIT 1"
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


@dataclass(frozen=True)
class TranscriptEntry:
    position: int
    thread_id: str
    message_id: str
    user_id: str
    role: str
    content: str
    tokens: int
    created_at: datetime
    message: BaseMessage
    """The archived message itself (tool calls and all), rebuilt from its stored dict."""


@dataclass(frozen=True)
class SearchHit:
    thread_id: str
    message_id: str
    user_id: str
    role: str
    created_at: datetime
    rank: float
    snippet: str
    """The matching passage; matched words sit between HIGHLIGHT_START and HIGHLIGHT_END."""


@dataclass(frozen=True)
class UserStats:
    user_id: str
    conversations: int
    messages: int
    first_interaction: datetime | None
    last_interaction: datetime | None
    tokens: int
    """Approximate tokens of every archived message (langchain-core's count, as the budgets use)."""
    entities: int

    @property
    def messages_per_conversation(self) -> float:
        return self.messages / self.conversations if self.conversations else 0.0


@dataclass(frozen=True)
class ForgetReport:
    user_id: str
    threads: tuple[str, ...]
    transcript_messages: int
    memories: int
    """Store rows removed: entities, extraction markers and any other namespace of the user."""


class TranscriptArchive:
    """The Archive reduce_history calls: one idempotent insert per call, so a re-run adds nothing."""

    def __init__(self, pool: Pool, language: str) -> None:
        self.pool = pool
        self.language = language
        """A text search configuration name as Postgres prints it (open_transcript checks it exists)."""
        self._archived: OrderedDict[str, set[str]] = OrderedDict()
        """Ids this process has archived, per recent thread: they are not serialized and sent again
        every turn. Only a shortcut: the table's key decides, so another process or a restart (which
        starts empty here) archives nothing twice."""

    async def __call__(
        self, thread_id: str, user_id: str, messages: Sequence[AnyMessage], summary: str = ""
    ) -> None:
        known = self._archived.get(thread_id, set())
        kept = [m for m in messages if m.id and m.id not in known]
        if not kept:
            return
        params = {
            "thread": validate_id(thread_id),
            "user": validate_user_id(user_id),
            "language": self.language,
            "ids": [m.id for m in kept],
            "roles": [_role(m) for m in kept],
            "contents": [_scrub(text_of(m)) for m in kept],
            "messages": [Jsonb(message_to_dict(m), dumps=_dumps) for m in kept],
            "tokens": [count_tokens([m]) for m in kept],
            "title": thread_title(messages, summary),
            "refresh": bool(summary.strip()),
        }
        async with self.pool.connection() as conn:
            await conn.execute(INSERT_SQL, params)
        # Remember the working set only (older ids never come back), for the most recent threads.
        self._archived[thread_id] = {str(m.id) for m in messages if m.id}
        self._archived.move_to_end(thread_id)
        while len(self._archived) > REMEMBERED_THREADS:
            self._archived.popitem(last=False)


async def open_transcript(pool: Pool, language: str) -> TranscriptArchive:
    """The archive for `language`, refused with ConfigError when the server has no such configuration."""
    async with pool.connection() as conn:
        row = await (await conn.execute(LANGUAGE_SQL, (language,))).fetchone()
        if row is None:
            raise ConfigError(
                f"Unknown transcript language {language[:40]!r}: set CONVOMEM_TRANSCRIPT_LANGUAGE to a text "
                "search configuration of this server, e.g. english or simple "
                "(list them with `SELECT cfgname FROM pg_ts_config`)."
            )
    return TranscriptArchive(pool, str(row["name"]))


async def read_transcript(pool: Pool, thread_id: str) -> list[TranscriptEntry]:
    """The thread's whole conversation in archive order, including what summaries folded away."""
    async with pool.connection() as conn:
        rows = await (await conn.execute(READ_SQL, (validate_id(thread_id),))).fetchall()
    return _entries(rows)


async def read_messages(pool: Pool, user_id: str, message_ids: Sequence[str]) -> list[TranscriptEntry]:
    """The user's archived messages with these ids, across threads, in archive order (an entity's
    mentions: its records keep the ids of the messages that named it)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(MESSAGES_SQL, (validate_user_id(user_id), list(message_ids)))
        return _entries(await cursor.fetchall())


def _entries(rows: Sequence[dict[str, Any]]) -> list[TranscriptEntry]:
    return [
        TranscriptEntry(
            position=row["position"],
            thread_id=row["thread_id"],
            message_id=row["message_id"],
            user_id=row["user_id"],
            role=row["role"],
            content=row["content"],
            tokens=row["tokens"],
            created_at=row["created_at"],
            message=messages_from_dict([row["message"]])[0],
        )
        for row in rows
    ]


async def search_transcript(
    pool: Pool,
    query: str,
    *,
    language: str,
    user_id: str | None = None,
    thread_id: str | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """Best matches first (ts_rank, newer first on ties). `query` is web-search syntax ("quoted phrase",
    or, -word), parsed by Postgres from a bound parameter: any text searches, none is SQL."""
    if not query.strip():
        raise InvalidInput("Empty search query: give some words to look for.")
    if "\x00" in query:
        raise InvalidInput("The search query contains a NUL character (\\x00): remove it.")
    if not 1 <= limit <= MAX_SEARCH_RESULTS:
        raise InvalidInput(f"Search limit must be between 1 and {MAX_SEARCH_RESULTS}, not {limit}.")
    params = {
        "language": language,
        "query": query,
        "user": None if user_id is None else validate_user_id(user_id),
        "thread": None if thread_id is None else validate_id(thread_id),
        "limit": limit,
        "headline": HEADLINE_OPTIONS,
    }
    async with pool.connection() as conn:
        rows = await (await conn.execute(SEARCH_SQL, params)).fetchall()
    return [
        SearchHit(
            thread_id=row["thread_id"],
            message_id=row["message_id"],
            user_id=row["user_id"],
            role=row["role"],
            created_at=row["created_at"],
            rank=float(row["rank"]),
            snippet=row["snippet"],
        )
        for row in rows
    ]


async def user_stats(pool: Pool, user_id: str) -> UserStats:
    """What the transcript and the store hold for one user."""
    params = {"user": validate_user_id(user_id), "entities": ".".join(entity_namespace(user_id))}
    async with pool.connection() as conn:
        row = await (await conn.execute(STATS_SQL, params)).fetchone()
    assert row is not None, "an aggregate always returns a row"
    return UserStats(
        user_id=user_id,
        conversations=row["conversations"],
        messages=row["messages"],
        first_interaction=row["first_at"],
        last_interaction=row["last_at"],
        tokens=int(row["tokens"]),
        entities=row["entities"],
    )


async def forget_user(pool: Pool, saver: ConvomemSaver, user_id: str) -> ForgetReport:
    """Delete everything kept about a user: transcript rows, store namespaces and their threads.

    All in one transaction holding every thread's run lock, so it happens entirely or not at all, and
    no turn can start on a thread meanwhile. A thread a run holds now refuses the whole request
    (ThreadBusy). A thread is deleted whole, with what other users said on it; their own transcript rows
    and memories stay.
    """
    prefix = user_prefix(validate_user_id(user_id))
    params = {"user": user_id, "key": USER_KEY}
    async with pool.connection() as conn, conn.transaction():
        threads = [
            row["thread_id"] for row in await (await conn.execute(USER_THREADS_SQL, params)).fetchall()
        ]
        for thread_id in threads:
            if not await try_thread_lock_in_transaction(conn, thread_id):
                raise ThreadBusy(
                    f"Thread {thread_id!r} of user {user_id!r} is running a turn: nothing was deleted; "
                    f"run `convomem forget --user {user_id}` again once it finishes."
                )
        removed = await conn.execute("DELETE FROM convomem_transcript WHERE user_id = %(user)s", params)
        await conn.execute("DELETE FROM convomem_threads WHERE thread_id = ANY(%s)", (threads,))
        memories = await conn.execute(FORGET_STORE_SQL, (_like_prefix(prefix) + "%",))
        bound = saver.bound_to(conn)
        for thread_id in threads:
            await bound.adelete_thread(thread_id)
    return ForgetReport(user_id, tuple(threads), removed.rowcount, memories.rowcount)


def _role(message: BaseMessage) -> str:
    """human / ai / tool / system, for messages and their streamed chunks alike."""
    kind = message.type
    return kind.removesuffix("MessageChunk").lower() if kind.endswith("MessageChunk") else kind


def _scrub(text: str) -> str:
    """Postgres text cannot hold NUL: one in a model's reply must not make every later archive fail."""
    return text.replace("\x00", "\ufffd")


def _dumps(value: Any) -> str:
    """JSON for jsonb, which refuses the \\u0000 escape (an escaped backslash before `u0000` is kept)."""
    return _NUL_ESCAPE.sub(r"\1\\ufffd", json.dumps(value, default=str))


def _like_prefix(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\' (ids may contain `_`, a LIKE wildcard)."""
    return re.sub(r"([\\%_])", r"\\\1", text)
