"""`python -m bench.memory_eval [--runs N] [--option NAME ...] [--cases all|tour|quick]`: memory quality
on the real local model, as counts. Writes bench/results/memory_eval.md (and .json)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.db import create_database
from bench.memory_eval.cases import RecallCase, Sentence, load_cases
from bench.memory_eval.options import OPTIONS
from bench.memory_eval.report import OptionRun, markdown, table
from bench.memory_eval.runner import extraction_pass, long_replies, recall_pass, running_server
from checkpoint.embedded import start_embedded, stop_embedded

__all__ = ["main"]

QUICK = (
    *("tour-intro", "tour-sister", "tour-story", "name-2", "place-2", "place-3", "work-1", "work-3"),
    *("tech-2", "family-4", "date-1", "pref-1", "chat-1", "chat-3", "mixed-1", "mixed-4"),
)
"""`--cases quick`: 16 of the sentences, every kind, for the options that call a slow model."""


def progress(message: str) -> None:
    print(f"[memory_eval {time.strftime('%H:%M:%S')}] {message}", flush=True)


def pick(
    kind: str, sentences: list[Sentence], recall: list[RecallCase]
) -> tuple[list[Sentence], list[RecallCase]]:
    if kind == "tour":
        return [s for s in sentences if s.tour], [r for r in recall if r.tour]
    if kind == "quick":
        return [s for s in sentences if s.id in QUICK], [r for r in recall if r.tour]
    return sentences, recall


async def run(args: argparse.Namespace) -> list[OptionRun]:
    sentences, recall = pick(args.cases, *load_cases())
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-memory-eval-"))
    cache = args.out / "models"
    runs: list[OptionRun] = []
    root = start_embedded(data_dir) if args.recall else ""
    try:
        for name in args.option:
            option = OPTIONS[name]
            log = args.out / f"llama-{name}.log"
            with running_server(option, cache, log, args.threads) as server:
                for number in range(1, args.runs + 1):
                    progress(f"{name} run {number}/{args.runs}: {len(sentences)} sentences")
                    scores = await extraction_pass(option, server.base_url, sentences)
                    recalled = []
                    if args.recall:
                        progress(f"{name} run {number}/{args.runs}: {len(recall)} recall questions")
                        recalled = await recall_pass(
                            option,
                            server.base_url,
                            recall,
                            root_url=root,
                            data_dir=data_dir,
                            run=number,
                            max_tokens=args.max_tokens,
                        )
                    long = []
                    if args.recall and args.long_replies:
                        progress(f"{name} run {number}/{args.runs}: {args.long_replies} long replies")
                        url = await asyncio.to_thread(create_database, root, f"memory_eval_long_{number}")
                        long = await long_replies(
                            option,
                            server.base_url,
                            url=url,
                            data_dir=data_dir,
                            count=args.long_replies,
                            max_tokens=args.long_tokens,
                        )
                    result = OptionRun(option, number, scores, recalled, sentences, recall, long)
                    progress(result.line())
                    runs.append(result)
    finally:
        if root:
            stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_eval", description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="repetitions of every option (default 1)")
    parser.add_argument(
        "--option", action="append", choices=sorted(OPTIONS), help="option (repeatable; default: default)"
    )
    parser.add_argument("--cases", choices=("all", "tour", "quick"), default="all")
    parser.add_argument("--no-recall", dest="recall", action="store_false", help="extraction only")
    parser.add_argument("--max-tokens", type=int, default=96, help="reply cap (CONVOMEM_MAX_TOKENS)")
    parser.add_argument("--long-replies", type=int, default=0, help="open-ended turns to check for loops")
    parser.add_argument("--long-tokens", type=int, default=400, help="reply cap of those turns")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: busy machine)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    args.option = args.option or ["default"]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs = asyncio.run(run(args))
    print(table(runs), flush=True)
    command = "python -m bench.memory_eval " + " ".join(sys.argv[1:] if argv is None else argv)
    elapsed = (time.monotonic() - started) / 60
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    report = markdown(runs, command=command.strip(), minutes=elapsed, load=load, threads=args.threads)
    stem = "memory_eval" if args.cases == "all" else f"memory_eval_{args.cases}"
    (args.out / f"{stem}.md").write_text(report)
    raw = [
        {"option": r.option.name, "run": r.number, "sentences": [asdict(s) for s in r.scores],
         "recall": [asdict(x) for x in r.recall], "long": [asdict(x) for x in r.long]}
        for r in runs
    ]  # fmt: skip
    (args.out / f"{stem}.json").write_text(json.dumps(raw, indent=1, default=str))
    progress(f"report: {args.out / (stem + '.md')} ({elapsed:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
