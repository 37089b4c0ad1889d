"""Moving elements to workers in chunks: ordered, bounded, with an adaptive chunk size.

Every chunked backend (``thread``, ``ray``) shares this: the backend says how to start
workers and submit one chunk (:class:`ChunkWorkers`); :func:`run_in_chunks` decides how
big chunks are, how many are in flight, and yields outputs in input order.

Chunks are sized by time (enough work per chunk to hide the per-chunk overhead) and, when
elements are copied to other processes (``ray``), by bytes as well: a chunk stays under
``chunk_bytes`` and a step holds at most ``max_bytes_in_flight`` bytes of chunks submitted,
running, or finished and not yet yielded, whatever the element size.
"""
from __future__ import annotations

import abc
import itertools
import math
import operator
import threading
import time
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

from towhee_ray.checks import positive_int
from towhee_ray.guard import Failure
from towhee_ray.backends.sizes import chunk_bytes as measure_chunk

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


# Bytes one chunk carries at most (inputs or outputs), unless one element alone is larger.
# Measured on the 2-core VM (a chunk of k arrays per Ray task, 4 tasks in flight): with 1 MB
# elements throughput rose from 162 MB/s (1 MB chunks) to 748 (16 MB) and 975 (32 MB), then
# fell to 799 (64 MB) and 625 (128 MB); with 8 MB elements 32-64 MB chunks were fastest.
DEFAULT_CHUNK_BYTES = 32 << 20
# Bytes a step may hold per worker in chunks submitted, running, or finished and not yet
# yielded: 4 chunks of DEFAULT_CHUNK_BYTES, which is what a worker's running, queued and two
# finished chunks take, so the bound only bites when single elements exceed the chunk target.
DEFAULT_BYTES_IN_FLIGHT_PER_WORKER = 4 * DEFAULT_CHUNK_BYTES


def check_chunk_size(chunk_size: Optional[int]) -> Optional[int]:
    """Validate a user-given ``chunk_size`` (``None`` means automatic)."""
    return positive_int(chunk_size, 'chunk_size', 'elements per chunk', none='for automatic sizing')


def check_bytes(name: str, value: Optional[int]) -> Optional[int]:
    """Validate a byte bound given by the user (``None`` means the default).

    >>> check_bytes('chunk_bytes', 64 << 20)
    67108864
    >>> check_bytes('chunk_bytes', '64MB')
    Traceback (most recent call last):
    ...
    ValueError: chunk_bytes must be a positive integer (a number of bytes, e.g. 64 << 20 for 64 MiB) or None for the default, got '64MB'
    """
    return positive_int(value, name, 'a number of bytes, e.g. 64 << 20 for 64 MiB', none='for the default')


class ByteBounds:
    """The byte limits of one step whose elements are copied to workers.

    >>> bounds = ByteBounds(num_worker=2)
    >>> bounds.chunk_bytes >> 20, bounds.max_bytes_in_flight >> 20
    (32, 256)
    """

    def __init__(self, num_worker: int, chunk_bytes: Optional[int] = None,
                 max_bytes_in_flight: Optional[int] = None) -> None:
        self.chunk_bytes = check_bytes('chunk_bytes', chunk_bytes) or DEFAULT_CHUNK_BYTES
        self.max_bytes_in_flight = (check_bytes('max_bytes_in_flight', max_bytes_in_flight)
                                    or num_worker * DEFAULT_BYTES_IN_FLIGHT_PER_WORKER)


class _DecayedMean:
    """A per-element mean in which recent and big chunks count most."""

    def __init__(self) -> None:
        self._total = 0.0
        self._count = 0.0
        self.value: Optional[float] = None

    def add(self, count: int, total: float) -> None:
        self._total = self._total / 2 + total
        self._count = self._count / 2 + count
        self.value = self._total / self._count


