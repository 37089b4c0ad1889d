"""Towhee 1.x ``pipe`` integration: operators on Ray actors inside a pipeline
(:func:`ray_op`), and a whole pipeline per worker (``DataCollection.map(p)``).

A Towhee pipeline runs its nodes in threads of one process. :func:`ray_op` moves one heavy
node (a model) into a pool of Ray actors that each build the operator once (the pool a
``ray`` step's operators run on too: ``towhee_ray/backends/ray/pool.py``);
``DataCollection(...).set_parallel(num_worker=N, backend='ray').map(p)`` runs the whole
pipeline in N actors, each building it (and loading its operators) once.

**A per-row pipe feeding a model in batches.** A ``map`` node calls its operator once per
row. ``ray_op(op, max_batch_size=N)`` gathers the calls made at the same time into one
call of ``op`` on a list (see :func:`ray_op`), so a batch holds as many rows as the pipe
has in flight at once; that is what to raise:

* ``p.batch(rows)`` runs one graph per row, all in the pipeline's own thread pool, which
  Towhee sizes ``min(32, CPUs + 4)`` threads. While a row waits for the operator, its
  ``map`` node and the graph's output node each hold a thread, so at most about half as
  many rows are in flight (16 with 32 threads). On the 2-vCPU VM, with an operator taking
  20 ms per batch and ``max_batch_size=256``, ``p.batch`` made batches of 1 and 2 rows
  (72 rows/s); the same pipeline with 520 threads made batches of 56-80 (1,345 rows/s).
  :func:`wide` builds the pipeline again with threads enough to keep its ``ray_op`` busy
  (two batches per actor):

  >>> from towhee import pipe
  >>> def make_count():   # an operator taking a list of texts: each text and its batch's size
  ...     return lambda texts: [(text, len(texts)) for text in texts]
  >>> count = ray_op(make_count, num_worker=1, max_batch_size=64, batch_wait_timeout_s=0.2)
  >>> p = wide(pipe.input('text').map('text', 'counted', count).output('counted'))
  >>> rows = [queue.get()[0] for queue in p.batch([f'row {n}' for n in range(64)])]
  >>> rows[0][0], max(size for _, size in rows) > 8   # a batch larger than 3 or 16 rows
  ('row 0', True)
  >>> count.close()

* under :func:`wide`, a pipe whose every node between input and output is a ``map``,
  ``flat_map`` or ``filter`` through a function, a ``ray_op`` or a hub operator runs its
  rows without Towhee's graphs: ``wide(p).batch`` and ``wide(p).stream`` send a batching
  ``ray_op`` node's rows to it in full batches from the calling thread (``in_flight`` rows
  a node at most; the last batch partial) and a plain ``ray_op`` node's a Ray call each,
  ``in_flight`` at once, call a function or hub operator node in threads of its own (as
  many as its waiting calls need while the process leaves CPUs idle, ``in_flight`` at
  most), and give each call the
  ``DataQueue`` and the error Towhee's nodes would
  (:class:`~towhee_ray.wide_pipeline.WidePipeline`). A pipe with any other node runs on
  Towhee's graphs, one per row, as above.
* threads of your own calling ``p(row)`` do not add rows in flight: each call runs its
  graph in the same pipeline's thread pool. Use ``p.batch`` on such a pipeline instead.
* ``window`` needs no gathering across calls: ``.window('text', 'vectors', 64, 64, embed)``
  calls the operator once per 64 rows of one pipeline call, with their list, and keeps
  its list of results as one row per window. Give ``ray_op`` no ``max_batch_size`` there:
  with it, each window would be one row, and the operator would get a list of lists.

  >>> def make_lengths():   # takes a list of texts
  ...     return lambda texts: [len(text) for text in texts]
  >>> lengths = ray_op(make_lengths, num_worker=1)
  >>> p = (pipe.input('texts').flat_map('texts', 'text', lambda texts: texts)
  ...      .window('text', 'length', 3, 3, lengths).output('length'))
  >>> [row[0] for row in p(['a', 'bb', 'ccc', 'dddd']).to_list()]   # a list per window
  [[1, 2, 3], [4]]
  >>> lengths.close()

**Bulk work: a pipe of lists.** Towhee's own runtime (one graph per row of ``p.batch``)
limits a per-row pipe to about 1,600 rows/s on the 2-vCPU VM even with no Ray; under
:func:`wide`, which needs no graphs for a pipe of functions and ``ray_op``s, it carries
about 17,000 without Ray and 30,000 through batching ``ray_op``s (a pipe of documents
split by a ``flat_map``: about 49,000). Make each pipeline call a list of texts instead,
whose ``map`` node gives the whole list to the ``ray_op`` in one call (an operator that
takes lists), with ``p.batch`` over two lists per actor (what :func:`wide` gives it): with
an operator that costs nothing that carries about 170,000 passages/s there, 0.66x a
DataCollection ``ray`` step; the ``window`` form above, rows within each list, about
23,000 (``benchmarks/w8_overhead.py``; docs/pipelines.md shows them).

  >>> def make_lengths():   # takes a list of texts
  ...     return lambda texts: [len(text) for text in texts]
  >>> lengths = ray_op(make_lengths, num_worker=2)
  >>> p = wide(pipe.input('texts').map('texts', 'lengths', lengths).output('lengths'))   # 2 lists an actor
  >>> [queue.get()[0] for queue in p.batch([['a', 'bb'], ['ccc'], ['dddd', 'e']])]
  [[1, 2], [3], [4, 1]]
  >>> lengths.close()
"""
from __future__ import annotations

