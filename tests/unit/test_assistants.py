"""Assistant files: parsing, one-line errors naming the file and the field, the registry, and the graph
picking each run's assistant (instructions, reply parameters, budgets, first message, review default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from pydantic import Field, ValidationError

from graphs.assistants import (
    SHIPPED_DIR,
    TURN_FIELDS,
    AssistantFile,
    AssistantRegistry,
    load_assistants,
    read_assistant_files,
)
from graphs.composition import assistant_tools, open_assistants
from graphs.conversation import build_graph, compile_graph
from graphs.settings import Settings
from graphs.turn_graph import TurnGraph, TurnRules
from nodes.config import GraphConfig, TurnSettings
from nodes.errors import ConfigError, InvalidInput
from nodes.memory_tools import FoundMessage
from tests.support.fakes import ScriptedModel
from tests.support.graphs import CONFIG

TRIAGE_REPLY = '{"category": "bug", "urgency": "high", "summary": "The app crashes on start."}'


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(folder: Path) -> list[str]:
    return read_assistant_files(folder)[1]


# --- the shipped examples ---------------------------------------------------------------------------


def test_the_shipped_examples_are_valid_and_cover_first_message_tools_and_schema() -> None:
    registry = load_assistants(SHIPPED_DIR)
    assert registry.names() == ["default", "recall", "travel-planner", "triage"]
    assert registry.get("default").overrides() == {}
    assert registry.get("travel-planner").first_message
    assert registry.get("travel-planner").tools == ("search_conversations", "remember")
    assert registry.get("triage").response_schema is not None
    assert Settings().assistants_folder == SHIPPED_DIR


def test_the_overridable_fields_are_turn_settings_with_their_ranges() -> None:
    assert set(TURN_FIELDS) <= set(TurnSettings.model_fields)
    base = GraphConfig()
    triage = load_assistants(SHIPPED_DIR).get("triage")
    config = triage.graph_config(base)
    assert (config.temperature, config.max_tokens, config.extract_every) == (0.0, 300, 5)
    assert config.prompt_tokens == base.prompt_tokens  # unset: the process's


# --- one line per broken file, naming the file and the field ---------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('name = "x"\ntemperature = 3', "x.toml: temperature: Input should be less than or equal to 2"),
        ('name = "x"\nmax_tokens = 0', "x.toml: max_tokens: Input should be greater than or equal to 1"),
        ('name = "x"\ntemprature = 1', "x.toml: temprature: Extra inputs are not permitted"),
        ('description = "no name"', "x.toml: name: Field required"),
        ('name = "Bad Name"', "x.toml: name: String should match pattern"),
        ('name = "x"\ntools = ["fly"]', "x.toml: tools: unknown tool 'fly'"),
        ('name = "x"\ntools = ["no_such_mod:f"]', "x.toml: tools: Tool 'no_such_mod:f': cannot import"),
        ('name = "x"\ntools = ["json:nope"]', "x.toml: tools: Tool 'json:nope': 'json' has no attribute"),
        ('name = "x"\nresponse_schema = {type = "nope"}', "x.toml: response_schema: not a JSON Schema"),
        ('name = "x"\nfirst_message = ""', "x.toml: first_message: String should have at least 1"),
        ('name = "x"\nreview_memory = "maybe"', "x.toml: review_memory: Input should be a valid boolean"),
        ('name = "x" = 1', "x.toml: not valid TOML"),
    ],
)
def test_a_broken_file_is_one_line_naming_the_file_and_the_field(
    tmp_path: Path, text: str, line: str
) -> None:
    write(tmp_path, "x", text)
    [problem] = problems_of(tmp_path)
    assert problem.startswith(str(tmp_path / line.split(":", 1)[0]))
    assert line.split(":", 1)[1] in problem
    assert "\n" not in problem
    with pytest.raises(ConfigError) as raised:
        load_assistants(tmp_path)
    assert str(raised.value) == problem


def test_every_broken_file_is_listed_and_the_valid_ones_still_load(tmp_path: Path) -> None:
    write(tmp_path, "a", 'name = "a"\ntemperature = -1')
    write(tmp_path, "b", 'name = "b"')
    write(tmp_path, "c", 'name = "c"\nwhat = 1')
    write(tmp_path, "d", 'name = "b"')
    registry, problems = read_assistant_files(tmp_path)
    assert registry.names() == ["b"]
    assert [p.split(": ")[1] for p in problems] == ["temperature", "what", "name"]
    assert "is already the name of" in problems[2]
    with pytest.raises(ConfigError, match=r"a\.toml: temperature: .*\(and 2 more: run `convomem assistants"):
        load_assistants(tmp_path)


def test_a_tool_named_by_module_and_attribute_is_kept_as_its_spec(tmp_path: Path) -> None:
    write(tmp_path, "x", 'name = "x"\ntools = ["json:dumps", "remember"]')
    assert load_assistants(tmp_path).get("x").tools == ("json:dumps", "remember")


def test_a_missing_folder_and_an_unknown_default_assistant_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        open_assistants(Settings(assistants_dir=tmp_path / "nope"))
    with pytest.raises(
        ConfigError, match="CONVOMEM_ASSISTANT: Unknown assistant 'nope': choose from default"
    ):
        open_assistants(Settings(assistant="nope"))


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        load_assistants(SHIPPED_DIR).get("nope")
    known = "default, recall, travel-planner, triage"
    assert str(raised.value) == f"Unknown assistant 'nope': choose from {known}."
    with pytest.raises(InvalidInput, match="choose from none"):
        AssistantRegistry(Path()).get("x")


# --- the graph picks each run's assistant ------------------------------------------------------------


class KwargsModel(ScriptedModel):
    """ScriptedModel that also keeps the request parameters of every call (temperature, response_format)."""

    calls: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls.append(kw)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kw)


async def nothing_found(query: str, *, user_id: str, thread_id: str | None, limit: int) -> list[FoundMessage]:
    """The transcript search (Postgres) of search_conversations, which unit tests have not."""
    return []


def assistant_graph(model: ScriptedModel, folder: Path = SHIPPED_DIR) -> TurnGraph:
    config = GraphConfig()
    registry = load_assistants(folder)
    tools = assistant_tools(registry, search=nothing_found)  # as the composition root gives them
    builder = build_graph(config, model, assistants=registry, assistant_tools=tools)
    rules = TurnRules(config, assistants=registry)
    return compile_graph(builder, rules, checkpointer=InMemorySaver(), store=InMemoryStore())


async def test_a_run_uses_its_assistants_instructions_parameters_and_first_message() -> None:
    model = KwargsModel(scripts={"respond": [TRIAGE_REPLY]})
    graph = assistant_graph(model)
    message = {"messages": [{"role": "user", "content": "The app crashes"}]}
    await graph.ainvoke(message, CONFIG, context={"assistant": "triage"})
    [prompt] = model.prompts_of("respond")
    triage = load_assistants(SHIPPED_DIR).get("triage")
    assert isinstance(prompt[0], SystemMessage)
    assert str(prompt[0].content).startswith(str(triage.instructions))
    respond_call = next(call for call in model.calls if "response_format" in call)
    assert respond_call["temperature"] == 0.0 and respond_call["max_tokens"] == 300
    assert respond_call["response_format"]["json_schema"]["schema"] == triage.response_schema
    messages = (await graph.aget_state(CONFIG)).values["messages"]
    assert [type(m) for m in messages] == [AIMessage, HumanMessage, AIMessage]
    assert messages[0].content == triage.first_message
    assert messages[2].content == TRIAGE_REPLY


async def test_a_run_without_an_assistant_keeps_the_process_settings() -> None:
    model = KwargsModel()
    graph = assistant_graph(model)
    await graph.ainvoke({"messages": [{"role": "user", "content": "hi"}]}, CONFIG)
    [prompt] = model.prompts_of("respond")
    assert str(prompt[0].content).startswith(GraphConfig().instructions)
    assert all("response_format" not in call for call in model.calls)
    assert [m.type for m in (await graph.aget_state(CONFIG)).values["messages"]] == ["human", "ai"]


async def test_an_unknown_assistant_is_refused_before_anything_is_written() -> None:
    graph = assistant_graph(KwargsModel())
    message = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(InvalidInput, match=r"^Unknown assistant 'nope': choose from default, recall, travel"):
        await graph.ainvoke(message, CONFIG, context={"assistant": "nope"})
    with pytest.raises(InvalidInput, match="`assistant` must be a string"):
        await graph.ainvoke(message, CONFIG, context={"assistant": 3})
    assert [s async for s in graph.aget_state_history(CONFIG)] == []


async def test_an_assistants_budgets_and_review_default_apply_to_its_runs(tmp_path: Path) -> None:
    write(tmp_path, "careful", 'name = "careful"\nreview_memory = true\nprompt_tokens = 300')
    model = KwargsModel()
    graph = assistant_graph(model, tmp_path)
    long_text = "word " * 600
    paused = await graph.ainvoke(
        {"messages": [{"role": "user", "content": f"I work at Acme Corp. {long_text}"}]},
        CONFIG,
        context={"assistant": "careful"},
    )
    [prompt] = model.prompts_of("respond")
    assert sum(len(str(m.content)) for m in prompt) < 300 * 4 + 200  # the assistant's prompt budget
    assert (await graph.aget_state(CONFIG)).values["review_memory"] is True
    assert paused is not None


@pytest.mark.parametrize("name", TURN_FIELDS)
def test_an_assistant_refuses_exactly_what_the_setting_refuses(name: str) -> None:
    """Ranges are TurnSettings' own: a value just outside one is refused by both, one inside by neither."""
    for bound in TurnSettings.model_fields[name].metadata:
        for attribute, step in (("ge", -1), ("le", 1)):  # the only kinds of bound TurnSettings uses
            limit = getattr(bound, attribute, None)
            if limit is None:
                continue
            outside = limit + step
            with pytest.raises(ValidationError):
                TurnSettings.model_validate({name: outside})
            with pytest.raises(ValidationError):
                AssistantFile.model_validate({"name": "x", name: outside})
            assert (
                AssistantFile.model_validate({"name": "x", name: limit - step}).overrides()[name] is not None
            )
