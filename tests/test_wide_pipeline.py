"""``wide(p)``'s pipeline: Towhee's ``RuntimePipeline`` whose ``batch`` and ``stream`` run
the calls as a window over their input, on real Towhee pipelines (and a real local Ray
where a ``ray_op`` is in them)."""
import collections
import functools
import gc
import threading
import time

import pytest
from towhee import ops as hub_ops, pipe, register
from towhee.operator import SharedType
from towhee.runtime.data_queue import ColumnType, DataQueue
from towhee.runtime.runtime_pipeline import RuntimePipeline

from tests import pool_ops
from towhee_ray import DataCollection, WorkerError, ray_op, wide, wide_pipeline
from towhee_ray.machine import usable_cpus
from towhee_ray.wide_pipeline import WINDOW_PER_CALL_IN_FLIGHT, _OutputQueues


def outputs(queues):
    return [queue.to_list() for queue in queues]


def test_batch_gives_what_towhees_batch_gives_for_every_kind_of_node():
    p = (pipe.input('a', 'b')
         .map(('a', 'b'), 'c', lambda a, b: a * b)
         .flat_map('c', 'd', lambda c: range(c % 4))
         .filter(('a', 'd'), ('a', 'd'), 'd', lambda d: d != 1)
         .output('a', 'd'))
    inputs = [(a, a + 1) for a in range(60)]
    wide_p = wide(p, in_flight=3)
    assert isinstance(wide_p, RuntimePipeline)
    assert outputs(wide_p.batch(inputs)) == outputs(p.batch(inputs))
    assert outputs(wide_p.batch(iter(inputs))) == outputs(p.batch(inputs))   # any iterable
    assert wide_p.batch([]) == []
    assert wide_p(2, 3).to_list() == p(2, 3).to_list()                        # a call, as Towhee's
    assert _ran_on(wide_p) == 'graphs'   # its filter takes a call's scalar and a flat_map's rows


@pytest.mark.usefixtures('ray_cluster')
def test_batch_through_a_ray_op_batching_across_calls_keeps_each_row_its_own_result():
    tagged = ray_op(pool_ops.Tagged, num_worker=2, max_batch_size=16)
    p = wide(pipe.input('x').map('x', 'tagged', tagged).output('tagged'))
    rows = [queue.get()[0] for queue in p.batch(range(500))]
    assert [x for x, _, _ in rows] == list(range(500))
    assert max(size for _, size, _ in rows) > 1
    tagged.close()


@pytest.fixture(params=['rows', 'graphs'])
def runs_on(request):
    """Where ``wide`` runs the pipes a test ends with :func:`_output`: ``'rows'`` without
    graphs (every node a function), ``'graphs'`` on Towhee's graphs, one per call (a hub
    operator Towhee builds for each call keeps it there)."""
    return request.param


def _output(p, runs_on, *names):
    if runs_on == 'graphs':
        p = p.map(names[0], 'seen', hub_ops.towhee_ray_tests.count_in_call())
    return p.output(*names)


def _ran_on(wide_p):
    return 'graphs' if wide_p._batched is None else 'rows'


def test_stream_takes_inputs_only_as_calls_finish_and_yields_in_order(runs_on):
    drawn = []

    def inputs():
        for n in range(10_000):
            drawn.append(n)
            yield n

    in_flight = 4
    window = WINDOW_PER_CALL_IN_FLIGHT * in_flight
    p = wide(_output(pipe.input('x').map('x', 'y', lambda x: x + 1), runs_on, 'y'), in_flight=in_flight)
    results = p.stream(inputs())
    for k in range(100):
        assert next(results).get() == [k + 1]
        assert len(drawn) <= k + 1 + window       # never more than the window ahead
    results.close()
    assert len(drawn) <= 100 + window
    assert _ran_on(p) == runs_on


def _data_queues():
    return sum(isinstance(thing, DataQueue) for thing in gc.get_objects())


