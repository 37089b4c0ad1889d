"""The ``ray`` backend: plain callables as Ray tasks, operators as Ray actors.

Resources asked of Ray by default, chosen so that any chain runs on any cluster:

* a task asks for 1 CPU (Ray's default), so Ray never runs more of them at once than
  there are CPUs; a step never runs more than ``num_worker`` at once (its chunks form
  ``num_worker`` chains, each task waiting for the previous one of its chain);
* an actor asks for 0 CPUs: it holds an operator between chunks and must not hold a CPU
  while idle, or a chain whose actors outnumber the CPUs (three operator steps of two
  actors on a 2-CPU machine) would wait forever for CPUs held by other steps' actors.
  At most ``num_worker`` chunks of a step run at once, one per actor.

``ray_remote_args`` replaces these per step (e.g. ``{'num_gpus': 1}``).
"""
from __future__ import annotations

import abc

from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import ray

from towhee_ray import cluster
from towhee_ray.backends.base import Backend, OperatorFactory
from towhee_ray.backends.chunking import ByteBounds, ChunkedBackend, ChunkWorkers, timed_map

TASK_REMOTE_ARGS: Dict[str, Any] = {'num_cpus': 1}
ACTOR_REMOTE_ARGS: Dict[str, Any] = {'num_cpus': 0, 'scheduling_strategy': 'SPREAD'}
# Chunks queued at each worker beyond the one it runs, so it can start its next chunk
# without waiting for the driver, which may be busy passing outputs down the chain. (On
# 2 cores W1 measured the same with 0: a task's ~5 ms gap is Ray's own, queued or not.)
QUEUED_CHUNKS_PER_WORKER = 1


@ray.remote(num_returns=2)
def _process_chunk(fn: Callable[[Any], Any], chunk: List[Any], *after: None) -> Tuple[Any, None]:
    """Returns the outputs (with their timing and size) and a token; the next chunk of the
    same worker slot takes the token as an argument, so Ray starts it only once this one
    is done."""
    return timed_map(fn, chunk, measure_outputs=True), None


@ray.remote
class _OperatorActor:
    """Builds one operator instance and serves chunks with it for the step's lifetime."""

    def __init__(self, operator: OperatorFactory) -> None:
        self._call = operator.create()

    def process(self, chunk: List[Any]) -> Tuple[List[Any], float, Optional[int]]:
        return timed_map(self._call, chunk, measure_outputs=True)


class _SlotWorkers(ChunkWorkers):
    """``num_worker`` worker slots, each running one chunk with more queued behind it; a
    chunk goes to the slot with the fewest unfinished chunks."""

    def __init__(self, num_worker: int) -> None:
        self.capacity = num_worker * (1 + QUEUED_CHUNKS_PER_WORKER)
        self._unfinished = [0] * num_worker
        self._slot_of: Dict[Hashable, int] = {}

    @abc.abstractmethod
    def _submit_to(self, slot: int, chunk: List[Any]) -> ray.ObjectRef:
        """Send ``chunk`` to worker slot ``slot``; return the reference to its outputs."""

    def submit(self, chunk: List[Any]) -> Hashable:
        slot = min(range(len(self._unfinished)), key=self._unfinished.__getitem__)
        ref = self._submit_to(slot, chunk)
        self._unfinished[slot] += 1
        self._slot_of[ref] = slot
        return ref

    def wait(self, handles: List[Hashable]) -> List[Hashable]:
        ready, _ = ray.wait(handles, num_returns=1)
        return ready

    def result(self, handle: Hashable) -> Tuple[List[Any], float, Optional[int]]:
        self._unfinished[self._slot_of.pop(handle)] -= 1
        return ray.get(handle)


class _TaskWorkers(_SlotWorkers):
    """Tasks, at most ``num_worker`` running at once: each slot is a chain of tasks, the
    next waiting (inside Ray, not in the driver) for the previous one's token. The
    function goes to the object store once."""

    def __init__(self, fn: Callable[[Any], Any], num_worker: int, remote_args: Dict[str, Any]):
        super().__init__(num_worker)
        self._fn = fn
        self._fn_ref: Optional[ray.ObjectRef] = None
        self._remote = _process_chunk.options(**remote_args)
        self._last_token: List[Tuple[ray.ObjectRef, ...]] = [()] * num_worker

    def start(self) -> None:
        cluster.connect()
        self._fn_ref = ray.put(self._fn)

    def _submit_to(self, slot: int, chunk: List[Any]) -> ray.ObjectRef:
        outputs, token = self._remote.remote(self._fn_ref, chunk, *self._last_token[slot])
        self._last_token[slot] = (token,)
        return outputs

    def close(self) -> None:
        if ray.is_initialized():   # never let a late close() start Ray again
            for ref in self._slot_of:
                ray.cancel(ref)
        self._slot_of.clear()
        self._last_token = []
        self._fn_ref = None


class _ActorWorkers(_SlotWorkers):
    """``num_worker`` actors, each building the operator once; Ray runs an actor's chunks
    one at a time, in submission order."""

    def __init__(self, operator: OperatorFactory, num_worker: int, remote_args: Dict[str, Any]):
        super().__init__(num_worker)
        self._operator = operator
        self._remote_args = remote_args
        self._actors: List[Any] = []

    def start(self) -> None:
        cluster.connect()
        operator_ref = ray.put(self._operator)
        actor_class = _OperatorActor.options(**self._remote_args)
        self._actors = [actor_class.remote(operator_ref) for _ in self._unfinished]

    def _submit_to(self, slot: int, chunk: List[Any]) -> ray.ObjectRef:
        return self._actors[slot].process.remote(chunk)

    def close(self) -> None:
        if ray.is_initialized():   # never let a late close() start Ray again
            for actor in self._actors:
                ray.kill(actor)
        self._actors = []
        self._slot_of.clear()


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
    * ``ray_remote_args``: passed to ``.options()`` of every task or actor of the step,
      replacing the defaults above, e.g. ``{'num_cpus': 2}`` or ``{'num_gpus': 1}``.
    Connects to Ray on first use (see :func:`towhee_ray.cluster.connect`).

    >>> backend = RayBackend(num_worker=2)
    >>> list(backend.map(lambda x: x * 10, range(5)))
    [0, 10, 20, 30, 40]
    >>> backend.close()
    """

    def __init__(self, num_worker: int, chunk_size: Optional[int] = None,
                 chunk_bytes: Optional[int] = None, max_bytes_in_flight: Optional[int] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None) -> None:
        ChunkedBackend.__init__(self, num_worker, chunk_size,
                                ByteBounds(num_worker, chunk_bytes, max_bytes_in_flight))
        if ray_remote_args is not None and not isinstance(ray_remote_args, dict):
            raise ValueError(f'ray_remote_args must be a dict of Ray .options() arguments, '
                             f'got {ray_remote_args!r}')
        self.ray_remote_args = ray_remote_args

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        remote_args = {**TASK_REMOTE_ARGS, **(self.ray_remote_args or {})}
        return self._run(_TaskWorkers(fn, self.num_worker, remote_args), items)

    def map_operator(self, operator: OperatorFactory, items: Iterable[Any]) -> Iterator[Any]:
        remote_args = {**ACTOR_REMOTE_ARGS, **(self.ray_remote_args or {})}
        return self._run(_ActorWorkers(operator, self.num_worker, remote_args), items)
