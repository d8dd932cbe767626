"""load_tool: `module:attribute` to a tool, or one line saying what is wrong with the spec."""

from __future__ import annotations

import pytest

from graphs.tool_specs import load_tool
from nodes.errors import ConfigError


def test_a_function_or_a_langchain_tool_is_loaded() -> None:
    assert load_tool("tests.unit.test_tool_loop:get_weather").name == "get_weather"
    assert load_tool("nodes.memory_tools:recall_entity").name == "recall_entity"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_colon_here", "is not `package.module:attribute`"),
        ("bad-name:thing", "is not `package.module:attribute`"),
        ("no_such_module_xyz:tool", "cannot import 'no_such_module_xyz' (ModuleNotFoundError"),
        ("nodes.tool_loop:missing", "'nodes.tool_loop' has no attribute 'missing'"),
        ("nodes.tool_loop:MAX_TOOL_RESULT_CHARS", "names a int, not a tool or function"),
        ("nodes.errors:ConfigError", "names a type, not a tool or function"),
        ("tests.unit.test_tool_specs:undocumented", "has no docstring"),
    ],
)
def test_a_bad_spec_is_one_line_naming_it(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_tool(spec)
    message = str(raised.value)
    assert says in message and repr(spec) in message and "\n" not in message


def undocumented(x: int) -> int:
    return x
