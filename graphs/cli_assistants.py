"""`convomem assistants`: list, show and check the assistant files; the --assistant option's check."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from graphs.cli import AsJson, assistants_app, print_error, read_settings, reported_errors

if TYPE_CHECKING:
    from graphs.assistants import AssistantFile, AssistantRegistry

__all__ = ["assistant_summary", "check", "checked_assistant", "list_assistants", "show"]


def _registry() -> AssistantRegistry:
    from graphs.composition import open_assistants

    return open_assistants(read_settings())


def checked_assistant(name: str | None) -> str | None:
    """--assistant, checked against the files before anything starts (a typo must not start Postgres)."""
    if name is None:
        return None
    with reported_errors():
        return _registry().get(name).name


def assistant_summary(assistant: AssistantFile, registry: AssistantRegistry) -> dict[str, Any]:
    """What `list --json` and `show --json` print of an assistant: its fields as set, and its file."""
    return {
        **assistant.model_dump(mode="json", exclude_none=True),
        "file": str(registry.files[assistant.name]),
    }


@assistants_app.command("list")
def list_assistants(as_json: AsJson = False) -> None:
    """The assistants of CONVOMEM_ASSISTANTS_DIR (default: the shipped examples)."""
    from graphs.cli_tables import render_assistants

    with reported_errors():
        registry = _registry()
    found = [assistant_summary(registry.get(name), registry) for name in registry.names()]
    if as_json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        render_assistants(str(registry.folder), found)


@assistants_app.command()
def show(name: Annotated[str, typer.Argument(help="The assistant's name.")], as_json: AsJson = False) -> None:
    """One assistant's file: every field it sets (unset ones are the process's settings)."""
    with reported_errors():
        registry = _registry()
        summary = assistant_summary(registry.get(name), registry)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        from rich.markup import escape

        from graphs.cli_tables import console

        for key, value in summary.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            console.print(f"[bold]{key}[/]: {escape(shown)}", highlight=False)


@assistants_app.command()
def check() -> None:
    """Validate every assistant file: one line per broken one (file, field, what is wrong); exit 1 then."""
    from graphs.assistants import read_assistant_files

    with reported_errors():
        folder = read_settings().assistants_folder
    registry, problems = read_assistant_files(folder)
    for problem in problems:
        print_error(problem)
    if problems:
        raise typer.Exit(1)
    print(f"{len(registry.assistants)} assistants OK in {folder}: {', '.join(registry.names())}")