import atexit
import functools
import inspect
import itertools
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from towhee_ray.backends.options import DEFAULT_NUM_WORKER, check_num_worker
from towhee_ray.backends.ray.batching import DEFAULT_BATCH_WAIT_TIMEOUT_S, check_batching, describe_call
from towhee_ray.backends.ray.names import ray_op_step
from towhee_ray.backends.ray.resources import DEFAULT_MAX_RETRIES
from towhee_ray.checks import positive_int, shown
from towhee_ray.guard import Empty, Failure, Guarded, step_error
from towhee_ray.operators import OperatorSpec, spec_from_towhee_op
from towhee_ray.quiet import quiet_towhee

if TYPE_CHECKING:
    from towhee_ray.backends.ray.batching import Batcher
    from towhee_ray.wide_pipeline import WidePipeline

logger = logging.getLogger(__name__)

# Elements per ``p.batch(...)`` call when a pipeline runs as a DataCollection step: several
# graphs at once so Towhee's node threads overlap, few enough that a batch with a failing
# element (run again one element at a time to find it) costs little. Not tuned by a
# measurement yet; the chunking above it adapts the number of batches per chunk.
PIPELINE_BATCH_SIZE = 16
# The kinds of a pipeline node's operator that Towhee's loader builds by name, from its
# registry or a hub (``towhee.ops.<namespace>.<name>(...)``, or a name as a string): Towhee's
# ``OPType.HUB`` and ``OPType.BUILTIN``, without importing Towhee here (a test checks them).
HUB_OPERATOR_TYPES = ('hub', 'built_in')


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
        name = name or type(op).__name__
        _check_factory(op, name)
        return _Recipe(op, name, {})
    raise TypeError(f'ray_op needs a towhee.ops.<namespace>.<name>(...) operator or a zero-argument '
                    f'factory that builds one (e.g. functools.partial(MyOperator, k=3)), got {op!r}')


