"""Benchmarks of towhee_ray against serial Python, multiprocessing and Ray Data.

Every number comes from the same run on the same machine, with 2 workers everywhere:

* W1 cpu-bound: a pure-Python function holding the GIL (~0.5 ms per element, calibrated
  at start) over 10,000 elements: serial, the ``thread`` and ``ray`` backends,
  ``multiprocessing.Pool.imap`` and Ray Data ``map_batches``; seconds and speedup.
* W2 overhead: ``x + 1`` through a ``ray`` stream step over 10^4, 10^5 and 10^6 elements,
  in microseconds per element once Ray is up; Ray Data and serial Python at 10^5.
* W3 init once: a hub operator whose ``__init__`` sleeps 1 s, applied to 2,000 elements of
  1 ms each on 2 Ray actors: wall time, how many times ``__init__`` ran and when the first
  began (through a file every construction appends to); the same with Ray Data's actor pool.
* W4 memory: a generator of 1,000,000 elements through two chained ``ray`` steps,
  consumed without keeping anything: growth of the driver's peak RSS, sampled every 10 ms.
* W6 large elements: 8 MB arrays in and a float out, and integers in and an 8 MB array
  out, through towhee_ray (automatic chunks and ``chunk_size=4``), raw Ray and
  ``multiprocessing.Pool.imap``, each case in a fresh process: MB/s and the driver's
  anonymous-memory growth (see ``large_elements.py``).

Every workload runs its contenders interleaved in rounds (A B C, A B C, ...) and reports
the median of the rounds with their min-max (ratios: the median of per-round ratios); W4 and
W6 run each round of each case in a fresh process, so no round inherits another's heap.

Run from the repository root::

    python benchmarks/run.py            # full sizes, 3 rounds: about 8 minutes on 2 idle cores
    python benchmarks/run.py --quick    # smaller sizes, 1 round: a smoke test
    python benchmarks/run.py --repeat 5 # 5 rounds
    python benchmarks/run.py --json /tmp/results.json

It prints the machine, then one table, then the load average before and after the run (with
a warning when it was above the number of cores: such figures are indicative only), and
writes the same as JSON next to this file (``results.json``, or ``results-quick.json`` with
``--quick``). A missed target is reported in the table, never raised: the exit status is
non-zero only on a crash.

Functions and classes used by workers are defined at module level: Ray ships those of
``__main__`` by value, and ``multiprocessing`` (fork) inherits them.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import psutil
import ray
import ray.data

import towhee_ray   # before towhee: it filters Towhee's pkg_resources warning (towhee_ray.quiet)
import towhee   # noqa: I100
from towhee_ray import DataCollection

import large_elements
from rounds import DEFAULT_ROUNDS, LoadWatch, format_spread, interleaved, spread

T = TypeVar('T')
Outputs = Callable[[], Iterable[Any]]   # starts a contender; its outputs arrive as pulled

# The issue compares every contender at 2 workers (the size of the reference machine).
WORKERS = 2
# W1: per-element cost of the CPU-bound function, the figure.
CPU_SECONDS_PER_ELEMENT = 0.0005
# W1: rounds timed per calibration sample (a few ms, far above the timer's resolution),
# and samples taken; the fastest is the one least disturbed by other processes.
CALIBRATION_ROUNDS = 20_000
CALIBRATION_SAMPLES = 5
# Chunks per worker given to multiprocessing (``chunksize``) and Ray Data (blocks): enough
# to balance the load, few enough that per-chunk costs stay small. Ray Data's default of
# 200 blocks, whatever the size, made it several times slower than serial at W1.
CHUNKS_PER_WORKER = 8
# W3: the operator's construction (a model load) and per-element call.
INIT_SECONDS = 1.0
CALL_SECONDS = 0.001
# W4: how often the driver's RSS is sampled; short enough to catch a brief peak.
RSS_SAMPLE_SECONDS = 0.01
MB = 1024 * 1024
# Run before timing, so that starting Ray's worker processes and Ray Data's internal
# actors is not charged to whichever contender happens to run first.
WARM_UP_ELEMENTS = 100

# Before the run, CPU use is sampled this long and reported with the load average.
BUSY_CHECK_SECONDS = 1.0

# The targets.
W1_MIN_SPEEDUP = 1.8
W2_MAX_US_PER_ELEMENT = 3.0
W3_SLACK = 1.3
W3_INIT_CALLS = WORKERS
W4_MAX_GROWTH_MB = 150.0
W6_MIN_OVER_POOL = 2.0
W6_MAX_GROWTH_MB = 512.0
W6_ELEMENT_MB = 8


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many elements each workload runs."""

    cpu_elements: int
    overhead_sizes: Tuple[int, ...]
    overhead_compared_at: int   # the size Ray Data and serial Python are shown at
    init_elements: int
    memory_elements: int
    large_elements: int


