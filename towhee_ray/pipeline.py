"""Towhee 1.x ``pipe`` integration: operators on Ray actors inside a pipeline
(:func:`ray_op`), and a whole pipeline per worker (``DataCollection.map(p)``).

A Towhee pipeline runs its nodes in threads of one process. :func:`ray_op` moves one heavy
node (a model) into a pool of Ray actors that each build the operator once;
``DataCollection(...).set_parallel(num_worker=N, backend='ray').map(p)`` runs the whole
pipeline in N actors, each building it (and loading its operators) once.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from towhee_ray.backends.options import check_num_worker
from towhee_ray.backends.ray_resources import DEFAULT_MAX_RETRIES
from towhee_ray.guard import Empty, Failure, Guarded, LoadFailure, load_error, step_error
from towhee_ray.operators import OperatorSpec, spec_from_towhee_op
from towhee_ray.quiet import quiet_towhee

logger = logging.getLogger(__name__)

# Elements per ``p.batch(...)`` call when a pipeline runs as a DataCollection step: several
# graphs at once so Towhee's node threads overlap, few enough that a batch with a failing
# element (run again one element at a time to find it) costs little. Not tuned by a
# measurement yet; the chunking above it adapts the number of batches per chunk.
PIPELINE_BATCH_SIZE = 16


# -- registered operators travel with what uses them -----------------------------------

def registered_operators(names: List[str]) -> Dict[str, Any]:
    """The ``@towhee.register`` classes among ``names``, keyed as in Towhee's registry.

    A fresh Ray worker's registry is empty: these are registered again there (see
    :func:`register_in_worker`) before a pipeline using them is built, or Towhee would look
    for them on its hub.
    """
    quiet_towhee()
    from towhee.runtime.operator_manager import OperatorRegistry

    found = {}
    for name in names:
        for key in (name, f'anon/{name}', f'builtin/{name}'):
            if key in OperatorRegistry.REGISTRY:
                found[key] = OperatorRegistry.REGISTRY[key]
                break
    return found


def register_in_worker(operators: Dict[str, Any]) -> None:
    """Make this process ready to load operators: the local hub, then the registered ones."""
    quiet_towhee()
    from towhee.runtime.operator_manager import OperatorRegistry

    from towhee_ray.hub import use_local_hub

    use_local_hub()
    for key, operator in operators.items():
        OperatorRegistry.REGISTRY.setdefault(key, operator)


# -- ray_op: one operator, a pool of actors ---------------------------------------------

class _Recipe:
    """How an actor builds its operator: a spec (a ``towhee.ops`` wrapper) or a factory."""

    def __init__(self, build: Callable[[], Any], name: str, operators: Dict[str, Any]) -> None:
        self.build = build
        self.name = name
        self.operators = operators

    def create(self) -> Any:
        register_in_worker(self.operators)
        return self.build()


def _recipe_for(op: Any) -> _Recipe:
    spec = spec_from_towhee_op(op)
    if spec is not None:
        return _Recipe(spec.create, spec.name, registered_operators([spec.name]))
    if isinstance(op, OperatorSpec):
        return _Recipe(op.create, op.name, {})
    if is_towhee_pipeline(op):
        raise TypeError('ray_op wraps one operator; to run a whole pipeline on Ray use '
                        "DataCollection(inputs).set_parallel(num_worker=N, backend='ray').map(p)")
    if callable(op):
        name = getattr(op, '__name__', None) or getattr(getattr(op, 'func', None), '__name__', None)
        return _Recipe(op, name or type(op).__name__, {})
    raise TypeError(f'ray_op needs a towhee.ops.<namespace>.<name>(...) operator or a zero-argument '
                    f'factory that builds one (e.g. functools.partial(MyOperator, k=3)), got {op!r}')


class _Call:
    """One call of a ``ray_op`` in flight (see ``backends/ray_faults.py``); ``first`` is
    its place in the order of sends to the actors, the order in which an actor runs them."""

    __slots__ = ('first', 'slot', 'generation', 'ref', 'deaths')

    def __init__(self) -> None:
        self.first = 0
        self.slot = 0
        self.generation = 0
        self.ref: Any = None
        self.deaths = 0


class _ActorPool:
    """``num_worker`` actors, each holding one operator instance; a call goes to the actor
    with the fewest calls in progress. A call whose actor died runs again on the actor that
    replaces it, at most ``max_retries`` times. Thread-safe."""

    def __init__(self, recipe: _Recipe, num_worker: int, remote_args: Dict[str, Any],
                 max_retries: int = DEFAULT_MAX_RETRIES, payload: Optional[Any] = None) -> None:
        self.recipe = recipe
        self.num_worker = num_worker
        self.remote_args = remote_args
        self.max_retries = max_retries
        self.step = f'ray_op({recipe.name})'
        self._payload = payload
        self._slots: Optional[Any] = None
        self._busy: List[int] = []
        self._in_flight: Dict[int, _Call] = {}
        self._sends = itertools.count()
        self._failure: Optional[LoadFailure] = None
        self._lock = threading.Lock()
        self._closed = False

    def _start(self) -> None:
        import ray

        from towhee_ray import cluster
        from towhee_ray.backends.ray_backend import ACTOR_REMOTE_ARGS
        from towhee_ray.backends.ray_faults import ActorSlots
        from towhee_ray.backends.shipping import Payload

        cluster.connect()
        actor_class = ray.remote(_OperatorHolder).options(**{**ACTOR_REMOTE_ARGS, **self.remote_args})
        payload = ray.put(self._payload or Payload(self.recipe, self.step))
        self._slots = ActorSlots(self.step, self.num_worker,
                                 lambda slot, generation: actor_class.remote(payload))
        self._slots.start()
        self._busy = [0] * self.num_worker

    def _send(self, call: _Call, args: Tuple[Any, ...], kws: Dict[str, Any]) -> None:
        """Send ``call`` to the actor with the fewest calls in progress (under the lock)."""
        call.first = next(self._sends)
        call.slot = min(range(self.num_worker), key=self._busy.__getitem__)
        call.generation = self._slots.generations[call.slot]
        call.ref = self._slots.actors[call.slot].call.remote(args, kws)
        self._busy[call.slot] += 1
        self._in_flight[call.first] = call

    def _done(self, call: _Call) -> None:
        if self._in_flight.pop(call.first, None) is not None and self._busy:
            self._busy[call.slot] -= 1

    def _died(self, call: _Call, args: Tuple[Any, ...], error: BaseException) -> None:
        """``call``'s actor died: replace it (if no other call did), then send ``call`` again,
        or raise once the call it was running has died on every try (under the lock)."""
        from towhee_ray.backends.ray_faults import died_error, out_of_tries, running_when_died

        if self._closed:
            raise RuntimeError(f'{self.step} was closed while a call was running') from error
        described = f'a call with arguments {_short(args)}'
        if call.generation == self._slots.generations[call.slot]:   # the first call to notice
            running = running_when_died(call, self._in_flight.values())
            running.deaths += 1
            self._slots.replace(call.slot, 'a call' if running is not call else described, error,
                                rerun='calls')
        if out_of_tries(call, self.max_retries):
            raise died_error(self.step, described, self.max_retries, error) from error

    def call(self, args: Tuple[Any, ...], kws: Dict[str, Any]) -> Any:
        import ray

        from towhee_ray.backends.ray_faults import WORKER_DIED, unloadable_arguments

        call = _Call()
        with self._lock:
            if self._closed:
                raise RuntimeError(f'{self.step} was closed; create a new one')
            if self._failure is not None:
                raise load_error(self._failure, self.step)
            if self._slots is None:
                self._start()
            self._send(call, args, kws)
        try:
            while True:
                try:
                    result = ray.get(call.ref)
                except WORKER_DIED as error:
                    with self._lock:
                        self._done(call)
                        self._died(call, args, error)
                        self._send(call, args, kws)
                    continue
                except Exception as error:
                    original = unloadable_arguments(error)
                    if original is None:
                        raise
                    raise load_error(LoadFailure(original, ''), self.step,
                                     f'{self.step}: the arguments {_short(args)}')
                if result.__class__ is LoadFailure:
                    self._failure = result
                    raise load_error(result, self.step)
                return result
        finally:
            with self._lock:
                self._done(call)

    def stats(self) -> List[Dict[str, Any]]:
        import ray

        with self._lock:
            actors = list(self._slots.actors) if self._slots else []
        return ray.get([actor.stats.remote() for actor in actors])

    def close(self) -> None:
        with self._lock:
            slots, self._slots, self._busy = self._slots, None, []
            self._closed = True
        try:
            if slots is not None:
                slots.close()
        except Exception:   # at interpreter exit Ray may already be gone
            logger.debug('%s: could not kill its actors', self.step, exc_info=True)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + '...'


class _OperatorHolder:
    """The actor class of :func:`ray_op` (made remote when first used, so that importing
    this module does not import Ray). An operator it cannot load or build makes every
    call return that failure: the actor lives (it did not crash), the caller raises it."""

    def __init__(self, payload: Any) -> None:
        import os
        import traceback

        self._pid = os.getpid()
        self._calls = 0
        self._operator = None
        recipe, self._failure = payload.load()
        if recipe is not None:
            try:
                self._operator = recipe.create()
            except Exception as error:
                self._failure = LoadFailure(error, traceback.format_exc(), stage='build')

    def call(self, args: Tuple[Any, ...], kws: Dict[str, Any]) -> Any:
        if self._failure is not None:
            return self._failure
        self._calls += 1
        return self._operator(*args, **kws)

    def stats(self) -> Dict[str, Any]:
        return {'pid': self._pid, 'instance': id(self._operator), 'calls': self._calls}


# Every live pool of this process, by id: copies and unpickled forms of a RayOp find
# their pool here instead of starting another.
_pools: Dict[int, _ActorPool] = {}
_pools_lock = threading.Lock()
_pool_ids = itertools.count(1)


def _release(pool_id: int) -> None:
    with _pools_lock:
        pool = _pools.pop(pool_id, None)
    if pool is not None:
        pool.close()


@atexit.register
def _release_all() -> None:
    for pool_id in list(_pools):
        _release(pool_id)


def _rebuild(pool_id: int, recipe: _Recipe, num_worker: int, remote_args: Dict[str, Any],
             max_retries: int = DEFAULT_MAX_RETRIES) -> 'RayOp':
    """Unpickling: the same pool in the process that made it, a pool of its own elsewhere."""
    with _pools_lock:
        pool = _pools.get(pool_id)
    if pool is None:
        return RayOp(_ActorPool(recipe, num_worker, remote_args, max_retries))
    return RayOp(pool, pool_id, owner=False)


class RayOp:
    """A callable that runs an operator in a pool of Ray actors (see :func:`ray_op`)."""

    def __init__(self, pool: _ActorPool, pool_id: Optional[int] = None, owner: bool = True) -> None:
        self._pool = pool
        if pool_id is None:
            pool_id = next(_pool_ids)
            with _pools_lock:
                _pools[pool_id] = pool
        self._pool_id = pool_id
        self.__name__ = f'ray_op({pool.recipe.name})'
        # The wrapper that created the pool releases it when it is garbage-collected.
        self._finalizer = weakref.finalize(self, _release, pool_id) if owner else None

    def __call__(self, *args: Any, **kws: Any) -> Any:
        return self._pool.call(args, kws)

    def stats(self) -> List[Dict[str, Any]]:
        """One dict per actor (``pid``, ``instance``: the operator's id, ``calls``); starts
        nothing: empty before the first call."""
        return self._pool.stats()

    def close(self) -> None:
        """Kill the actors now; calling the wrapper afterwards raises."""
        _release(self._pool_id)

    def __enter__(self) -> 'RayOp':
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __deepcopy__(self, memo: Dict[int, Any]) -> 'RayOp':
        # Towhee deep-copies a pipeline's DAG at every step: the copies share this pool.
        return self

    def __reduce__(self):
        pool = self._pool
        return _rebuild, (self._pool_id, pool.recipe, pool.num_worker, pool.remote_args, pool.max_retries)

    def __repr__(self) -> str:
        return f'<{self.__name__} on {self._pool.num_worker} Ray actors>'


def ray_op(op: Any, num_worker: int = 2, *, num_cpus: Optional[float] = None,
           num_gpus: Optional[float] = None, resources: Optional[Dict[str, float]] = None,
           memory: Optional[int] = None, max_retries: Optional[int] = None,
           ray_remote_args: Optional[Dict[str, Any]] = None) -> RayOp:
    """Run ``op`` in ``num_worker`` Ray actors, each building it once; use the result where
    a Towhee pipeline takes a function (``map``, ``flat_map``, ``filter``, ``window``, ...).

    ``op`` is a ``towhee.ops.<namespace>.<name>(...)`` operator (it carries its init
    arguments) or a zero-argument factory that builds the operator inside the actor, such
    as ``functools.partial(MyOperator, k=3)``. Calls from many threads (``p.batch``) are
    spread over the actors; copies of the pipeline share them. The actors start on the
    first call and live until :meth:`RayOp.close`, garbage collection or interpreter exit.
    ``num_cpus``, ``num_gpus``, ``resources`` and ``memory`` are what each actor asks of
    Ray, as for a ``ray`` step (default: 0 CPUs, spread over nodes; ``num_cpus=2`` gives
    each actor 2 CPUs, and Ray then lets its libraries use 2 threads); ``ray_remote_args``
    passes any other ``.options()``. A call whose actor process dies (a crash in native
    code, ``os._exit``, a signal) runs again on a new actor, which builds the operator
    again, at most ``max_retries`` times (3 by default, -1 for no limit); then it raises
    :class:`towhee_ray.WorkerError` naming the operator, and the other calls go on.

    >>> from towhee import pipe, ops
    >>> split = ray_op(ops.towhee.text_split(max_words=2), num_worker=2)
    >>> p = pipe.input('text').flat_map('text', 'passage', split).output('passage')
    >>> [row[0] for row in p('One. Two three. Four.').to_list()]
    ['One.', 'Two three.', 'Four.']
    >>> len(split.stats())   # two actors, each built the operator once
    2
    >>> split.close()
    """
    from towhee_ray.backends import ray_resources
    from towhee_ray.backends.shipping import Payload

    check_num_worker(num_worker)
    named = dict(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources, memory=memory)
    ray_resources.check_step_options(**named, max_retries=max_retries, ray_remote_args=ray_remote_args)
    remote_args = ray_resources.step_remote_args({}, actor=True, **named, ray_remote_args=ray_remote_args)
    recipe = _recipe_for(op)
    # Pickled now, so that an operator that cannot travel is refused by this call.
    payload = Payload(recipe, f'ray_op({recipe.name})', advice='Give ray_op a factory that builds '
                      'such objects inside the actor, e.g. functools.partial(MyOperator, path=...).')
    retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
    return RayOp(_ActorPool(recipe, num_worker, remote_args, retries, payload))


# -- a whole pipeline per worker ---------------------------------------------------------

def is_towhee_pipeline(fn: Any) -> bool:
    """True for what ``towhee.pipe...output(...)`` returns."""
    kind = type(fn)
    return kind.__name__ == 'RuntimePipeline' and kind.__module__ == 'towhee.runtime.runtime_pipeline'


class _PipelineRunner:
    """Runs a batch of elements through one pipeline; each element's outcome comes back
    on its own (its output rows, an ``Empty`` passed through, or its failure)."""

    def __init__(self, pipeline: Any, safe: bool) -> None:
        self._pipeline = pipeline
        self._guard = Guarded(self._one, safe)
        self._multi_input = len(pipeline.dag_repr.dag_dict['_input']['inputs']) > 1

    def _one(self, element: Any) -> List[Any]:
        if self._multi_input and isinstance(element, tuple):
            return self._pipeline(*element).to_list()
        return self._pipeline(element).to_list()

    def __call__(self, elements: List[Any]) -> List[Any]:
        todo = [i for i, element in enumerate(elements) if element.__class__ is not Empty]
        outcomes = list(elements)
        try:
            # p.batch passes an element as the only input of a one-input pipeline, and a
            # tuple as the inputs of a pipeline with several.
            queues = self._pipeline.batch([elements[i] for i in todo])
            for i, queue in zip(todo, queues):
                outcomes[i] = queue.to_list()
        except Exception:   # find which element failed, and let the others through
            for i in todo:
                outcomes[i] = self._guard(elements[i])
        return outcomes


class PipelineSpec:
    """An operator-step recipe for a Towhee pipeline: ``create()`` builds a runner that
    takes a list of elements. Pickled (to a Ray actor), it carries the pipeline's DAG and
    the registered operators it names, and the pipeline is built again there, once."""

    def __init__(self, pipeline: Any, safe: bool) -> None:
        self.name = 'pipeline'
        self.safe = safe
        self._pipeline: Optional[Any] = pipeline   # in this process: use it as it is
        self._dag = pipeline.dag_repr.dag_dict
        hub_names = [node.op_info.operator for node in pipeline.dag_repr.nodes.values()
                     if node.op_info.type in ('hub', 'builtin') and isinstance(node.op_info.operator, str)]
        self._operators = registered_operators(hub_names)

    def create(self) -> _PipelineRunner:
        pipeline = self._pipeline
        if pipeline is None:
            from towhee.runtime.runtime_pipeline import RuntimePipeline
            register_in_worker(self._operators)
            pipeline = RuntimePipeline(self._dag)
            pipeline.preload()   # loads every operator now, once
            self._pipeline = pipeline
        return _PipelineRunner(pipeline, self.safe)

    def __getstate__(self) -> Dict[str, Any]:
        return {**self.__dict__, '_pipeline': None}


def _settle_elements(batches: Any, step: str) -> Iterator[Any]:
    """Flatten per-element outcomes; raise the first failure with its element's position.
    The batched step's workers are released when this ends, however it ends."""
    try:
        for position, outcome in enumerate(itertools.chain.from_iterable(batches)):
            if outcome.__class__ is Failure:
                raise step_error(outcome, step, position)
            yield outcome
    finally:
        batches.close()


def map_pipeline(collection: Any, pipeline: Any, parallel: Any = None) -> Any:
    """``collection.map(pipeline)``: each element's ``pipeline(element).to_list()``.

    Elements go through ``pipeline.batch`` in groups of :data:`PIPELINE_BATCH_SIZE`, on the
    chain's backend: one pipeline per worker (built there once), or this very pipeline
    when run serially or in threads.
    """
    spec = PipelineSpec(pipeline, collection._settings.safe)
    batches = collection.batch(PIPELINE_BATCH_SIZE)._apply_operator(spec, parallel)
    return collection._derive(_settle_elements(batches, 'map(pipeline)'))