def _check_factory(factory: Callable[..., Any], name: str) -> None:
    """Refuse a callable that cannot be called with no arguments: ``ray_op`` calls it so in
    each actor to build the operator, and a plain function that takes the row is a common
    slip (``ray_op(embed)`` for ``ray_op(lambda: embed)``).

    >>> def embed(text):
    ...     return [0.0]
    >>> _check_factory(embed, 'embed')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: ray_op(embed): ... and embed needs text; for a function that takes a row, give a ...
    """
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):   # a builtin without a signature: let the actor try
        return
    needed = [parameter.name for parameter in parameters if parameter.default is parameter.empty
              and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]
    if not needed:
        return
    if inspect.isclass(factory):
        advice = f'give its init arguments: ray_op(functools.partial({name}, {needed[0]}=...))'
    elif inspect.isfunction(factory) or inspect.ismethod(factory) or inspect.isbuiltin(factory):
        advice = f'for a function that takes a row, give a factory that returns it: ray_op(lambda: {name})'
    else:   # an operator object built here: each actor should build its own
        advice = (f'give its class and init arguments instead, functools.partial({name}, ...), so that '
                  f'each actor builds its own')
    raise TypeError(f'{ray_op_step(name)}: ray_op calls what it is given with no arguments, in each actor, '
                    f'to build the operator, and {name} needs {", ".join(needed)}; {advice}.')


class _Settings:
    """What a :class:`RayOp` is made of; a copy of it unpickled in another process starts
    its own pool from these."""

    def __init__(self, recipe: _Recipe, num_worker: int, remote_args: Dict[str, Any], max_retries: int,
                 max_batch_size: Optional[int], batch_wait_timeout_s: float) -> None:
        self.recipe = recipe
        self.num_worker = num_worker
        self.remote_args = remote_args
        self.max_retries = max_retries
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s

    @property
    def step(self) -> str:
        return ray_op_step(self.recipe.name)


class _Served:
    """A ray_op's actor pool and, with ``max_batch_size``, the batcher in front of it."""

    def __init__(self, settings: _Settings, payload: Optional[Any] = None) -> None:
        from towhee_ray.backends.ray.batching import Batcher
        from towhee_ray.backends.ray.pool import ActorPool
        from towhee_ray.backends.ray.shipping import Payload

        if payload is None:
            payload = Payload(settings.recipe, settings.step, advice=_PAYLOAD_ADVICE)
        batches = settings.max_batch_size is not None
        self.pool = ActorPool(payload, settings.step, settings.num_worker, settings.remote_args,
                              settings.max_retries, unit='calls', batches=batches)
        self.batcher = (Batcher(self.pool, settings.max_batch_size, settings.batch_wait_timeout_s)
                        if batches else None)


_PAYLOAD_ADVICE = ('Give ray_op a factory that builds such objects inside the actor, e.g. '
                   'functools.partial(MyOperator, path=...).')

# Every live pool of this process, by id: copies and unpickled forms of a RayOp find
# their pool here instead of starting another.
_pools: Dict[int, _Served] = {}
_pools_lock = threading.Lock()
_pool_ids = itertools.count(1)


def _release(pool_id: int) -> None:
    with _pools_lock:
        served = _pools.pop(pool_id, None)
    if served is None:
        return
    try:
        served.pool.close()
    except Exception:   # at interpreter exit Ray may already be gone
        logger.debug('%s: could not kill its actors', served.pool.step, exc_info=True)


@atexit.register
def _release_all() -> None:
    for pool_id in list(_pools):
        _release(pool_id)


def _rebuild(pool_id: int, settings: _Settings) -> 'RayOp':
    """Unpickling: the same pool in the process that made it, a pool of its own elsewhere."""
    with _pools_lock:
        served = _pools.get(pool_id)
    if served is None:
        return RayOp(settings, _Served(settings))
    return RayOp(settings, served, pool_id, owner=False)


