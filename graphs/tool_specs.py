"""Tools named by `package.module:attribute` (assistant files): resolved, or one clear error line."""

from __future__ import annotations

import importlib
import re

from langchain_core.tools import BaseTool

from nodes.errors import ConfigError
from nodes.tool_loop import as_tools

__all__ = ["load_tool"]

_SPEC = re.compile(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*$")


def load_tool(spec: str) -> BaseTool:
    """The tool `spec` names: a LangChain tool, or a documented function made into one.

    ConfigError, in one line naming the spec, when it is malformed, its module cannot be imported, the
    attribute is missing, or what it names is not a tool.
    """
    text = spec.strip()
    if not _SPEC.match(text):
        raise ConfigError(f"Tool {spec!r} is not `package.module:attribute` (e.g. `my_tools:get_weather`).")
    module_name, _, path = text.partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or the module failing while it loads
        raise ConfigError(
            f"Tool {spec!r}: cannot import {module_name!r} ({type(error).__name__}: {error})."
        ) from None
    for part in path.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"Tool {spec!r}: {module_name!r} has no attribute {path!r}.")
        found = getattr(found, part)
    if not (isinstance(found, BaseTool) or callable(found)) or isinstance(found, type):
        raise ConfigError(f"Tool {spec!r} names a {type(found).__name__}, not a tool or function.")
    try:
        [made] = as_tools([found])
    except ConfigError as error:
        raise ConfigError(f"Tool {spec!r}: {error}") from None
    return made