class ChunkSizer:
    """Picks the next chunk size from the measured worker time per element and, with
    ``bounds``, the measured bytes per element (inputs and outputs).

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

    Elements of 8 MB fit four to a 32 MB chunk, however cheap the work:

    >>> sizer = ChunkSizer(num_worker=2, bounds=ByteBounds(2))
    >>> sizer.record_input(count=1, nbytes=8 << 20)
    >>> sizer.record(count=1, seconds=0.0001, output_bytes=8)
    >>> sizer.next_size()
    4
    """

    def __init__(self, num_worker: int, fixed: Optional[int] = None,
                 bounds: Optional[ByteBounds] = None) -> None:
        self._num_worker = num_worker
        self._fixed = fixed
        self.bounds = bounds
        self._growth_limit = FIRST_CHUNK_SIZE
        self._seconds = _DecayedMean()
        self._input_bytes = _DecayedMean()
        self._output_bytes = _DecayedMean()

    def _elements_for(self, seconds: float) -> int:
        per_element = self._seconds.value
        if per_element == 0:
            return MAX_CHUNK_SIZE
        return max(1, int(seconds / per_element))

    def _bytes_per_element(self) -> float:
        return max(self._input_bytes.value or 0.0, self._output_bytes.value or 0.0)

    def _elements_within_bytes(self) -> int:
        per_element = self._bytes_per_element() if self.bounds else 0
        if per_element <= 0:
            return MAX_CHUNK_SIZE
        return max(1, int(self.bounds.chunk_bytes / per_element))

    def next_size(self, remaining: Optional[int] = None) -> int:
        """The size of the next chunk; ``remaining`` is how many elements are left, if known."""
        if self._fixed is not None:
            return self._fixed
        if self._seconds.value is None:
            return FIRST_CHUNK_SIZE
        target = KNOWN_LENGTH_CHUNK_SECONDS if remaining else TARGET_CHUNK_SECONDS
        size = min(self._elements_for(target), self._growth_limit, MAX_CHUNK_SIZE,
                   self._elements_within_bytes())
        if remaining:
            share = math.ceil(remaining / (self._num_worker * TAIL_SPLIT))
            size = min(size, max(share, self._elements_for(MIN_TAIL_CHUNK_SECONDS)))
        return size

    def in_flight_limit(self, capacity: int) -> int:
        """How many chunks may be in flight: while sizes are still held back by MAX_GROWTH,
        one per worker, since a queued chunk would be one more small chunk and one more
        Ray round trip before sizes reach their target (at 10,000 elements of `x + 1` in
        benchmarks/run.py W2, 5-6 sequential tasks per worker instead of 4). Chunks held
        back by bytes instead have reached their size: all slots are used."""
        if self._fixed is not None:
            return capacity
        growing = (self._seconds.value is None
                   or min(self._elements_for(TARGET_CHUNK_SECONDS),
                          self._elements_within_bytes()) > self._growth_limit)
        return min(capacity, self._num_worker) if growing else capacity

    def cut(self, sizes: List[int], total: int, count: int) -> int:
        """How many elements of a pulled chunk to send so that it stays under the byte
        target (never fewer than one; a fixed ``chunk_size`` is never cut). ``sizes`` are
        the elements' sizes when each was measured, else ``total`` is an estimate."""
        if self.bounds is None or self._fixed is not None or total <= self.bounds.chunk_bytes:
            return count
        if not sizes:
            return max(1, int(count * self.bounds.chunk_bytes / total))
        running = 0
        for index, size in enumerate(sizes):
            running += size
            if running > self.bounds.chunk_bytes:
                return max(1, index)
        return count

    def expected_bytes(self, count: int) -> int:
        """What a chunk of ``count`` elements is expected to hold in flight (inputs or
        outputs, the larger), from the chunks so far."""
        return int(count * self._bytes_per_element())

    def expected_output_bytes(self, count: int) -> int:
        """What ``count`` elements' outputs are expected to take, from the chunks so far."""
        return int(count * (self._output_bytes.value or 0.0))

    def record_input(self, count: int, nbytes: int) -> None:
        """Learn from a chunk of ``count`` elements, ``nbytes`` in all, sent to a worker."""
        if count:
            self._input_bytes.add(count, nbytes)

    def record(self, count: int, seconds: float, output_bytes: Optional[int] = None) -> None:
        """Learn from a finished chunk of ``count`` elements that took ``seconds`` of work
        (and whose outputs take ``output_bytes``, when the worker measured them)."""
        if count == 0:
            return
        self._seconds.add(count, seconds)
        if output_bytes is not None:
            self._output_bytes.add(count, output_bytes)
        self._growth_limit = max(self._growth_limit, count * MAX_GROWTH)