class RayOp:
    """A callable that runs an operator in a pool of Ray actors (see :func:`ray_op`).

    Each is an instance of a subclass named after its step, because Towhee names a
    pipeline's node after its function's type: errors then read
    ``Node-ray_op(towhee/text-split)-0 runs failed``, not ``Node-RayOp-0``.

    >>> from towhee import ops
    >>> type(ray_op(ops.towhee.text_split(max_words=2))).__name__
    'ray_op(towhee/text-split)'
    """

    def __new__(cls, settings: _Settings, *args: Any, **kws: Any) -> 'RayOp':
        return super().__new__(_named_kind(settings.step) if cls is RayOp else cls)

    def __init__(self, settings: _Settings, served: _Served, pool_id: Optional[int] = None,
                 owner: bool = True) -> None:
        self._settings = settings
        self._pool = served.pool
        self._batcher = served.batcher
        if pool_id is None:
            pool_id = next(_pool_ids)
            with _pools_lock:
                _pools[pool_id] = served
        self._pool_id = pool_id
        self.__name__ = settings.step
        # The wrapper that created the pool releases it when it is garbage-collected.
        self._finalizer = weakref.finalize(self, _release, pool_id) if owner else None

    def __call__(self, *args: Any, **kws: Any) -> Any:
        if self._batcher is not None:
            return self._batcher(args, kws)
        return self._pool.call('call', (args, kws), functools.partial(describe_call, args))

    @property
    def batcher(self) -> Optional['Batcher']:
        """The :class:`~towhee_ray.backends.ray.batching.Batcher` that gathers calls into
        operator calls on lists, ``None`` without ``max_batch_size``: :func:`wide` sends a
        pipe's rows through it a batch at a time.

        >>> ray_op(lambda: abs).batcher is None
        True
        >>> ray_op(lambda: abs, max_batch_size=8).batcher.max_batch_size
        8
        """
        return self._batcher

    def outcomes(self, calls: Iterable[Tuple[Any, ...]], in_flight: int) -> Iterator[Tuple[bool, Any]]:
        """Each of ``calls`` (a call's arguments) run, in order, as ``(True, its result)`` or
        ``(False, the error)`` that calling the wrapper would raise: sent from this thread
        as they are drawn, ``in_flight`` calls sent and unfinished at most (in batches of
        ``max_batch_size`` where it batches across calls), so that no thread waits per call.
        This is how :func:`wide` runs a pipe's rows through it without Towhee's graphs.
        Closed early, it waits for the calls it sent.

        >>> inverse = ray_op(lambda: (lambda x: 1 / x), num_worker=2)
        >>> [(called, type(value).__name__) for called, value in inverse.outcomes([(1,), (0,), (4,)], 2)]
        [(True, 'float'), (False, 'ZeroDivisionError'), (True, 'float')]
        >>> inverse.close()
        """
        if self._batcher is not None:
            return self._batcher.outcomes(calls, in_flight)
        from towhee_ray.backends.ray.pool import PoolCall
        return self._pool.in_order((PoolCall('call', (args, {}), functools.partial(describe_call, args))
                                    for args in calls), in_flight)

    @property
    def calls_to_fill(self) -> int:
        """How many calls at once keep every actor busy: one running and one queued per
        actor (:data:`~towhee_ray.backends.ray.batching.BATCHES_IN_FLIGHT_PER_ACTOR`), each a
        batch of ``max_batch_size`` calls where it batches across calls. :func:`wide` gives a
        pipeline threads enough for that many.

        >>> ray_op(lambda: abs, num_worker=2).calls_to_fill
        4
        >>> ray_op(lambda: abs, num_worker=2, max_batch_size=64).calls_to_fill
        256
        """
        from towhee_ray.backends.ray.batching import BATCHES_IN_FLIGHT_PER_ACTOR
        return self._settings.num_worker * BATCHES_IN_FLIGHT_PER_ACTOR * (self._settings.max_batch_size or 1)

    def stats(self) -> List[Dict[str, Any]]:
        """One dict per actor: ``pid``, ``instance`` (the operator's id), ``calls`` (how
        often it called the operator) and, with ``max_batch_size``, ``rows`` (rows served)
        and ``batch_sizes`` (rows per operator call -> how many calls had that many).
        Starts nothing: empty before the first call.

        >>> from towhee import ops
        >>> split = ray_op(ops.towhee.text_split(max_words=2), num_worker=1)
        >>> split.stats()
        []
        >>> split('One. Two three.')
        ['One.', 'Two three.']
        >>> [stat['calls'] for stat in split.stats()]
        [1]
        >>> split.close()
        """
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
        return _rebuild, (self._pool_id, self._settings)

    def __repr__(self) -> str:
        batches = (f', batches of up to {self._settings.max_batch_size}'
                   if self._settings.max_batch_size else '')
        return f'<{self.__name__} on {self._settings.num_worker} Ray actors{batches}>'


