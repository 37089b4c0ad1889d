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

A pipeline whose every node between input and output is a ``map``, ``flat_map`` or
``filter`` through a function, a ``ray_op`` or a hub operator (``towhee.ops...``) needs no
graphs at all: :class:`_BatchedRows` sends a batching ``ray_op`` node's rows, from every
call in flight, to its actors in full batches from the calling thread (a plain ``ray_op``
node's a Ray call a row, ``in_flight`` at once, from there too), calls a function or hub
operator node in threads of its own, up to ``in_flight`` as its calls wait on anything
but this process's CPUs (a hub
operator's instances from the pipeline's operator pool, as Towhee's graphs take them), and
keeps each call's columns as Towhee's queues would (the rows a ``flat_map`` makes, a
``filter`` thins), with the output queue Towhee's graph would leave. On the 2-vCPU VM, with
an operator that costs nothing (``benchmarks/w8_overhead.py``), a per-row pipe carries
~17,000 rows/s so without Ray and ~30,000 through a batching ``ray_op``, where Towhee's
own graphs carry ~1,600; its pipe of documents (a hub operator splitting, a batching
``ray_op``) carries ~49,000.

Importing this module imports Towhee (``wide`` does, when first called).
"""
from __future__ import annotations

import collections
from collections.abc import Generator
import queue
import threading
import time
import traceback
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from towhee.operator import SharedType
from towhee.runtime.constants import FilterConst, OPType
from towhee.runtime.data_queue import ColumnType, DataQueue
from towhee.runtime.operator_manager import OperatorPool
from towhee.runtime.runtime_conf import set_runtime_config
from towhee.runtime.runtime_pipeline import RuntimePipeline, _Graph
from towhee.runtime.time_profiler import TimeProfiler

from towhee_ray.machine import usable_cpus
from towhee_ray.pipeline import HUB_OPERATOR_TYPES, RayOp, _threads

# Calls started and unfinished, per call the pipeline has threads for: twice, so that while
# the driver waits for the oldest call, the threads freed by calls finished after it take
# the next ones at once, rather than idling until the oldest is done. One (no calls queued
# behind the threads) and two gave the same rows/s within this VM's noise (a per-row pipe
# into a ray_op batching across calls, 1,024 calls in flight, 8,192 and 16,384 rows, 2 runs
# each: 2,040 and 2,189 rows/s with one, 1,820 and 1,061 with two; 128 calls in flight:
# 1,943 and 1,877 with one, 2,506 and 1,540 with two).
WINDOW_PER_CALL_IN_FLIGHT = 2
# Where a pipe runs without graphs (_BatchedRows), a function or hub operator node's rows
# go one by one through a queue to threads of its own (_in_threads), which start as the
# calls show they wait: waiting for its oldest row, the generator looks this often whether
# rows wait while every thread is inside the node's call (then _Ramp says whether more
# threads may start), up to in_flight threads.
THREAD_RAMP_SECONDS = 0.001
# _Ramp's rule: more threads for a node only while this process left its CPUs idle over
# the last window since its threads last grew (at least this long), by doubling them: 1,
# 2, 4, ... (~40 ms to 256 threads for a function that waits on a URL). A process that
# used this share of the CPUs it may use is computing, not waiting: more threads would
# only take turns on the same CPUs (sentence-embedding/minilm called in threads, one text
# a call, 2-vCPU VM: 2 threads 78-79 texts/s with 1.80 CPUs busy, 4 threads 81, 8
# threads 80, 64 threads 71-76 with 132 OS threads and +380 MB; 1 thread 55-62).
CPU_WINDOW_SECONDS = 0.005
CPU_BUSY_SHARE = 0.85
# A window that found the CPUs busy makes the next twice as long, up to this: a CPU-bound
# node's 5 ms windows dip below the busy share now and then (its threads between calls),
# and threads never stop once started, so a dip must last to let them grow.
CPU_WINDOW_MAX_SECONDS = 1.0


class WidePipeline(RuntimePipeline):
    """A Towhee pipeline with threads for ``in_flight`` calls at once; made by
    :func:`towhee_ray.wide`. It is Towhee's ``RuntimePipeline`` (``p(...)``, ``p.batch``,
    ``p.flush()``, ``p.dag_repr`` as there) with one difference: ``batch`` keeps at most
    ``2 x in_flight`` calls started, so that its memory stays flat however many inputs it
    gets, and :meth:`stream` gives the results one by one as they are ready.

    A pipeline whose every node between input and output is a ``map``, ``flat_map`` or
    ``filter`` through a function, a ``ray_op`` or a hub operator runs ``batch`` and
    ``stream`` without Towhee's graphs (``_BatchedRows``): a batching ``ray_op`` node's rows,
    from every call in flight, go to it in full batches, ``in_flight`` rows a node at most,
    and a function's to threads of the node's own, as many as its waiting calls need; the
    results and errors are the same.

    >>> from towhee import pipe
    >>> from towhee_ray import wide
    >>> p = wide(pipe.input('x').map('x', 'y', lambda x: x * 10).output('y'), in_flight=4)
    >>> p.in_flight, [queue.get()[0] for queue in p.batch([1, 2, 3])]
    (4, [10, 20, 30])
    """

    def __init__(self, dag: Any, in_flight: int) -> None:
        super().__init__(dag, max_workers=_threads(len(dag.nodes), in_flight))
        self.in_flight = in_flight
        self._batched = _BatchedRows.of(dag, in_flight, self._operator_pool)

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
        if self._batched is not None and not self._batched.usable():
            self._batched = None   # a hub operator Towhee builds for each call: graphs
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


def _node_error(node: Any, error: BaseException) -> RuntimeError:
    """The error Towhee's graph raises for a call whose row failed at ``node`` with ``error``."""
    details = ''.join(traceback.format_exception(error))
    raised = RuntimeError(f'Node-{node.name} runs failed, error msg: {error}, {details}\n')
    raised.__cause__ = error
    return raised


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