FULL = Sizes(10_000, (10_000, 100_000, 1_000_000), 100_000, 2_000, 1_000_000, 600)
QUICK = Sizes(2_000, (10_000, 100_000), 100_000, 400, 200_000, 60)


@dataclasses.dataclass(frozen=True)
class Config:
    """What every workload is given."""

    sizes: Sizes
    cpu_rounds: int   # W1: rounds of ``spin`` per element, calibrated on this machine
    repeat: int = 1   # rounds of every workload (medians and min-max reported)

    @property
    def cpu_work(self) -> Callable[[int], int]:
        return functools.partial(spin, rounds=self.cpu_rounds)


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table (and of the JSON)."""

    workload: str
    case: str
    value: float
    unit: str
    note: str = ''
    target: str = ''
    met: Optional[bool] = None


# -- measuring ----------------------------------------------------------------------------

def timed(run: Callable[[], T], repeat: int = 1) -> Tuple[float, T]:
    """Wall-clock seconds of the fastest of ``repeat`` calls of ``run`` (other processes
    can slow a call down, never speed it up), and the last result: the one timer every
    workload uses (with ``repeat=1`` inside rounds; calibration takes the fastest)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def consume(iterable: Iterable[Any]) -> None:
    """Pull every element and keep none."""
    collections.deque(iterable, maxlen=0)


def timed_list(outputs: Outputs) -> Tuple[float, List[Any]]:
    """Seconds to start a contender and collect its outputs, and the outputs."""
    return timed(lambda: list(outputs()))


def timed_consume(outputs: Outputs, repeat: int = 1) -> float:
    """Seconds to start a contender and pull all its outputs, keeping none."""
    return timed(lambda: consume(outputs()), repeat)[0]


class PeakRss:
    """Samples this process's RSS in a background thread while the ``with`` block runs;
    ``growth_mb`` is the peak minus the RSS just before the block."""

    def __init__(self, interval: float = RSS_SAMPLE_SECONDS) -> None:
        self._interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.baseline = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> 'PeakRss':
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


# -- the work -----------------------------------------------------------------------------

def spin(x: int, rounds: int) -> int:
    """Pure-Python integer arithmetic (holds the GIL); deterministic in ``x`` and ``rounds``."""
    acc = x
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def calibrate_rounds(seconds: float = CPU_SECONDS_PER_ELEMENT) -> int:
    """How many rounds of ``spin`` take ``seconds`` on this machine."""
    sample_seconds, _ = timed(functools.partial(spin, 1, CALIBRATION_ROUNDS), CALIBRATION_SAMPLES)
    return max(1, round(seconds * CALIBRATION_ROUNDS / sample_seconds))