@functools.lru_cache(maxsize=None)
def _named_kind(step: str) -> type:
    """The subclass of :class:`RayOp` named ``step`` (one per step name)."""
    return type(step, (RayOp,), {'__module__': __name__, '__qualname__': step, '__doc__': RayOp.__doc__})


def ray_op(op: Any, num_worker: Optional[int] = None, *, num_cpus: Optional[float] = None,
           num_gpus: Optional[float] = None, resources: Optional[Dict[str, float]] = None,
           memory: Optional[int] = None, max_retries: Optional[int] = None,
           ray_remote_args: Optional[Dict[str, Any]] = None, max_batch_size: Optional[int] = None,
           batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_TIMEOUT_S,
           actors_per_gpu: Optional[int] = None) -> RayOp:
    """Run ``op`` in ``num_worker`` Ray actors (2 by default), each building it once; use the result where
    a Towhee pipeline takes a function (``map``, ``flat_map``, ``filter``, ``window``, ...).

    ``op`` is a ``towhee.ops.<namespace>.<name>(...)`` operator (it carries its init
    arguments) or a zero-argument factory that builds the operator inside the actor, such
    as ``functools.partial(MyOperator, k=3)``. Calls from many threads (``p.batch``) are
    spread over the actors; copies of the pipeline share them. The actors start on the
    first call and live until :meth:`RayOp.close`, garbage collection or interpreter exit.
    ``num_cpus``, ``num_gpus``, ``resources`` and ``memory`` are what each actor asks of
    Ray, as for a ``ray`` step (default: 0 CPUs, spread over nodes; ``num_cpus=2`` gives
    each actor 2 CPUs, and Ray then lets its libraries use 2 threads); ``ray_remote_args``
    passes any other ``.options()``; ``actors_per_gpu=k`` instead of ``num_gpus`` has k
    actors share each GPU (``num_gpus=1/k``), and without ``num_worker`` starts k on each GPU
    of the cluster (counted now: this call connects to Ray). The actors run on the same pool
    as a ``ray`` step's operators (``towhee_ray/backends/ray/pool.py``), with the same rules:
    a call whose actor process dies (a crash in native code, ``os._exit``, a signal) runs
    again on a new actor, which builds the operator again, at most ``max_retries`` times (3
    by default, -1 for no limit); then it raises :class:`towhee_ray.WorkerError` naming the
    operator (``ray_op(<name>)``, the name its actors have in Ray's dashboard), and the other
    calls go on. An operator the actors cannot load or build raises at once.

    >>> from towhee import pipe, ops
    >>> split = ray_op(ops.towhee.text_split(max_words=2), num_worker=2)
    >>> p = pipe.input('text').flat_map('text', 'passage', split).output('passage')
    >>> [row[0] for row in p('One. Two three. Four.').to_list()]
    ['One.', 'Two three.', 'Four.']
    >>> len(split.stats())   # two actors, each built the operator once
    2
    >>> split.close()

    **Batches across calls.** With ``max_batch_size``, concurrent calls are gathered into
    one operator call on lists, as Ray Serve's ``@serve.batch`` does: the operator must
    take a list (one list per argument: ``op(texts)`` for calls ``op(text)``) and return a
    list of as many results, in order (``sentence-embedding/minilm`` does: a list of texts
    in, a list of vectors out). A batch goes out once ``max_batch_size`` calls wait, or
    ``batch_wait_timeout_s`` after its first call (then with fewer); each caller gets its
    own row's result. When the operator raises on a batch, its rows run again one at a
    time: a bad row raises its own error, the others get their results (so a batch call
    should have no effect before it fails, or one that may be repeated). ``stats()`` shows
    the batch sizes. See :mod:`towhee_ray.backends.ray.batching` for how the batches stay
    full without holding rows back.

    >>> def make_shout():   # builds an operator that takes a list of texts
    ...     return lambda texts: [text.upper() + '!' for text in texts]
    >>> shout = ray_op(make_shout, num_worker=1, max_batch_size=64, batch_wait_timeout_s=0.05)
    >>> p = pipe.input('text').map('text', 'loud', shout).output('loud')
    >>> [queue.get()[0] for queue in p.batch(['hi', 'ho', 'hey'])]
    ['HI!', 'HO!', 'HEY!']
    >>> shout.stats()[0]['rows']
    3
    >>> shout.close()

    A batch is only as large as the number of calls made at once; how a pipe makes many,
    see this module's docstring (``p.batch`` on a pipeline with threads enough, or a
    ``window`` step, which needs no ``max_batch_size``). For bulk work, a pipe whose calls
    are lists, each given to the operator whole, needs no batching across calls and goes
    much faster (the module's docstring says how much).
    """
    from towhee_ray.backends.ray.resources import (check_step_options, gpu_share, step_remote_args,
                                                   workers_for_gpus)
    from towhee_ray.backends.ray.shipping import Payload

    check_batching(max_batch_size, batch_wait_timeout_s)
    named = dict(num_cpus=num_cpus, num_gpus=gpu_share(num_gpus, actors_per_gpu), resources=resources,
                 memory=memory)
    if num_worker is None:
        num_worker = DEFAULT_NUM_WORKER if actors_per_gpu is None else workers_for_gpus(actors_per_gpu)
    check_num_worker(num_worker)
    check_step_options(**named, max_retries=max_retries, ray_remote_args=ray_remote_args,
                       actors_only=True)
    remote_args = step_remote_args({}, actor=True, **named, ray_remote_args=ray_remote_args)
    recipe = _recipe_for(op)
    settings = _Settings(recipe, num_worker, remote_args,
                         DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
                         max_batch_size, float(batch_wait_timeout_s))
    # Pickled now, so that an operator that cannot travel is refused by this call.
    payload = Payload(recipe, settings.step, advice=_PAYLOAD_ADVICE)
    return RayOp(settings, _Served(settings, payload))


