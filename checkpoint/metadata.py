"""Checkpoint metadata keys convomem stamps and filters on (the one place they are spelled)."""

from __future__ import annotations

__all__ = ["ASSISTANT_KEY", "REVIEW_KEY", "RUN_ID_KEY", "USER_KEY"]

RUN_ID_KEY = "run_id"
"""The run that wrote a checkpoint (LangGraph Server stamps the same key): delete_for_runs, compaction."""
USER_KEY = "convomem_user_id"
"""Whom the run acted for: a resume, replay or fork without context goes on for them; forget finds
a user's threads by it."""
REVIEW_KEY = "convomem_review_memory"
"""Whether the run asked for a memory review: a resume or replay keeps the setting."""
ASSISTANT_KEY = "convomem_assistant"
"""The assistant the run used (None: the process's settings): a resume, replay or fork goes on with it."""