class _Call:
    """One pipeline call's columns, as Towhee's queues would hold them between two nodes:
    ``scalars`` (one value a column), ``rows`` (the queue columns, a dict a row, all of one
    length: ``None`` until a ``flat_map`` makes them), ``error`` (Towhee's error for the
    call, once a node failed on it) and ``empty`` (a node found one of its scalar columns
    missing or ``None``: Towhee's node then reads no row, so nothing after it runs and the
    call's output queue is empty)."""

    __slots__ = ('scalars', 'rows', 'error', 'empty')

    def __init__(self, scalars: Dict[str, Any]) -> None:
        self.scalars = scalars
        self.rows: Optional[List[Dict[str, Any]]] = None
        self.error: Optional[BaseException] = None
        self.empty = False


class _Step:
    """A node of a pipe run without graphs: a ``map``, ``flat_map`` or ``filter`` through a
    function, a ``ray_op`` or a hub operator used directly, what it reads (``per_row``: its
    input has queue columns, so its operator is called once a row of them; else once a call)
    and what it makes of each result, as Towhee's node of that kind does."""

    def __init__(self, node: Any, in_schema: Dict[str, ColumnType], pool: OperatorPool) -> None:
        self.node = node
        # a hub operator's instances come from the pipeline's operator pool, as a graph's do
        self.pool = pool if node.op_info.type in HUB_OPERATOR_TYPES else None
        self.kind = node.iter_info.type
        self.outputs = list(node.outputs)
        self.per_row = ColumnType.QUEUE in in_schema.values()
        if self.kind == 'filter':
            self.renamed = list(zip(self.outputs, node.inputs))
            arguments = node.iter_info.param[FilterConst.param.filter_by]
        else:
            arguments = node.inputs
        # each argument: (its column, whether it is a queue column: read from the row)
        self.arguments = [(name, in_schema[name] == ColumnType.QUEUE) for name in arguments]
        self.scalar_columns = [name for name, kind in in_schema.items() if kind == ColumnType.SCALAR]
        self.ray_op = _ray_op(node)   # its ray_op, run from the calling thread (RayOp.outcomes)

    @classmethod
    def of(cls, node: Any, in_schema: Dict[str, ColumnType], out_schema: Dict[str, ColumnType],
           queues_made: bool, pool: OperatorPool) -> Optional['_Step']:
        """The step of ``node``, or ``None`` where Towhee's graph would not keep its queue
        columns row by row (it then runs on Towhee's graphs): a node with an accelerator or a
        server, another kind of node or operator (a nested pipeline), a node called once a
        call after queue columns were made (Towhee calls it again as their rows arrive), a
        ``flat_map`` or ``filter`` that leaves queue columns of other rows beside its own."""
        kind, op_type = node.iter_info.type, node.op_info.type
        if (kind not in ('map', 'flat_map', 'filter') or op_type not in _FUNCTION_TYPES + HUB_OPERATOR_TYPES
                or node.config.acc_info is not None or node.config.server is not None):
            return None
        step = cls(node, in_schema, pool)
        queue_arguments = [is_queue for _, is_queue in step.arguments]
        queue_outputs = {name for name, column in out_schema.items() if column == ColumnType.QUEUE}
        made = ColumnType.QUEUE if step.per_row or kind == 'flat_map' else ColumnType.SCALAR
        if (step.per_row != any(queue_arguments) or (queues_made and not step.per_row)
                or any(out_schema.get(name, made) != made for name in step.outputs)):
            return None
        if kind in ('flat_map', 'filter') and not queue_outputs <= set(step.outputs):
            return None
        if kind == 'filter' and step.per_row and not all(in_schema[name] == ColumnType.QUEUE
                                                         for _, name in step.renamed):
            return None
        return step

    def acquire(self) -> Any:
        """The node's operator, for a run of calls in one thread: its function, or a hub
        operator's instance from the pipeline's operator pool, as each Towhee graph acquires
        one (the one instance of a ``Shareable`` operator, else one no other run holds: built
        the first time, reused after). An operator that cannot be built raises the
        ``RuntimeError`` Towhee's node fails with, its own error as the cause."""
        info = self.node.op_info
        if self.pool is None:
            return info.operator
        try:
            with set_runtime_config(self.node.config):
                return self.pool.acquire_op(self.node.uid, info.operator, info.init_args, info.init_kws,
                                            info.tag, info.latest)
        except Exception as error:
            raise RuntimeError(f'Create {self.node.name} operator {info.operator}:{info.tag} with args '
                               f'{info.init_args} and kws {info.init_kws} failed, err: {error}') from error

    def release(self, operator: Any) -> None:
        """Give the operator :meth:`acquire` gave back to the pool, for the next run."""
        if self.pool is not None:
            self.pool.release_op(operator)

    def reusable(self) -> bool:
        """Whether one operator instance may serve rows of many calls: False for a hub
        operator that says it is ``NotReusable`` (Towhee builds it for each call). Builds
        the operator once (kept in the pool), so one that cannot be built raises here."""
        operator = self.acquire()
        try:
            return getattr(operator, 'shared_type', None) != SharedType.NotReusable
        finally:
            self.release(operator)

    def opens(self, call: _Call) -> int:
        """How many operator calls ``call`` needs of this node (none for a call that failed
        or is empty); marks it empty where Towhee's node would read no row of it."""
        if call.error is not None or call.empty:
            return 0
        scalars = call.scalars
        for name in self.scalar_columns:
            if scalars.get(name) is None:
                call.empty = True
                return 0
        return len(call.rows) if self.per_row else 1

    def arguments_of(self, call: _Call) -> Iterator[Tuple[Any, ...]]:
        """The operator's arguments for each row of ``call``, in order (a node ``per_row``)."""
        scalars, arguments = call.scalars, self.arguments
        for row in call.rows:
            yield tuple([row[name] if is_queue else scalars[name] for name, is_queue in arguments])

    def apply(self, entry: List[Any], called: bool, value: Any) -> None:
        """The result (or error) of the operator's next call on ``entry``'s call, into its
        columns, as Towhee's node puts it: ``entry`` is ``[call, calls due, rows made]``."""
        call = entry[0]
        index = len(call.rows) - entry[1] if self.per_row else 0
        entry[1] -= 1
        if call.error is not None:
            return
        try:
            if not called:
                raise value
            if self.kind == 'map':
                (call.rows[index] if self.per_row else call.scalars).update(_outputs(self.node, value))
            elif self.kind == 'flat_map':
                outputs = self.outputs
                if len(outputs) == 1:
                    entry[2].extend({outputs[0]: item} for item in value)
                else:
                    entry[2].extend({name: item[i] for i, name in enumerate(outputs)} for item in value)
            elif self.per_row:   # filter
                if value:
                    row = call.rows[index]
                    entry[2].append({new: row[old] for new, old in self.renamed})
            else:
                scalars = call.scalars
                kept = [(new, scalars[old]) for new, old in self.renamed] if value else []
                for new, _ in self.renamed:
                    scalars.pop(new, None)
                scalars.update(kept)
        except Exception as error:
            call.error = _node_error(self.node, error)

    def close(self, entry: List[Any]) -> _Call:
        """``entry``'s call once every operator call on it is in: rows made replace its rows."""
        call = entry[0]
        if call.error is None and not call.empty and (self.kind == 'flat_map'
                                                      or (self.kind == 'filter' and self.per_row)):
            call.rows = entry[2]
        return call