def timed_map(call: Callable[[Any], Any], chunk: List[Any],
              measure_outputs: bool = False) -> Tuple[List[Any], float, Optional[int]]:
    """Apply ``call`` to a chunk in a worker; also return the seconds it took and, with
    ``measure_outputs``, the estimated bytes of the outputs (for sizing). A ``call`` with a
    ``map_chunk`` method takes the whole chunk at once (a step that also writes its rows to
    a sink, see towhee_ray/sinks/in_workers.py)."""
    start = time.perf_counter()
    map_chunk = getattr(call, 'map_chunk', None)
    outputs = map_chunk(chunk) if map_chunk is not None else [call(item) for item in chunk]
    seconds = time.perf_counter() - start
    return outputs, seconds, measure_chunk(outputs)[0] if measure_outputs else None


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

    def unsendable(self, chunk: List[Any], error: Exception) -> Optional[Tuple[int, Any]]:
        """:meth:`submit` raised ``error`` for ``chunk``: the index of its first element that
        cannot be sent to a worker, and the outcome in that element's place (an ``Empty``
        or a ``Failure``, see guard.unsendable); None when no element is to blame."""
        return None

    def passed_over(self, count: int) -> None:
        """``count`` elements, each replaced by its :meth:`unsendable` outcome, were not
        sent: they count among the step's elements all the same."""

    @abc.abstractmethod
    def wait(self, handles: List[Hashable]) -> List[Hashable]:
        """Block until at least one of ``handles`` is finished; return the finished ones
        (none, once :attr:`stop` is set: within about a second)."""

    #: Set by the backend: when set, :meth:`wait` may return early with nothing finished.
    stop: Optional[threading.Event] = None

    @abc.abstractmethod
    def result(self, handle: Hashable) -> Tuple[List[Any], float, Optional[int]]:
        """A finished chunk's outputs, the worker seconds it took and, if measured, the
        bytes of its outputs (what :func:`timed_map` returns)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Cancel unfinished chunks and release the workers."""


