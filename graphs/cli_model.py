"""The `convomem model` commands: the embedded local model server, shared by convomem processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphs.cli import AsJson, model_app, run_with_settings

if TYPE_CHECKING:
    from graphs.settings import Settings

__all__ = ["show_model_server", "stop_model_server", "stopped_model_server"]


def stopped_model_server(settings: Settings) -> str:
    """Stop the local model server of this data dir (`model stop`, `db stop`); what happened, as a line."""
    from nodes.model_server import stop_server

    stopped = stop_server(settings.data_dir)
    return "local model server stopped" if stopped else "local model server was not running"


async def _stop(settings: Settings) -> None:
    from graphs.cli_tables import console

    console.print(stopped_model_server(settings))


@model_app.command("stop")
def stop_model_server() -> None:
    """Stop the local model server (the next chat without OPENAI_* settings starts it again)."""
    run_with_settings(_stop)


async def _status(settings: Settings, as_json: bool) -> None:
    from graphs.cli_json import print_json
    from graphs.cli_tables import console
    from nodes.model_server import running_server

    server = running_server(settings.data_dir)
    if as_json:
        print_json(None if server is None else {**vars(server), "base_url": server.base_url})
    elif server is None:
        console.print("local model server: stopped")
    else:
        console.print(f"local model server: pid {server.pid} at {server.base_url}, log {server.log_file}")


@model_app.command("status")
def show_model_server(as_json: AsJson = False) -> None:
    """Whether the local model server runs, where, and its log."""
    run_with_settings(lambda settings: _status(settings, as_json))
