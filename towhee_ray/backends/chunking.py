"""Moving elements to workers in chunks: ordered, bounded, with an adaptive chunk size.

Every chunked backend (``thread``, ``ray``) shares this: the backend says how to start
workers and submit one chunk (:class:`ChunkWorkers`); :func:`run_in_chunks` decides how
big chunks are, how many are in flight, and yields outputs in input order.
"""
from __future__ import annotations

import abc
import itertools
import math
import operator
import time
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

# Worker time one chunk should take. A Ray task costs its worker ~5 ms besides the work
# (gaps between consecutive tasks in Ray's timeline on a 2-core machine, whether the next
# task was queued or not): 200 ms chunks keep that near 2.5 % (100 ms left the workers of
# benchmarks/run.py W1 busy only 91-94 % of the time). In a stream of unknown length the
# last chunk may leave the other workers idle for up to this long ...
TARGET_CHUNK_SECONDS = 0.2
# ... while when the number of elements left is known (a list, a range, a stream made from
# one) the last chunks shrink (see TAIL_SPLIT), so chunks can be longer: ~1 % overhead.
# 0.5 s beat 0.2 s and 1 s in interleaved W1 rounds (median 1.65x vs 1.57x and 1.54x).
KNOWN_LENGTH_CHUNK_SECONDS = 0.5
# The first chunks are tiny so that a slow function (seconds per element) is never
# batched blindly; the size then follows the measured time per element.
FIRST_CHUNK_SIZE = 1
# A chunk is at most MAX_GROWTH times the largest chunk measured so far: one tiny first
# chunk must not set a huge chunk when later elements are slower. 64 reaches 8192 in three
# steps (16 took five: at 10,000 elements of `x + 1` that ramp alone cost ~2 us per
# element in benchmarks/run.py W2).
MAX_GROWTH = 64
# Bounds the elements a step holds: at most 2 x capacity chunks are in flight or waiting
# to be yielded, so 8192 keeps a step's share of a stream in the tens of thousands of
# elements, while the ~1.5 ms of driver work per Ray chunk stays under 0.2 us per element.
MAX_CHUNK_SIZE = 1 << 13
# When the number of elements left is known (a list, a range, a stream made from one), a
# chunk takes at most 1/(TAIL_SPLIT x num_worker) of them, so chunks shrink towards the
# end and all workers finish together (guided scheduling) ...
TAIL_SPLIT = 2
# ... but never below this much work: a smaller chunk costs more in Ray overhead (~5 ms)
# than the idle time it saves. For `x + 1` chunks never shrink at all.
MIN_TAIL_CHUNK_SECONDS = 0.02


def check_chunk_size(chunk_size: Optional[int]) -> Optional[int]:
    """Validate a user-given ``chunk_size`` (``None`` means automatic)."""
    if chunk_size is not None and (
            not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f'chunk_size must be a positive integer (elements per chunk) or None '
                         f'for automatic sizing, got {chunk_size!r}')
    return chunk_size


class ChunkSizer:
    """Picks the next chunk size from the measured worker time per element.

    >>> sizer = ChunkSizer(num_worker=2)
    >>> sizer.next_size()
    1
    >>> sizer.record(count=1, seconds=0.001)   # 1 ms per element
    >>> sizer.next_size()                       # at most 64x the largest chunk measured
    64
    >>> sizer.record(count=64, seconds=0.064)
    >>> sizer.next_size()                       # 200 ms of work
    200
    >>> sizer.next_size(remaining=10_000)       # 500 ms of work when the length is known
    500
    >>> sizer.next_size(remaining=400)          # near the end, 1/(2 x 2) of what is left
    100
    >>> sizer.next_size(remaining=40)           # but at least 20 ms of work
    20
    """

    def __init__(self, num_worker: int, fixed: Optional[int] = None) -> None:
        self._num_worker = num_worker
        self._fixed = fixed
        self._growth_limit = FIRST_CHUNK_SIZE
        self._per_element: Optional[float] = None
        # Decayed sums, so recent chunks count more and big chunks more than tiny ones.
        self._seconds = 0.0
        self._count = 0.0

    def _elements_for(self, seconds: float) -> int:
        if self._per_element == 0:
            return MAX_CHUNK_SIZE
        return max(1, int(seconds / self._per_element))

    def next_size(self, remaining: Optional[int] = None) -> int:
        """The size of the next chunk; ``remaining`` is how many elements are left, if known."""
        if self._fixed is not None:
            return self._fixed
        if self._per_element is None:
            return FIRST_CHUNK_SIZE
        target = KNOWN_LENGTH_CHUNK_SECONDS if remaining else TARGET_CHUNK_SECONDS
        size = min(self._elements_for(target), self._growth_limit, MAX_CHUNK_SIZE)
        if remaining:
            share = math.ceil(remaining / (self._num_worker * TAIL_SPLIT))
            size = min(size, max(share, self._elements_for(MIN_TAIL_CHUNK_SECONDS)))
        return size

    def in_flight_limit(self, capacity: int) -> int:
        """How many chunks may be in flight: while sizes are still held back by MAX_GROWTH,
        one per worker, since a queued chunk would be one more small chunk and one more
        Ray round trip before sizes reach their target (at 10,000 elements of `x + 1` in
        benchmarks/run.py W2, 5-6 sequential tasks per worker instead of 4)."""
        if self._fixed is not None:
            return capacity
        growing = (self._per_element is None
                   or self._elements_for(TARGET_CHUNK_SECONDS) > self._growth_limit)
        return min(capacity, self._num_worker) if growing else capacity

    def record(self, count: int, seconds: float) -> None:
        """Learn from a finished chunk of ``count`` elements that took ``seconds`` of work."""
        if count == 0:
            return
        self._seconds = self._seconds / 2 + seconds
        self._count = self._count / 2 + count
        self._per_element = self._seconds / self._count
        self._growth_limit = max(self._growth_limit, count * MAX_GROWTH)


