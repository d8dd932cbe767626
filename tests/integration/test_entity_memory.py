"""Entity memory on the real Postgres store: resolution, profile, bad model output, resume, semantic."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_openai import OpenAIEmbeddings
from langgraph.store.postgres.aio import AsyncPostgresStore
from pydantic import SecretStr

from checkpoint.persistence import Persistence
from graphs.api import Convomem
from nodes.errors import NothingToResume
from nodes.extract_entities import store_entities
from nodes.memory import EntityRecord
from tests.fake_openai import EMBEDDING_DIMS, EMBEDDING_MODEL, FakeOpenAIServer
from tests.integration.support import finish, rows

NOT_JSON = '{"entities": [{"type": "ORG", "value": "Ac'


def proposal(*entities: tuple[str, str], profile: dict[str, Any] | None = None) -> str:
    """Tool-call arguments as the model would send them: (type, value) pairs, optionally a profile."""
    arguments: dict[str, Any] = {
        "entities": [{"type": t, "value": v, "context": "", "confidence": 0.9} for t, v in entities]
    }
    if profile is not None:
        arguments["profile"] = profile
    return json.dumps(arguments)


def memory_rows(url: str, user_id: str = "default") -> list[tuple[str, str, Any]]:
    """The user's remembered rows (entities, word index, profile), without the extraction markers."""
    return [
        (prefix, key, value)
        for prefix, key, value in rows(
            url,
            "SELECT prefix, key, value FROM store WHERE prefix LIKE %s ORDER BY prefix, key",
            (f"convomem.users.{user_id}.%",),
        )
        if not prefix.endswith(".extracted")
    ]


def entity_rows(url: str, user_id: str = "default") -> dict[str, EntityRecord]:
    return {
        key: EntityRecord.model_validate(value)
        for prefix, key, value in memory_rows(url, user_id)
        if prefix.endswith(".entities")
    }


def profile_row(url: str, user_id: str = "default") -> dict[str, Any] | None:
    found = [value for prefix, _, value in memory_rows(url, user_id) if prefix.endswith(".profile")]
    return found[0] if found else None


async def extraction(app: Convomem, thread_id: str = "t") -> dict[str, Any]:
    return dict((await app.state(thread_id)).values["extraction"])


# --- resolution ----------------------------------------------------------------------------------------


