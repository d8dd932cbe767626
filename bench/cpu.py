"""What a scale-out run keeps busy: CPU of processes (from /proc), and Postgres sessions' wait events.

Linux only (/proc). CPU figures are seconds of user + system time; divided by the wall time of a window
they are cores in use.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

__all__ = ["Activity", "ActivitySampler", "machine_busy", "postgres_cpu", "postmaster_pid", "process_cpu"]

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY_S = 0.1


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3, state, is index 0)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """CPU seconds of a live process (0 when it is gone), plus those of its exited and reaped children."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def postmaster_pid(url: str) -> int:
    """The pid of the Postgres server (the parent of a session's backend) of `url`, on this machine."""
    with psycopg.connect(url, autocommit=True) as conn:  # read while the backend lives
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(_stat(int(row[0]))[1])


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the whole server so far: the postmaster, its live children (backends, WAL writer,
    checkpointer, autovacuum...) and its exited children."""
    total = process_cpu(postmaster, reaped_children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == postmaster:
                    total += process_cpu(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every process of every user (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # without guest time, which user time already counts
    return (total - idle) / TICK, total / TICK


@dataclass
class Activity:
    """Averages over the samples of the database's server sessions (pg_stat_activity)."""

    samples: int = 0
    sessions: int = 0
    max_sessions: int = 0
    active: int = 0
    lock: int = 0
    lwlock: int = 0
    io: int = 0
    events: Counter[str] = field(default_factory=Counter)
    """Running sessions per wait event (type:name), summed over the samples."""

    def mean(self, total: int) -> float:
        return total / self.samples if self.samples else 0.0

    def top_waits(self, n: int = 3) -> str:
        """The `n` commonest wait events of running sessions, with the mean sessions in each."""
        return ", ".join(f"{event} {self.mean(count):.2f}" for event, count in self.events.most_common(n))


class ActivitySampler:
    """Samples the database's sessions every SAMPLE_EVERY_S from a thread until stopped: how many are
    running a statement, and how many of those wait on a heavyweight lock (Lock: rows, advisory locks),
    on an internal lock (LWLock: WAL insertion, buffers...) or on I/O (WAL flush at commit...)."""

    QUERY = (
        "SELECT count(*) AS sessions, count(*) FILTER (WHERE state = 'active') AS active, "
        "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') AS lock, "
        "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'LWLock') AS lwlock, "
        "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'IO') AS io "
        "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    EVENTS = (
        "SELECT wait_event_type || ':' || wait_event, count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND state = 'active' AND wait_event IS NOT NULL GROUP BY 1"
    )

    def __init__(self, root_url: str, dbname: str):
        self.root_url = root_url
        self.dbname = dbname
        self.activity = Activity()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Activity:
        self._stop.set()
        self._thread.join()
        return self.activity

    def _run(self) -> None:
        a = self.activity
        with psycopg.connect(self.root_url, autocommit=True) as conn:
            while not self._stop.wait(SAMPLE_EVERY_S):
                row = conn.execute(self.QUERY, (self.dbname,)).fetchone()
                assert row is not None
                sessions, active, lock, lwlock, io = (int(v) for v in row)
                a.samples += 1
                a.sessions += sessions
                a.max_sessions = max(a.max_sessions, sessions)
                a.active += active
                a.lock += lock
                a.lwlock += lwlock
                a.io += io
                for event, count in conn.execute(self.EVENTS, (self.dbname,)).fetchall():
                    a.events[str(event)] += int(count)
