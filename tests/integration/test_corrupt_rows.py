"""A corrupted checkpoint row (garbage bytes, or a msgpack type outside the allow-list) in checkpoint_blobs
or checkpoint_writes: loading what needs it fails with one clear error naming the thread and the
checkpoint, through the saver, the Python API and the CLI; every other thread and checkpoint still loads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.jsonplus import EXT_CONSTRUCTOR_SINGLE_ARG

from checkpoint.serde import CheckpointDataRefused
from graphs.api import Convomem
from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok, cli_environment
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import rows

THREAD = "damaged"
OTHER = "intact"
GARBAGE = b"\xc1\x00 not msgpack at all \xff"
"""0xc1 is the one byte msgpack never uses: no decoder reads past it."""


def planted_call(marker: Path) -> bytes:
    """msgpack that would call os.system if loaded (CVE-2026-28277's shape), touching `marker`."""
    call = ormsgpack.Ext(EXT_CONSTRUCTOR_SINGLE_ARG, ormsgpack.packb(("os", "system", f"touch {marker}")))
    return ormsgpack.packb([call])


def head_id(url: str, thread_id: str) -> str:
    [(checkpoint_id,)] = rows(
        url,
        "SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''",
        (thread_id,),
    )
    return str(checkpoint_id)


def damage_head_blob(url: str, thread_id: str, channel: str, blob: bytes) -> str:
    """Overwrite the blob the thread's newest checkpoint reads for `channel`; returns that checkpoint's id."""
    head = head_id(url, thread_id)
    changed = rows(
        url,
        "UPDATE checkpoint_blobs b SET type = 'msgpack', blob = %s FROM checkpoints c "
        "WHERE c.thread_id = %s AND c.checkpoint_ns = '' AND c.checkpoint_id = %s "
        "AND b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = %s "
        "AND b.version = c.checkpoint -> 'channel_versions' ->> %s RETURNING 1",
        (blob, thread_id, head, channel, channel),
    )
    assert changed == [(1,)]
    return head


def damage_write(url: str, thread_id: str, task_path: str, channel: str, blob: bytes) -> str:
    """Overwrite one pending write of an older checkpoint (the one `task_path`'s task ran from, in the
    thread's first turn); returns that checkpoint's id."""
    changed = rows(
        url,
        "UPDATE checkpoint_writes SET type = 'msgpack', blob = %s WHERE (thread_id, checkpoint_ns, "
        "checkpoint_id, task_id, idx) = (SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx "
        "FROM checkpoint_writes WHERE thread_id = %s AND task_path = %s AND channel = %s "
        "ORDER BY checkpoint_id LIMIT 1) RETURNING checkpoint_id",
        (blob, thread_id, task_path, channel),
    )
    assert len(changed) == 1
    return str(changed[0][0])


def all_ids(url: str, thread_id: str) -> list[str]:
    found = rows(url, "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s", (thread_id,))
    return [str(row[0]) for row in found]


def config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def naming(thread_id: str, checkpoint_id: str, reason: str) -> str:
    """The start of the error for that row, then the serializer's reason."""
    return rf"^Thread {re.escape(repr(thread_id))}, checkpoint {re.escape(checkpoint_id)}: .*{reason}"


@pytest.fixture
async def two_threads(app: Convomem) -> Convomem:
    """THREAD with two turns (so it has older checkpoints with writes), OTHER with one."""
    await app.send(THREAD, "I work at Acme on the billing platform.")
    await app.send(THREAD, "My name is Alice and I live in Paris.")
    await app.send(OTHER, "I like tea.")
    return app


async def assert_other_thread_loads(app: Convomem) -> None:
    snapshot = await app.state(OTHER)
    assert [m.text for m in snapshot.values["messages"]] == ["I like tea.", "Noted: I like tea."]
    assert len(await app.history(OTHER)) == 6
    assert {t.thread_id for t in await app.threads()} == {THREAD, OTHER}


async def test_garbage_in_a_blob_names_the_thread_and_checkpoint(
    two_threads: Convomem, database_url: str
) -> None:
    app = two_threads
    head = damage_head_blob(database_url, THREAD, "messages", GARBAGE)
    expected = naming(THREAD, head, "not valid msgpack")

    with pytest.raises(CheckpointDataRefused, match=expected):
        await app.state(THREAD)
    with pytest.raises(CheckpointDataRefused, match=expected):
        await app.history(THREAD)
    with pytest.raises(CheckpointDataRefused, match=expected):
        await app.persistence.checkpointer.aget_tuple(config(THREAD, head))
    await assert_other_thread_loads(app)


async def test_a_refused_type_in_a_blob_names_the_thread_and_checkpoint_and_runs_nothing(
    two_threads: Convomem, database_url: str, tmp_path: Path
) -> None:
    app = two_threads
    marker = tmp_path / "pwned"
    head = damage_head_blob(database_url, THREAD, "messages", planted_call(marker))

    with pytest.raises(CheckpointDataRefused, match=naming(THREAD, head, r"type os\.system")):
        await app.state(THREAD)
    assert not marker.exists()
    await assert_other_thread_loads(app)


async def test_a_damaged_write_of_an_older_checkpoint_is_named_by_history(
    two_threads: Convomem, database_url: str, tmp_path: Path
) -> None:
    """The newest state does not need an older checkpoint's pending writes: it loads; listing the history
    reads them, lists the newer checkpoints, then names exactly the damaged one."""
    app = two_threads
    marker = tmp_path / "pwned"
    damaged = damage_write(database_url, THREAD, "~__pregel_pull, respond", "messages", planted_call(marker))
    assert damaged != head_id(database_url, THREAD)

    assert (await app.state(THREAD)).values["messages"][-1].text.startswith("Noted: My name is Alice")
    with pytest.raises(CheckpointDataRefused, match=naming(THREAD, damaged, r"type os\.system")):
        await app.history(THREAD)
    listed: list[str] = []
    with pytest.raises(CheckpointDataRefused, match=naming(THREAD, damaged, r"type os\.system")):
        async for found in app.persistence.checkpointer.alist(config(THREAD)):
            listed.append(found.config["configurable"]["checkpoint_id"])
    assert listed and all(checkpoint_id > damaged for checkpoint_id in listed), "newer ones listed first"
    newer = [c for c in all_ids(database_url, THREAD) if c > damaged]
    assert listed == sorted(newer, reverse=True)
    assert not marker.exists()
    await assert_other_thread_loads(app)


async def test_garbage_in_a_write_names_its_checkpoint_even_across_threads(
    two_threads: Convomem, database_url: str
) -> None:
    """A list of every thread (no config) still names the row's own thread and checkpoint."""
    app = two_threads
    damaged = damage_write(database_url, THREAD, "~__pregel_pull, load_memory", "memory_context", GARBAGE)

    with pytest.raises(CheckpointDataRefused, match=naming(THREAD, damaged, "not valid msgpack")):
        async for _ in app.persistence.checkpointer.alist(None):
            pass
    with pytest.raises(CheckpointDataRefused, match=naming(THREAD, damaged, "not valid msgpack")):
        await app.persistence.checkpointer.aget_tuple(config(THREAD, damaged))


async def test_a_thread_without_damage_is_listed_in_full(two_threads: Convomem, database_url: str) -> None:
    """The wrapper changes nothing for rows that load: the same tuples as before."""
    app = two_threads
    listed = [
        t.config["configurable"]["checkpoint_id"] async for t in app.persistence.checkpointer.alist(None)
    ]
    assert sorted(listed, reverse=True) == listed
    assert set(listed) == set(all_ids(database_url, THREAD)) | set(all_ids(database_url, OTHER))


async def test_cli_history_of_a_damaged_thread_is_one_error_line(
    two_threads: Convomem, database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path
) -> None:
    head = damage_head_blob(database_url, THREAD, "messages", GARBAGE)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    cli = Cli(env=cli_environment(database_url, fake_model.base_url, tmp_path / "data"), cwd=workdir)

    line = assert_clean_error(cli.run("history", "--thread", THREAD))
    assert line.startswith(f"error: Thread {THREAD!r}, checkpoint {head}: "), line
    assert "not valid msgpack" in line
    assert cli.run("history", "--thread", THREAD).returncode == 1
    assert OTHER in assert_ok(cli.run("threads")).stdout
    assert_ok(cli.run("history", "--thread", OTHER))
