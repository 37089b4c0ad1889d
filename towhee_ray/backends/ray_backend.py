"""The ``ray`` backend: plain callables as Ray tasks, operators as Ray actors.

Resources asked of Ray by default, chosen so that any chain runs on any cluster:

* a task asks for 1 CPU (Ray's default), so Ray never runs more of them at once than
  there are CPUs; a step never runs more than ``num_worker`` at once (on a cluster that
  could run more, its chunks form ``num_worker`` chains, each task waiting for the
  previous one of its chain);
* an actor asks for 0 CPUs: it holds an operator between chunks and must not hold a CPU
  while idle, or a chain whose actors outnumber the CPUs (three operator steps of two
  actors on a 2-CPU machine) would wait forever for CPUs held by other steps' actors.
  At most ``num_worker`` chunks of a step run at once, one per actor.

The named options ``num_cpus``, ``num_gpus``, ``resources``, ``memory`` replace these per
step, ``ray_remote_args`` passes anything else to Ray (see ray_resources.py).

A worker keeps the heap a chunk of large outputs freed for its next chunk, instead of
handing it back to the kernel and faulting it in again (worker_heap.py).

Faults: a task whose worker process dies is retried by Ray (``max_retries``); an actor
whose process dies is replaced here, its operator built again and its unfinished chunks
re-run, each chunk at most ``max_retries`` times (ray_faults.py). A worker that cannot
load the step's function or operator (a module it cannot import) is no crash: the worker
loads it itself (shipping.py) and the step fails at once with that error. Tasks and
actors carry the step's name
(``towhee_ray map(parse_row)``, ``towhee_ray operator image/decode #1``) for ``ray list``,
the dashboard, ``ray timeline`` and Ray's log prefixes.
"""
from __future__ import annotations

import abc
import contextlib
import itertools
import os
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import ray
from ray import exceptions as ray_errors

from towhee_ray import cluster
from towhee_ray.backends import ray_resources
from towhee_ray.backends.base import Backend, OperatorFactory, WorkerError
from towhee_ray.backends.chunking import ByteBounds, ChunkedBackend, ChunkWorkers, timed_map
from towhee_ray.backends.ray_cancel import cancel_later
from towhee_ray.backends.ray_faults import (WORKER_DIED, ActorSlots, died_error, out_of_tries,
                                            running_when_died, unloadable_arguments)
from towhee_ray.backends.shipping import Payload
from towhee_ray.backends.worker_heap import keep_freed_heap
from towhee_ray.guard import LoadFailure, load_error

TASK_REMOTE_ARGS: Dict[str, Any] = {'num_cpus': 1}
ACTOR_REMOTE_ARGS: Dict[str, Any] = {'num_cpus': 0, 'scheduling_strategy': 'SPREAD'}
# Chunks queued at each worker beyond the one it runs, so it can start its next chunk
# without waiting for the driver, which may be busy passing outputs down the chain. (On
# 2 cores W1 measured the same with 0: a task's ~5 ms gap is Ray's own, queued or not.)
QUEUED_CHUNKS_PER_WORKER = 1
# How often a driver waiting for chunks looks whether Ray is still there (ray.shutdown()
# in another thread); a wait returns as soon as a chunk is done, so this costs nothing.
WAIT_POLL_SECONDS = 1.0
_step_numbers = itertools.count(1)


@ray.remote(num_returns=2)
def _process_chunk(fn: Payload, chunk: List[Any], *after: None) -> Tuple[Any, None]:
    """Returns the outputs (with their timing and size), or the failure to load the step's
    function, and a token; the next chunk of the same worker slot takes the token as an
    argument, so Ray starts it only once this one is done."""
    keep_freed_heap()
    call, failure = fn.load()
    if failure is not None:
        return failure, None
    return timed_map(call, chunk, measure_outputs=True), None


@ray.remote
class _OperatorActor:
    """Builds one operator instance and serves chunks with it for the step's lifetime. An
    operator it cannot load makes every chunk come back as that failure: the actor lives
    (it did not crash), and the driver raises the failure at once."""

    def __init__(self, operator: Payload, name: str) -> None:
        keep_freed_heap()
        self._name = name
        factory, self._failure = operator.load()
        self._call = None if factory is None else factory.create()

    def process(self, chunk: List[Any]) -> Any:
        if self._failure is not None:
            return self._failure
        return timed_map(self._call, chunk, measure_outputs=True)

    def __repr__(self) -> str:   # Ray prefixes the actor's log lines with it
        return self._name


