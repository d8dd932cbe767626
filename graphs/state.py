"""State and Context as the composition root sees them (defined beside the nodes that read them)."""

from nodes.state import Context, State

__all__ = ["Context", "State"]
