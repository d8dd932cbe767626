"""The comparison as tables: counts per option, summed over its runs."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from bench.memory_eval.cases import RecallCase, Sentence
from bench.memory_eval.options import Option
from bench.memory_eval.runner import RecallResult
from bench.memory_eval.scoring import SentenceScore, tour_passes

__all__ = ["OptionRun", "markdown", "table"]

TYPES = ("PERSON", "LOC", "ORG", "TECH", "DATE", "EVENT", "PRODUCT", "OTHER")


@dataclass
class OptionRun:
    option: Option
    number: int
    scores: list[SentenceScore]
    recall: list[RecallResult]
    sentences: list[Sentence]
    cases: list[RecallCase]
    long: list[RecallResult] = field(default_factory=list)

    def per_type(self) -> dict[str, list[int]]:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for score in self.scores:
            for type_, counts in score.per_type.items():
                totals[type_] = [a + b for a, b in zip(totals[type_], counts, strict=True)]
        return totals

    def tour_ok(self) -> bool:
        return tour_passes(self.sentences, {s.sentence_id: s for s in self.scores})

    def tour_recall_ok(self) -> bool | None:
        tour = [r for r in self.recall if any(c.tour and c.id == r.case_id for c in self.cases)]
        return all(r.correct for r in tour) if tour else None

    def line(self) -> str:
        right = sum(c[0] for c in self.per_type().values())
        wanted = right + sum(c[2] for c in self.per_type().values())
        return (
            f"entities {right}/{wanted}, facts {sum(s.facts_found for s in self.scores)}/"
            f"{sum(s.facts_expected for s in self.scores)}, junk {sum(len(s.junk) for s in self.scores)}, "
            f"recall {sum(r.correct for r in self.recall)}/{len(self.recall)}, tour {self.tour_ok()}, "
            f"tour recall {self.tour_recall_ok()}"
        )


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator}/{denominator}" if denominator else "-"


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def _rows(runs: list[OptionRun]) -> tuple[list[list[str]], list[list[str]]]:
    by_option: dict[str, list[OptionRun]] = defaultdict(list)
    for run in runs:
        by_option[run.option.name].append(run)
    summary, types = [], []
    for name, group in by_option.items():
        scores = [s for r in group for s in r.scores]
        recall = [x for r in group for x in r.recall]
        replies = [*recall, *(x for r in group for x in r.long)]
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for run in group:
            for type_, counts in run.per_type().items():
                totals[type_] = [a + b for a, b in zip(totals[type_], counts, strict=True)]
        right = sum(c[0] for c in totals.values())
        wrong = sum(c[1] for c in totals.values())
        missed = sum(c[2] for c in totals.values())
        tour_recall = [ok for r in group if (ok := r.tour_recall_ok()) is not None]
        summary.append(
            [
                name,
                _ratio(right, right + wrong),
                _ratio(right, right + missed),
                _ratio(sum(s.facts_found for s in scores), sum(s.facts_expected for s in scores)),
                str(sum(s.facts_wrong for s in scores)),
                str(sum(len(s.junk) for s in scores) + sum(len(x.junk) for x in recall)),
                str(sum(s.dropped for s in scores)),
                _ratio(sum(x.correct for x in recall), len(recall)),
                _ratio(sum(r.tour_ok() for r in group), len(group)),
                _ratio(sum(tour_recall), len(tour_recall)),
                _ratio(sum(x.looped for x in replies), len(replies)),
                str(sum(x.html_entities for x in replies)),
                _median([s.seconds for s in scores]),
                _median([t for x in recall for t in x.turn_seconds]),
            ]
        )
        cells = [
            f"{_ratio(c[0], c[0] + c[1])} / {_ratio(c[0], c[0] + c[2])}" for c in (totals[t] for t in TYPES)
        ]
        types.append([name, *cells])
    return summary, types


SUMMARY_HEAD = [
    "option", "entity precision", "entity recall", "profile facts found", "wrong facts", "junk stored",
    "dropped by validation", "recall answers correct", "tour extraction ok (runs)", "tour recall ok (runs)",
    "replies looping (of all)", "HTML entities in replies", "s / extraction (median)",
    "s / graph turn (median)",
]  # fmt: skip


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def table(runs: list[OptionRun]) -> str:
    summary, types = _rows(runs)
    type_head = ["option", *(f"{t} P / R" for t in TYPES)]
    return _markdown_table(SUMMARY_HEAD, summary) + "\n\n" + _markdown_table(type_head, types)


def markdown(runs: list[OptionRun], *, command: str, minutes: float, load: str, threads: int) -> str:
    options = {run.option.name: run.option for run in runs}
    about = [f"- `{o.name}`: {o.about}" for o in options.values()]
    return "\n".join(
        [
            "# Memory on the local model",
            "",
            f"`{command}`: {minutes:.1f} min, llama.cpp on {threads} thread(s), load average at the end",
            f"{load}. Counts over every run. Precision = right / proposed, recall = right / expected (a",
            "right name with the wrong type counts as wrong and missed). Junk is judged by",
            "bench/memory_eval/scoring.py, apart from the validation (`dropped by validation`).",
            "",
            *about,
            "",
            table(runs),
            "",
        ]
    )