async def test_the_acme_family_is_one_row_findable_by_its_words(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(
        proposal(("ORG", "Acme")),
        proposal(("ORG", "ACME Corp.")),
        proposal(("ORG", "Acme Corporation")),
        proposal(("PRODUCT", "Acme")),
    )
    for n, text in enumerate(
        ["I joined Acme.", "ACME Corp. pays well.", "Acme Corporation grew.", "Acme ships."]
    ):
        await app.send(f"t{n}", text)
    assert list(entity_rows(database_url)) == ["ORG:acme"]
    acme = entity_rows(database_url)["ORG:acme"]
    assert (acme.value, acme.aliases, acme.mentions) == ("Acme", ["ACME Corp.", "Acme Corporation"], 4)
    assert acme.threads == ["t0", "t1", "t2", "t3"]
    index = {
        key: value["keys"]
        for prefix, key, value in memory_rows(database_url)
        if prefix.endswith("entity_index")
    }
    assert index == {"acme": ["ORG:acme"]}
    assert (await extraction(app, "t3"))["resolution"]["normalized"] == 1


async def test_typos_merge_and_look_alikes_do_not(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(
        proposal(("PERSON", "Ada Lovelace"), ("LOC", "Paris"), ("PERSON", "Jordan")),
        proposal(("PERSON", "Ada Lovelase"), ("LOC", "Parma"), ("LOC", "Jordan")),
    )
    # Only names the user wrote are stored (nodes.grounding): the messages name what is proposed.
    await app.send("t", "Ada Lovelace met Jordan in Paris.")
    await app.send("t", "Ada Lovelase flew from Parma to Jordan.")
    assert sorted(entity_rows(database_url)) == [
        "LOC:jordan",
        "LOC:paris",
        "LOC:parma",
        "PERSON:ada_lovelace",
        "PERSON:jordan",
    ]
    assert entity_rows(database_url)["PERSON:ada_lovelace"].aliases == ["Ada Lovelase"]
    assert (await extraction(app))["resolution"] == {
        "normalized": 0,
        "alias": 0,
        "similar": 1,
        "semantic": 0,
        "new": 2,
    }


# --- profile -----------------------------------------------------------------------------------------------


async def test_profile_facts_from_the_fake_rules_are_stored(app: Convomem, database_url: str) -> None:
    await app.send("t", "My name is Ada. I live in Lisbon and I work at Acme.")
    profile = profile_row(database_url)
    assert profile is not None and profile["name"] == "Ada"
    assert {a: v[-1]["value"] for a, v in profile["facts"].items()} == {
        "lives_in": "Lisbon",
        "works_at": "Acme",
    }
    assert (await extraction(app))["profile_updated"] is True
    assert {"LOC:lisbon", "ORG:acme"} <= set(entity_rows(database_url))


# --- bad model output over real HTTP ----------------------------------------------------------------------


async def test_arguments_that_are_not_json_are_repaired(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(NOT_JSON)
    ended = await app.send("t", "I work at Acme.")
    assert ended.next_nodes == ()
    assert len(fake_model.requests_of("extract")) == 2
    assert list(entity_rows(database_url)) == ["ORG:acme"]
    assert (await extraction(app))["error"] is None


async def test_arguments_that_stay_broken_store_nothing_and_the_turn_completes(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(NOT_JSON, "[[[")
    ended = await app.send("t", "My name is Ada and I work at Acme.")
    assert ended.next_nodes == () and ended.reply is not None
    assert memory_rows(database_url) == []
    assert "JSON" in (await extraction(app))["error"]


async def test_absurd_values_are_dropped_and_nothing_wrong_is_stored(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    absurd = proposal(
        ("ORG", ""),
        ("ORG", "x" * 5000),
        ("PERSON", "w " * 40),
        ("ORG", "Acme"),
        profile={"name": "Ada" * 3000},
    )
    fake_model.script_extractions(absurd, absurd)
    ended = await app.send("t", "I work at Acme.")
    assert ended.next_nodes == ()
    assert len(fake_model.requests_of("extract")) == 2  # the profile earned one repair
    assert list(entity_rows(database_url)) == ["ORG:acme"]
    assert profile_row(database_url) is None
    assert (await extraction(app))["error"] is None


# --- idempotency, review and resume -------------------------------------------------------------------------

ALIASED = proposal(("ORG", "Acme"), ("ORG", "ACME Corp."), profile={"name": "Ada"})


async def test_a_review_resumed_stores_once(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(ALIASED)
    paused = await app.send("t", "I am Ada, I work at Acme (ACME Corp.).", review_memory=True)
    [pending] = paused.interrupts
    assert pending.value["profile"] == {"name": "Ada"}
    assert memory_rows(database_url) == []

    await finish(app.resume("t", "approve", review_memory=True))
    acme = entity_rows(database_url)["ORG:acme"]
    assert (acme.aliases, acme.mentions) == (["ACME Corp."], 1)
    assert profile_row(database_url) is not None
    with pytest.raises(NothingToResume):
        await finish(app.resume("t", "approve", review_memory=True))
    assert len(fake_model.requests_of("extract")) == 1


async def test_extracting_a_message_again_leaves_identical_rows(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(ALIASED, ALIASED)
    await app.send("t", "I am Ada, I work at Acme (ACME Corp.).")
    before = memory_rows(database_url)
    assert len(before) > 2
    # As if the process died after the writes but before the marker: the same message is extracted again.
    message_id = (await extraction(app))["message_id"]
    rows(
        database_url,
        "DELETE FROM store WHERE prefix = 'convomem.users.default.extracted' AND key = %s RETURNING key",
        (message_id,),
    )
    fan_out = next(c for c in await app.history("t") if "extract_entities" in c.next_nodes)
    await finish(app.replay("t", fan_out.checkpoint_id))
    assert len(fake_model.requests_of("extract")) == 2
    assert (await extraction(app))["message_id"] == message_id
    assert memory_rows(database_url) == before


# --- semantic resolution on pgvector -----------------------------------------------------------------------


@pytest.fixture
async def vector_store(
    persistence: Persistence, fake_model: FakeOpenAIServer
) -> AsyncIterator[AsyncPostgresStore]:
    """The project's store tables with a pgvector index, embedding through the fake /v1/embeddings."""
    embeddings = OpenAIEmbeddings(
        openai_api_base=fake_model.base_url,
        openai_api_key=SecretStr("test"),
        model=EMBEDDING_MODEL,
        check_embedding_ctx_length=False,
    )
    store = AsyncPostgresStore(
        persistence.pool, index={"dims": EMBEDDING_DIMS, "embed": embeddings, "fields": ["value"]}
    )
    await store.setup()
    yield store
    task = getattr(store, "_task", None)
    if isinstance(task, asyncio.Task):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_semantic_resolution_on_pgvector(
    vector_store: AsyncPostgresStore, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    counts: Counter[str] = Counter()
    sample = [("PERSON", "Lovelace"), ("PERSON", "Lovelase"), ("LOC", "Paris"), ("LOC", "Parma")]
    for n, (kind, value) in enumerate(sample):
        stored = await store_entities(
            vector_store,
            "u1",
            [{"type": kind, "value": value}],
            message_ids=[f"m{n}"],
            thread_id="t",
            now=f"2026-01-01T00:00:0{n}+00:00",
            semantic=True,
            semantic_threshold=0.7,
        )
        counts.update(stored.resolution)
    assert sorted(entity_rows(database_url, "u1")) == ["LOC:paris", "LOC:parma", "PERSON:lovelace"]
    assert entity_rows(database_url, "u1")["PERSON:lovelace"].aliases == ["Lovelase"]
    assert +counts == {"new": 3, "semantic": 1}
    assert fake_model.requests_of("embed")
    embedded = rows(database_url, "SELECT DISTINCT field_name FROM store_vectors ORDER BY 1")
    assert [row[0] for row in embedded] == ["aliases[*]", "value"] or [row[0] for row in embedded][
        -1
    ] == "value"


# --- a scripted 30-message sample ---------------------------------------------------------------------------

SAMPLE: list[tuple[str, list[tuple[str, str]]]] = [
    ("Hi, I'm Ada Lovelace and I work at Acme.", [("PERSON", "Ada Lovelace"), ("ORG", "Acme")]),
    ("Acme Corp. is based in Paris.", [("ORG", "Acme Corp."), ("LOC", "Paris")]),
    ("ok thanks", []),
    ("My colleague Charles Babbage joined ACME last week.", [("PERSON", "Charles Babbage"), ("ORG", "ACME")]),
    ("Charles Babage loves Python.", [("PERSON", "Charles Babage"), ("TECH", "Python")]),
    ("We deploy on Kubernetes.", [("TECH", "Kubernetes")]),
    ("kubernets upgrades are painful.", [("TECH", "kubernets")]),
    ("I moved to Paris in 2024.", [("LOC", "Paris"), ("DATE", "2024")]),
    ("Next trip: Parma, Italy.", [("LOC", "Parma"), ("LOC", "Italy")]),
    ("Michael Jordan was my childhood hero.", [("PERSON", "Michael Jordan")]),
    ("We hiked in Jordan last spring.", [("LOC", "Jordan")]),
    ("Acme Corporation released AcmeDB.", [("ORG", "Acme Corporation"), ("PRODUCT", "AcmeDB")]),
    ("AcmeDB runs on PostgreSQL.", [("PRODUCT", "AcmeDB"), ("TECH", "PostgreSQL")]),
    ("Postgres is great.", [("TECH", "Postgres")]),
    ("Ada Lovelase again, typo intended.", [("PERSON", "Ada Lovelase")]),
    ("yes great", []),
    ("Grace Hopper visited Acme, Inc.", [("PERSON", "Grace Hopper"), ("ORG", "Acme, Inc.")]),
    ("Grace Hoper wrote COBOL.", [("PERSON", "Grace Hoper"), ("TECH", "COBOL")]),
    ("Lisbon is lovely in May.", [("LOC", "Lisbon"), ("DATE", "May")]),
    ("Lisboa, as locals say.", [("LOC", "Lisboa")]),
    ("PyCon 2025 is in Pittsburgh.", [("EVENT", "PyCon 2025"), ("LOC", "Pittsburgh")]),
    ("PyCon 2026 will be elsewhere.", [("EVENT", "PyCon 2026")]),
    ("Python 3.13 is out.", [("TECH", "Python 3.13")]),
    ("python is my favourite.", [("OTHER", "python")]),
    ("Babbage designed engines.", [("PERSON", "Babbage")]),
    ("I use Neovim at Acme Labs.", [("TECH", "Neovim"), ("ORG", "Acme Labs")]),
    ("Acme Labs is a sister company of Acme.", [("ORG", "Acme Labs"), ("ORG", "Acme")]),
    ("Berlín or Berlin, same city.", [("LOC", "Berlín"), ("LOC", "Berlin")]),
    ("Bob Smith and Rob Smith are twins.", [("PERSON", "Bob Smith"), ("PERSON", "Rob Smith")]),
    ("Charles Babage says bye.", [("PERSON", "Charles Babage")]),
]


async def test_a_thirty_message_sample_resolves_to_the_expected_entities(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.script_extractions(*(proposal(*entities) for _, entities in SAMPLE))
    counts: Counter[str] = Counter()
    for text, _ in SAMPLE:
        await app.send("t", text)
        counts.update((await extraction(app))["resolution"])
    print("\nresolution on the 30-message sample:", dict(counts), "rows:", len(entity_rows(database_url)))
    assert len(fake_model.requests_of("extract")) == len(SAMPLE)
    values = {record.value: record for record in entity_rows(database_url).values()}
    assert set(values) == {
        *("Ada Lovelace", "Acme", "Paris", "Charles Babbage", "Python", "Kubernetes", "2024", "Parma"),
        *("Italy", "Michael Jordan", "Jordan", "AcmeDB", "PostgreSQL", "Grace Hopper", "COBOL"),
        *("Lisbon", "May", "Lisboa", "PyCon 2025", "Pittsburgh", "PyCon 2026", "Python 3.13", "Babbage"),
        *("Neovim", "Acme Labs", "Berlín", "Bob Smith", "Rob Smith"),
    }
    assert set(values["Acme"].aliases) == {"Acme Corp.", "Acme Corporation", "Acme, Inc."}  # not "ACME"
    assert values["Acme"].mentions == 6
    assert values["Charles Babbage"].aliases == ["Charles Babage"]
    assert values["Kubernetes"].aliases == ["kubernets"]
    assert values["Berlín"].aliases == ["Berlin"]
    assert values["PostgreSQL"].aliases == ["Postgres"]
    assert values["Grace Hopper"].aliases == ["Grace Hoper"]
    assert values["Python"].mentions == 2 and values["Lisboa"].aliases == []
    assert sum(counts.values()) == sum(len(entities) for _, entities in SAMPLE)
    assert counts["new"] == len(values)
    assert dict(counts) == {"normalized": 9, "alias": 1, "similar": 6, "semantic": 0, "new": 28}