def test_batch_of_many_rows_keeps_only_its_window_of_graphs(runs_on):
    live = []

    def count_queues(x):
        if x == 299:   # the last call: the queues of every graph still held, and each output
            live.append(_data_queues() - before)
        return x

    before = _data_queues()
    p = wide(_output(pipe.input('x').map('x', 'y', count_queues), runs_on, 'y'), in_flight=4)
    assert [queue.get()[0] for queue in p.batch(range(300))] == list(range(300))
    # a graph has 4 queues here; the outputs done are kept: 300 and at most a window of
    # graphs (Towhee's own batch holds all 300 graphs, 1,200 queues); without graphs, the
    # outputs alone
    assert live and live[0] <= 300 + (4 * WINDOW_PER_CALL_IN_FLIGHT * 4 if runs_on == 'graphs' else 0)
    assert _ran_on(p) == runs_on


def test_a_failing_call_raises_towhees_error_and_the_pipeline_runs_on(runs_on):
    calls = []
    lock = threading.Lock()

    def fragile(x):
        with lock:
            calls.append(x)
        if x == 30:
            raise ValueError('thirty is refused')
        return x

    p = wide(_output(pipe.input('x').map('x', 'y', fragile), runs_on, 'y'), in_flight=2)
    with pytest.raises(RuntimeError, match='thirty is refused'):
        p.batch(range(1000))
    started = len(calls)
    assert 31 <= started <= 31 + WINDOW_PER_CALL_IN_FLIGHT * 2   # no call starts after the failure is raised
    time.sleep(0.2)
    assert len(calls) == started
    assert [queue.get()[0] for queue in p.batch(range(5))] == list(range(5))
    assert _ran_on(p) == runs_on


def test_closing_a_stream_early_waits_for_its_started_calls_and_starts_no_more(runs_on):
    done = []

    def slow(x):
        time.sleep(0.02)
        done.append(x)
        return x

    p = wide(_output(pipe.input('x').map('x', 'y', slow), runs_on, 'y'), in_flight=3)
    results = p.stream(range(1000))
    assert next(results).get() == [0]
    results.close()
    finished = len(done)
    assert finished <= 1 + WINDOW_PER_CALL_IN_FLIGHT * 3
    time.sleep(0.2)
    assert len(done) == finished
    assert _ran_on(p) == runs_on


@pytest.mark.usefixtures('ray_cluster')
def test_a_wide_pipeline_is_still_a_pipeline_for_a_datacollection_step():
    p = wide(pipe.input('x').map('x', 'y', lambda x: x * 2).output('y'), in_flight=2)
    expected = [[[2 * x]] for x in range(40)]
    assert DataCollection.range(40).map(p).to_list() == expected
    assert DataCollection.range(40).set_parallel(2, 'thread').map(p).to_list() == expected
    assert DataCollection.range(40).set_parallel(2, 'ray').map(p).to_list() == expected   # built again there


def _batch_sizes(op):
    """Rows per operator call over all of ``op``'s actors -> how many calls had that many."""
    sizes = collections.Counter()
    for stat in op.stats():
        sizes.update(stat['batch_sizes'])
    return dict(sizes)


def _towhees_output_queue(schema, values):
    queue = DataQueue(schema, max_size=0)
    queue.put(values)
    queue.seal()
    return queue


@pytest.mark.parametrize('towhees_fields', [True, False], ids=['template', 'constructor'])
def test_a_batched_pipes_output_queue_is_the_one_towhees_output_node_leaves(monkeypatch, towhees_fields):
    schema = [('a', ColumnType.SCALAR), ('b', ColumnType.SCALAR)]
    if not towhees_fields:   # a Towhee whose DataQueue has other fields: its constructor builds each
        monkeypatch.setattr(_OutputQueues, 'FIELDS', _OutputQueues.FIELDS | {'_another'})
    output_queue = _OutputQueues(schema)
    for values in ([1, 'x'], [[1, 2], (3,)], [None, 'x']):   # a None value: a queue with no row
        queue, towhees = output_queue(values), _towhees_output_queue(schema, values)
        assert type(queue) is DataQueue and vars(queue).keys() == vars(towhees).keys()
        assert ((queue.sealed, queue.size, queue.max_size, queue.schema, queue.type_schema)
                == (towhees.sealed, towhees.size, towhees.max_size, towhees.schema, towhees.type_schema))
        other = output_queue(values[::-1])   # queues of one schema share no row
        assert queue.get_dict() == towhees.get_dict() and queue.size == towhees.size == 0
        assert queue.get() is towhees.get() is None                        # read: empty, never waits
        assert queue.put([2, 'y']) is towhees.put([2, 'y']) is False        # sealed
        assert other.to_list() == _towhees_output_queue(schema, values[::-1]).to_list()