class _BatchedRows:
    """A pipe whose every node between input and output is a ``map``, ``flat_map`` or
    ``filter`` through a function, a ``ray_op`` or a hub operator, run without Towhee's graphs: a
    ``ray_op`` node's operator calls, from the rows of every pipeline call in flight, are
    sent from the calling thread, ``in_flight`` at once (:meth:`~towhee_ray.pipeline.RayOp.outcomes`:
    a batching one's in full batches, a plain one's a Ray call each); a function or hub operator
    node's go a row at a time to threads of its own (as Towhee's nodes call it, from many
    threads at once; each thread holds a hub operator instance from the pipeline's operator
    pool, as a Towhee graph does), more threads as its calls wait while CPUs idle,
    ``in_flight`` of them at most per node (:func:`_in_threads`). A pipe
    with a hub operator Towhee builds for each call (``NotReusable``) runs on Towhee's graphs
    (:meth:`usable`). The rest is what Towhee's nodes do: columns by name, scalar
    columns and queue columns (the rows a ``flat_map`` makes, a ``map`` keeps and a ``filter``
    thins), an operator's tuple spread over a node's output columns, a ``DataQueue`` per call
    in the output's schema, a failed call raising Towhee's ``RuntimeError`` naming its node.

    A Towhee graph per call costs the driver a few threads, queues and locks, and its nodes
    pass rows one at a time, which caps a per-row pipe at a few thousand rows a second
    whatever feeds it; this carries what its ``ray_op`` or functions do
    (``benchmarks/w8_overhead.py`` measures both)."""

    def __init__(self, dag: Any, steps: List[_Step], in_flight: int) -> None:
        self._steps = steps
        self._checked = False   # each hub operator built once and found reusable (usable())
        self._in_flight = in_flight
        self._input_names = [name for name, _ in dag.edges[dag.nodes['_input'].in_edges[0]]['data']]
        self._output_schema = dag.edges[dag.nodes['_output'].out_edges[0]]['data']
        self._output_scalars = [name for name, column in self._output_schema if column == ColumnType.SCALAR]
        self._output_names = [name for name, _ in self._output_schema]
        self._queue_output = ColumnType.QUEUE in (column for _, column in self._output_schema)
        self._output_queue = _OutputQueues(self._output_schema)

    @classmethod
    def of(cls, dag: Any, in_flight: int, pool: OperatorPool) -> Optional['_BatchedRows']:
        """The batched rows of ``dag``, or ``None`` where one of its nodes is anything else
        (it then runs on Towhee's graphs)."""
        if any(column_type != ColumnType.SCALAR for name, column_type in dag.edges[
                dag.nodes['_input'].out_edges[0]]['data']):
            return None
        steps, name, queues_made = [], dag.nodes['_input'].next_nodes, False
        while len(name) == 1 and name[0] != '_output':
            node = dag.nodes[name[0]]
            if len(node.in_edges) != 1 or len(node.out_edges) != 1:
                return None
            out_schema = dict(dag.edges[node.out_edges[0]]['data'])
            step = _Step.of(node, dict(dag.edges[node.in_edges[0]]['data']), out_schema, queues_made, pool)
            if step is None:
                return None
            queues_made = queues_made or ColumnType.QUEUE in out_schema.values()
            steps.append(step)
            name = node.next_nodes
        output_schema = dag.edges[dag.nodes['_output'].out_edges[0]]['data'] if name == ['_output'] else []
        if (name != ['_output'] or len(dag.nodes) != len(steps) + 2
                or (queues_made and ColumnType.QUEUE not in (column for _, column in output_schema))):
            return None
        return cls(dag, steps, in_flight)

    def usable(self) -> bool:
        """Whether the pipe can run here: each hub operator is built (once, before any row
        goes; one that cannot be built raises Towhee's error) and may serve rows of many
        calls. A ``NotReusable`` one, which Towhee builds for each call, makes it False."""
        if not self._checked:
            for step in self._steps:
                try:
                    if step.pool is not None and not step.reusable():
                        return False
                except Exception as error:
                    raise _node_error(step.node, error)   # noqa: B904 - its cause is the error
            self._checked = True
        return True

    def stream(self, batch_inputs: Iterable[Any]) -> Iterator[DataQueue]:
        calls: Generator = (self._call(inputs) for inputs in batch_inputs)
        for step in self._steps:
            calls = _through(step, calls, self._in_flight)
        try:
            for call in calls:
                if call.error is not None:
                    raise call.error
                yield self._output(call)
        finally:
            calls.close()   # each node's operator calls sent finish

    def _call(self, inputs: Any) -> _Call:
        """A call's inputs by column, as the input node reads them: a value for a pipeline
        of one input, else a tuple of its inputs."""
        values = (inputs,) if len(self._input_names) == 1 else inputs
        if len(values) != len(self._input_names):   # Towhee's DataQueue.put asserts it
            raise AssertionError(f'the pipeline takes {len(self._input_names)} inputs '
                                 f'({", ".join(self._input_names)}), a call gave {len(values)}: '
                                 f'{inputs!r:.80}')
        return _Call(dict(zip(self._input_names, values)))

    def _output(self, call: _Call) -> DataQueue:
        """The call's output queue, as Towhee's output node leaves it."""
        scalars = call.scalars
        if not self._queue_output:   # one row: the queue is built from a template
            if call.empty:
                return self._output_queue([None] * len(self._output_names))
            return self._output_queue([scalars.get(name) for name in self._output_names])
        queue = DataQueue(self._output_schema, max_size=0)
        if not call.empty and all(scalars.get(name) is not None for name in self._output_scalars):
            rows = call.rows or ()
            queue.batch_put([[row[name] for row in rows] if column == ColumnType.QUEUE else [scalars[name]]
                             for name, column in self._output_schema])
        queue.seal()
        return queue


