"""The ``ray`` backend: plain callables as Ray tasks, operators on a pool of Ray actors.

Resources asked of Ray by default, chosen so that any chain runs on any cluster:

* a task asks for 1 CPU (Ray's default), so Ray never runs more of them at once than
  there are CPUs; a step never runs more than ``num_worker`` at once (on a cluster that
  could run more, its chunks form ``num_worker`` chains, each task waiting for the
  previous one of its chain);
* an actor asks for 0 CPUs (pool.py says why). At most ``num_worker`` chunks of a step
  run at once, one per actor.

The named options ``num_cpus``, ``num_gpus``, ``resources``, ``memory`` replace these per
step, ``ray_remote_args`` passes anything else to Ray (see resources.py).

A worker keeps the heap a chunk of large outputs freed for its next chunk, instead of
handing it back to the kernel and faulting it in again (heap.py).

Faults: a task whose worker process dies is retried by Ray (``max_retries``); an operator
step runs on the actor pool that :func:`towhee_ray.ray_op` uses too (pool.py), which
replaces an actor whose process dies, builds its operator again and re-runs its unfinished
chunks, each chunk at most ``max_retries`` times. A worker that cannot load the step's
function or operator (a module it cannot import) is no crash: the worker loads it itself
(shipping.py) and the step fails at once with that error. Tasks and actors carry the
step's name (names.py: ``towhee_ray map(parse_row)``, ``towhee_ray operator image/decode
#1``) for ``ray list``, the dashboard, ``ray timeline`` and Ray's log prefixes.
"""
from __future__ import annotations

import abc
import itertools
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import ray

from towhee_ray import cluster
from towhee_ray.backends.base import Backend, OperatorFactory
from towhee_ray.backends.chunking import ByteBounds, ChunkedBackend, ChunkWorkers, timed_map
from towhee_ray.backends.options import DEFAULT_NUM_WORKER
from towhee_ray.backends.ray import names
from towhee_ray.backends.ray.cancel import cancel_and_wait, cancel_later, interruptible
from towhee_ray.backends.ray.faults import WORKER_DIED, died_error, fetch, ray_calls, running_when_died
from towhee_ray.backends.ray.heap import keep_freed_heap
from towhee_ray.backends.ray.pool import ACTOR_REMOTE_ARGS, RESENT, ActorPool, PoolCall
from towhee_ray.backends.ray.resources import (DEFAULT_MAX_RETRIES, PlacementWatch, check_step_options,
                                               concurrent_capacity, gpu_share, step_remote_args,
                                               unplaced_tasks, wait_until_placeable, workers_for_gpus)
from towhee_ray.backends.ray.shipping import Payload
from towhee_ray.guard import LoadFailure, SentOutputs, is_safe, load_error, unsendable

TASK_REMOTE_ARGS: Dict[str, Any] = {'num_cpus': 1}
# Chunks queued at each worker beyond the one it runs, so it can start its next chunk
# without waiting for the driver, which may be busy passing outputs down the chain. (On
# 2 cores W1 measured the same with 0: a task's ~5 ms gap is Ray's own, queued or not.)
QUEUED_CHUNKS_PER_WORKER = 1
# How often a driver waiting for chunks looks whether Ray is still there (ray.shutdown()
# in another thread); a wait returns as soon as a chunk is done, so this costs nothing.
WAIT_POLL_SECONDS = 1.0


@ray.remote(num_returns=2)
def _process_chunk(fn: Payload, chunk: List[Any], *after: None) -> Tuple[Any, None]:
    """Returns the outputs (with their timing and size), or the failure to load the step's
    function, and a token; the next chunk of the same worker slot takes the token as an
    argument, so Ray starts it only once this one is done. An output that cannot be
    pickled becomes the failure of its element (guard.SentOutputs)."""
    keep_freed_heap()
    interruptible()
    call, failure = fn.load()
    if failure is not None:
        return failure, None
    outputs, seconds, nbytes = timed_map(call, chunk, measure_outputs=True)
    return (SentOutputs(call, chunk, outputs), seconds, nbytes), None


def _elements(first: int, count: int) -> str:
    """Which elements of the step a chunk holds, for errors.

    >>> _elements(10, 10), _elements(3, 1)
    ('elements #10-#19', 'element #3')
    """
    last = first + count - 1
    return f'element #{first}' if last == first else f'elements #{first}-#{last}'


