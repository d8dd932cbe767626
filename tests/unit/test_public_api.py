"""The public API's one import point (graphs.api): its names are pinned, so changing them is deliberate."""

from __future__ import annotations

import importlib

import graphs.api

# fmt: off
PUBLIC_NAMES = [
    "MAX_CONCURRENT_RUNS", "CheckpointInfo", "ConfigError", "Context", "Convomem", "ConvomemError",
    "DatabaseUnavailable", "EntityMentions", "GraphConfig", "HealthCheck", "HealthReport", "InvalidInput",
    "ModelUnavailable", "NothingToResume", "OnBusy", "OpsReport", "OpsSeries", "PendingInterrupt",
    "ReplyDone", "ReplyNotValid", "ReplyToken", "RunCancelled", "Settings", "ThreadBusy", "ThreadDeleted",
    "ThreadExport",
    "ThreadInfo", "TooManyRuns", "ToolCall", "ToolResult", "TurnEnded", "TurnEvent", "UnknownCheckpoint",
    "UnknownThread",
    "open_convomem",
    "unfinished",
]
# fmt: on
"""graphs/api.py's __all__ as documented; a change here is a change of the public API."""


def test_the_public_names_are_the_documented_list() -> None:
    assert graphs.api.__all__ == PUBLIC_NAMES


def test_every_public_name_imports_from_the_one_import_point() -> None:
    module = importlib.import_module("graphs.api")
    missing = [name for name in PUBLIC_NAMES if not hasattr(module, name)]
    assert missing == []
    namespace: dict[str, object] = {}
    exec(f"from graphs.api import {', '.join(PUBLIC_NAMES)}", namespace)
    assert all(namespace[name] is getattr(module, name) for name in PUBLIC_NAMES)


def test_the_errors_share_one_root() -> None:
    errors = [getattr(graphs.api, name) for name in PUBLIC_NAMES if name.endswith(("Error", "Unavailable"))]
    errors += [graphs.api.InvalidInput, graphs.api.NothingToResume, graphs.api.RunCancelled]
    errors += [
        graphs.api.ThreadBusy,
        graphs.api.TooManyRuns,
        graphs.api.UnknownCheckpoint,
        graphs.api.ReplyNotValid,
    ]
    assert all(issubclass(error, graphs.api.ConvomemError) for error in errors)