def _through(step: _Step, calls: Generator, in_flight: int) -> Generator:
    """``calls`` through ``step``'s node, in order: its operator called on each call's rows
    (or once a call), ``in_flight`` operator calls at once: a ``ray_op``'s sent from this
    thread (:meth:`~towhee_ray.pipeline.RayOp.outcomes`; a batching one's in full batches),
    another's in threads of its own (:func:`_in_threads`); a call that failed or is empty
    passes as it is."""
    held: Deque[List[Any]] = collections.deque()   # per call: [call, operator calls due, rows made]
    makes_rows = step.kind != 'map'
    per_row = step.per_row
    names = [name for name, _ in step.arguments]

    def arguments() -> Iterator[Tuple[Any, ...]]:
        for call in calls:
            due = step.opens(call)
            held.append([call, due, [] if makes_rows else None])
            if not due:
                continue
            if per_row:
                yield from step.arguments_of(call)
            else:
                scalars = call.scalars
                yield tuple([scalars[name] for name in names])

    outcomes = (step.ray_op.outcomes(arguments(), in_flight) if step.ray_op is not None
                else _in_threads(step, in_flight, arguments()))
    try:
        for called, value in outcomes:
            while not held[0][1]:
                yield step.close(held.popleft())
            entry = held[0]
            step.apply(entry, called, value)
            if not entry[1]:
                yield step.close(held.popleft())
        while held:
            yield step.close(held.popleft())
    finally:   # closed early: this node's operator calls sent finish, then the nodes before it
        outcomes.close()
        calls.close()


