"""A thread's history as the CLI and API show it: checkpoints newest first, what produced each."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from graphs.events import CheckpointInfo

__all__ = ["checkpoint_history"]


async def checkpoint_history(
    graph: Pregel[Any, Any, Any, Any], config: RunnableConfig, *, limit: int
) -> list[CheckpointInfo]:
    """Checkpoints newest first, each with the nodes that produced it and the ones due next."""
    snapshots = [s async for s in graph.aget_state_history(config, limit=limit)]
    by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snapshots}
    infos = []
    for snap in snapshots:
        metadata = snap.metadata or {}
        parent = await _parent(graph, snap, by_id)
        ran = tuple(parent.next) if parent and metadata.get("source") == "loop" else ()
        infos.append(
            CheckpointInfo(
                checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                step=int(metadata.get("step", -1)),
                created_at=snap.created_at,
                source=str(metadata.get("source", "")),
                ran=ran,
                next_nodes=tuple(snap.next),
                messages=len(snap.values.get("messages") or []),
                parent_id=(snap.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
            )
        )
    return infos


async def _parent(
    graph: Pregel[Any, Any, Any, Any], snap: StateSnapshot, known: dict[str, StateSnapshot]
) -> StateSnapshot | None:
    parent_id = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    if parent_id is None:
        return None
    if parent_id in known:
        return known[parent_id]
    return await graph.aget_state(snap.parent_config or {})
