"""Resumable, parallel preprocessing: outputs are written atomically, one file per
utterance, and a journal remembers what is done."""
from __future__ import annotations

import json
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfake_audio.training.datasets import Corpus, Utterance
from deepfake_audio.training.files import JOURNAL, METADATA, SKIPPED, atomic_write, read_jsonl, write_jsonl


@dataclass
class Outcome:
    """Result of processing one item: a metadata record, or the reason it was skipped."""

    id: str
    record: dict | None = None
    skipped: str | None = None  # reason
    source: str = ""


def _pool_context():
    # fork starts workers instantly; where it does not exist (Windows, macOS default) spawn works too.
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def parallel_map(fn: Callable, items: list, workers: int, desc: str, quiet: bool = False,
                 initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """Apply `fn` to `items` over `workers` processes, in any order, with a tqdm bar."""
    from tqdm import tqdm
    bar = tqdm(total=len(items), desc=desc, unit="utt", disable=quiet or not items, dynamic_ncols=True)
    try:
        if workers <= 1 or len(items) <= 1:
            threads = torch.get_num_threads()  # a worker initializer sets one thread: not for this process
            try:
                if initializer is not None:
                    initializer(*initargs)
                for item in items:
                    yield fn(item)
                    bar.update()
            finally:
                torch.set_num_threads(threads)
            return
        chunk = max(1, min(16, len(items) // (workers * 8)))
        with _pool_context().Pool(workers, initializer, initargs) as pool:
            for result in pool.imap_unordered(fn, items, chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()


def _worker_threads() -> None:
    torch.set_num_threads(1)


def process_utterances(corpus: Corpus, out: Path, fn: Callable[[Utterance], Outcome], workers: int,
                       desc: str, quiet: bool = False, outputs_exist: Callable[[dict], bool] | None = None,
                       initializer: Callable | None = None, initargs: tuple = ()) -> list[dict]:
    """Run `fn` on every utterance not done yet; write metadata.jsonl and skipped.txt; return the records.

    A journal in `out` records each outcome as soon as it arrives, so an interrupted run
    continues where it stopped. Utterances that failed before are tried again.
    """
    out.mkdir(parents=True, exist_ok=True)
    journal_path = out / JOURNAL
    done: dict[str, dict] = {}
    for entry in read_jsonl(journal_path):
        record = entry.get("record")
        if record is not None and (outputs_exist is None or outputs_exist(record)):
            done[entry["id"]] = record
    todo = [u for u in corpus.utterances if u.id not in done]
    if done and not quiet:
        print(f"resuming: {len(corpus.utterances) - len(todo)} of {len(corpus.utterances)} utterances already done")
    skipped = list(corpus.skipped)

    def init(*args):
        _worker_threads()
        if initializer is not None:
            initializer(*args)

    with journal_path.open("a", encoding="utf-8") as journal:
        for outcome in parallel_map(fn, todo, workers, desc, quiet, init, initargs):
            journal.write(json.dumps({"id": outcome.id, "record": outcome.record, "skipped": outcome.skipped},
                                     ensure_ascii=False) + "\n")
            journal.flush()
            if outcome.record is not None:
                done[outcome.id] = outcome.record
            else:
                skipped.append((outcome.source, outcome.skipped or "unknown error"))
    records = [done[u.id] for u in corpus.utterances if u.id in done]
    write_jsonl(out / METADATA, records)
    atomic_write(out / SKIPPED, lambda tmp: tmp.write_text("".join(f"{f}\t{why}\n" for f, why in skipped),
                                                           encoding="utf-8"))
    report_skipped(skipped, out, quiet)
    return records


def report_skipped(skipped: list[tuple[str, str]], out: Path, quiet: bool = False) -> None:
    if skipped and not quiet:
        print(f"skipped {len(skipped)} file(s) (listed in {out / SKIPPED}):", file=sys.stderr)
        for path, why in skipped[:10]:
            print(f"  {path}: {why}", file=sys.stderr)
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)