_FUNCTION_TYPES = (OPType.LAMBDA, OPType.CALLABLE)


def _ray_op(node: Any) -> Optional[RayOp]:
    """A node's ``ray_op``; None for another function or operator."""
    operator = node.op_info.operator
    return operator if isinstance(operator, RayOp) else None


def _in_threads(step: _Step, in_flight: int, arguments: Iterator[Tuple[Any, ...]]) -> Generator:
    """A node's function (or hub operator) called on each of ``arguments`` in threads of its
    own, in order, as ``(called, its result or error)``; ``in_flight`` calls at once at most.

    Each thread takes one row at a time from a queue and holds one operator for its life
    (:meth:`_Step.acquire`); a ``flat_map``'s results are iterated there too. There is one
    thread at first, and more only while rows wait, every thread is inside the node's call
    (looked at every :data:`THREAD_RAMP_SECONDS`) and the process leaves CPUs idle
    (:class:`_Ramp`), up to ``in_flight``: a function that waits (on a file, a URL) gets as
    many calls at once as rows are in flight, one that computes (a model on the CPU, without
    the GIL) about as many as keep the CPUs busy, and one that returns at once keeps one
    thread, and hands a row over for a queue's put and get. When the generator is closed
    early, the rows handed over finish and the threads end, giving their operators back.
    """
    flat = step.kind == 'flat_map'
    inbox: queue.SimpleQueue = queue.SimpleQueue()   # (slot, arguments) a row; None: end
    woken: queue.SimpleQueue = queue.SimpleQueue()   # a token when the row awaited is run
    awaited: List[Optional[List[Any]]] = [None]   # the slot of the row this generator waits for
    inside: List[List[bool]] = []   # per thread: [whether it is inside the node's call]
    threads: List[threading.Thread] = []

    def serve(in_call: List[bool]) -> None:   # a thread's life
        try:
            function, failure = step.acquire(), None
        except BaseException as error:   # noqa: B036 - each row it takes fails with it, none waits
            function, failure = None, error
        try:
            while True:
                item = inbox.get()
                if item is None:
                    return
                slot, args = item
                if function is None:
                    outcome = False, failure
                else:
                    in_call[0] = True
                    try:
                        outcome = True, list(function(*args)) if flat else function(*args)
                    except BaseException as error:   # noqa: B036 - the row's own outcome, as raised
                        outcome = False, error
                    in_call[0] = False
                slot.append(outcome)
                if awaited[0] is slot:   # after the append: the generator sees one or the other
                    woken.put(None)
        finally:
            if function is not None:
                step.release(function)

    def start_thread() -> None:
        flag = [False]
        thread = threading.Thread(target=serve, args=(flag,), daemon=True,
                                  name=f'towhee-ray {step.node.name} {len(threads)}')
        thread.start()
        inside.append(flag)
        threads.append(thread)

    ramp = _Ramp(usable_cpus())

    def oldest() -> Tuple[bool, Any]:
        slot = ordered[0]
        awaited[0] = slot
        while not slot:
            ramping = len(threads) < in_flight
            if ramping and inbox.qsize() and all(flag[0] for flag in inside) and ramp.grows(len(threads)):
                start_thread()   # rows wait, every thread is inside the node's call, CPUs idle
            try:
                woken.get(timeout=THREAD_RAMP_SECONDS if ramping else None)
            except queue.Empty:
                pass
        awaited[0] = None
        return ordered.popleft()[0]

    ordered: Deque[List[Tuple[bool, Any]]] = collections.deque()   # per row, [its outcome] once run
    try:
        for args in arguments:
            ordered.append([])
            inbox.put((ordered[-1], args))
            if not threads:
                start_thread()
            if len(ordered) >= in_flight:
                yield oldest()
            while ordered and ordered[0]:
                yield ordered.popleft()[0]
        while ordered:
            yield oldest()
    finally:   # closed early (or done): the rows handed over finish, the threads end
        for _ in threads:
            inbox.put(None)
        for thread in threads:
            thread.join()


