"""langgraph-checkpoint-conformance against ConvomemSaver on the real Postgres (every capability passes),
and what the suite does not check: blob clean-up, re-linking, faithful copies of real conversations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from checkpoint.persistence import Persistence
from checkpoint.saver import ConvomemSaver
from graphs.api import Convomem
from nodes.errors import InvalidInput
from tests.integration.support import rows

ALL = sorted(capability.value for capability in ALL_CAPABILITIES)


async def run_suite(name: str, make: Callable[[], BaseCheckpointSaver]) -> CapabilityReport:
    """The whole suite, a fresh saver per capability (on the test's pool), with its report printed."""

    async def factory() -> AsyncIterator[BaseCheckpointSaver]:
        yield make()

    report = await validate(checkpointer_test(name=name)(factory))
    report.print_report()
    print(json.dumps(report.to_dict(), indent=2))
    return report


def summary(report: CapabilityReport) -> dict[str, Any]:
    return {
        name: (result.passed, result.tests_passed, result.tests_failed, result.failures)
        for name, result in sorted(report.results.items())
    }


async def test_convomem_saver_passes_every_capability(
    persistence: Persistence, record_property: Callable[[str, object], None]
) -> None:
    serde = persistence.checkpointer.serde
    report = await run_suite("ConvomemSaver", lambda: ConvomemSaver(persistence.pool, serde=serde))
    record_property("conformance", json.dumps(report.to_dict()))

    assert sorted(report.results) == ALL
    failing = {name: row for name, row in summary(report).items() if row[0] is not True}
    assert not failing, failing
    assert report.conformance_level() == "FULL"
    assert all(result.tests_passed > 0 and result.tests_failed == 0 for result in report.results.values())


async def test_upstream_baseline_lacks_delete_for_runs_and_copy_thread(persistence: Persistence) -> None:
    """What the subclass adds: upstream alone passes 6 of 8 (the other two are not implemented)."""
    serde = persistence.checkpointer.serde
    report = await run_suite("AsyncPostgresSaver", lambda: AsyncPostgresSaver(persistence.pool, serde=serde))

    missing = {name for name, result in report.results.items() if not result.detected}
    assert missing == {"delete_for_runs", "copy_thread"}
    assert all(result.passed for name, result in report.results.items() if name not in missing)


@pytest.mark.parametrize("capability", ["delete_for_runs", "copy_thread", "prune"])
async def test_extended_capability_alone(persistence: Persistence, capability: str) -> None:
    """Each added capability also passes on its own, against a database no other suite touched."""
    serde = persistence.checkpointer.serde

    async def factory() -> AsyncIterator[BaseCheckpointSaver]:
        yield ConvomemSaver(persistence.pool, serde=serde)

    report = await validate(
        checkpointer_test(name=f"ConvomemSaver-{capability}")(factory), capabilities={capability}
    )
    result = report.results[capability]
    assert result.passed is True, result.failures


# ----------------------------------------------------------------------------- beyond the suite


async def put(
    saver: ConvomemSaver,
    thread_id: str,
    run_id: str,
    values: dict[str, Any],
    versions: dict[str, str],
    parent: RunnableConfig | None = None,
) -> RunnableConfig:
    """One checkpoint of `run_id` whose channels are stored as blobs at the given versions."""
    config = generate_config(
        thread_id, checkpoint_id=(parent or {}).get("configurable", {}).get("checkpoint_id")
    )
    checkpoint = generate_checkpoint(channel_values=values, channel_versions=versions)
    return await saver.aput(config, checkpoint, generate_metadata(run_id=run_id), versions)


def blob_versions(url: str, thread_id: str) -> set[tuple[str, str]]:
    found = rows(url, "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = %s", (thread_id,))
    return {(row[0], row[1]) for row in found}


async def test_delete_for_runs_drops_only_unshared_blobs_and_relinks_children(
    persistence: Persistence, database_url: str
) -> None:
    saver = persistence.checkpointer
    first = await put(saver, "t", "run-a", {"x": [1], "y": [0]}, {"x": "1", "y": "1"})
    second = await put(saver, "t", "run-b", {"x": [2], "y": [0]}, {"x": "2", "y": "1"}, first)
    await saver.aput_writes(second, [("x", [3])], "task-b")
    third = await put(saver, "t", "run-c", {"x": [3], "y": [0]}, {"x": "3", "y": "1"}, second)
    other = await put(saver, "other", "run-b", {"x": [9]}, {"x": "1"})

    await saver.adelete_for_runs(["run-b", "no-such-run"])

    assert await saver.aget_tuple(second) is None and await saver.aget_tuple(other) is None
    kept = await saver.aget_tuple(third)
    assert kept is not None and kept.checkpoint["channel_values"] == {"x": [3], "y": [0]}
    assert kept.parent_config is not None
    assert kept.parent_config["configurable"]["checkpoint_id"] == first["configurable"]["checkpoint_id"]
    assert blob_versions(database_url, "t") == {("x", "1"), ("y", "1"), ("x", "3")}
    assert blob_versions(database_url, "other") == set()
    assert rows(database_url, "SELECT count(*) FROM checkpoint_writes")[0][0] == 0


async def test_delete_for_runs_refuses_a_bare_string(persistence: Persistence) -> None:
    with pytest.raises(TypeError):
        await persistence.checkpointer.adelete_for_runs("run-a")


async def test_copy_thread_of_a_real_conversation(app: Convomem, database_url: str) -> None:
    await app.send("source", "My name is Alice and I work at Acme.")
    await app.send("source", "Last year I moved to Lisbon.")
    saver = app.persistence.checkpointer
    before = digest_thread(database_url, "source")

    await saver.acopy_thread("source", "copy")

    assert digest_thread(database_url, "copy") == before == digest_thread(database_url, "source")
    source, copy = await app.state("source"), await app.state("copy")
    assert copy.values == source.values and copy.next == ()
    assert [c.checkpoint_id for c in await app.history("copy")] == [
        c.checkpoint_id for c in await app.history("source")
    ]
    ended = await app.send("copy", "And now?")  # the copy goes on by itself
    assert ended.next_nodes == ()
    assert digest_thread(database_url, "source") == before


async def test_copy_thread_refuses_a_used_target_or_itself(persistence: Persistence) -> None:
    saver = persistence.checkpointer
    await put(saver, "a", "run-a", {"x": [1]}, {"x": "1"})
    await put(saver, "b", "run-b", {"x": [2]}, {"x": "1"})
    with pytest.raises(InvalidInput, match="already has checkpoints"):
        await saver.acopy_thread("a", "b")
    with pytest.raises(InvalidInput, match="onto itself"):
        await saver.acopy_thread("a", "a")
    tuple_b = await saver.aget_tuple(generate_config("b"))
    assert tuple_b is not None and tuple_b.checkpoint["channel_values"] == {"x": [2]}


def digest_thread(url: str, thread_id: str) -> list[list[tuple[Any, ...]]]:
    """The thread's rows without the thread id, contents hashed: equal for a faithful copy."""
    return [
        rows(
            url,
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, md5(checkpoint::text), "
            "md5(metadata::text) FROM checkpoints WHERE thread_id = %s ORDER BY 1, 2",
            (thread_id,),
        ),
        rows(
            url,
            "SELECT checkpoint_ns, checkpoint_id, task_id, idx, task_path, channel, md5(blob) "
            "FROM checkpoint_writes WHERE thread_id = %s ORDER BY 1, 2, 3, 4",
            (thread_id,),
        ),
        rows(
            url,
            "SELECT checkpoint_ns, channel, version, type, md5(blob) FROM checkpoint_blobs "
            "WHERE thread_id = %s ORDER BY 1, 2, 3",
            (thread_id,),
        ),
    ]


async def test_keep_latest_keeps_every_blob_the_latest_checkpoint_references(
    persistence: Persistence, database_url: str
) -> None:
    """A channel unchanged for many checkpoints still points at the blob its first version wrote."""
    saver = persistence.checkpointer
    first = await put(saver, "t", "run", {"x": [1], "y": [1]}, {"x": "1", "y": "1"})
    second = await put(saver, "t", "run", {"x": [1], "y": [2]}, {"x": "1", "y": "2"}, first)
    third = await put(saver, "t", "run", {"x": [1], "y": [3]}, {"x": "1", "y": "3"}, second)

    await saver.aprune(["t"])

    latest = await saver.aget_tuple(generate_config("t"))
    assert latest is not None and latest.config == third
    assert latest.checkpoint["channel_values"] == {"x": [1], "y": [3]}
    assert blob_versions(database_url, "t") == {("x", "1"), ("y", "3")}
