"""The pipeline :func:`towhee_ray.wide` returns: a Towhee ``RuntimePipeline`` with threads
for a number of calls at once, whose ``batch`` runs those calls as a window over its input.

Towhee's own ``p.batch(inputs)`` builds a graph (its queues, locks and node runners) for
every input before it waits for the first result, and keeps them all until the end. With
tens of thousands of rows that costs the driver more than the work: on the 2-vCPU VM, a
per-row pipe of 65,536 rows took 1.7 GB and carried 1,258 rows/s marginal (an operator that
returns a vector it has; its garbage collector walking ever more live graphs), where a
window of 32 graphs took 0.3 GB and 4,865 rows/s (this window tried on commit ``1872120``,
one run each; ``benchmarks/w8_overhead.py`` has both forms, interleaved). Here
a graph is built only when fewer than :data:`WINDOW_PER_CALL_IN_FLIGHT` times ``in_flight``
calls are unfinished, so at most that many exist at once whatever the input's length;
results come back in input order, and ``stream`` hands each over as soon as it and those
before it are done.

A pipeline whose every node between input and output is a ``map``, through a ``ray_op``
that batches across calls (one at least) or a function, needs no graphs at all:
:class:`_BatchedRows` sends a ``ray_op`` node's rows to its actors in full batches from
the calling thread, calls a function node in the pipeline's threads, and builds for each
row the output queue Towhee's graph would (a per-row pipe with an operator that costs nothing went
from ~1,000 rows/s to ~41,000 on the 2-vCPU VM, ``benchmarks/w8_overhead.py``).

Importing this module imports Towhee (``wide`` does, when first called).
"""
from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Generator
from concurrent.futures import Executor, Future
import math
import traceback
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from towhee.runtime.data_queue import ColumnType, DataQueue
from towhee.runtime.runtime_pipeline import RuntimePipeline, _Graph
from towhee.runtime.time_profiler import TimeProfiler

from towhee_ray.pipeline import RayOp, _threads

# Calls started and unfinished, per call the pipeline has threads for: twice, so that while
# the driver waits for the oldest call, the threads freed by calls finished after it take
# the next ones at once, rather than idling until the oldest is done. One (no calls queued
# behind the threads) and two gave the same rows/s within this VM's noise (a per-row pipe
# into a ray_op batching across calls, 1,024 calls in flight, 8,192 and 16,384 rows, 2 runs
# each: 2,040 and 2,189 rows/s with one, 1,820 and 1,061 with two; 128 calls in flight:
# 1,943 and 1,877 with one, 2,506 and 1,540 with two).
WINDOW_PER_CALL_IN_FLIGHT = 2
# Rows of a function node handed to a thread at once, where a pipe runs without graphs
# (_BatchedRows): the rows' calls run one after the other there. A thread hand-off per row
# cost the driver ~90 us a row (a lambda before a batching ray_op, 2-vCPU VM: 6,647 rows/s
# against 16,561 without the lambda); 16 rows a task keep a function that waits (on a file,
# a URL) overlapping in_flight / 16 tasks at once.
ROWS_PER_THREAD_TASK = 16


