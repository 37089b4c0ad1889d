"""Moving elements to workers in chunks: ordered, bounded, with an adaptive chunk size.

Every chunked backend (``thread``, ``ray``) shares this: the backend says how to start
workers and submit one chunk (:class:`ChunkWorkers`); :func:`run_in_chunks` decides how
big chunks are, how many are in flight, and yields outputs in input order.
"""
from __future__ import annotations

import abc
import itertools
import math
import time
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

# Worker time one chunk should take. On a 2-core machine a Ray task round trip (submit,
# schedule, fetch the result) measured 3.5-7 ms; 100 ms chunks keep that below ~5 % of the
# work while a stream's last chunk leaves the other workers idle for at most that long.
TARGET_CHUNK_SECONDS = 0.1
# The first chunks are tiny so that a slow function (seconds per element) is never
# batched blindly; the size then follows the measured time per element.
FIRST_CHUNK_SIZE = 1
# Growth per measurement is capped: the first tiny chunks time mostly overhead, so one
# of them alone must not set a huge chunk. 1 -> 8192 still takes only four steps.
MAX_GROWTH = 16
# Bounds the elements a step holds: at most 2 x capacity chunks are in flight or waiting
# to be yielded, so 8192 keeps a step's share of a stream in the tens of thousands of
# elements, while the ~1.5 ms of driver work per Ray chunk stays under 0.2 us per element.
MAX_CHUNK_SIZE = 1 << 13
# With a known input length, at least this many chunks per worker so the work balances.
MIN_CHUNKS_PER_WORKER = 4


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
    >>> sizer.next_size()                       # growth is capped at 16x per step
    16
    >>> for _ in range(3):
    ...     sizer.record(count=16, seconds=0.016)
    >>> sizer.next_size()                       # 100 ms of work
    100
    """

    def __init__(self, num_worker: int, fixed: Optional[int] = None,
                 total: Optional[int] = None) -> None:
        self._fixed = fixed
        self._size = FIRST_CHUNK_SIZE
        self._limit = MAX_CHUNK_SIZE
        if total is not None:
            self._limit = max(1, min(MAX_CHUNK_SIZE,
                                     math.ceil(total / (num_worker * MIN_CHUNKS_PER_WORKER))))
        # Decayed sums, so recent chunks count more and big chunks more than tiny ones.
        self._seconds = 0.0
        self._count = 0.0

    def next_size(self) -> int:
        if self._fixed is not None:
            return self._fixed
        return min(self._size, self._limit)

    def record(self, count: int, seconds: float) -> None:
        if self._fixed is not None or count == 0:
            return
        self._seconds = self._seconds / 2 + seconds
        self._count = self._count / 2 + count
        per_element = self._seconds / self._count
        ideal = TARGET_CHUNK_SECONDS / per_element if per_element > 0 else MAX_CHUNK_SIZE
        self._size = max(1, min(int(ideal), self._size * MAX_GROWTH, MAX_CHUNK_SIZE))


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
            while (not exhausted and len(running) < workers.capacity
                   and len(running) + len(finished) < 2 * workers.capacity):
                size = sizer.next_size()
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
        close = getattr(source, 'close', None)
        if close is not None:
            close()


class ChunkedBackend:
    """Mixin for backends built on :func:`run_in_chunks`; takes the ``chunk_size`` option."""

    def __init__(self, num_worker: int, chunk_size: Optional[int] = None) -> None:
        self.num_worker = num_worker
        self.chunk_size = check_chunk_size(chunk_size)
        self._workers: List[ChunkWorkers] = []

    def _run(self, workers: ChunkWorkers, items: Iterable[Any]) -> Iterator[Any]:
        self._workers.append(workers)
        total = len(items) if hasattr(items, '__len__') else None
        sizer = ChunkSizer(self.num_worker, fixed=self.chunk_size, total=total)
        return run_in_chunks(workers, items, sizer)

    def close(self) -> None:
        while self._workers:
            self._workers.pop().close()