def wide(pipeline: Any, in_flight: Optional[int] = None) -> 'WidePipeline':
    """The Towhee pipeline ``pipeline`` built again on the same graph, with threads enough
    for ``in_flight`` of its calls at once under ``p.batch(...)``; by default, as many as
    keep every :func:`ray_op` in it busy (:attr:`RayOp.calls_to_fill`, the largest of them).

    Towhee runs a pipeline's nodes in a thread pool of ``min(32, CPUs + 4)`` threads, and a
    call in flight holds a thread for each of its nodes but the input, so ``p.batch`` keeps
    only a few calls in flight: too few to fill a ``ray_op``'s batches across calls, or its
    actors with lists. ``wide`` gives the pipeline ``(nodes - 1) x in_flight + 4`` threads
    (they start only as calls need them); use it where you would use ``p``.

    It returns a :class:`~towhee_ray.wide_pipeline.WidePipeline`, Towhee's pipeline class
    but for ``batch``, which keeps at most ``2 x in_flight`` calls started (Towhee's starts
    them all before it waits for one, which takes the driver gigabytes and most of its time
    for tens of thousands of rows), and ``stream``, the same lazily. A pipeline whose every
    node is a ``map``, ``flat_map`` or ``filter`` through a function, a ``ray_op`` or a hub
    operator runs both without Towhee's graphs: the rows of every call in flight go to a
    ``ray_op`` with ``max_batch_size`` in full batches (``in_flight`` rows a node), so a pipe
    that splits documents into passages feeds its model as a pipe of passages does, and to
    a function in threads of the node's own, as many as its waiting calls need.

    >>> from towhee import pipe
    >>> double = ray_op(lambda: (lambda numbers: [2 * n for n in numbers]), num_worker=2)
    >>> p = wide(pipe.input('numbers').map('numbers', 'doubled', double).output('doubled'))
    >>> [queue.get()[0] for queue in p.batch([[1, 2], [3], [4, 5, 6]])]   # 4 lists at once
    [[2, 4], [6], [8, 10, 12]]
    >>> double.close()
    >>> wide(pipe.input('x').output('x'))
    Traceback (most recent call last):
    ...
    ValueError: wide: this pipeline has no ray_op to keep busy; say how many calls it runs at once with in_flight=
    """
    if not is_towhee_pipeline(pipeline):
        raise TypeError(f'wide takes a Towhee pipeline (what towhee.pipe...output(...) returns), '
                        f'got {type(pipeline).__name__}')
    nodes = pipeline.dag_repr.nodes.values()
    if in_flight is None:
        fills = [node.op_info.operator.calls_to_fill for node in nodes
                 if isinstance(node.op_info.operator, RayOp)]
        if not fills:
            raise ValueError('wide: this pipeline has no ray_op to keep busy; say how many calls it runs '
                             'at once with in_flight=')
        in_flight = max(fills)
    in_flight = positive_int(in_flight, 'in_flight', 'how many calls of the pipeline run at once')
    from towhee_ray.wide_pipeline import WidePipeline
    return WidePipeline(pipeline.dag_repr, in_flight)