class WidePipeline(RuntimePipeline):
    """A Towhee pipeline with threads for ``in_flight`` calls at once; made by
    :func:`towhee_ray.wide`. It is Towhee's ``RuntimePipeline`` (``p(...)``, ``p.batch``,
    ``p.flush()``, ``p.dag_repr`` as there) with one difference: ``batch`` keeps at most
    ``2 x in_flight`` calls started, so that its memory stays flat however many inputs it
    gets, and :meth:`stream` gives the results one by one as they are ready.

    A pipeline whose every node between input and output is a ``map``, through a
    ``ray_op`` batching across calls (``max_batch_size``; one at least) or a function, runs
    ``batch`` and ``stream`` without Towhee's graphs: a ``ray_op`` node's rows go to it in
    full batches, ``in_flight`` rows a node at most (``_BatchedRows``); the results and
    errors are the same.

    >>> from towhee import pipe
    >>> from towhee_ray import wide
    >>> p = wide(pipe.input('x').map('x', 'y', lambda x: x * 10).output('y'), in_flight=4)
    >>> p.in_flight, [queue.get()[0] for queue in p.batch([1, 2, 3])]
    (4, [10, 20, 30])
    """

    def __init__(self, dag: Any, in_flight: int) -> None:
        super().__init__(dag, max_workers=_threads(len(dag.nodes), in_flight))
        self.in_flight = in_flight
        self._batched = _BatchedRows.of(dag, in_flight, self._thread_pool)

    def batch(self, batch_inputs: Iterable[Any]) -> List[Any]:
        """Each input's output queue (a Towhee ``DataQueue``), in input order, as Towhee's
        ``batch`` returns them; at most ``2 x in_flight`` calls run or wait at once. An
        input is a value for a pipeline of one input, else a tuple of its inputs. A call
        that fails raises Towhee's ``RuntimeError`` naming its node, once the calls before
        it are done; the calls started after it finish, and no more start.

        >>> from towhee import pipe
        >>> from towhee_ray import wide
        >>> p = wide(pipe.input('a', 'b').map(('a', 'b'), 'c', lambda a, b: a + b).output('c'), in_flight=2)
        >>> [queue.get()[0] for queue in p.batch([(1, 2), (3, 4)])]
        [3, 7]
        """
        return list(self.stream(batch_inputs))

    def stream(self, batch_inputs: Iterable[Any]) -> Iterator[Any]:
        """Like :meth:`batch`, lazily: yields each input's output queue in input order as
        soon as it (and every one before it) is done, taking inputs from ``batch_inputs``
        (any iterable, a generator too) only as calls finish. For more inputs than fit in
        memory at once, or to write results out while later inputs still run.

        >>> from towhee import pipe
        >>> from towhee_ray import wide
        >>> p = wide(pipe.input('x').flat_map('x', 'y', range).output('y'), in_flight=2)
        >>> results = p.stream(n for n in range(1, 1_000_000_000))   # taken as calls finish
        >>> [next(results).to_list() for _ in range(3)]
        [[[0]], [[0], [1]], [[0], [1], [2]]]
        >>> results.close()   # waits for the calls started, starts no more
        """
        if self._batched is not None:
            yield from self._batched.stream(batch_inputs)
            return
        window = WINDOW_PER_CALL_IN_FLIGHT * self.in_flight
        started: Deque[_Graph] = collections.deque()
        try:
            for inputs in batch_inputs:
                started.append(self._start(inputs))
                if len(started) >= window:
                    yield _finish(started.popleft())
            while started:
                yield _finish(started.popleft())
        finally:
            # the calls still started run on in the pipeline's threads: wait for them, so
            # that they hand their operators back and none outlives this generator
            while started:
                try:
                    _finish(started.popleft())
                except Exception:   # noqa: S110 - an earlier failure is the one raised
                    pass

    def _start(self, inputs: Any) -> _Graph:
        """A graph for one call, started on ``inputs``: its nodes go to the thread pool."""
        graph = _Graph(self._dag_repr.nodes, self._dag_repr.edges, self._operator_pool, self._thread_pool,
                       TimeProfiler(False))
        graph.async_call((inputs,) if graph.input_col_size == 1 else inputs)
        return graph


def _finish(graph: _Graph) -> Any:
    """The output queue of a started call, once it is done (or its error); its nodes hand
    their operators back to the pipeline's pool either way."""
    try:
        return graph.result()
    finally:
        graph.release_op()


class _Failed:
    """A row that failed at a node: the error Towhee's graph would raise for its call."""

    __slots__ = ('error',)

    def __init__(self, node: Any, error: BaseException) -> None:
        details = ''.join(traceback.format_exception(error))
        self.error = RuntimeError(f'Node-{node.name} runs failed, error msg: {error}, {details}\n')
        self.error.__cause__ = error