class _RayWorkers(ChunkWorkers):
    """Workers whose chunks come back as Ray object references; a subclass settles a
    chunk whose reference is ready (:meth:`_settle`): sets its ``outcome``, or sends it
    again, or raises."""

    step: str
    # tasks: whether they wait for resources that other work holds (an actor pool watches
    # its own actors)
    _watch: Optional[PlacementWatch] = None

    @abc.abstractmethod
    def _settle(self, chunk: Any) -> None:
        """``chunk``'s reference is ready: set its ``outcome``, send it again, or raise."""

    safe = False   # whether the step's failed elements become Empty (a safe() chain)

    def unsendable(self, chunk: List[Any], error: Exception) -> Optional[Tuple[int, Any]]:
        """The first element of ``chunk`` that cannot be pickled, so that submitting it
        raised ``error``, and the outcome in its place (guard.unsendable): a TypeError
        naming the element's place in the step and what to do. None where every element
        pickles alone (``error`` had another cause)."""
        from ray import cloudpickle
        for index, element in enumerate(chunk):
            try:
                cloudpickle.dumps(element, protocol=5, buffer_callback=lambda buffer: None)
            except Exception as cause:
                position = self._submitted + index
                problem = TypeError(
                    f'element #{position} cannot be pickled, so it cannot be sent to a Ray worker: '
                    f'{type(cause).__name__}: {cause}. Give the step elements that pickle (the data '
                    f'itself, a path or a URL; not a lock, an open file or a connection, which each '
                    f"worker must open itself), or run it with backend='thread'.")
                problem.__cause__ = cause
                return index, unsendable(element, problem, self.safe)
        return None

    def passed_over(self, count: int) -> None:
        self._submitted += count   # they take their places among the step's elements

    def wait(self, handles: List[Hashable]) -> List[Hashable]:
        while True:
            # a handle without a reference waits in the driver for an actor (pool.py)
            by_ref = {handle.ref: handle for handle in handles if handle.ref is not None}
            if not by_ref:   # never so: a call runs alone on an actor while others wait for it
                raise RuntimeError(f'{self.step}: every chunk waits in the driver and none runs on an '
                                   f'actor (a bug in towhee_ray: please report it with this message)')
            with ray_calls(self.step):
                ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=WAIT_POLL_SECONDS)
                if not ready and not ray.is_initialized():
                    raise RuntimeError('Ray is not initialized')
            if self._watch is not None and ready:
                self._watch.progress()
            elif self._watch is not None:
                self._watch.waiting()
            if not ready and self.stop is not None and self.stop.is_set():
                return []
            for ref in ready:
                self._settle(by_ref[ref])
            done = [handle for handle in handles if handle.outcome is not None]
            if done:
                return done


class _Chunk:
    """A chunk on a task: where it runs and, once finished, its outputs (faults.SentCall)."""

    __slots__ = ('what', 'sent', 'slot', 'ref', 'outcome', 'generation', 'deaths')

    def __init__(self, what: str, sent: int, slot: int) -> None:
        self.what = what
        self.sent = sent
        self.slot = slot
        self.ref: Optional[ray.ObjectRef] = None
        self.outcome: Optional[Tuple[List[Any], float, Optional[int]]] = None
        self.generation = 0   # a task slot has no actors to replace
        self.deaths = 0


class _TaskWorkers(_RayWorkers):
    """Tasks, at most ``num_worker`` running at once; a chunk goes to the slot with the
    fewest unfinished chunks. When the cluster could run more of them at once, each slot
    is a chain of tasks, the next waiting (inside Ray, not in the driver) for the previous
    one's token; when Ray's resource accounting already holds them to ``num_worker`` (2
    workers of 1 CPU on a 2-CPU machine), the tasks go unchained: a chained task becomes
    ready only once its token is back in the driver and then needs a worker again, a gap
    that costs most when chunks are short (large elements cut by bytes). The function goes
    to the object store once. Ray itself retries a task whose worker died."""

    def __init__(self, fn: Payload, num_worker: int, step: str, remote_args: Dict[str, Any],
                 safe: bool = False, writes: bool = False) -> None:
        self.capacity = num_worker * (1 + QUEUED_CHUNKS_PER_WORKER)
        self.step = step
        self.safe = safe
        self.max_retries = remote_args['max_retries']
        self._fn = fn
        self._fn_ref: Optional[ray.ObjectRef] = None
        self._writes = writes   # its tasks write (a sink's rows): close waits for them (cancel.py)
        self._remote_args = remote_args
        self._remote = _process_chunk.options(name=names.task_name(step), **remote_args)
        self._unfinished = [0] * num_worker
        self._last_token: List[Tuple[ray.ObjectRef, ...]] = [()] * num_worker
        self._chained = True
        self._in_flight: Dict[ray.ObjectRef, _Chunk] = {}
        self._submitted = 0   # elements so far: chunks are submitted in input order
        self._sends = itertools.count()
        self._watch = PlacementWatch(step, remote_args,
                                     lambda: unplaced_tasks(names.task_name(step), num_worker))

    def start(self) -> None:
        cluster.connect()
        wait_until_placeable(self.step, self._remote_args, len(self._unfinished), all_at_once=False)
        capacity = concurrent_capacity(self._remote_args)
        self._chained = capacity is None or capacity > len(self._unfinished)
        self._fn_ref = ray.put(self._fn)

    def submit(self, chunk: List[Any]) -> Hashable:
        slot = min(range(len(self._unfinished)), key=self._unfinished.__getitem__)
        handle = _Chunk(_elements(self._submitted, len(chunk)), next(self._sends), slot)
        with ray_calls(self.step):
            handle.ref, token = self._remote.remote(self._fn_ref, chunk, *self._last_token[slot])
        self._submitted += len(chunk)
        if self._chained:
            self._last_token[slot] = (token,)
        self._in_flight[handle.ref] = handle
        self._unfinished[slot] += 1
        return handle

    def _settle(self, chunk: _Chunk) -> None:
        del self._in_flight[chunk.ref]
        try:
            outcome = fetch(chunk.ref, self.step, chunk.what)
        except WORKER_DIED as error:   # after Ray's own retries
            # chained, a chunk fails with the death of the one before it in its slot, which
            # it waited for; unchained, its death is its own (its slot is not one worker)
            running = running_when_died(chunk, self._in_flight.values()) if self._chained else chunk
            raise died_error(self.step, running.what, self.max_retries, error) from error
        if outcome.__class__ is LoadFailure:
            raise load_error(outcome, self.step)
        chunk.outcome = outcome

    def result(self, handle: Hashable) -> Tuple[List[Any], float, Optional[int]]:
        self._unfinished[handle.slot] -= 1
        outputs, handle.outcome = handle.outcome, None
        return outputs

    def close(self) -> None:
        (cancel_and_wait if self._writes else cancel_later)(list(self._in_flight), self.step)
        self._in_flight.clear()
        self._last_token = []
        self._fn_ref = None