@pytest.mark.usefixtures('ray_cluster')
def test_a_pipe_of_batching_ray_ops_sends_full_batches_and_gives_each_row_what_towhee_gives():
    # every node a map through a ray_op with max_batch_size: no graph per row, each node's
    # rows go out in full batches (the last one partial); columns as Towhee's nodes make them
    tagged = ray_op(pool_ops.Tagged, num_worker=2, max_batch_size=16)
    pairs = ray_op(pool_ops.Pairs, num_worker=1, max_batch_size=16)
    p = (pipe.input('x', 'c')
         .map('x', ('y', 'size', 'pid'), tagged)          # a tuple per row, spread over 3 columns
         .map(('y', 'size', 'c'), 'z', pairs)              # y * size + c
         .output('x', 'size', 'z'))
    queues = wide(p).batch([(x, -x) for x in range(100)])
    sizes = [16] * 96 + [4] * 4
    assert [queue.to_list() for queue in queues] == [[[x, size, x * size - x]]
                                                      for x, size in zip(range(100), sizes)]
    assert _batch_sizes(tagged) == _batch_sizes(pairs) == {16: 6, 4: 1}
    through_towhee = p(5, -5)   # Towhee's own graph, for one call
    assert queues[5].schema == through_towhee.schema and queues[5].type_schema == through_towhee.type_schema
    assert wide(p).batch([]) == []
    with pytest.raises(AssertionError, match=r'the pipeline takes 2 inputs \(x, c\), a call gave 3'):
        wide(p).batch([(1, 2, 3)])
    tagged.close()
    pairs.close()


@pytest.mark.usefixtures('ray_cluster')
def test_functions_between_batching_ray_ops_run_in_threads_without_graphs():
    # functions (a lambda, a callable object) around a batching ray_op: no graph per row,
    # the functions called from several threads at once (as Towhee's nodes call them), the
    # ray_op's rows in full batches; what each row gets is what Towhee's own batch gives
    threads = set()

    def shift(x):
        threads.add(threading.get_ident())
        time.sleep(0.001)   # waits, as a function reading a file would
        return x + 1

    tagged = ray_op(pool_ops.Tagged, num_worker=2, max_batch_size=16)
    p = (pipe.input('x')
         .map('x', 'shifted', shift)
         .map('shifted', ('y', 'size', 'pid'), tagged)
         .map(('y', 'size'), ('double', 'same'), lambda y, size: (2 * y, size == 16 or y >= 97))
         .output('x', 'double', 'same'))
    queues = wide(p).batch(range(100))
    rows = [queue.to_list() for queue in queues]
    assert rows == [[[x, 2 * x + 2, True]] for x in range(100)]
    assert _batch_sizes(tagged) == {16: 6, 4: 1} and len(threads) > 1
    towhee_queues = p.batch(range(5))   # Towhee's own graphs (their batches are smaller)
    assert queues[0].schema == towhee_queues[0].schema
    assert [queue.to_list()[0][:2] for queue in towhee_queues] == [row[0][:2] for row in rows[:5]]
    failing = wide(pipe.input('x').map('x', 'y', tagged).map('y', 'z', lambda y: 1 / (y[0] - 3)).output('z'))
    results = failing.stream(range(10))
    assert [next(results).get()[0] for _ in range(3)] == [-1 / 3, -1 / 2, -1]
    with pytest.raises(RuntimeError, match=r'^Node-lambda-\d+ runs failed, error msg: division by zero, '):
        next(results)
    tagged.close()


