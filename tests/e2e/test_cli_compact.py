"""`convomem db compact`: old turns keep only their last checkpoint; bad input is one clean error."""

from __future__ import annotations

from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok
from tests.integration.support import rows

NO_AUTO_COMPACTION = {"CONVOMEM_COMPACT_EVERY": "0"}


def checkpoints_per_run(url: str, thread_id: str) -> list[int]:
    found = rows(
        url,
        "SELECT count(*) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
        "GROUP BY metadata ->> 'run_id' ORDER BY min(checkpoint_id)",
        (thread_id,),
    )
    return [int(count) for (count,) in found]


def test_db_compact_keeps_turn_boundaries_and_the_newest_turns_whole(cli: Cli, database_url: str) -> None:
    for turn in range(4):
        assert_ok(cli.run("chat", "--thread", "t", "-m", f"turn {turn}", env=NO_AUTO_COMPACTION))
    before = checkpoints_per_run(database_url, "t")
    assert len(before) == 4 and min(before) > 1

    out = assert_ok(cli.run("db", "compact", "--keep-turns", "1")).stdout
    assert "1 threads compacted" in out
    assert checkpoints_per_run(database_url, "t") == [1, 1, 1, before[-1]]
    assert "turn 3" in assert_ok(cli.run("transcript", "--thread", "t")).stdout
    assert_ok(cli.run("chat", "--thread", "t", "-m", "still going"))


def test_db_compact_refuses_a_bad_thread_id(cli: Cli) -> None:
    assert "Invalid thread id" in assert_clean_error(cli.run("db", "compact", "--thread", "a b"))