class _Source:
    """The step's input, pulled in chunks; elements cut from a chunk go back in front.

    An exception from the input (an upstream step that failed) ends it: the elements pulled
    before it are kept, and the exception waits in :attr:`error` until they are processed.
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self._returned: List[Any] = []
        self._items_left = True
        self.error: Optional[Exception] = None

    @property
    def drained(self) -> bool:
        """Whether every element has been taken (and none given back)."""
        return not (self._items_left or self._returned)

    def take(self, count: int) -> List[Any]:
        chunk = self._returned[:count]
        del self._returned[:count]
        wanted = count - len(chunk)
        if wanted and self._items_left:
            before = len(chunk)
            try:
                chunk.extend(itertools.islice(self._items, wanted))   # keeps what came before a raise
            except Exception as error:
                self.error, self._items_left = error, False
            else:
                self._items_left = len(chunk) - before == wanted
        return chunk

    def give_back(self, elements: List[Any]) -> None:
        self._returned[:0] = elements

    def stop(self) -> None:
        """Take no more elements (the step has failed on one)."""
        self._returned.clear()
        self._items_left = False

    def length_hint(self) -> int:
        return operator.length_hint(self._items) + len(self._returned)


def _cut_to_bounds(chunk: List[Any], source: _Source, sizer: ChunkSizer) -> int:
    """Cut ``chunk`` (in place) to the byte target, giving the rest back to ``source``;
    learn its input bytes and return the bytes it will hold in flight: its inputs, or
    its expected outputs if those are larger."""
    nbytes, sizes = measure_chunk(chunk)
    pulled = len(chunk)
    keep = sizer.cut(sizes, nbytes, pulled)
    if keep < pulled:
        source.give_back(chunk[keep:])
        del chunk[keep:]
        nbytes = sum(sizes[:keep]) if sizes else nbytes * keep // pulled
    sizer.record_input(keep, nbytes)
    return max(nbytes, sizer.expected_output_bytes(keep))


def _pull_chunk(source: _Source, sizer: ChunkSizer, held: int) -> Tuple[List[Any], int]:
    """The next chunk to submit and the bytes it will hold in flight; no elements when the
    input is drained, or when the chunk would take the bytes held over the step's bound
    (it is sent once the chunks ahead are yielded; a chunk alone always goes)."""
    size = sizer.next_size(source.length_hint())
    bounds = sizer.bounds
    if bounds is None:
        return source.take(size), 0
    if held and held + sizer.expected_bytes(size) > bounds.max_bytes_in_flight:
        return [], 0
    chunk = source.take(size)
    nbytes = _cut_to_bounds(chunk, source, sizer) if chunk else 0
    if held and held + nbytes > bounds.max_bytes_in_flight:
        source.give_back(chunk)
        return [], 0
    return chunk, nbytes


def run_in_chunks(workers: ChunkWorkers, items: Iterable[Any], sizer: ChunkSizer,
                  stop: Optional[threading.Event] = None) -> Iterator[Any]:
    """Yield the outputs of ``workers`` over ``items`` in input order.

    At most ``workers.capacity`` chunks are running, and at most twice that are running or
    finished-but-not-yet-yielded, so memory stays bounded however long the stream is;
    finished chunks free their slot at once even when an earlier chunk is still running.
    With ``sizer.bounds``, chunks are cut at ``chunk_bytes`` and the bytes held (a running
    chunk's inputs or expected outputs, a finished chunk's outputs, until yielded) stay
    under ``max_bytes_in_flight``, except for one chunk alone. The workers are closed when
    the output is exhausted, closed or garbage-collected. When the input raises, the
    outputs of every element before the raise are yielded first, then the exception. An
    element that the workers cannot be sent (:meth:`ChunkWorkers.unsendable`: it cannot be
    pickled) is replaced, in its place, by its outcome: the elements before it are sent
    as a chunk of their own, and after a ``Failure`` no more elements are sent. Once
    ``stop`` is set (from any thread: :meth:`ChunkedBackend.stop`), the output ends at the
    next chunk, as if the input had.
    """
    source = _Source(items)
    running: Dict[Hashable, Tuple[int, int, int]] = {}   # handle -> (sequence, length, bytes)
    finished: Dict[int, Tuple[List[Any], int]] = {}      # sequence -> (outputs, bytes)
    held = 0            # bytes of the chunks in ``running`` and ``finished`` and being yielded
    submitted = yielded = 0
    try:
        workers.start()
        while True:
            if stop is not None and stop.is_set():
                return
            while (not source.drained and len(running) < sizer.in_flight_limit(workers.capacity)
                   and len(running) + len(finished) < 2 * workers.capacity):
                chunk, nbytes = _pull_chunk(source, sizer, held)
                if not chunk:
                    break
                try:
                    handle = workers.submit(chunk)
                except Exception as error:   # an element that cannot be sent, or worse
                    found = workers.unsendable(chunk, error)
                    if found is None:
                        raise
                    index, outcome = found
                    if index:   # the elements before it go first, as a chunk of their own
                        source.give_back(chunk[index:])
                        del chunk[index:]
                        handle = workers.submit(chunk)
                    else:   # it takes its place in the order as the outcome of a chunk
                        if outcome.__class__ is Failure:   # the step stops there: send no more
                            source.stop()
                        else:
                            source.give_back(chunk[1:])
                        finished[submitted] = ([outcome], 0)
                        workers.passed_over(1)
                        submitted += 1
                        continue
                running[handle] = (submitted, len(chunk), nbytes)
                held += nbytes
                submitted += 1
                del chunk, handle   # the worker has its own copy; keep none in the driver
            if yielded in finished:
                outputs, nbytes = finished.pop(yielded)
                yielded += 1
                yield from outputs
                held -= nbytes
            elif running:
                for handle in workers.wait(list(running)):
                    sequence, count, sent_bytes = running.pop(handle)
                    outputs, seconds, output_bytes = workers.result(handle)
                    sizer.record(count, seconds, output_bytes)
                    kept_bytes = sent_bytes if output_bytes is None else output_bytes
                    held += kept_bytes - sent_bytes
                    finished[sequence] = (outputs, kept_bytes)
            elif source.error is not None:
                raise source.error
            else:
                return
    finally:
        workers.close()


class ChunkedBackend:
    """Mixin for backends built on :func:`run_in_chunks`; takes the ``chunk_size`` option
    and, for backends that copy elements to other processes, the byte bounds."""

    def __init__(self, num_worker: int, chunk_size: Optional[int] = None,
                 bounds: Optional[ByteBounds] = None) -> None:
        self.num_worker = num_worker
        self.chunk_size = check_chunk_size(chunk_size)
        self.bounds = bounds
        self._workers: List[ChunkWorkers] = []
        self._stop = threading.Event()

    def _run(self, workers: ChunkWorkers, items: Iterable[Any]) -> Iterator[Any]:
        self._workers.append(workers)
        workers.stop = self._stop
        sizer = ChunkSizer(self.num_worker, fixed=self.chunk_size, bounds=self.bounds)
        return run_in_chunks(workers, items, sizer, self._stop)

    def stop(self) -> None:
        """End this backend's running maps early, from any thread (a thread that does not
        iterate them cannot close them: Python forbids closing a running generator); each
        ends at its next chunk, within about a second, and releases its workers."""
        self._stop.set()

    def close(self) -> None:
        while self._workers:
            self._workers.pop().close()