def _threads(nodes: int, in_flight: int) -> int:
    """Threads for ``in_flight`` calls at once of a pipeline of ``nodes`` nodes: each node
    but the input holds one while its call is in flight, and 4 to spare (Towhee's own)."""
    return (nodes - 1) * in_flight + 4


# -- a whole pipeline per worker ---------------------------------------------------------

def is_towhee_pipeline(fn: Any) -> bool:
    """True for what ``towhee.pipe...output(...)`` (or :func:`wide`) returns."""
    return any(kind.__name__ == 'RuntimePipeline' and kind.__module__ == 'towhee.runtime.runtime_pipeline'
               for kind in type(fn).__mro__)


class _PipelineRunner:
    """Runs a batch of elements through one pipeline; each element's outcome comes back
    on its own (its output rows, an ``Empty`` passed through, or its failure)."""

    def __init__(self, pipeline: Any, safe: bool) -> None:
        self._pipeline = pipeline
        self._guard = Guarded(self._one, safe)
        self._inputs = pipeline.dag_repr.dag_dict['_input']['inputs']

    def _one(self, element: Any) -> List[Any]:
        if len(self._inputs) == 1:
            return self._pipeline(element).to_list()
        if not isinstance(element, tuple) or len(element) != len(self._inputs):
            inputs = ', '.join(self._inputs)
            raise TypeError(f'this pipeline takes {len(self._inputs)} inputs ({inputs}): give each element '
                            f'as a tuple of as many values, got {shown(element, kind=True)}')
        return self._pipeline(*element).to_list()

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
                     if node.op_info.type in HUB_OPERATOR_TYPES and isinstance(node.op_info.operator, str)]
        self._operators = registered_operators(hub_names)

    def create(self) -> _PipelineRunner:
        pipeline = self._pipeline
        if pipeline is None:
            from towhee.runtime.runtime_pipeline import RuntimePipeline
            register_in_worker(self._operators)
            # threads for a whole batch of elements at once: Towhee's default pool, CPUs + 4,
            # ran ~2 of 16 at a time (a node that waits on I/O made the worker wait too)
            pipeline = RuntimePipeline(self._dag, max_workers=_threads(len(self._dag), PIPELINE_BATCH_SIZE))
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