class _ActorWorkers(_RayWorkers):
    """The step's operator on an :class:`~towhee_ray.backends.ray.pool.ActorPool` of
    ``num_worker`` actors, each building it once; an actor runs its chunks one at a time,
    in submission order. A dead actor is replaced and its chunks re-run (pool.py)."""

    def __init__(self, operator: Payload, num_worker: int, step: str,
                 remote_args: Dict[str, Any], max_retries: int, safe: bool = False) -> None:
        self.capacity = num_worker * (1 + QUEUED_CHUNKS_PER_WORKER)
        self.step = step
        self.safe = safe
        self._pool = ActorPool(operator, step, num_worker, remote_args, max_retries, unit='chunks')
        self._submitted = 0   # elements so far: chunks are submitted in input order

    def start(self) -> None:
        self._pool.start()

    def submit(self, chunk: List[Any]) -> Hashable:
        call = PoolCall('process', (chunk,), _elements(self._submitted, len(chunk)))
        self._pool.submit(call)
        self._submitted += len(chunk)
        return call

    def _settle(self, call: PoolCall) -> None:
        outcome = self._pool.settle(call)
        if outcome is not RESENT:
            call.outcome = outcome

    def result(self, handle: Hashable) -> Tuple[List[Any], float, Optional[int]]:
        self._pool.finish(handle)
        outputs, handle.outcome = handle.outcome, None
        return outputs

    def close(self) -> None:
        self._pool.close()


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
    * ``actors_per_gpu``: instead of ``num_gpus``, how many actors share one GPU (each
      then asks for ``1 / actors_per_gpu`` of one); with ``num_worker=None``, the step
      starts that many on each GPU of the cluster
      (:func:`~towhee_ray.backends.ray.resources.workers_for_gpus`);
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

    def __init__(self, num_worker: Optional[int], chunk_size: Optional[int] = None,
                 chunk_bytes: Optional[int] = None, max_bytes_in_flight: Optional[int] = None, *,
                 num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                 resources: Optional[Dict[str, float]] = None, memory: Optional[int] = None,
                 max_retries: Optional[int] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None,
                 actors_per_gpu: Optional[int] = None) -> None:
        num_gpus = gpu_share(num_gpus, actors_per_gpu)
        if num_worker is None:
            num_worker = DEFAULT_NUM_WORKER if actors_per_gpu is None else workers_for_gpus(actors_per_gpu)
        ChunkedBackend.__init__(self, num_worker, chunk_size,
                                ByteBounds(num_worker, chunk_bytes, max_bytes_in_flight))
        self.step_options = dict(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                 memory=memory, max_retries=max_retries, ray_remote_args=ray_remote_args)
        check_step_options(**self.step_options)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        step = names.function_step(fn)
        payload = Payload(fn, step)
        remote_args = step_remote_args(TASK_REMOTE_ARGS, actor=False, **self.step_options)
        return self._run(_TaskWorkers(payload, self.num_worker, step, remote_args, is_safe(fn),
                                      writes=bool(getattr(fn, 'writes', False))), items)

    def map_operator(self, operator: OperatorFactory, items: Iterable[Any]) -> Iterator[Any]:
        step = names.operator_step(operator.name)
        payload = Payload(operator, step, advice='Pass the operator something picklable (a path, '
                                                 'a setting) and build the object in its __init__.')
        remote_args = step_remote_args(ACTOR_REMOTE_ARGS, actor=True, **self.step_options)
        max_retries = self.step_options['max_retries']
        max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        return self._run(_ActorWorkers(payload, self.num_worker, step, remote_args, max_retries,
                                       is_safe(operator)), items)