def _node_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith('towhee-ray ')]


@pytest.mark.usefixtures('ray_cluster')
def test_a_function_that_waits_gets_every_row_in_flight_at_once_and_its_threads_end_with_the_stream():
    # a function node of a pipe run without graphs (a download before the model): while its
    # calls wait, threads start until every row in flight is in a call, so 32 rows meet at a
    # barrier (tasks of 16 rows had 2 calls at once: the barrier broke); each thread holds
    # one operator, and the threads end when the stream does, closed early or not
    barrier = threading.Barrier(32, timeout=60)
    threads = set()

    def fetch(x):
        threads.add(threading.get_ident())
        barrier.wait()
        return x

    tagged = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=8)
    p = wide(pipe.input('x').map('x', 'y', fetch).map('y', ('z', 'size', 'pid'), tagged).output('z'),
             in_flight=32)
    assert p._batched is not None
    assert [queue.get()[0] for queue in p.batch(range(96))] == list(range(96))
    assert len(threads) == 32 and not _node_threads()
    quick = wide(pipe.input('x').map('x', 'y', lambda x: threads.add(threading.get_ident()) or x + 1)
                 .map('y', ('z', 'size', 'pid'), tagged).output('z'), in_flight=32)
    threads.clear()
    assert [queue.get()[0] for queue in quick.batch(range(1000))] == list(range(1, 1001))
    assert len(threads) < 32   # a function that returns at once needs no thread per row

    def slow(x):
        time.sleep(0.02)
        return x

    results = wide(pipe.input('x').map('x', 'y', slow).map('y', ('z', 'size', 'pid'), tagged).output('z'),
                   in_flight=32).stream(range(10_000))
    assert next(results).get()[0] == 0
    results.close()   # the rows handed over finish, no more go, the threads end
    assert not _node_threads()
    rows = tagged.stats()[0]['rows']
    time.sleep(0.2)
    assert tagged.stats()[0]['rows'] == rows <= 96 + 1000 + 2 * 32
    tagged.close()


@pytest.mark.usefixtures('ray_cluster')
def test_a_bad_row_of_a_batched_pipe_raises_towhees_error_after_the_rows_before_it():
    tagged = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=8)
    p = wide(pipe.input('x').map('x', 'y', tagged).output('y'))
    results = p.stream([0, 1, 2, -3, 4, 5])
    # alone, after their batch failed
    assert [next(results).get()[0][:2] for _ in range(3)] == [(0, 1), (1, 1), (2, 1)]
    with pytest.raises(RuntimeError,
                       match=r'^Node-ray_op\(Tagged\)-0 runs failed, error msg: bad row -3, ') as raised:
        next(results)
    assert isinstance(raised.value.__cause__, ValueError)
    assert 'called as one row of a list (max_batch_size=8)' in '\n'.join(raised.value.__cause__.__notes__)
    assert [queue.get()[0][:2] for queue in p.batch([4, 5])] == [(4, 2), (5, 2)]   # the pipe runs on
    tagged.close()


@pytest.mark.timeout(240)
@pytest.mark.usefixtures('ray_cluster')
def test_a_batch_of_a_batched_pipe_whose_actor_dies_runs_its_rows_alone_and_only_the_crashing_row_fails():
    tagged = ray_op(functools.partial(pool_ops.Tagged, die_on=13), num_worker=1, max_batch_size=4,
                    max_retries=0)
    p = wide(pipe.input('x').map('x', 'y', tagged).output('y'))
    results = p.stream(range(10, 20))
    assert [next(results).get()[0][:2] for _ in range(3)] == [(10, 1), (11, 1), (12, 1)]
    died = (r'^Node-ray_op\(Tagged\)-0 runs failed, error msg: ray_op\(Tagged\): the Ray worker process '
            r'running a call with arguments \(13,\) died')
    with pytest.raises(RuntimeError, match=died) as raised:
        next(results)
    assert isinstance(raised.value.__cause__, WorkerError)
    assert [queue.get()[0][:2] for queue in p.batch([14, 15])] == [(14, 2), (15, 2)]
    tagged.close()


