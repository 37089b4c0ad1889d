"""W6, large elements: throughput and driver memory when every element is megabytes.

Two directions, each over ``count`` elements of ``element_mb`` MB (numpy float64 arrays):

* in-heavy: a generator of arrays in, ``float(array[0])`` out;
* out-heavy: integers in, an array per integer out, consumed one at a time.

Contenders: towhee_ray ``ray`` with automatic chunks, towhee_ray with ``chunk_size=4``,
raw Ray (one task per element, 4 in flight) and ``multiprocessing.Pool.imap`` (chunksize
1), 2 workers each. Each case runs in a fresh process (``--case``), so the memory one case
grew cannot hide another's: the driver's *anonymous* memory (``RssAnon``: RSS less
file-backed and shared pages, so Ray's shared-memory object store does not count) is
sampled every 10 ms, and its peak growth over the value after warm-up is reported with MB/s
(Ray start-up and warm-up excluded), and the driver's CPU time per MB (a cost other
processes on the machine do not change, unlike MB/s). ``benchmarks/run.py`` runs every case
in interleaved rounds; ``python benchmarks/large_elements.py`` runs only W6 that way (and
prints its table), ``--case towhee_auto --direction in`` one case once.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List

import numpy as np

from rounds import DEFAULT_ROUNDS, LoadWatch, format_spread, load_average, spread

MB = 1 << 20
WORKERS = 2
RAW_RAY_IN_FLIGHT = 4
FIXED_CHUNK_SIZE = 4
WARM_UP_ELEMENTS = 8
SAMPLE_SECONDS = 0.01
CASES = ('towhee_auto', 'towhee_chunk_size_4', 'raw_ray', 'pool_imap')
CASE_NAMES = {
    'towhee_auto': 'towhee_ray ray, automatic chunks',
    'towhee_chunk_size_4': 'towhee_ray ray, chunk_size=4',
    'raw_ray': f'raw Ray, a task per element, {RAW_RAY_IN_FLIGHT} in flight',
    'pool_imap': 'multiprocessing.Pool.imap, chunksize 1',
}
DIRECTIONS = ('in', 'out')


def anonymous_bytes() -> int:
    """This process's anonymous resident memory (Linux ``RssAnon``)."""
    with open('/proc/self/status', encoding='ascii') as status:
        for line in status:
            if line.startswith('RssAnon:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no RssAnon in /proc/self/status (W6 needs Linux)')


