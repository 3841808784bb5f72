"""Render and tokenize batches of rows for validation, in worker processes when the file is large.

``measure_batch`` gives, per row, its rendered length in tokens and its trained-on tokens within ``max_length``
(or why it cannot be rendered), with the same rendering and label rule as ``core.tokenization.tokenize_report``.
``BatchRunner`` runs it in this process for small files and, once ``POOL_AFTER_BATCHES`` batches have come, in a
pool of spawned worker processes (one per CPU core, at most ``MAX_WORKERS``), keeping results in submission order
and at most two batches per worker in flight so memory stays bounded. Chat-template rendering is Python (it holds
the GIL), so processes, not threads, are what use a second core.
"""

from __future__ import annotations

import os
import pickle
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from core.formats import Example
from core.tokenization import render_example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Batch = list[tuple[int, Example]]
Measured = tuple[int, int, int, str | None]  # (row, tokens before truncation, trained-on tokens kept, error)
MAX_WORKERS = 4
POOL_AFTER_BATCHES = 8  # a file with fewer batches than this is measured in this process (no start-up cost)

_worker: dict[str, Any] = {}  # the worker process's tokenizer and settings


def measure_batch(
    tokenizer: PreTrainedTokenizerBase, batch: Batch, completion_only_loss: bool, max_length: int
) -> list[Measured]:
    """Render each row through the chat template and tokenize the batch at once.

    Args:
        tokenizer: a tokenizer with a chat template (core.tokenization.ensure_chat_template).
        batch: (1-based row, Example) pairs.
        completion_only_loss: count only answer tokens as trained on.
        max_length: the cut, in tokens; trained-on tokens past it do not count.

    Returns:
        (row, rendered length in tokens, trained-on tokens within max_length, None) per row, or
        (row, 0, 0, reason) for a row the template refuses (render_example's ValueError).
    """
    out: list[Measured] = []
    rendered: list[tuple[int, str, list[tuple[int, int]]]] = []
    for row, ex in batch:
        try:
            text, spans = render_example(tokenizer, ex, completion_only_loss)
        except ValueError as exc:
            out.append((row, 0, 0, str(exc)))
            continue
        rendered.append((row, text, spans))
    if not rendered:
        return out
    for (row, _, spans), offsets in zip(rendered, _offsets(tokenizer, [t for _, t, _ in rendered])):
        starts = [o[0] for o in offsets[:max_length]]
        n_sup = sum(bisect_left(starts, e) - bisect_left(starts, s) for s, e in spans)
        out.append((row, len(offsets), n_sup, None))
    out.sort()
    return out


def _offsets(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[tuple[int, int]]]:
    """Each text's token character offsets, without special tokens, untruncated.

    The Rust tokenizer is called directly when it has no truncation or padding of its own (what the transformers
    wrapper would switch off), which skips building input_ids / attention_mask dicts; else the wrapper is used.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return [e.offsets for e in backend.encode_batch(texts, add_special_tokens=False)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["offset_mapping"])


def _init_worker(tokenizer_pickle: bytes, completion_only_loss: bool, max_length: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers are the parallelism; no Rust threads on top
    _worker.update(tokenizer=pickle.loads(tokenizer_pickle), col=completion_only_loss, max_length=max_length)


def _run_in_worker(batch: Batch) -> tuple[list[Measured], int, int]:
    """measure_batch in a worker; also returns the worker's pid and peak RSS (KiB, for the benchmark)."""
    result = measure_batch(_worker["tokenizer"], batch, _worker["col"], _worker["max_length"])
    return result, os.getpid(), peak_rss_kib()


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM from /proc/self/status on Linux (getrusage's ru_maxrss
    survives exec, so a spawned worker would report its parent's peak), else ru_maxrss."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class BatchRunner:
    """Measure batches in order: in this process at first, then in worker processes for a large file.

    Args:
        tokenizer: the tokenizer (pickled once for the workers).
        completion_only_loss / max_length: as measure_batch.
        workers: worker processes for a large file; default one per CPU core (at most MAX_WORKERS); 0 or 1
            keeps everything in this process.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        completion_only_loss: bool,
        max_length: int,
        workers: int | None = None,
    ) -> None:
        self.tokenizer, self.col, self.max_length = tokenizer, completion_only_loss, max_length
        self.workers = min(MAX_WORKERS, os.cpu_count() or 1) if workers is None else workers
        self.pool: ProcessPoolExecutor | None = None
        self.pending: deque[tuple[Batch, Future[tuple[list[Measured], int, int]]]] = deque()
        self.batches = 0
        self.worker_peak_kib: dict[int, int] = {}  # worker pid -> peak RSS seen

    def submit(self, batch: Batch) -> Iterator[tuple[Batch, list[Measured]]]:
        """Queue ``batch``; yields the batches (with their results) that are done, oldest first."""
        self.batches += 1
        if self.pool is None and self.workers > 1 and self.batches > POOL_AFTER_BATCHES:
            import multiprocessing

            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # forking a threaded server is unsafe
                initializer=_init_worker,
                initargs=(pickle.dumps(self.tokenizer), self.col, self.max_length),
            )
        if self.pool is None:
            yield batch, measure_batch(self.tokenizer, batch, self.col, self.max_length)
            return
        self.pending.append((batch, self.pool.submit(_run_in_worker, batch)))
        while len(self.pending) > 2 * self.workers:
            yield self._oldest()

    def drain(self) -> Iterator[tuple[Batch, list[Measured]]]:
        """Yields every batch still in flight, oldest first, then stops the workers."""
        try:
            while self.pending:
                yield self._oldest()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker processes (cancelling what has not started)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.pending.clear()

    def _oldest(self) -> tuple[Batch, list[Measured]]:
        batch, future = self.pending.popleft()
        result, pid, peak = future.result()
        self.worker_peak_kib[pid] = max(peak, self.worker_peak_kib.get(pid, 0))
        return batch, result