@pytest.mark.usefixtures('ray_cluster')
def test_closing_a_batched_stream_early_waits_for_the_batches_it_sent_and_sends_no_more():
    first = ray_op(functools.partial(pool_ops.Tagged, seconds=0.05), num_worker=1, max_batch_size=4)
    second = ray_op(functools.partial(pool_ops.Tagged, seconds=0.05), num_worker=1, max_batch_size=4)
    p = wide(pipe.input('x').map('x', ('a', 'size', 'pid'), first).map('a', 'y', second).output('y'),
             in_flight=8)   # 8 rows in flight a node: 2 batches
    results = p.stream(range(1000))
    assert next(results).get()[0][:2] == (0, 4)
    results.close()
    rows = [op.stats()[0]['rows'] for op in (first, second)]
    assert rows[0] <= 4 * 5 and rows[1] <= 4 * 3   # a few batches each, not 1,000 rows
    time.sleep(0.3)
    assert [op.stats()[0]['rows'] for op in (first, second)] == rows
    first.close()
    second.close()


def _words(document):
    return document.split()


def _lengths():   # an operator taking a list of words: each word's length
    return lambda words: [len(word) for word in words]


def _splits():    # an operator taking a list of documents: each one's words
    return lambda documents: [document.split() for document in documents]


def _longer_than_one():
    return lambda words: [len(word) > 1 for word in words]


def _word_splitter():   # a plain ray_op's operator: one document's words
    return _words


DOCUMENTS = ['a bb ccc', '', 'dd', 'e ff gg hhh iiii', 'x y']


@pytest.mark.usefixtures('ray_cluster')
@pytest.mark.parametrize('build', [
    lambda ops: (pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', ops['lengths'])
                 .output('d', 'w', 'n')),
    lambda ops: pipe.input('d').flat_map('d', 'w', ops['splits']).map('w', 'n', len).output('w', 'n'),
    lambda ops: (pipe.input('d').flat_map('d', 'w', _words).filter('w', 'kept', 'w', ops['longer'])
                 .output('kept')),
    lambda ops: (pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', ops['lengths'])
                 .filter(('w', 'n'), ('w', 'n'), 'n', lambda n: n != 2).output('d', 'n')),
    lambda ops: (pipe.input('d').filter('d', 'd', 'd', lambda d: len(d) > 2)
                 .map('d', 'n', ops['lengths']).output('d', 'n')),
    lambda ops: (pipe.input('d').flat_map('d', 'w', _words).flat_map('w', 'c', list)
                 .map('c', 'n', ops['lengths']).output('c', 'n')),
    lambda ops: (pipe.input('d').flat_map('d', ('i', 'w'), lambda d: list(enumerate(d.split())))
                 .map('w', 'n', ops['lengths']).output('i', 'n')),
    lambda ops: (pipe.input('d').map('d', 'e', lambda d: None if d == 'dd' else d)
                 .map('e', 'n', ops['lengths']).output('n')),
    lambda ops: (pipe.input('d').flat_map('d', 'w', hub_ops.towhee.text_split(max_words=1))
                 .map('w', 'n', ops['lengths']).output('w', 'n')),
    lambda ops: (pipe.input('d').map('d', 'n', ops['lengths'])
                 .map('d', 'parts', hub_ops.towhee.text_split(max_words=2)).output('n', 'parts')),
    lambda ops: (pipe.input('d').flat_map('d', 'w', ops['words']).map('w', 'n', ops['lengths'])
                 .output('w', 'n')),
    lambda ops: (pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', ops['lengths'])
                 .map('n', 'm', ops['double']).output('w', 'm')),
], ids=['split-then-embed', 'split-by-ray_op', 'filter-by-ray_op', 'filter-rows-together', 'filter-a-call',
        'split-twice', 'split-into-two-columns', 'a-none-value', 'split-by-a-hub-operator',
        'a-hub-operator-after-the-ray_op', 'split-by-a-plain-ray_op', 'a-plain-ray_op-after-the-batching-one'])