class PeakAnonymous:
    """Samples ``anonymous_bytes`` in a thread while the ``with`` block runs."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.baseline = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, anonymous_bytes())

    def __enter__(self) -> 'PeakAnonymous':
        self.baseline = self.peak = anonymous_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anonymous_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


# -- the work: module level, so Ray and multiprocessing ship it ------------------------------

def make_array(index: int, element_mb: int) -> np.ndarray:
    return np.full(element_mb * MB // 8, index, dtype=np.float64)


def first_value(array: np.ndarray) -> float:
    return float(array[0])


def arrays(count: int, element_mb: int) -> Iterator[np.ndarray]:
    """A generator, so the arrays never exist all at once in the driver."""
    for index in range(count):
        yield make_array(index, element_mb)


def work(direction: str, count: int, element_mb: int) -> tuple[Iterable[Any], Callable[[Any], Any]]:
    if direction == 'in':
        return arrays(count, element_mb), first_value
    return iter(range(count)), _Maker(element_mb)


class _Maker:
    """``make_array`` with the size bound; a class so that multiprocessing can pickle it."""

    def __init__(self, element_mb: int) -> None:
        self.element_mb = element_mb

    def __call__(self, index: int) -> np.ndarray:
        return make_array(index, self.element_mb)


def check(direction: str, index: int, output: Any) -> None:
    value = output if direction == 'in' else output[-1]
    if value != index:
        raise RuntimeError(f'W6: element #{index} came back as {value}: order or content lost')


# -- the contenders ------------------------------------------------------------------------

def towhee_outputs(items: Iterable[Any], fn: Callable[[Any], Any], **options: Any) -> Iterator[Any]:
    from towhee_ray import DataCollection
    return iter(DataCollection(items).set_parallel(WORKERS, 'ray', **options).map(fn))


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def raw_ray_outputs(items: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    import ray

    remote = ray.remote(_call)
    fn_ref = ray.put(fn)
    pending: collections.deque = collections.deque()
    source = iter(items)
    while True:
        for item in source:
            pending.append(remote.remote(fn_ref, item))
            if len(pending) >= RAW_RAY_IN_FLIGHT:
                break
        if not pending:
            return
        yield ray.get(pending.popleft())


def pool_outputs(items: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    with multiprocessing.Pool(WORKERS) as pool:
        yield from pool.imap(fn, items, chunksize=1)
        pool.close()
        pool.join()


CONTENDERS: Dict[str, Callable[[Iterable[Any], Callable[[Any], Any]], Iterator[Any]]] = {
    'towhee_auto': towhee_outputs,
    'towhee_chunk_size_4': lambda items, fn: towhee_outputs(items, fn, chunk_size=FIXED_CHUNK_SIZE),
    'raw_ray': raw_ray_outputs,
    'pool_imap': pool_outputs,
}


def run_case(case: str, direction: str, count: int, element_mb: int) -> Dict[str, float]:
    """Run one case in this process: MB/s and peak anonymous-memory growth."""
    if case != 'pool_imap':
        import towhee_ray
        towhee_ray.connect()
    contender = CONTENDERS[case]
    for index, output in enumerate(contender(*work(direction, WARM_UP_ELEMENTS, element_mb))):
        check(direction, index, output)
    with PeakAnonymous() as memory:
        start, cpu = time.perf_counter(), time.process_time()
        for index, output in enumerate(contender(*work(direction, count, element_mb))):
            check(direction, index, output)
            del output
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if index + 1 != count:
        raise RuntimeError(f'W6 {case}: {index + 1} outputs for {count} inputs')
    return {'mb_per_second': count * element_mb / seconds, 'seconds': seconds,
            'anonymous_growth_mb': memory.growth_mb,
            # the driver's CPU (all its threads, Ray's core worker included) per MB moved: a
            # cost that other processes on the machine do not change, unlike MB/s
            'driver_cpu_ms_per_mb': cpu * 1e3 / (count * element_mb)}


def run_json(command: List[str], what: str) -> Dict[str, Any]:
    """Run ``command`` in a fresh process; the JSON object its last output line holds."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f'{what} failed:\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_in_fresh_process(case: str, direction: str, count: int, element_mb: int) -> Dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), '--case', case, '--direction', direction,
               '--count', str(count), '--element-mb', str(element_mb)]
    return run_json(command, f'W6 case {case} ({direction})')


def run_all(count: int, element_mb: int, rounds: int = DEFAULT_ROUNDS) -> List[Dict[str, Any]]:
    """Every case in both directions, each in a fresh process, interleaved in rounds."""
    results = []
    for number in range(rounds):
        for direction in DIRECTIONS:
            for case in CASES:
                print(f'  W6 round {number + 1}/{rounds}, {direction}-heavy: {case} '
                      f'(load average {load_average():.1f}) ...', file=sys.stderr, flush=True)
                result = run_in_fresh_process(case, direction, count, element_mb)
                results.append({'round': number, 'direction': direction, 'case': case, **result})
    return results


def summary_table(results: List[Dict[str, Any]]) -> str:
    """Per direction and case: MB/s median (min-max), the median of per-round ratios to raw
    Ray, the largest memory growth, the driver's CPU per MB."""
    lines = [f"{'direction':<9} {'case':<40} {'MB/s':>22} {'vs raw Ray':>10} {'anon MB':>8} {'CPU ms/MB':>9}"]
    for direction in DIRECTIONS:
        raw = [r for r in results if r['direction'] == direction and r['case'] == 'raw_ray']
        for case in CASES:
            runs = [r for r in results if r['direction'] == direction and r['case'] == case]
            ratio = spread([r['mb_per_second'] / w['mb_per_second'] for r, w in zip(runs, raw)])[0]
            lines.append(f"{direction:<9} {CASE_NAMES[case]:<40} "
                         f"{format_spread([r['mb_per_second'] for r in runs], 0):>22} {ratio:>9.2f}x "
                         f"{max(r['anonymous_growth_mb'] for r in runs):>8.0f} "
                         f"{spread([r['driver_cpu_ms_per_mb'] for r in runs])[0]:>9.2f}")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--case', choices=CASES)
    parser.add_argument('--direction', choices=DIRECTIONS, default='in')
    parser.add_argument('--count', type=int, default=600)
    parser.add_argument('--element-mb', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=DEFAULT_ROUNDS, help='rounds (without --case)')
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.direction, args.count, args.element_mb)))
    else:
        load = LoadWatch()
        results = run_all(args.count, args.element_mb, args.repeat)
        print(summary_table(results))
        print(load.stop().summary())


if __name__ == '__main__':
    main()