class _BatchedRows:
    """Rows of a pipeline whose every node between input and output is a ``map``, through
    a ``ray_op`` that batches across calls (``max_batch_size``; one at least) or through a
    function, run without Towhee's graphs: a ``ray_op`` node's rows go to it in batches,
    sent from the calling thread (:meth:`~towhee_ray.backends.ray.batching.Batcher.outcomes`),
    a function node's rows to the pipeline's threads (as Towhee's nodes call it, from many
    threads at once), ``in_flight`` rows at most per node; the rest is what Towhee's nodes
    do (columns by name, an operator's tuple spread over a node's output columns, a
    ``DataQueue`` per row in the output's schema, a failed row raising Towhee's
    ``RuntimeError`` naming its node).

    A Towhee graph per row costs the driver a few threads, queues and locks, which caps a
    per-row pipe at a few thousand rows a second whatever feeds it; this carries what the
    ``ray_op`` does (``benchmarks/w8_overhead.py`` measures both)."""

    def __init__(self, dag: Any, nodes: List[Any], in_flight: int, threads: Executor) -> None:
        self._nodes = nodes
        self._in_flight = in_flight
        self._threads = threads
        self._input_names = [name for name, _ in dag.edges[dag.nodes['_input'].in_edges[0]]['data']]
        output_schema = dag.edges[dag.nodes['_output'].out_edges[0]]['data']
        self._output_names = [name for name, _ in output_schema]
        self._output_queue = _OutputQueues(output_schema)

    @classmethod
    def of(cls, dag: Any, in_flight: int, threads: Executor) -> Optional['_BatchedRows']:
        """The batched rows of ``dag``, or ``None`` where one of its nodes is anything else
        (it then runs on Towhee's graphs)."""
        if any(column_type != ColumnType.SCALAR
               for edge in dag.edges.values() for _, column_type in edge['data']):
            return None
        nodes, name = [], dag.nodes['_input'].next_nodes
        while len(name) == 1 and name[0] != '_output':
            node = dag.nodes[name[0]]
            if not (node.iter_info.type == 'map' and node.op_info.type in ('lambda', 'callable')
                    and node.config.acc_info is None and node.config.server is None):
                return None
            nodes.append(node)
            name = node.next_nodes
        if (name != ['_output'] or len(dag.nodes) != len(nodes) + 2
                or not any(_batcher(node) for node in nodes)):
            return None
        return cls(dag, nodes, in_flight, threads)

    def stream(self, batch_inputs: Iterable[Any]) -> Iterator[DataQueue]:
        rows: Generator = (self._row(inputs) for inputs in batch_inputs)
        for node in self._nodes:
            batcher = _batcher(node)
            rows = (_through(node, rows, batcher, max(1, math.ceil(self._in_flight / batcher.max_batch_size)))
                    if batcher else _through_function(node, rows, self._threads, self._in_flight))
        try:
            for row in rows:
                if row.__class__ is _Failed:
                    raise row.error
                yield self._output_queue([row[name] for name in self._output_names])
        finally:
            rows.close()   # each node's batches sent finish

    def _row(self, inputs: Any) -> Dict[str, Any]:
        """A call's inputs by column, as the input node reads them: a value for a pipeline
        of one input, else a tuple of its inputs."""
        values = (inputs,) if len(self._input_names) == 1 else inputs
        if len(values) != len(self._input_names):   # Towhee's DataQueue.put asserts it
            raise AssertionError(f'the pipeline takes {len(self._input_names)} inputs '
                                 f'({", ".join(self._input_names)}), a call gave {len(values)}: '
                                 f'{inputs!r:.80}')
        return dict(zip(self._input_names, values))


class _OutputQueues:
    """The output queue of a row, as Towhee's graph leaves it: a sealed ``DataQueue`` in the
    output's schema, holding the row (none for a row with a ``None`` value).

    Towhee's constructor builds a lock, two conditions and a schema for every queue: ~20 us a
    row, and with tens of thousands of queues alive the garbage collector walking them all,
    which took half the driver's time of a per-row pipe into a batching ``ray_op`` (2-vCPU
    VM: 59 us a row with them, 28 us with a stand-in). These queues share one template's
    schema, lock and conditions: a sealed queue never waits on its conditions, and holds its
    lock only while a value is put or taken. Where this Towhee's ``DataQueue`` has other
    fields than the ones this was written for, each queue is built by its constructor.

    >>> from towhee.runtime.data_queue import ColumnType
    >>> queue = _OutputQueues([('a', ColumnType.SCALAR), ('b', ColumnType.SCALAR)])([1, 2])
    >>> queue.sealed, queue.size, queue.get(), queue.size
    (True, 1, [1, 2], 0)
    """

    FIELDS = frozenset({'_max_size', '_schema', '_data', '_queue_index', '_scalar_index',
                        '_has_all_scalars', '_sealed', '_size', '_lock', '_not_full', '_not_empty'})

    def __init__(self, schema: List[Tuple[str, ColumnType]]) -> None:
        self._schema = schema
        template = DataQueue(schema, max_size=0)
        self._fields = None if set(vars(template)) != self.FIELDS else [
            (name, value) for name, value in vars(template).items() if name != '_data']
        self._columns = [type(column) for column in template._data]

    def __call__(self, values: List[Any]) -> DataQueue:
        if self._fields is None:
            queue = DataQueue(self._schema, max_size=0)
            queue.put(values)
            queue.seal()
            return queue
        queue = object.__new__(DataQueue)
        for name, value in self._fields:   # one by one: a queue's __dict__ is never made
            setattr(queue, name, value)
        queue._data = [column() for column in self._columns]
        queue.put(values)
        queue._sealed = True   # what seal() does to a queue of scalars, less waking its waiters: none
        return queue