def test_a_pipe_that_splits_and_filters_runs_without_graphs_and_gives_what_towhee_gives(build):
    # Towhee's RAG ingest shape (documents -> flat_map -> a batching ray_op): each node's
    # operator calls, from the rows of every call in flight, go to the ray_op in full batches;
    # the rows, scalar columns, empty splits and None values are what Towhee's graphs give
    ops = {'lengths': ray_op(_lengths, num_worker=2, max_batch_size=4),
           'splits': ray_op(_splits, num_worker=1, max_batch_size=2),
           'longer': ray_op(_longer_than_one, num_worker=1, max_batch_size=4),
           'words': ray_op(_word_splitter, num_worker=2),   # plain: a call a document
           'double': ray_op(lambda: (lambda n: 2 * n), num_worker=2)}
    p = build(ops)
    documents = DOCUMENTS * 3 + [None]   # a None input: Towhee's nodes read no row of it
    expected = outputs(p.batch(documents))
    used = [op for op in ops.values() if op.batcher and op.stats()]
    before = {id(op): _batch_sizes(op) for op in used}
    assert outputs(wide(p, in_flight=8).batch(documents)) == expected
    for op in used:   # full batches but for the last: none of Towhee's one row at a time
        sizes = collections.Counter(_batch_sizes(op)) - collections.Counter(before[id(op)])
        assert sum(sizes.values()) < sum(size * count for size, count in sizes.items())
        assert sum(count for size, count in sizes.items() if size < op.batcher.max_batch_size) <= 1
    for op in ops.values():
        op.close()


@pytest.mark.usefixtures('ray_cluster')
def test_a_split_pipe_whose_row_fails_raises_towhees_error_for_its_call_alone():
    lengths = ray_op(_lengths, num_worker=1, max_batch_size=4)
    p = wide(pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', lengths)
             .map('n', 'inverse', lambda n: 1 / (n - 3)).output('inverse'))
    results = p.stream(['a bb', 'a ccc b', 'dd'])
    assert next(results).to_list() == [[-0.5], [-1.0]]
    failed = r'^Node-lambda-\d+ runs failed, error msg: division by zero, '
    with pytest.raises(RuntimeError, match=failed) as raised:
        next(results)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert outputs(p.batch(['dd', 'e'])) == [[[-1.0]], [[-0.5]]]   # the pipe runs on
    lengths.close()


@pytest.mark.usefixtures('ray_cluster')
def test_a_plain_ray_op_in_a_batched_pipe_has_every_row_in_flight_sent_and_its_errors_as_towhees():
    # a plain ray_op (one Ray call a row: decoding on CPU actors) before a batching one (a
    # model): its calls are sent from the driver, in_flight of them at once, so each of its
    # actors gets calls, not only as many as threads would wait on
    decode = ray_op(functools.partial(pool_ops.Tagged, seconds=0.01), num_worker=4)
    embed = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=8)
    p = wide(pipe.input('x').map('x', 'xs', lambda x: [x]).map('xs', 'decoded', decode)
             .map('decoded', 'row', lambda decoded: decoded[0][0]).map('row', 'y', embed).output('y'))
    assert p.in_flight == 16 and p._batched is not None   # embed's calls_to_fill: graph-free
    assert [queue.get()[0][:2] for queue in p.batch(range(64))] == [(x, 8) for x in range(64)]
    assert sorted(stat['calls'] for stat in decode.stats()) == [16, 16, 16, 16]
    results = p.stream([1, 2, -3, 4])   # Tagged raises for a negative number: its row alone
    assert [next(results).get()[0][:2] for _ in range(2)] == [(1, 3), (2, 3)]   # a batch of 3
    with pytest.raises(RuntimeError, match=r'^Node-ray_op\(Tagged\)-1 runs failed, error msg: bad row -3, ') as raised:
        next(results)
    assert isinstance(raised.value.__cause__, ValueError)
    assert "ray_op(Tagged) raised this in its Ray actor on a call with arguments ([-3],)" in '\n'.join(
        raised.value.__cause__.__notes__)
    assert [queue.get()[0][:2] for queue in p.batch([4, 5])] == [(4, 2), (5, 2)]   # the pipe runs on
    decode.close()
    embed.close()


