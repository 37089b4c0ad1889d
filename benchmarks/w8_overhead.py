"""W8's forms with an operator that costs nothing: what the driver, Ray and Towhee carry.

W8 (``w8_gpu.py``) asks 50,000 passages/s of the DataCollection form on one GPU, and 0.8x
that of a Towhee pipe. Whatever the GPU does, a form cannot go faster than the framework
around the model lets it: this runs the same forms, on the same passages, with an operator
that returns a zero vector (384 float32) for each passage and does nothing else, so each
figure is that form's ceiling on this machine. Contenders, interleaved in rounds:

* the DataCollection form: ``set_parallel(num_worker=2, backend='ray').batch(1024)``, the
  operator on each list of 1,024 in a Ray actor, ``flatten()``;
* a Towhee pipe, one row per passage (``p.batch``), the operator in the pipe itself, no Ray:
  the ceiling of a per-row pipe on Towhee's graphs (one graph a row), whatever runs the
  operator;
* the same pipe under ``towhee_ray.wide``, 16 calls in flight: a pipe of functions runs
  there without Towhee's graphs, its rows going one at a time to the node's own threads
  (one here: the operator waits for nothing);
* the same pipe with the operator in ``ray_op(..., max_batch_size=256)`` actors under
  ``wide`` (W8's pipe form): a pipe whose every node is a ``ray_op`` batching across calls
  runs without Towhee's graphs, its rows sent to the actors in full batches;
* a Towhee pipe of documents, as Towhee's ingest pipelines for RAG have it: a call per
  document of 32 passages, ``flat_map`` splitting it through a hub operator (registered
  with ``@towhee.register``, used as ``towhee.ops...``), ``map`` through the same batching
  ``ray_op`` under ``wide`` (without graphs too, the passages of every document in flight
  sent in full batches);
* a Towhee pipe of lists, rows within each list: ``flat_map``, ``window(1024)`` calling the
  ``ray_op``, ``flat_map``;
* a Towhee pipe of lists, a list a row: ``map`` gives the ``ray_op`` each list of 1,024 in
  one call (W8's pipe of lists).

Marginal passages/s as in W8: N over the time the 2N run took more than the N run.

    python benchmarks/w8_overhead.py                 # N = 131,072 (Towhee's per-row pipe, no Ray: 16,384;
                                                     #   the DataCollection form, the pipe of lists: 524,288), 3 rounds
    python benchmarks/w8_overhead.py --quick         # N = 256, 1 round: a smoke test
    python benchmarks/w8_overhead.py --json /tmp/w8_overhead.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np   # noqa: E402
import towhee   # noqa: E402

from report import commit   # noqa: E402
from rounds import DEFAULT_ROUNDS, LoadWatch, format_spread, interleaved   # noqa: E402
from w8_gpu import (PASSAGES_PER_CALL, PIPE_MAX_BATCH_SIZE, BATCH_WAIT_TIMEOUT_S, datacollection_vectors,   # noqa: E402,I100
                    gpu_corpus, in_lists, lists_pipe_vectors, marginal, median_or_none, rows_pipe_vectors,
                    window_pipe_vectors)

import towhee_ray   # noqa: E402,I100
from towhee_ray import ray_op, wide   # noqa: E402

DIMENSION = 384
# Actors of the Ray forms: one per core of the 2-vCPU VM these figures come from.
WORKERS = 2
# Passages (N, then 2N) of the forms that carry thousands or more a second, and of the
# per-row form on Towhee's graphs (Towhee's own batch, no Ray), which carries a few thousand:
# each run long enough (seconds) for a stable margin.
N = 131_072
ROW_N = 16_384
# ... and of the forms that carry 100,000 or more (the DataCollection form, the pipe of
# lists): at N they ran about a second, no more than the spread of a ray_op's start and
# close between runs (0.6-1.1 s seen on the 2-vCPU VM), which the margin then carried.
FAST_N = 524_288
FAST_FORMS = ('DataCollection, Ray actors', 'Towhee pipe of lists, map + ray_op')
QUICK_N = 256
# Calls at once of the per-row pipe without Ray under wide: an operator that costs nothing
# waits for nothing, so its node keeps one thread; the calls in flight only set how far
# ahead the driver draws rows.
ALONE_IN_FLIGHT = 16
FORMS = ('DataCollection, Ray actors', 'Towhee pipe, one row a call, no Ray',
         'Towhee pipe, one row a call, no Ray, wide batch', 'Towhee pipe, one row a call, ray_op batching',
         'Towhee pipe of documents, flat_map + ray_op batching',
         'Towhee pipe of lists, window + ray_op', 'Towhee pipe of lists, map + ray_op')
# Passages a document of the pipe of documents, joined by a character no passage holds.
PASSAGES_PER_DOCUMENT = 32
SEPARATOR = '\x1e'


@towhee.register(name='w8_overhead/zero_vectors')
class ZeroVectors:
    """A zero vector for each text of a list (or for one text): an embedding that costs nothing."""

    def __init__(self) -> None:
        self.zero = np.zeros(DIMENSION, dtype=np.float32)

    def __call__(self, texts: Any) -> Any:
        if isinstance(texts, str):
            return self.zero.copy()
        return [self.zero.copy() for _ in texts]


@towhee.register(name='w8_overhead/split_document')
def split_document(document: str) -> List[str]:
    """A document's passages: the pipe of documents' ``flat_map``, a hub operator."""
    return document.split(SEPARATOR)


def documents_pipe_vectors(embed: Any, passages: List[str], per_document: int) -> List[Any]:
    """The pipe of documents: ``passages`` joined into documents of ``per_document``, one
    pipeline call a document, ``flat_map`` splitting it through a hub operator used directly
    (``towhee.ops.w8_overhead.split_document()``, as a pipe splits with
    ``ops.towhee.text_split(...)``), ``embed`` (a ``ray_op`` batching across calls) in its
    ``map`` node, under ``wide`` (as many passages in flight as fill the actors)."""
    split = towhee.ops.w8_overhead.split_document()
    p = wide(towhee.pipe.input('document').flat_map('document', 'passage', split)
             .map('passage', 'vector', embed).output('vector'))
    documents = [SEPARATOR.join(document) for document in in_lists(passages, per_document)]
    return [row[0] for queue in p.batch(documents) for row in queue.to_list()]


def runners() -> Dict[str, Callable[[List[str]], List[Any]]]:
    options = {'num_cpus': 1}

    def datacollection(passages: List[str]) -> List[Any]:
        return datacollection_vectors(passages, WORKERS, options, PASSAGES_PER_CALL,
                                      lambda chain: chain.w8_overhead.zero_vectors())

    def towhee_alone(passages: List[str]) -> List[Any]:
        return rows_pipe_vectors(ZeroVectors(), passages, 0)

    def wide_alone(passages: List[str]) -> List[Any]:
        return rows_pipe_vectors(ZeroVectors(), passages, ALONE_IN_FLIGHT)

    def on_ray_op(form: Callable[[Any, List[str]], List[Any]],
                  **batching: Any) -> Callable[[List[str]], List[Any]]:
        def run(passages: List[str]) -> List[Any]:   # the form on a ray_op of its own, closed after
            with ray_op(ZeroVectors, num_worker=WORKERS, **options, **batching) as embed:
                return form(embed, passages)
        return run

    # each ray_op form keeps as many calls in flight as fill its actors (calls_to_fill)
    rows_ray_op = on_ray_op(lambda embed, passages: rows_pipe_vectors(embed, passages, embed.calls_to_fill),
                            max_batch_size=PIPE_MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    documents_ray_op = on_ray_op(lambda embed, passages: documents_pipe_vectors(
        embed, passages, PASSAGES_PER_DOCUMENT), max_batch_size=PIPE_MAX_BATCH_SIZE,
        batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    windows_ray_op = on_ray_op(lambda embed, passages: window_pipe_vectors(
        embed, passages, PASSAGES_PER_CALL, embed.calls_to_fill))
    lists_ray_op = on_ray_op(lambda embed, passages: lists_pipe_vectors(
        embed, passages, PASSAGES_PER_CALL, embed.calls_to_fill))

    return dict(zip(FORMS, (datacollection, towhee_alone, wide_alone, rows_ray_op, documents_ray_op,
                            windows_ray_op, lists_ray_op)))


def sizes(quick: bool) -> Dict[str, int]:
    """N of each form."""
    return {name: QUICK_N if quick else ROW_N if name == 'Towhee pipe, one row a call, no Ray'
            else FAST_N if name in FAST_FORMS else N for name in FORMS}


def contender(run: Callable[[List[str]], List[Any]], passages: List[str],
              n: int) -> Callable[[], Dict[str, float]]:
    def one_round() -> Dict[str, float]:
        times = []
        for size in (n, 2 * n):
            start = time.perf_counter()
            vectors = run(passages[:size])
            times.append(time.perf_counter() - start)
            if len(vectors) != size or vectors[0].shape != (DIMENSION,):
                raise RuntimeError(f'w8_overhead: {size} passages gave {len(vectors)} vectors')
        return {'seconds_n': times[0], 'seconds_2n': times[1]}
    return one_round


def summarize(results: Dict[str, List[Dict[str, float]]], ns: Dict[str, int]) -> List[Dict[str, Any]]:
    rows = []
    for name, runs in results.items():
        n = ns[name]
        rates = [marginal(r, n) for r in runs]
        with_start = [2 * n / r['seconds_2n'] for r in runs]
        rows.append({'case': name, 'passages_n': n, 'passages_2n': 2 * n,
                     'marginal_passages_per_s': median_or_none(rates),
                     'marginal_passages_per_s_rounds': rates,
                     'with_start_passages_per_s': statistics.median(with_start),
                     'with_start_passages_per_s_rounds': with_start})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help=f'N = {QUICK_N}, 1 round: a smoke test')
    parser.add_argument('--repeat', type=int, help=f'rounds (default {DEFAULT_ROUNDS}, 1 with --quick)')
    parser.add_argument('--json', type=Path, help='where to write the results')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load = LoadWatch()
    towhee_ray.connect()
    ns = sizes(args.quick)
    rounds = args.repeat or (1 if args.quick else DEFAULT_ROUNDS)
    corpus = gpu_corpus()
    most = 2 * max(ns.values())
    passages = (corpus * (-(-most // len(corpus))))[:most]   # the corpus again, as often as needed
    results = interleaved({name: contender(run, passages, ns[name]) for name, run in runners().items()},
                          rounds)
    rows = summarize(results, ns)
    load.stop()
    report = {'workload': "W8's forms with an operator that costs nothing",
              'mode': 'smoke' if args.quick else 'full',
              'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
              'commit': commit(), 'machine': load.as_dict(), 'n': ns, 'rounds': rounds, 'workers': WORKERS,
              'passages_per_call': PASSAGES_PER_CALL, 'max_batch_size': PIPE_MAX_BATCH_SIZE, 'rows': rows}
    print(f"W8's forms with an operator that costs nothing: N and 2N passages, {rounds} interleaved "
          f'round(s), {WORKERS} actors, commit {report["commit"]}')
    print(f'{"case":<52} {"N":>8} {"marginal p/s":>26} {"with start p/s":>26}')
    for row in rows:
        known = [value for value in row['marginal_passages_per_s_rounds'] if value is not None]
        print(f"{row['case']:<52} {row['passages_n']:>8,} {format_spread(known, 0) if known else 'n/a':>26} "
              f"{format_spread(row['with_start_passages_per_s_rounds'], 0):>26}")
    print(load.summary())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
