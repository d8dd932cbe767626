"""The report: one table (metric, convomem, baselines, ratio, target, met?), TARGET lines, PNG plots."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.node_counts import NodeCounts
from bench.suite import ColdResult, ConcurrencyResult, LengthResult, LocalResult, Sizes

__all__ = ["Report", "Target", "build_report", "node_table"]

PROMPT_BUDGET = 3000
OPS = {"<=": operator.le, ">=": operator.ge}
COLUMNS = ("convomem", "bare", "delta", "LangMem recipe")


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    op: str
    limit: float
    figures: str = ""
    """The measured figures behind the value (the report row's cells)."""

    @property
    def met(self) -> bool:
        return bool(OPS[self.op](self.value, self.limit))

    def line(self) -> str:
        verdict = "MET" if self.met else "MISSED"
        figures = f" ({self.figures})" if self.figures else ""
        return f"TARGET {self.name} {self.value:.4g} {self.op}{self.limit:g} {verdict}{figures}"


@dataclass
class Report:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def row(self, metric: str, cells: Sequence[str], ratio: str = "", target: Target | None = None) -> None:
        """`cells`: convomem's value, then bare's, delta's and the LangMem recipe's when measured."""
        values = (*cells, "", "", "")[:4]
        if target is not None:
            figures = "; ".join(f"{name} {cell}" for name, cell in zip(COLUMNS, values, strict=True) if cell)
            target = replace(target, figures=figures)
            self.targets.append(target)
            goal, met = f"{target.op} {target.limit:g}", "yes" if target.met else "**no**"
        else:
            goal, met = "", ""
        self.rows.append((metric, *values, ratio, goal, met))

    def markdown(self) -> str:
        head = ("metric", *COLUMNS, "ratio", "target", "met?")
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def _window_at(turn: int, window: int, windows: int) -> int:
    return min(max(turn // window - 1, 0), windows - 1)


NAMES = ("convomem", "bare", "delta", "langmem")
EXTRA = {
    "convomem-async": "convomem with durability=async (the baselines' default)",
    "convomem-tools": "convomem with its built-in memory tools (run records are always on)",
}


def _length_rows(report: Report, runs: dict[str, LengthResult], sizes: Sizes) -> None:
    w = sizes.window
    p50 = {name: run.window_p50(w) for name, run in runs.items()}
    cm, bare = p50["convomem"], p50["bare"]
    last = len(cm)
    at = _window_at(300, w, last)
    for index in sorted({0, at, last - 1}):
        report.row(
            f"turn p50, turns {index * w + 1}-{(index + 1) * w}"
            + (" (nearest turn 300)" if index == at else ""),
            [_ms(p50[n][index]) for n in NAMES],
            f"{cm[index] / bare[index]:.2f}x bare",
        )
    for name, label in EXTRA.items():
        if name in p50:
            other = p50[name]
            report.row(
                f"  {label}, turn p50 at the windows above",
                [" / ".join(_ms(other[i]) for i in sorted({0, at, last - 1}))],
                f"{other[at] / bare[at]:.2f}x bare at turn 300",
            )
    report.row(
        "turn cost growth (last / first window p50)",
        [f"{p50[n][-1] / p50[n][0]:.2f}" for n in NAMES],
        "",
        Target("turn_cost_growth", cm[-1] / cm[0], "<=", 1.25),
    )
    first = {name: statistics.median(run.first_tokens) for name, run in runs.items()}
    report.row(
        "time to first token, p50 over all turns",
        [_ms(first[n]) for n in NAMES],
        f"{first['convomem'] / first['bare']:.2f}x bare",
        Target("first_token_p50_vs_bare", first["convomem"] / first["bare"], "<=", 1.0),
    )
    commits = {name: run.commits_per_turn for name, run in runs.items()}
    report.row(
        "Postgres transactions per turn (pg_stat_database xact_commit)",
        [f"{commits[n]:.1f}" for n in NAMES],
        f"{commits['convomem'] / commits['bare']:.2f}x bare",
        Target("transactions_per_turn", commits["convomem"], "<=", 25),
    )
    wal = {name: run.wal_per_turn for name, run in runs.items()}
    report.row(
        "WAL bytes per turn",
        [f"{wal[n] / 1e3:.1f} kB" for n in NAMES],
        f"{wal['convomem'] / wal['bare']:.2f}x bare",
        Target("wal_bytes_per_turn_vs_bare", wal["convomem"] / wal["bare"], "<=", 1.0),
    )
    for name, label in EXTRA.items():
        if name in runs:
            report.row(
                f"  {label}: transactions / WAL per turn, first token p50",
                [f"{commits[name]:.1f} / {wal[name] / 1e3:.1f} kB, {_ms(first[name])}"],
            )
    for turn in sizes.storage_at:
        storage = {name: run.storage[turn] for name, run in runs.items()}
        ratio = storage["convomem"].total / storage["bare"].total
        final = turn == sizes.storage_at[-1]
        report.row(
            f"storage after {turn} turns (thread's rows)",
            [_mb(storage[n].total) for n in NAMES],
            f"{ratio:.3f}x bare",
            Target("storage_vs_bare", ratio, "<=", 0.05) if final else None,
        )
        report.row(
            f"  database size after {turn} turns (tables + indexes + TOAST)",
            [_mb(storage[n].relations) for n in NAMES],
            f"{storage['convomem'].relations / storage['bare'].relations:.3f}x bare",
        )
    parts = runs["convomem"].storage[sizes.storage_at[-1]].rows
    report.row("  convomem rows by table (last size)", [", ".join(f"{k} {_mb(v)}" for k, v in parts.items())])
    kept = {name: run.kept_messages for name, run in runs.items()}
    expected = 2 * sizes.turns
    report.row(
        f"messages kept (state + transcript) of {expected}",
        [str(kept[n]) for n in NAMES],
        "",
        Target("full_transcript_kept", kept["convomem"] / expected, ">=", 1.0),
    )
    tokens = {name: run.prompt_tokens for name, run in runs.items()}
    report.row(
        "prompt tokens, max over turns",
        [str(max(tokens[n])) for n in NAMES],
        "",
        Target("prompt_tokens_max", max(tokens["convomem"]), "<=", PROMPT_BUDGET),
    )
    report.row(
        f"prompt tokens at turn 1 / turn {sizes.turns}", [f"{tokens[n][0]} / {tokens[n][-1]}" for n in NAMES]
    )


def _concurrency_rows(report: Report, results: Sequence[ConcurrencyResult]) -> None:
    def find(variant: str, threads: int, processes: int) -> ConcurrencyResult | None:
        key = (variant, threads, processes)
        return next((r for r in results if (r.variant, r.threads, r.processes) == key), None)

    for processes in (1, 2):
        for threads in sorted({r.threads for r in results}):
            cm, bare = find("convomem", threads, processes), find("bare", threads, processes)
            if cm is None or bare is None:
                continue
            where = f"{threads} threads x {cm.turns // threads} turns, {processes} process"
            where += "es" if processes > 1 else ""
            ratio = cm.turns_per_s / bare.turns_per_s
            headline = (threads, processes) == (8, 1)
            peer = find("langmem", threads, processes)
            cells = [f"{r.turns_per_s:.1f} turns/s" if r else "" for r in (cm, bare, None, peer)]
            report.row(
                f"throughput, {where}",
                cells,
                f"{ratio:.2f}x bare",
                Target("throughput_8t_vs_bare", ratio, ">=", 0.6) if headline else None,
            )
            if peer is not None:
                vs_peer = cm.turns_per_s / peer.turns_per_s
                report.row(
                    f"  throughput vs the LangMem recipe, {where}",
                    [cells[0], "", "", cells[3]],
                    f"{vs_peer:.2f}x LangMem",
                    Target("throughput_8t_vs_langmem", vs_peer, ">=", 1.0) if headline else None,
                )
            p99_ratio = cm.p99 / bare.p99
            report.row(
                f"  p50 / p99, {where}",
                [f"{_ms(r.p50)} / {_ms(r.p99)}" if r else "" for r in (cm, bare, None, peer)],
                f"p99 {p99_ratio:.2f}x bare",
                Target("p99_8t_vs_bare", p99_ratio, "<=", 1.5) if headline else None,
            )
            tools = find("convomem-tools", threads, processes)
            if tools is not None:
                report.row(
                    f"  {EXTRA['convomem-tools']}, {where}",
                    [f"{tools.turns_per_s:.1f} turns/s, p99 {_ms(tools.p99)}"],
                    f"{tools.turns_per_s / bare.turns_per_s:.2f}x bare",
                )
            locked = find("convomem-locked", threads, processes)
            if locked is not None:
                report.row(
                    f"  convomem with upstream's saver lock, {where}",
                    [f"{locked.turns_per_s:.1f} turns/s, p99 {_ms(locked.p99)}"],
                    f"lock-free: {cm.turns_per_s / locked.turns_per_s:.2f}x the throughput",
                )


def node_table(counts: NodeCounts) -> str:
    """Markdown: where convomem's transactions and round trips go, per turn."""
    transactions, round_trips = counts.total
    checks = sum(counts.checks.values())
    lines = [
        f"Where a convomem turn's Postgres work goes (client-side count over {counts.turns} turns after a "
        f"warm-up; bench/node_counts.py). Total {transactions:.1f} transactions and {round_trips:.1f} round "
        f"trips per turn; the server counted {counts.server_transactions:.1f} transactions per turn over the "
        "same turns (pg_stat_database, including closing the pools). Each pool checkout runs psycopg_pool's "
        f"connection check, an empty statement: {checks:.1f} of those transactions and round trips.",
        "",
        "| where | transactions / turn | round trips / turn | of which connection checks |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {where} | {tx:.2f} | {rt:.2f} | {ck:.2f} |" for where, tx, rt, ck in counts.rows()]
    return "\n".join(lines)


def build_report(
    sizes: Sizes,
    runs: dict[str, LengthResult],
    concurrency: Sequence[ConcurrencyResult],
    cold: ColdResult | None,
    local: LocalResult | None,
) -> Report:
    report = Report()
    _length_rows(report, runs, sizes)
    _concurrency_rows(report, concurrency)
    if cold is not None:
        p = cold.phases
        report.row(
            f"cold resume, {cold.turns}-turn thread: first token from process spawn (incl. Postgres start)",
            [f"{p['first_token']:.2f} s"],
            f"imports {p['imports']:.2f} s, Postgres up {p['postgres']:.2f} s, opened {p['opened']:.2f} s, "
            f"done {p['turn_done']:.2f} s",
            Target("cold_resume_first_token_s", p["first_token"], "<=", 2.0),
        )
    if local is not None:
        report.row(
            "local SmolLM2 turn: time to first token / total / tokens/s",
            [f"{local.first_token:.2f} s / {local.total:.2f} s / {local.tokens_per_s:.1f}"],
            f"server start {local.server_start:.1f} s, {local.tokens} tokens",
        )
    return report


def plot(out: Path, runs: dict[str, LengthResult], sizes: Sizes) -> list[Path]:
    """turn_cost.png, storage.png, prompt_tokens.png in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    w = sizes.window
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, run in runs.items():
        p50 = run.window_p50(w)
        ax.plot([(i + 1) * w for i in range(len(p50))], [v * 1000 for v in p50], marker="o", label=name)
    ax.set(
        xlabel="turn (end of window)",
        ylabel=f"p50 turn latency per {w} turns (ms)",
        title="Turn cost vs length",
    )
    written.append(_save(fig, ax, out / "turn_cost.png"))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, run in runs.items():
        turns = sorted(run.storage)
        ax.plot(turns, [run.storage[t].total / 1e6 for t in turns], marker="o", label=name)
    ax.set(xlabel="turns", ylabel="MB (thread's rows)", title="Storage vs length", yscale="log")
    written.append(_save(fig, ax, out / "storage.png"))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, run in runs.items():
        ax.plot(range(1, len(run.prompt_tokens) + 1), run.prompt_tokens, label=name)
    ax.axhline(PROMPT_BUDGET, color="grey", linestyle="--", label="convomem budget")
    ax.set(xlabel="turn", ylabel="input tokens of the reply request", title="Prompt size vs length")
    written.append(_save(fig, ax, out / "prompt_tokens.png"))
    return written


def _save(fig: object, ax: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend()  # type: ignore[attr-defined]
    ax.grid(alpha=0.3)  # type: ignore[attr-defined]
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