@pytest.mark.usefixtures('ray_cluster')
def test_a_pipe_whose_rows_towhee_would_not_keep_together_runs_on_towhees_graphs():
    # a node called once a call after a flat_map (Towhee calls it again as rows arrive), or
    # a flat_map leaving another row's queue column beside its own: Towhee's graphs run it
    lengths = ray_op(_lengths, num_worker=1, max_batch_size=4)
    pipes = [pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', lengths).map('d', 'm', len)
             .output('m', 'n'),
             pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', lengths).flat_map('w', 'c', list)
             .output('n', 'c')]
    for p in pipes:
        wide_p = wide(p, in_flight=4)
        assert wide_p._batched is None
        assert outputs(wide_p.batch(DOCUMENTS)) == outputs(p.batch(DOCUMENTS))
    lengths.close()


def test_the_operator_kinds_towhee_builds_by_name_are_towhees_own():
    from towhee.runtime.constants import OPType

    from towhee_ray.pipeline import HUB_OPERATOR_TYPES
    assert HUB_OPERATOR_TYPES == (OPType.HUB, OPType.BUILTIN)


@register(name='towhee-ray-tests/one-caller-at-a-time')
class _OneCallerAtATime:
    """A hub operator that is not shareable: it fails if two threads call one instance at once."""
    shared_type = SharedType.NotShareable
    built = 0

    def __init__(self):
        type(self).built += 1
        self._busy = threading.Lock()

    def __call__(self, word):
        if not self._busy.acquire(blocking=False):
            raise AssertionError('two threads called one NotShareable instance at once')
        try:
            time.sleep(0.0005)
            return word.upper()
        finally:
            self._busy.release()


def test_a_node_gets_no_more_threads_while_the_process_keeps_its_cpus_busy(monkeypatch):
    # a model computing on the CPU in a node's threads: more threads would only take turns on
    # the same CPUs (and hold more operators and memory), so while this process's CPU clock
    # says its CPUs are busy the node keeps its one thread; once they idle, its threads grow
    cpus = usable_cpus()
    clock = {'cpu': 0.0, 'busy': True, 'wall': time.perf_counter()}

    def cpu_clock():   # (wall seconds, process CPU seconds): every CPU busy, or none
        now = time.perf_counter()
        if clock['busy']:
            clock['cpu'] += (now - clock['wall']) * cpus
        clock['wall'] = now
        return now, clock['cpu']

    monkeypatch.setattr(wide_pipeline, '_cpu_clock', cpu_clock)
    threads = set()

    def compute(x):
        threads.add(threading.get_ident())
        time.sleep(0.002)
        return x

    p = wide(pipe.input('x').map('x', 'y', compute).output('y'), in_flight=16)
    assert p._batched is not None
    assert [queue.get()[0] for queue in p.batch(range(100))] == list(range(100))
    assert len(threads) == 1
    clock['busy'] = False
    threads.clear()
    assert [queue.get()[0] for queue in p.batch(range(400))] == list(range(400))
    assert 1 < len(threads) <= 16
    assert not _node_threads()


