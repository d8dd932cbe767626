"""The built-in memory tools respond may call: search conversations, recall, remember, forget (confirmed).

Every tool acts for the run's user (nodes.state.memory_user: the authenticated caller on the server), never
for a user the model names. Their names, arguments and descriptions are written for small models: few
arguments, plain words, one example each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolRuntime
from langgraph.store.base import BaseStore
from langgraph.types import interrupt
from pydantic import ValidationError

from nodes.entity_lookup import find_entity, forget_entity
from nodes.errors import ConfigError, InvalidInput
from nodes.namespaces import profile_namespace
from nodes.profile import PROFILE_KEY, FactStatement, ProfileUpdate, load_profile, update_profile
from nodes.state import Clock, Context, memory_user

__all__ = [
    "BUILTIN_TOOLS",
    "FORGET_ANSWERS",
    "FORGET_CONFIRMATION",
    "ConversationSearch",
    "Passage",
    "check_forget_answer",
    "forget_decision",
    "make_memory_tools",
    "select_builtin_tools",
]

BUILTIN_TOOLS = ("search_conversations", "recall_entity", "remember", "forget")
FORGET_CONFIRMATION = "forget_confirmation"
"""The `type` of the interrupt `forget` raises to ask the user."""
FORGET_ANSWERS = "yes or no"
_YES = {"yes", "y", "true"}
_NO = {"no", "n", "false"}
SEARCH_RESULTS = 5

Runtime = ToolRuntime[Context, Any]
"""A tool's view of the run (its state is the graph's State, read as a plain dict)."""


@dataclass(frozen=True)
class Passage:
    """One archived message that matched a search."""

    thread_id: str
    role: str
    when: str
    text: str


class ConversationSearch(Protocol):
    """Full-text search over one user's archived messages (checkpoint.transcript, injected by the
    composition root: nodes never touch Postgres). `thread_id` None searches every conversation."""

    async def __call__(
        self, query: str, *, user_id: str, thread_id: str | None, limit: int
    ) -> Sequence[Passage]: ...


def forget_decision(answer: Any) -> bool:
    """True to forget, False to keep; ValueError for anything but yes/no."""
    if isinstance(answer, bool):
        return answer
    word = answer.strip().casefold() if isinstance(answer, str) else None
    if word in _YES or word in _NO:
        return word in _YES
    raise ValueError(f"{answer!r} is neither yes nor no")


def check_forget_answer(pending: Sequence[Any], answer: Any) -> None:
    """Refuse, before anything runs, an answer a pending forget confirmation could not use (InvalidInput)."""
    for interrupt_ in pending:
        value = getattr(interrupt_, "value", None)
        if isinstance(value, dict) and value.get("type") == FORGET_CONFIRMATION:
            try:
                forget_decision(answer)
            except ValueError:
                raise InvalidInput(
                    f"The assistant asks whether to forget {value.get('what')!r}: answer {FORGET_ANSWERS}."
                ) from None


def select_builtin_tools(selection: str) -> tuple[str, ...]:
    """`CONVOMEM_TOOLS` as built-in tool names: "all", "none", or a comma list; ConfigError names the
    unknown one."""
    words = [word.strip() for word in selection.split(",") if word.strip()]
    if words in (["all"], []):
        return BUILTIN_TOOLS if words else ()
    if words == ["none"]:
        return ()
    unknown = [word for word in words if word not in BUILTIN_TOOLS]
    if unknown:
        raise ConfigError(
            f"Unknown built-in tool {unknown[0]!r} in CONVOMEM_TOOLS: use all, none, or some of "
            f"{', '.join(BUILTIN_TOOLS)}."
        )
    return tuple(dict.fromkeys(words))


def _thread_of(runtime: Runtime) -> str | None:
    return (runtime.config.get("configurable") or {}).get("thread_id")


def _store(runtime: Runtime) -> BaseStore:
    if runtime.store is None:
        raise RuntimeError("no memory store is configured")
    return runtime.store


def _plain(snippet: str) -> str:
    """A search snippet without the highlight marks (control characters the model need not see)."""
    return " ".join(snippet.replace("\x02", "").replace("\x03", "").split())


def _facts_about(current: dict[str, str], what: str) -> list[str]:
    wanted = what.casefold().strip()
    return [
        attribute
        for attribute, value in current.items()
        if wanted and (wanted in attribute.replace("_", " ") or wanted in value.casefold())
    ]


def _search_tool(search: ConversationSearch) -> BaseTool:
    @tool(parse_docstring=True)
    async def search_conversations(
        query: str, runtime: Runtime, scope: Literal["all", "this"] = "all"
    ) -> str:
        """Search what the user and you said in earlier conversations. Use it when the user refers to
        something said before that you do not see here, e.g. query="flight tuesday".

        Args:
            query: a few key words to look for.
            scope: "all" for every conversation of this user, "this" for this conversation only.
        """
        user = memory_user(runtime.state, runtime)
        thread = _thread_of(runtime) if scope == "this" else None
        hits = [h for h in await search(query, user_id=user, thread_id=thread, limit=20) if h.role != "tool"]
        words = query.split()
        if not hits and len(words) > 1:  # every word must match at first; then any of them
            any_word = " or ".join(words)
            found = await search(any_word, user_id=user, thread_id=thread, limit=20)
            hits = [h for h in found if h.role != "tool"]
        hits = hits[:SEARCH_RESULTS]
        if not hits:
            return f"0 passages: nothing said matches {query!r}. Try other words."
        lines = [f"- [{h.when[:10]}, conversation {h.thread_id}, {h.role}] {_plain(h.text)}" for h in hits]
        return "\n".join([f"{len(hits)} passage{'s' if len(hits) > 1 else ''}", *lines])

    return search_conversations


@tool(parse_docstring=True)
async def recall_entity(name: str, runtime: Runtime) -> str:
    """Look up a person, place, organisation or thing the user mentioned before, and where and how it
    was mentioned, e.g. name="Acme".

    Args:
        name: the name as the user would say it.
    """
    found = await find_entity(_store(runtime), memory_user(runtime.state, runtime), name)
    if found is None:
        return f"Nothing remembered as {name!r}."
    record = found[1]
    aliases = f"; also called {', '.join(record.aliases)}" if record.aliases else ""
    lines = [
        f"{record.value} ({record.type}){aliases}: mentioned {record.mentions} time(s) in "
        f"{len(record.threads)} conversation(s) ({', '.join(record.threads)}), "
        f"first {record.first_seen[:10]}, last {record.last_seen[:10]}.",
        *(f"- said: {context}" for context in record.contexts[-5:]),
    ]
    return "\n".join(lines)


def _remember_tool(clock: Clock) -> BaseTool:
    @tool(parse_docstring=True)
    async def remember(fact: str, runtime: Runtime, topic: str = "") -> str:
        """Save a fact or preference the user asks you to remember, for every later conversation,
        e.g. fact="prefers window seats", topic="seat".

        Args:
            fact: what to keep, in a few words.
            topic: one or two words naming it; a new fact on the same topic replaces the old one.
        """
        try:
            statement = FactStatement(attribute=topic or " ".join(fact.split()[:3]), value=fact[:80])
        except ValidationError:
            raise ValueError("give the fact in a few plain words (at most 80 characters)") from None
        user = memory_user(runtime.state, runtime)
        key = f"tool:{runtime.tool_call_id}"  # idempotency key: a re-run of this call writes nothing twice
        update = ProfileUpdate(facts=[statement])
        written = await update_profile(_store(runtime), user, update, message_id=key, now=clock().isoformat())
        verb = "Saved" if written else "Already saved"
        return f"{verb}: {statement.attribute.replace('_', ' ')} = {statement.value}"

    return remember


@tool(parse_docstring=True)
async def forget(what: str, runtime: Runtime) -> str:
    """Forget something remembered about the user, only when they ask you to, e.g. what="Acme".
    The user is asked to confirm before anything is deleted.

    Args:
        what: the name or topic to forget.
    """
    store, user = _store(runtime), memory_user(runtime.state, runtime)
    entity = await find_entity(store, user, what, look_alike=False)
    profile = await load_profile(store, user)
    facts = _facts_about(profile.current_facts() if profile else {}, what)
    items = ([f"{entity[1].type} {entity[1].value}"] if entity else []) + [
        f"fact {a.replace('_', ' ')}: {profile.current_facts()[a]}" for a in facts if profile
    ]
    if not items:
        return f"Nothing remembered matches {what!r}."
    question = f"Forget {len(items)} thing(s) remembered about {what!r}? Answer {FORGET_ANSWERS}."
    answer = interrupt({"type": FORGET_CONFIRMATION, "what": what, "items": items, "question": question})
    if not forget_decision(answer):
        return "The user chose to keep it: nothing was forgotten."
    if entity is not None:
        await forget_entity(store, user, entity[1].value)
    if profile is not None and facts:
        kept = {a: v for a, v in profile.facts.items() if a not in facts}
        await store.aput(
            profile_namespace(user), PROFILE_KEY, profile.model_copy(update={"facts": kept}).model_dump()
        )
    return "Forgotten: " + "; ".join(items)


def make_memory_tools(
    *, search: ConversationSearch | None, clock: Clock, names: Sequence[str] = BUILTIN_TOOLS
) -> list[BaseTool]:
    """The built-in tools named (BUILTIN_TOOLS order); search_conversations only with a `search`."""
    made = {
        "search_conversations": _search_tool(search) if search is not None else None,
        "recall_entity": recall_entity,
        "remember": _remember_tool(clock),
        "forget": forget,
    }
    return [made_tool for name in BUILTIN_TOOLS if name in names and (made_tool := made[name]) is not None]