def _session_gone(error: BaseException) -> bool:
    """Whether ``error`` from a Ray call means that this process's Ray session is gone or
    going: Ray no longer initialized, or objects this driver made whose owner it no longer
    knows (``ray.shutdown()`` in another thread clears them while Ray still says it is
    initialized; seen once in a full test run)."""
    return (isinstance(error, SystemExit) or not ray.is_initialized()
            or (isinstance(error, ValueError) and 'owner is unknown' in str(error)))


@contextlib.contextmanager
def _ray_calls(step: str) -> Iterator[None]:
    """Ray shut down under a running stream (``ray.shutdown()`` in another thread, the
    cluster gone) surfaces in Ray's calls as a bare ``SystemExit``, as errors about an
    uninitialized Ray or about objects whose owner is unknown; each becomes a
    :class:`WorkerError` that says so."""
    try:
        yield
    except (Exception, SystemExit) as error:
        if _session_gone(error):
            raise WorkerError(f'Ray was shut down while {step} was running (ray.shutdown(), or the '
                              f'cluster went away); the rest of the stream was not processed.') from error
        raise


class _Chunk:
    """A chunk in flight: its elements (kept only where it may be re-run by the driver),
    where it runs, how often its worker died running it."""

    __slots__ = ('items', 'count', 'first', 'slot', 'ref', 'outputs', 'generation', 'deaths')

    def __init__(self, items: List[Any], first: int, slot: int) -> None:
        self.items: Optional[List[Any]] = items
        self.count = len(items)
        self.first = first
        self.slot = slot
        self.ref: Optional[ray.ObjectRef] = None
        self.outputs: Optional[Tuple[List[Any], float, Optional[int]]] = None
        self.generation = 0   # of the actor it was sent to
        self.deaths = 0       # actors that died while running it

    def elements(self) -> str:
        last = self.first + self.count - 1
        return f'element #{self.first}' if last == self.first else f'elements #{self.first}-#{last}'


class _SlotWorkers(ChunkWorkers):
    """``num_worker`` worker slots, each running one chunk with more queued behind it; a
    chunk goes to the slot with the fewest unfinished chunks."""

    def __init__(self, num_worker: int, step: str, max_retries: int) -> None:
        self.capacity = num_worker * (1 + QUEUED_CHUNKS_PER_WORKER)
        self.step = step
        self.max_retries = max_retries
        self._unfinished = [0] * num_worker
        self._in_flight: Dict[ray.ObjectRef, _Chunk] = {}
        self._submitted = 0   # elements so far: chunks are submitted in input order

    @abc.abstractmethod
    def _submit_to(self, slot: int, chunk: List[Any]) -> ray.ObjectRef:
        """Send ``chunk`` to worker slot ``slot``; return the reference to its outputs."""

    def _worker_died(self, chunk: _Chunk, error: BaseException) -> None:
        """``chunk``'s worker died (after Ray's own retries): re-run it, or raise."""
        running = running_when_died(chunk, self._in_flight.values())
        raise died_error(self.step, running.elements(), self.max_retries, error) from error

    #: whether a chunk's elements are kept until its outputs arrive, to send it again
    resends = False

    def _send(self, chunk: _Chunk) -> None:
        with _ray_calls(self.step):
            chunk.ref = self._submit_to(chunk.slot, chunk.items)
        self._in_flight[chunk.ref] = chunk
        if not self.resends:   # Ray holds the serialized copy; the driver need not
            chunk.items = None

    def submit(self, chunk: List[Any]) -> Hashable:
        slot = min(range(len(self._unfinished)), key=self._unfinished.__getitem__)
        handle = _Chunk(chunk, self._submitted, slot)
        self._submitted += len(chunk)
        self._send(handle)
        self._unfinished[slot] += 1
        return handle

    def wait(self, handles: List[Hashable]) -> List[Hashable]:
        while True:
            with _ray_calls(self.step):
                ready, _ = ray.wait([handle.ref for handle in handles], num_returns=1,
                                    timeout=WAIT_POLL_SECONDS)
                if not ready and not ray.is_initialized():
                    raise RuntimeError('Ray is not initialized')
            for ref in ready:
                chunk = self._in_flight.pop(ref)
                try:
                    with _ray_calls(self.step):
                        chunk.outputs = ray.get(ref)
                except WORKER_DIED as error:
                    self._worker_died(chunk, error)
                except ray_errors.RaySystemError as error:
                    original = unloadable_arguments(error)
                    if original is None:
                        raise
                    raise load_error(LoadFailure(original, ''), self.step,
                                     f'{self.step}: {chunk.elements()}')
                if chunk.outputs.__class__ is LoadFailure:
                    raise load_error(chunk.outputs, self.step)
            done = [handle for handle in handles if handle.outputs is not None]
            if done:
                return done

    def result(self, handle: Hashable) -> Tuple[List[Any], float, Optional[int]]:
        self._unfinished[handle.slot] -= 1
        outputs, handle.outputs, handle.items = handle.outputs, None, None
        return outputs


