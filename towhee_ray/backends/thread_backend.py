"""The ``thread`` backend: a thread pool in the driver process.

The default backend of ``set_parallel``, as in Towhee's original API. Threads share the
GIL, so it speeds up work that releases it (I/O, numpy, most model inference); for
pure-Python CPU-bound work use the ``ray`` backend.
"""
from __future__ import annotations

import concurrent.futures
import queue
from typing import Any, Callable, Hashable, Iterable, Iterator, List, Optional, Tuple

from towhee_ray.backends.base import Backend, OperatorFactory
from towhee_ray.backends.chunking import ChunkedBackend, ChunkWorkers, timed_map

# Chunks queued per thread beyond the one it runs, so a thread never waits for the driver.
QUEUED_CHUNKS_PER_WORKER = 1
# How often a wait for chunks looks whether the stream was stopped from another thread.
STOP_POLL_SECONDS = 1.0


class _ThreadWorkers(ChunkWorkers):
    """``num_worker`` threads; ``make_call`` gives the callable one chunk runs with."""

    def __init__(self, num_worker: int, make_call: Callable[[], Callable[[Any], Any]],
                 release_call: Callable[[Callable[[Any], Any]], None]) -> None:
        self.capacity = num_worker * (1 + QUEUED_CHUNKS_PER_WORKER)
        self._num_worker = num_worker
        self._make_call = make_call
        self._release_call = release_call
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def _process(self, chunk: List[Any]) -> Tuple[List[Any], float, None]:
        call = self._make_call()
        try:
            return timed_map(call, chunk)
        finally:
            self._release_call(call)

    def start(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._num_worker, thread_name_prefix='towhee-ray-thread')

    def submit(self, chunk: List[Any]) -> Hashable:
        return self._pool.submit(self._process, chunk)

    def wait(self, handles: List[Hashable]) -> List[Hashable]:
        while True:
            done, _ = concurrent.futures.wait(handles, timeout=STOP_POLL_SECONDS,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            if done or (self.stop is not None and self.stop.is_set()):
                return list(done)

    def result(self, handle: Hashable) -> Tuple[List[Any], float, None]:
        return handle.result()

    def close(self) -> None:
        if self._pool is not None:
            # Waits for at most the chunks already running (one per thread).
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _OperatorInstances:
    """At most ``limit`` operator instances, each used by one thread at a time.

    An instance is built only when every existing one is busy, and at most one chunk per
    thread runs at once, so the operator's ``__init__`` runs at most ``num_worker`` times.
    """

    def __init__(self, operator: OperatorFactory) -> None:
        self._operator = operator
        self._idle: 'queue.SimpleQueue[Callable[[Any], Any]]' = queue.SimpleQueue()

    def take(self) -> Callable[[Any], Any]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._operator.create()

    def give_back(self, instance: Callable[[Any], Any]) -> None:
        self._idle.put(instance)


class ThreadBackend(ChunkedBackend, Backend):
    """Runs each step on ``num_worker`` threads of the driver process.

    Options: ``chunk_size`` (elements per chunk; automatic by default). Threads share the
    driver's memory, so elements are never copied and chunks are bounded by count and
    time only (the ``ray`` backend's byte bounds do not apply).

    >>> backend = ThreadBackend(num_worker=2)
    >>> list(backend.map(lambda x: x * 10, range(5)))
    [0, 10, 20, 30, 40]
    >>> backend.close()
    """

    def __init__(self, num_worker: int, chunk_size: Optional[int] = None) -> None:
        ChunkedBackend.__init__(self, num_worker, chunk_size)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        workers = _ThreadWorkers(self.num_worker, lambda: fn, lambda call: None)
        return self._run(workers, items)

    def map_operator(self, operator: OperatorFactory, items: Iterable[Any]) -> Iterator[Any]:
        instances = _OperatorInstances(operator)
        workers = _ThreadWorkers(self.num_worker, instances.take, instances.give_back)
        return self._run(workers, items)
