"""One node per assistant behind one graph node: the run's context names which one runs."""

from __future__ import annotations

from collections.abc import Mapping

from langgraph.runtime import Runtime

from nodes.errors import InvalidInput
from nodes.state import Context, Node, State, Update

__all__ = ["per_assistant", "unknown_assistant"]


def unknown_assistant(name: object, known: list[str]) -> InvalidInput:
    """The one wording for an assistant name that is not configured, on every path."""
    choices = ", ".join(sorted(known)) or "none (add files to CONVOMEM_ASSISTANTS_DIR)"
    return InvalidInput(f"Unknown assistant {str(name)[:60]!r}: choose from {choices}.")


def per_assistant(nodes: Mapping[str | None, Node]) -> Node:
    """`nodes[context.assistant]`: each built from its assistant's configuration (None: the process's).

    Budgets, cadences and reply parameters stay construction-time arguments of the node factories; the
    graph holds one node per assistant and the run picks (resolved by TurnGraph.check_run)."""
    if set(nodes) == {None}:
        return nodes[None]

    async def node(state: State, runtime: Runtime[Context]) -> Update:
        name = runtime.context.assistant if runtime.context is not None else None
        chosen = nodes.get(name)
        if chosen is None:
            raise unknown_assistant(name, [key for key in nodes if key is not None])
        return await chosen(state, runtime=runtime)

    return node