class _Ramp:
    """Whether a node whose rows wait while every thread of it is inside its call may start
    one more thread: only where this process used less than :data:`CPU_BUSY_SHARE` of the
    ``cpus`` it may use over a window of at least :data:`CPU_WINDOW_SECONDS` since its
    threads last grew. Then they may double, one thread a call of :meth:`grows`, before the
    next window is measured; a window of busy CPUs starts another, twice as long (up to
    :data:`CPU_WINDOW_MAX_SECONDS`), so threads still grow once the CPUs stay free that long
    (another node's calls have ended), not on a dip between calls.

    >>> now = [0.0, 0.0]   # wall, CPU seconds
    >>> ramp = _Ramp(cpus=2, clock=lambda: tuple(now))
    >>> ramp.grows(1)   # the first look starts a window
    False
    >>> now[:] = [0.01, 0.018]   # 10 ms with 1.8 CPUs busy: computing, no more threads
    >>> ramp.grows(1)
    False
    >>> now[:] = [0.02, 0.020]   # the next 10 ms with 0.2 CPUs busy: waiting
    >>> ramp.grows(1), ramp.grows(2)   # 1 thread may double, then a new window
    (True, False)
    >>> now[:] = [0.03, 0.021]
    >>> ramp.grows(2), ramp.grows(3), ramp.grows(4)   # 2 may double to 4, then a new window
    (True, True, False)
    """

    def __init__(self, cpus: float, clock: Optional[Callable[[], Tuple[float, float]]] = None) -> None:
        self.cpus = cpus
        self._clock = clock or _cpu_clock
        self._mark: Optional[Tuple[float, float]] = None   # (wall, process CPU) the window began at
        self._may_start = 0   # threads that may still start on the last window measured
        self._window = CPU_WINDOW_SECONDS   # seconds the next window lasts at least

    def grows(self, threads: int) -> bool:
        """Whether one more thread may start for a node that has ``threads``, its rows waiting."""
        if self._may_start:
            self._may_start -= 1
            if not self._may_start:
                self._mark = self._clock()   # the next window measures the threads just started
            return True
        now, cpu = self._clock()
        if self._mark is None:
            self._mark = now, cpu
            return False
        wall = now - self._mark[0]
        if wall < self._window:
            return False
        busy = cpu - self._mark[1] >= CPU_BUSY_SHARE * self.cpus * wall
        self._mark = now, cpu
        if busy:   # the next window is longer, so that a short dip does not count as idle CPUs
            self._window = min(2 * self._window, CPU_WINDOW_MAX_SECONDS)
            return False
        self._window = CPU_WINDOW_SECONDS
        self._may_start = threads
        return self.grows(threads)


def _cpu_clock() -> Tuple[float, float]:
    """(wall seconds, this process's CPU seconds), for :class:`_Ramp`."""
    return time.perf_counter(), time.process_time()


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