def _batcher(node: Any) -> Any:
    """The batcher of a node's ``ray_op`` that batches across calls; None for another function."""
    operator = node.op_info.operator
    return operator.batcher if isinstance(operator, RayOp) else None


def _through(node: Any, rows: Generator, batcher: Any, batches: int) -> Iterator[Any]:
    """``rows`` through the map ``node`` (a ``ray_op`` batching across calls with
    ``batcher``), in order; a row that failed before passes as it is."""
    held: Deque[Any] = collections.deque()

    def calls() -> Iterator[Optional[Tuple[Tuple[Any, ...], Dict[str, Any]]]]:
        for row in rows:
            args = None if row.__class__ is _Failed else tuple([row[name] for name in node.inputs])
            held.append((row, args))
            yield None if args is None else (args, {})

    outcomes = batcher.outcomes(calls(), batches)
    try:
        for outcome in outcomes:
            row, args = held.popleft()
            yield row if args is None else _finished(node, row, batcher.result, outcome, args)
    finally:   # closed early: this node's batches sent finish, then the nodes before it
        outcomes.close()
        rows.close()


def _through_function(node: Any, rows: Generator, threads: Executor, in_flight: int) -> Iterator[Any]:
    """``rows`` through the map ``node`` (a function), in order: called in ``threads``,
    :data:`ROWS_PER_THREAD_TASK` rows a task one after the other, ``in_flight`` rows at once;
    a row that failed before passes as it is."""
    function = node.op_info.operator

    def call_each(calls: List[Tuple[Any, ...]]) -> List[Tuple[bool, Any]]:   # in a thread
        outcomes = []
        for args in calls:
            try:
                outcomes.append((True, function(*args)))
            except Exception as error:
                outcomes.append((False, error))
        return outcomes

    def finish(task: List[Any], future: Optional[Future]) -> Iterator[Any]:
        outcomes = iter(future.result() if future is not None else ())
        for row in task:
            yield row if row.__class__ is _Failed else _finished(node, row, _returned, next(outcomes))

    started: Deque[Tuple[List[Any], Optional[Future]]] = collections.deque()
    task: List[Any] = []

    def start() -> None:
        calls = [tuple([row[name] for name in node.inputs]) for row in task if row.__class__ is not _Failed]
        started.append((task, threads.submit(call_each, calls) if calls else None))

    try:
        for row in rows:
            task.append(row)
            if len(task) >= ROWS_PER_THREAD_TASK:
                start()
                task = []
                if len(started) * ROWS_PER_THREAD_TASK >= in_flight:
                    yield from finish(*started.popleft())
        if task:
            start()
        while started:
            yield from finish(*started.popleft())
    finally:   # closed early: the calls started finish, then the nodes before this one
        concurrent.futures.wait([future for _, future in started if future is not None])
        rows.close()


def _returned(outcome: Tuple[bool, Any]) -> Any:
    """The value a function call returned, or the error it raised raised again."""
    called, value = outcome
    if not called:
        raise value
    return value


def _finished(node: Any, row: Dict[str, Any], result: Callable[..., Any], *args: Any) -> Any:
    """``row`` with the map ``node``'s output columns from ``result(*args)``, or the row
    :class:`_Failed` at ``node`` where it raises."""
    try:
        row.update(_outputs(node, result(*args)))
    except Exception as error:
        return _Failed(node, error)
    return row


def _outputs(node: Any, result: Any) -> Dict[str, Any]:
    """A map node's output columns from its operator's result, as Towhee's ``Map`` node
    makes them: a generator's items, a tuple spread over several columns, none kept for none."""
    names = node.outputs
    if isinstance(result, Generator):
        items = list(result)
        result = items if len(names) == 1 else [[item[i] for item in items] for i in range(len(names))]
    if len(names) > 1:
        return {name: result[i] for i, name in enumerate(names)}
    return {names[0]: result} if names else {}