def timed_map(call: Callable[[Any], Any], chunk: List[Any]) -> Tuple[List[Any], float]:
    """Apply ``call`` to a chunk in a worker; also return the seconds it took (for sizing)."""
    start = time.perf_counter()
    outputs = [call(item) for item in chunk]
    return outputs, time.perf_counter() - start


class ChunkWorkers(abc.ABC):
    """Workers started for one step: they take a chunk and give back its outputs."""

    #: how many chunks may be submitted and not yet finished at once
    capacity: int

    def start(self) -> None:
        """Begin starting the workers without waiting for them (called before the first
        chunk is pulled, so the workers of consecutive steps start at the same time)."""

    @abc.abstractmethod
    def submit(self, chunk: List[Any]) -> Hashable:
        """Start processing ``chunk``; return a handle for :meth:`wait`/:meth:`result`."""

    @abc.abstractmethod
    def wait(self, handles: List[Hashable]) -> List[Hashable]:
        """Block until at least one of ``handles`` is finished; return the finished ones."""

    @abc.abstractmethod
    def result(self, handle: Hashable) -> Tuple[List[Any], float]:
        """The outputs of a finished chunk and the worker seconds it took."""

    @abc.abstractmethod
    def close(self) -> None:
        """Cancel unfinished chunks and release the workers."""


def run_in_chunks(workers: ChunkWorkers, items: Iterable[Any], sizer: ChunkSizer) -> Iterator[Any]:
    """Yield the outputs of ``workers`` over ``items`` in input order.

    At most ``workers.capacity`` chunks are running, and at most twice that are running or
    finished-but-not-yet-yielded, so memory stays bounded however long the stream is;
    finished chunks free their slot at once even when an earlier chunk is still running.
    The workers are closed when the output is exhausted, closed or garbage-collected.
    """
    source = iter(items)
    running: Dict[Hashable, Tuple[int, int]] = {}   # handle -> (sequence number, length)
    finished: Dict[int, List[Any]] = {}             # sequence number -> outputs
    submitted = yielded = 0
    exhausted = False
    try:
        workers.start()
        while True:
            while (not exhausted and len(running) < sizer.in_flight_limit(workers.capacity)
                   and len(running) + len(finished) < 2 * workers.capacity):
                size = sizer.next_size(operator.length_hint(source))
                chunk = list(itertools.islice(source, size))
                exhausted = len(chunk) < size
                if chunk:
                    running[workers.submit(chunk)] = (submitted, len(chunk))
                    submitted += 1
            if yielded in finished:
                outputs = finished.pop(yielded)
                yielded += 1
                yield from outputs
            elif running:
                for handle in workers.wait(list(running)):
                    sequence, count = running.pop(handle)
                    outputs, seconds = workers.result(handle)
                    sizer.record(count, seconds)
                    finished[sequence] = outputs
            else:
                return
    finally:
        workers.close()


class ChunkedBackend:
    """Mixin for backends built on :func:`run_in_chunks`; takes the ``chunk_size`` option."""

    def __init__(self, num_worker: int, chunk_size: Optional[int] = None) -> None:
        self.num_worker = num_worker
        self.chunk_size = check_chunk_size(chunk_size)
        self._workers: List[ChunkWorkers] = []

    def _run(self, workers: ChunkWorkers, items: Iterable[Any]) -> Iterator[Any]:
        self._workers.append(workers)
        return run_in_chunks(workers, items, ChunkSizer(self.num_worker, fixed=self.chunk_size))

    def close(self) -> None:
        while self._workers:
            self._workers.pop().close()