class _TaskWorkers(_SlotWorkers):
    """Tasks, at most ``num_worker`` running at once. When the cluster could run more of
    them at once, each slot is a chain of tasks, the next waiting (inside Ray, not in the
    driver) for the previous one's token; when Ray's resource accounting already holds
    them to ``num_worker`` (2 workers of 1 CPU on a 2-CPU machine), the tasks go unchained:
    a chained task becomes ready only once its token is back in the driver and then needs
    a worker again, a gap that costs most when chunks are short (large elements cut by
    bytes). The function goes to the object store once. Ray itself retries a task whose
    worker died."""

    def __init__(self, fn: Payload, num_worker: int, step: str, remote_args: Dict[str, Any]) -> None:
        super().__init__(num_worker, step, remote_args['max_retries'])
        self._fn = fn
        self._fn_ref: Optional[ray.ObjectRef] = None
        self._remote_args = remote_args
        self._remote = _process_chunk.options(name=f'towhee_ray {step}', **remote_args)
        self._last_token: List[Tuple[ray.ObjectRef, ...]] = [()] * num_worker
        self._chained = True

    def start(self) -> None:
        cluster.connect()
        ray_resources.wait_until_placeable(self.step, self._remote_args, len(self._unfinished),
                                           all_at_once=False)
        capacity = ray_resources.concurrent_capacity(self._remote_args)
        self._chained = capacity is None or capacity > len(self._unfinished)
        self._fn_ref = ray.put(self._fn)

    def _submit_to(self, slot: int, chunk: List[Any]) -> ray.ObjectRef:
        outputs, token = self._remote.remote(self._fn_ref, chunk, *self._last_token[slot])
        if self._chained:
            self._last_token[slot] = (token,)
        return outputs

    def close(self) -> None:
        cancel_later(list(self._in_flight), self.step)
        self._in_flight.clear()
        self._last_token = []
        self._fn_ref = None