@pytest.mark.usefixtures('ray_cluster')
def test_a_hub_operator_used_directly_runs_without_graphs_one_instance_a_thread_from_the_pipes_pool():
    # Towhee's ingest shape as users write it: a hub operator splits, the ray_op embeds, a hub
    # operator that is not shareable runs after it; each of the node's threads holds its own
    # instance from the pipeline's operator pool, built once and reused, as Towhee's graphs do
    lengths = ray_op(_lengths, num_worker=2, max_batch_size=8)
    p = (pipe.input('d').flat_map('d', 'w', hub_ops.towhee.text_split(max_words=1))
         .map('w', 'n', lengths).map('w', 'loud', hub_ops.towhee_ray_tests.one_caller_at_a_time())
         .output('loud', 'n'))
    documents = [f'{document} {k}' for k in range(200) for document in DOCUMENTS]
    expected = outputs(p.batch(documents))
    _OneCallerAtATime.built = 0
    wide_p = wide(p, in_flight=64)
    assert wide_p._batched is not None
    assert outputs(wide_p.batch(documents)) == expected
    # one instance a thread, and the node's threads (more as its calls wait) in_flight at most
    assert 1 <= _OneCallerAtATime.built <= wide_p.in_flight
    built = _OneCallerAtATime.built
    assert outputs(wide_p.batch(['one'])) == [[['ONE', 3]]]   # one row: one thread
    assert _OneCallerAtATime.built == built   # the pool's instances serve the next batch
    assert outputs(wide_p.batch(documents[:50])) == expected[:50]
    assert _OneCallerAtATime.built <= wide_p.in_flight
    lengths.close()


@register(name='towhee-ray-tests/count-in-call')
class _CountInCall:
    """A hub operator Towhee builds for each call (NotReusable): it counts the rows it saw."""
    shared_type = SharedType.NotReusable

    def __init__(self):
        self.seen = 0

    def __call__(self, word):
        self.seen += 1
        return self.seen


@pytest.mark.usefixtures('ray_cluster')
def test_a_pipe_with_a_hub_operator_towhee_builds_for_each_call_runs_on_towhees_graphs():
    lengths = ray_op(_lengths, num_worker=1, max_batch_size=4)
    p = (pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', lengths)
         .map('w', 'seen', hub_ops.towhee_ray_tests.count_in_call()).output('n', 'seen'))
    wide_p = wide(p, in_flight=4)
    assert outputs(wide_p.batch(DOCUMENTS)) == outputs(p.batch(DOCUMENTS))   # counts start at 1 a call
    assert wide_p._batched is None
    lengths.close()


@register(name='towhee-ray-tests/built-while-allowed')
class _BuiltWhileAllowed:
    allowed = True

    def __init__(self):
        if not type(self).allowed:
            raise OSError('the model file is gone')

    def __call__(self, word):
        return word


@pytest.mark.usefixtures('ray_cluster')
def test_a_hub_operator_that_cannot_be_built_raises_towhees_error_before_any_row_goes(monkeypatch):
    lengths = ray_op(_lengths, num_worker=1, max_batch_size=4)
    p = (pipe.input('d').flat_map('d', 'w', _words).map('w', 'n', lengths)
         .map('w', 'same', hub_ops.towhee_ray_tests.built_while_allowed()).output('n', 'same'))
    monkeypatch.setattr(_BuiltWhileAllowed, 'allowed', False)   # Towhee built it at .output()
    wide_p = wide(p, in_flight=4)
    sent = sum(stat['rows'] for stat in lengths.stats())
    failed = (r'^Node-towhee-ray-tests/built-while-allowed-\d+ runs failed, error msg: Create '
              r'towhee-ray-tests/built-while-allowed-\d+ operator towhee-ray-tests/built-while-allowed:main '
              r'with args None and kws None failed, err: the model file is gone')
    with pytest.raises(RuntimeError, match=failed) as raised:
        wide_p.batch(DOCUMENTS)
    assert isinstance(raised.value.__cause__.__cause__, OSError)
    assert sum(stat['rows'] for stat in lengths.stats()) == sent   # no row went
    monkeypatch.setattr(_BuiltWhileAllowed, 'allowed', True)
    assert outputs(wide_p.batch(DOCUMENTS)) == outputs(p.batch(DOCUMENTS))
    assert wide_p._batched is not None
    lengths.close()