def add_one(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def numbers(n: int) -> Iterator[int]:
    """A generator, so a stream's elements never exist all at once."""
    yield from range(n)


@towhee.register(name='bench/slow_init')
class SlowInit:
    """W3's operator: a slow construction (a model load) and a 1 ms call. Each
    construction appends its pid and start time to ``init_log``, so they are counted (and
    timed) across processes."""

    def __init__(self, init_log: str, init_seconds: float = INIT_SECONDS,
                 call_seconds: float = CALL_SECONDS) -> None:
        with open(init_log, 'a', encoding='utf-8') as log:
            log.write(f'{os.getpid()} {time.time()}\n')
        time.sleep(init_seconds)
        self.call_seconds = call_seconds

    def __call__(self, x: int) -> int:
        time.sleep(self.call_seconds)
        return x


# -- the contenders: each returns its outputs lazily, in input order unless noted -----------

def towhee_map(items: Iterable[Any], fn: Callable[[Any], Any], backend: str) -> DataCollection:
    return DataCollection(items).stream().set_parallel(num_worker=WORKERS, backend=backend).map(fn)


def towhee_slow_init(items: Iterable[Any], init_log: str) -> DataCollection:
    return DataCollection(items).set_parallel(num_worker=WORKERS, backend='ray').bench.slow_init(init_log)


def pool_map(items: Sequence[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    chunksize = max(1, len(items) // (WORKERS * CHUNKS_PER_WORKER))
    with multiprocessing.Pool(WORKERS) as pool:
        yield from pool.imap(fn, items, chunksize=chunksize)
        # Let the workers exit on their own: leaving the block terminates them with SIGTERM,
        # which workers forked from a Ray driver report with a crash dump.
        pool.close()
        pool.join()


def apply_per_element(batch: Dict[str, np.ndarray], fn: Callable[[Any], Any]) -> Dict[str, np.ndarray]:
    """A Ray Data batch function applying ``fn`` to each element, as Python objects (a numpy
    scalar would make ``fn``'s arithmetic several times slower)."""
    return {'item': np.asarray([fn(x) for x in batch['item'].tolist()])}


class BatchedOperator:
    """A Ray Data callable class: builds one operator per actor and applies it per element."""

    def __init__(self, operator_class: type, *init_args: Any) -> None:
        self._operator = operator_class(*init_args)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return apply_per_element(batch, self._operator)


def ray_data_items(items: Iterable[Any]) -> 'ray.data.Dataset':
    return ray.data.from_items(list(items), override_num_blocks=WORKERS * CHUNKS_PER_WORKER)


def ray_data_outputs(dataset: 'ray.data.Dataset') -> Iterator[Any]:
    """Runs the dataset as it is pulled; Ray Data does not keep the input order."""
    for row in dataset.iter_rows():
        yield row['item']


def ray_data_map(items: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    return ray_data_outputs(ray_data_items(items).map_batches(
        functools.partial(apply_per_element, fn=fn), batch_format='numpy',
        compute=ray.data.TaskPoolStrategy(size=WORKERS)))


def ray_data_slow_init(items: Iterable[Any], init_log: str) -> Iterator[Any]:
    return ray_data_outputs(ray_data_items(items).map_batches(
        BatchedOperator, fn_constructor_args=(SlowInit, init_log), batch_format='numpy',
        compute=ray.data.ActorPoolStrategy(size=WORKERS)))


# -- set-up -------------------------------------------------------------------------------

def quiet_ray_data() -> None:
    """No progress bars or execution logs, and at most ``WORKERS`` CPUs, as the others."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.execution_options.verbose_progress = False
    context.execution_options.resource_limits = ray.data.ExecutionResources.for_limits(cpu=WORKERS)
    logging.getLogger('ray.data').setLevel(logging.ERROR)


def warm_up() -> None:
    items = range(WARM_UP_ELEMENTS)
    consume(towhee_map(items, add_one, 'ray'))
    consume(ray_data_map(items, add_one))


def machine_info(config: Config, ray_start_seconds: float) -> Dict[str, Any]:
    element_seconds, _ = timed(functools.partial(config.cpu_work, 1), CALIBRATION_SAMPLES)
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'cpu_count': os.cpu_count(),
        'ray_cpus': ray.cluster_resources().get('CPU'),
        'cpu_busy_percent': psutil.cpu_percent(interval=BUSY_CHECK_SECONDS),
        'platform': platform.platform(),
        'python': platform.python_version(),
        'ray': ray.__version__,
        'towhee': importlib.metadata.version('towhee'),
        'towhee_ray': towhee_ray.__version__,
        'ray_start_seconds': round(ray_start_seconds, 2),
        'w1_rounds_per_element': config.cpu_rounds,
        'w1_ms_per_element': round(element_seconds * 1e3, 3),
    }


# -- the workloads ------------------------------------------------------------------------

def serial_map(items: Sequence[Any], fn: Callable[[Any], Any]) -> List[Any]:
    return [fn(x) for x in items]


SERIAL = 'serial python'
OURS = 'towhee_ray ray'
POOL = 'multiprocessing.Pool.imap'
RAY_DATA = 'Ray Data map_batches'
W1_CONTENDERS: Dict[str, Callable[[Sequence[Any], Callable[[Any], Any]], Iterable[Any]]] = {
    SERIAL: serial_map,
    'towhee_ray thread': functools.partial(towhee_map, backend='thread'),
    OURS: functools.partial(towhee_map, backend='ray'),
    POOL: pool_map,
    RAY_DATA: ray_data_map,
}


def check_same_outputs(outputs: Dict[str, List[Any]]) -> None:
    """Every contender must compute what serial Python does (in any order: Ray Data does
    not keep it)."""
    expected = sorted(outputs[SERIAL])
    wrong = [case for case, got in outputs.items() if sorted(got) != expected]
    if wrong:
        raise RuntimeError(f'W1: {", ".join(wrong)} computed other outputs than serial Python')


def speedup_rows(workload: str, rounds: List[Dict[str, float]]) -> List[Row]:
    """One row per contender: the median of its per-round seconds (with min-max), and the
    median of its per-round speedups, each over the serial run of the same round. This VM's
    speed swings by up to 1.5x from one run to the next (a serial run took 4.3 s, then
    6.7 s), so a ratio of runs made seconds apart is far steadier than a ratio of separate
    bests."""
    cases = list(rounds[0])
    seconds = {case: [r[case] for r in rounds] for case in cases}
    speedups = {case: [r[SERIAL] / r[case] for r in rounds] for case in cases}
    speedup = {case: spread(values)[0] for case, values in speedups.items()}
    met = (speedup[OURS] >= W1_MIN_SPEEDUP
           and speedup[OURS] > max(speedup[POOL], speedup[RAY_DATA]))
    target = f'>= {W1_MIN_SPEEDUP}x serial, beats Pool and Ray Data'
    return [Row(workload, case, spread(seconds[case])[0], 's',
                f'{format_spread(speedups[case])}x serial; s {format_spread(seconds[case])}',
                *((target, met) if case == OURS else ('', None)))
            for case in cases]


def cpu_bound(config: Config) -> List[Row]:
    """W1: seconds and speedup over serial Python, in ``config.repeat`` interleaved rounds
    of every contender; every contender's outputs are checked."""
    items = list(range(config.sizes.cpu_elements))
    outputs: Dict[str, List[Any]] = {}

    def contender(case: str, run: Callable[..., Iterable[Any]]) -> Callable[[], float]:
        def once() -> float:
            seconds, outputs[case] = timed_list(functools.partial(run, items, config.cpu_work))
            return seconds
        return once

    rounds: List[Dict[str, float]] = []
    for number in range(config.repeat):
        seconds: Dict[str, float] = {}
        for case, run in W1_CONTENDERS.items():   # interleaved: every contender once a round
            print(f'  W1 round {number + 1}/{config.repeat}: {case}', file=sys.stderr, flush=True)
            seconds[case] = contender(case, run)()
        check_same_outputs(outputs)
        rounds.append(seconds)
    return speedup_rows(f'W1 cpu-bound, n={len(items):,}', rounds)


def microseconds_per_element(outputs: Outputs, n: int) -> float:
    return timed_consume(outputs) / n * 1e6


def overhead(config: Config) -> List[Row]:
    """W2: microseconds per element of ``x + 1`` on a ray stream step (the chain only), the
    sizes and the alternatives interleaved in rounds."""
    workload = 'W2 overhead, x + 1'
    compared = config.sizes.overhead_compared_at
    items = list(range(compared))
    contenders: Dict[str, Callable[[], float]] = {
        f'towhee_ray ray, n={n:,}': functools.partial(
            microseconds_per_element, functools.partial(towhee_map, range(n), add_one, 'ray'), n)
        for n in config.sizes.overhead_sizes}
    contenders[f'Ray Data map_batches, n={compared:,}'] = functools.partial(
        microseconds_per_element, functools.partial(ray_data_map, items, add_one), compared)
    contenders[f'serial python, n={compared:,}'] = functools.partial(
        microseconds_per_element, functools.partial(map, add_one, items), compared)
    rows = []
    for case, values in interleaved(contenders, config.repeat).items():
        us = spread(values)[0]
        target, met = '', None
        if case.startswith('towhee_ray'):
            target, met = f'<= {W2_MAX_US_PER_ELEMENT:g} us/elem', us <= W2_MAX_US_PER_ELEMENT
        rows.append(Row(workload, case, us, 'us/elem', f'{format_spread(values)} us/elem', target, met))
    return rows


def run_counting_inits(start: Callable[[str], Iterable[Any]]) -> Tuple[float, int, float]:
    """Seconds to pull all outputs of ``start(init_log)``, the lines the operator's
    constructions appended to ``init_log``, and when the first construction began, in seconds
    after ``start`` was called (what starting the workers took). Run once: the count is per run."""
    with tempfile.TemporaryDirectory() as folder:
        init_log = Path(folder) / 'init.log'
        began = time.time()
        seconds = timed_consume(functools.partial(start, str(init_log)))
        lines = init_log.read_text().splitlines() if init_log.exists() else []
        first = min((float(line.split()[1]) for line in lines), default=math.nan)
        return seconds, len(lines), first - began


def init_once(config: Config) -> List[Row]:
    """W3: wall time and ``__init__`` count of a slow-to-build operator on 2 actors, towhee_ray
    and Ray Data's actor pool interleaved in rounds; the count must hold in every round. The
    note says when the first ``__init__`` began: the workers' start, which the ideal leaves out."""
    n = config.sizes.init_elements
    ideal = n * CALL_SECONDS / WORKERS + INIT_SECONDS
    target = W3_SLACK * ideal
    workload = f'W3 init once, n={n:,}'
    runs = interleaved({'towhee_ray ray': functools.partial(run_counting_inits, functools.partial(
                            towhee_slow_init, range(n))),
                        'Ray Data actors': functools.partial(run_counting_inits, functools.partial(
                            ray_data_slow_init, range(n)))}, config.repeat)
    rows = []
    for case, results in runs.items():
        seconds, inits, firsts = (list(column) for column in zip(*results))
        began = format_spread(firsts)
        ours = case == 'towhee_ray ray'
        wall = spread(seconds)[0]
        rows += [Row(workload, f'{case}: wall', wall, 's',
                     f'{format_spread(seconds)} s; ideal {ideal:.2f} s; first __init__ began {began} s in',
                     *((f'<= {target:.2f} s ({W3_SLACK} x ideal)', wall <= target) if ours else ('', None))),
                 Row(workload, f'{case}: __init__ runs', max(inits), 'runs', f'every round: {inits}',
                     *((f'== {W3_INIT_CALLS}', set(inits) == {W3_INIT_CALLS}) if ours else ('', None)))]
    return rows


def memory_round(n: int) -> Dict[str, float]:
    """One W4 round, in this (fresh) process: peak RSS growth of a generator of ``n``
    elements streaming through two ray steps, consumed without keeping anything."""
    towhee_ray.connect()
    consume(DataCollection(numbers(1000)).set_parallel(num_worker=WORKERS, backend='ray').map(add_one))
    with PeakRss() as rss:
        seconds = timed_consume(lambda: DataCollection(numbers(n))
                                .set_parallel(num_worker=WORKERS, backend='ray')
                                .map(add_one).map(double))
    return {'growth_mb': rss.growth_mb, 'seconds': seconds}


def memory(config: Config) -> List[Row]:
    """W4: driver peak RSS growth while a generator streams through two ray steps, each
    round in a fresh process (a second run in one process would reuse the heap the first
    one grew)."""
    n = config.sizes.memory_elements
    command = [sys.executable, str(Path(__file__).resolve()), '--w4-round', str(n)]
    runs = [large_elements.run_json(command, 'W4 round') for _ in range(config.repeat)]
    growth = [run['growth_mb'] for run in runs]
    us = [run['seconds'] / n * 1e6 for run in runs]
    return [Row(f'W4 memory, n={n:,}', 'towhee_ray ray, 2 steps: peak RSS growth', spread(growth)[0],
                'MB', f'{format_spread(growth, 1)} MB; {format_spread(us)} us/elem',
                f'< {W4_MAX_GROWTH_MB:g} MB', max(growth) < W4_MAX_GROWTH_MB)]


def large(config: Config) -> List[Row]:
    """W6: MB/s and driver anonymous-memory growth with 8 MB elements, both directions;
    every case of every round in a fresh process (so it does not share this one's Ray or
    heap), the cases interleaved in rounds."""
    n = config.sizes.large_elements
    results = large_elements.run_all(n, W6_ELEMENT_MB, config.repeat)
    rows = []
    for direction in large_elements.DIRECTIONS:
        by_case = {case: [r for r in results if r['direction'] == direction and r['case'] == case]
                   for case in large_elements.CASES}
        for case, runs in by_case.items():
            rates = [r['mb_per_second'] for r in runs]
            over_raw = [r['mb_per_second'] / raw['mb_per_second'] for r, raw in zip(runs, by_case['raw_ray'])]
            over_pool = [r['mb_per_second'] / pool['mb_per_second']
                         for r, pool in zip(runs, by_case['pool_imap'])]
            growth = max(r['anonymous_growth_mb'] for r in runs)
            cpu = [r['driver_cpu_ms_per_mb'] for r in runs]
            note = (f'{format_spread(rates, 0)} MB/s; {format_spread(over_raw)}x raw Ray, '
                    f'{spread(over_pool)[0]:.2f}x Pool; +{growth:,.0f} MB anon (max); '
                    f'driver CPU {spread(cpu)[0]:.2f} ms/MB')
            target, met = '', None
            if case == 'towhee_auto':
                target = (f'>= raw Ray, >= {W6_MIN_OVER_POOL:g}x Pool, '
                          f'< {W6_MAX_GROWTH_MB:g} MB anon')
                met = (spread(over_raw)[0] >= 1 and spread(over_pool)[0] >= W6_MIN_OVER_POOL
                       and growth < W6_MAX_GROWTH_MB)
            rows.append(Row(f'W6 large, {direction}-heavy, {n} x {W6_ELEMENT_MB} MB',
                            large_elements.CASE_NAMES[case], spread(rates)[0], 'MB/s', note, target, met))
    return rows


# W4 and W6 run in fresh processes, so their places do not matter.
WORKLOADS: Sequence[Callable[[Config], List[Row]]] = (memory, cpu_bound, overhead, init_once, large)


# -- reporting ----------------------------------------------------------------------------

def format_value(row: Row) -> str:
    return f'{row.value:.0f} {row.unit}' if row.unit == 'runs' else f'{row.value:,.2f} {row.unit}'


def format_table(rows: Sequence[Row]) -> str:
    header = ('workload', 'case', 'result', 'note', 'target', 'met?')
    lines = [header] + [
        (row.workload, row.case, format_value(row), row.note, row.target or '-',
         '-' if row.met is None else ('yes' if row.met else 'NO'))
        for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ['  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
            for line in lines]
    text.insert(1, '  '.join('-' * width for width in widths))
    return '\n'.join(text)


def format_machine(machine: Dict[str, Any]) -> str:
    width = max(map(len, machine))
    return '\n'.join(f'{key:>{width}}: {value}' for key, value in machine.items())


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true',
                        help='smaller sizes; finishes in under a minute, Ray start-up included')
    parser.add_argument('--repeat', type=positive_int, metavar='N',
                        help=f'rounds of every workload, medians and min-max reported (default: '
                             f'{DEFAULT_ROUNDS}, or 1 with --quick)')
    parser.add_argument('--w4-round', type=positive_int, metavar='N', help=argparse.SUPPRESS)
    parser.add_argument('--json', type=Path, metavar='PATH',
                        help='where to write the results (default: benchmarks/results.json, '
                             'or benchmarks/results-quick.json with --quick)')
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else DEFAULT_ROUNDS
    if args.json is None:
        args.json = Path(__file__).resolve().parent / (
            'results-quick.json' if args.quick else 'results.json')
    return args


def run_workloads(config: Config) -> List[Row]:
    warm_up()
    rows: List[Row] = []
    for workload in WORKLOADS:
        print(f'running {workload.__name__} ...', file=sys.stderr, flush=True)
        rows += workload(config)
    return sorted(rows, key=lambda row: row.workload.split()[0])   # W1..W6, stable


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.w4_round:   # one W4 round, in the fresh process run.py started for it
        print(json.dumps(memory_round(args.w4_round)))
        return
    mode = 'quick' if args.quick else 'full'
    load = LoadWatch()
    started = time.perf_counter()
    ray_start_seconds, _ = timed(towhee_ray.connect)
    try:
        quiet_ray_data()
        config = Config(QUICK if args.quick else FULL, calibrate_rounds(), args.repeat)
        machine = machine_info(config, ray_start_seconds)
        print(format_machine(machine), end='\n\n', flush=True)
        rows = run_workloads(config)
    finally:
        ray.shutdown()
    total_seconds = time.perf_counter() - started
    machine.update(load.stop().as_dict())
    print(format_table(rows))
    print(f'\n{mode} mode, every workload in {config.repeat} interleaved round(s): the median, '
          f'(min-max) in the notes; {total_seconds:.1f} s in total, Ray start-up included')
    print(load.summary())
    args.json.write_text(json.dumps({
        'mode': mode,
        'machine': machine,
        'sizes': dataclasses.asdict(config.sizes),
        'repeat': config.repeat,
        'total_seconds': round(total_seconds, 2),
        'rows': [dataclasses.asdict(row) for row in rows],
    }, indent=2) + '\n')
    print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