class _ActorWorkers(_SlotWorkers):
    """``num_worker`` actors, each building the operator once; Ray runs an actor's chunks
    one at a time, in submission order. A dead actor is replaced and its chunks re-run."""

    resends = True

    def __init__(self, operator: Payload, num_worker: int, step: str,
                 remote_args: Dict[str, Any], max_retries: int) -> None:
        super().__init__(num_worker, step, max_retries)
        self._operator = operator
        self._operator_ref: Optional[ray.ObjectRef] = None
        self._remote_args = remote_args
        self._slots = ActorSlots(step, num_worker, self._new_actor)
        self._step_id = f'{os.getpid()}.{next(_step_numbers)}'

    def _new_actor(self, slot: int, generation: int) -> Any:
        name = f'towhee_ray {self.step} #{slot + 1}' + (f' (replacement {generation})' if generation else '')
        options = {'name': f'{name} [{self._step_id}]', **self._remote_args}
        return _OperatorActor.options(**options).remote(self._operator_ref, name)

    def start(self) -> None:
        cluster.connect()
        ray_resources.wait_until_placeable(self.step, self._remote_args, len(self._unfinished),
                                           all_at_once=True)
        self._operator_ref = ray.put(self._operator)
        self._slots.start()

    def _submit_to(self, slot: int, chunk: List[Any]) -> ray.ObjectRef:
        return self._slots.actors[slot].process.remote(chunk)

    def _send(self, chunk: _Chunk) -> None:
        chunk.generation = self._slots.generations[chunk.slot]
        super()._send(chunk)

    def _worker_died(self, chunk: _Chunk, error: BaseException) -> None:
        if chunk.generation == self._slots.generations[chunk.slot]:   # the first of its chunks to notice
            running = running_when_died(chunk, self._in_flight.values())
            running.deaths += 1
            if out_of_tries(running, self.max_retries):
                raise died_error(self.step, running.elements(), self.max_retries, error) from error
            self._slots.replace(chunk.slot, running.elements(), error, rerun='chunks')
        self._send(chunk)

    def close(self) -> None:
        self._slots.close()
        self._in_flight.clear()
        self._operator_ref = None


def _step_name(fn: Callable[[Any], Any]) -> str:
    return getattr(fn, 'name', None) or f'map({getattr(fn, "__name__", type(fn).__name__)})'


class RayBackend(ChunkedBackend, Backend):
    """Runs plain callables as Ray tasks and operators as Ray actors.

    Options:

    * ``chunk_size``: elements per chunk; automatic by default (from the measured time
      and bytes per element);
    * ``chunk_bytes``: the most bytes of inputs or outputs one chunk carries, unless a
      single element is larger (it then travels alone); 32 MiB by default;
    * ``max_bytes_in_flight``: the most bytes a step holds in chunks submitted, running,
      or finished and not yet yielded (a single chunk may exceed it); 128 MiB per worker
      by default;
    * ``num_cpus``, ``num_gpus``, ``memory`` (bytes), ``resources`` (custom resources):
      what each task or actor of the step asks of Ray, replacing the defaults above;
    * ``max_retries``: how many times a chunk whose worker process died is run again
      (3 by default, -1 for no limit), for tasks and actors alike;
    * ``ray_remote_args``: any other ``.options()`` of the step's tasks or actors
      (applied last), e.g. ``{'scheduling_strategy': 'SPREAD'}``.

    Connects to Ray on first use (see :func:`towhee_ray.cluster.connect`).

    >>> backend = RayBackend(num_worker=2, num_cpus=0.5)
    >>> list(backend.map(lambda x: x * 10, range(5)))
    [0, 10, 20, 30, 40]
    >>> backend.close()
    """

    def __init__(self, num_worker: int, chunk_size: Optional[int] = None,
                 chunk_bytes: Optional[int] = None, max_bytes_in_flight: Optional[int] = None, *,
                 num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                 resources: Optional[Dict[str, float]] = None, memory: Optional[int] = None,
                 max_retries: Optional[int] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None) -> None:
        ChunkedBackend.__init__(self, num_worker, chunk_size,
                                ByteBounds(num_worker, chunk_bytes, max_bytes_in_flight))
        self.step_options = dict(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                 memory=memory, max_retries=max_retries, ray_remote_args=ray_remote_args)
        ray_resources.check_step_options(**self.step_options)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        step = _step_name(fn)
        payload = Payload(fn, step)
        remote_args = ray_resources.step_remote_args(TASK_REMOTE_ARGS, actor=False, **self.step_options)
        return self._run(_TaskWorkers(payload, self.num_worker, step, remote_args), items)

    def map_operator(self, operator: OperatorFactory, items: Iterable[Any]) -> Iterator[Any]:
        step = f'operator {operator.name}'
        payload = Payload(operator, step, advice='Pass the operator something picklable (a path, '
                                                 'a setting) and build the object in its __init__.')
        remote_args = ray_resources.step_remote_args(ACTOR_REMOTE_ARGS, actor=True, **self.step_options)
        max_retries = self.step_options['max_retries']
        max_retries = ray_resources.DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        return self._run(_ActorWorkers(payload, self.num_worker, step, remote_args, max_retries), items)
