"""Towhee pipelines on Ray: ray_op inside a pipe, a whole pipeline per actor, progress."""
import copy
import functools
import gc
import itertools
import json
import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest
import towhee
from towhee import ops, pipe

from tests.ops import Where, init_count
from tests.support import CLEANUP_TIMEOUT_SECONDS, eventually
from towhee_ray import DataCollection, Empty, RayOp, ray_op

pytestmark = pytest.mark.usefixtures('ray_cluster')


def assert_dead(actors):
    """Every actor dies: a call to it fails with RayActorError, within the cleanup timeout.
    ray.kill returns once the GCS has the order; a call sent right after it can still reach
    the live process (seen once in a full suite run), so calls are repeated until one fails."""
    import ray

    def dead(actor):
        try:
            ray.get(actor.stats.remote(), timeout=CLEANUP_TIMEOUT_SECONDS)
        except ray.exceptions.RayActorError:
            return True
        return False

    still_alive = [actor for actor in actors if not eventually(lambda: dead(actor))]
    assert not still_alive, (
        f'{still_alive} still answer calls {CLEANUP_TIMEOUT_SECONDS} s after being released')


# -- ray_op --------------------------------------------------------------------------------

def test_ray_op_in_a_pipe_builds_each_operator_once_per_actor(tmp_path):
    log = tmp_path / 'inits'
    add_one = ray_op(ops.tests_ns.add_one(init_log=str(log)), num_worker=2)
    where = ray_op(functools.partial(Where), num_worker=2)   # a user module's class, by factory
    p = (pipe.input('x').map('x', 'y', add_one).map('y', ('z', 'pid', 'instance'), where)
         .output('z', 'pid', 'instance'))
    for _ in range(3):   # the pipeline called many times: its operators load once
        rows = [queue.get() for queue in p.batch(list(range(60)))]
        assert [row[0] for row in rows] == list(range(1, 61))
    assert init_count(log) == 2
    assert sum(stat['calls'] for stat in where.stats()) == 3 * 60
    assert os.getpid() not in {row[1] for row in rows}
    add_one.close()
    where.close()


def test_ray_op_sends_concurrent_calls_to_different_actors(tmp_path):
    # Two calls made at once, each waiting (a barrier) until the other has begun: they meet
    # only if they run on different actors. Sent to the same actor, the first would wait
    # alone (one call at a time per actor) and say so.
    meet = ray_op(ops.tests_ns.meet_per_call(folder=str(tmp_path), parties=2), num_worker=2)
    with ThreadPoolExecutor(2) as threads:
        results = list(threads.map(meet, [0, 1]))
    assert [x for x, _, _ in results] == [0, 1]
    assert [met for _, _, met in results] == [True, True]
    assert len({instance for _, instance, _ in results}) == 2
    assert sorted(stat['calls'] for stat in meet.stats()) == [1, 1]
    meet.close()


def test_ray_op_copies_share_one_pool(tmp_path):
    log = tmp_path / 'inits'
    add_one = ray_op(ops.tests_ns.add_one(init_log=str(log)), num_worker=1)
    assert copy.deepcopy(add_one) is add_one
    same = pickle.loads(pickle.dumps(add_one))
    assert isinstance(same, RayOp) and same(1) == 2 and add_one(2) == 3
    for _ in range(3):
        p = pipe.input('x').map('x', 'y', add_one).output('y')   # deep-copies its DAG
        assert p(5).get() == [6]
    assert init_count(log) == 1
    add_one.close()


def test_ray_op_actors_are_released_on_close_and_on_garbage_collection():
    op = ray_op(ops.tests_ns.add_one(), num_worker=2)
    assert op.stats() == []   # nothing starts before the first call
    assert op(1) == 2
    actors = list(op._pool._slots.actors)
    assert len(actors) == 2
    op.close()
    assert_dead(actors)
    with pytest.raises(RuntimeError, match='was closed'):
        op(1)
    op = ray_op(ops.tests_ns.add_one(), num_worker=2)
    assert op(1) == 2
    actors = list(op._pool._slots.actors)
    del op
    gc.collect()
    assert_dead(actors)


def test_ray_op_in_flat_map_filter_and_window_steps():
    split = ray_op(ops.towhee.text_split(max_words=2))
    longer = ray_op(functools.partial(lambda: lambda text: len(text) > 4))
    count = ray_op(functools.partial(lambda: lambda texts: len(texts)))
    p = (pipe.input('text')
         .flat_map('text', 'passage', split)
         .filter('passage', 'passage', 'passage', longer)
         .window('passage', 'count', 2, 2, count)
         .output('count'))
    assert p('One. Two three. Four five. Six.').to_list() == [[2]]
    for op in (split, longer, count):
        op.close()


def _words_and_lengths(text):
    for word in text.split():
        yield word, len(word)


def test_a_ray_op_whose_operator_yields_gives_what_the_operator_gives_in_process():
    # a generator cannot be pickled: its items are gathered in the actor and make a
    # generator again here, which Towhee's flat_map iterates and its map spreads over columns
    def pipes(function):
        return (pipe.input('text').flat_map('text', ('word', 'n'), function).output('word', 'n'),
                pipe.input('text').map('text', ('words', 'ns'), function).output('words', 'ns'))
    texts = ['hello big world', 'foo bar']
    with ray_op(lambda: _words_and_lengths, num_worker=1) as yielding:
        assert list(yielding('one two')) == [('one', 3), ('two', 3)]
        for in_process, on_ray in zip(pipes(_words_and_lengths), pipes(yielding)):
            assert ([queue.to_list() for queue in on_ray.batch(texts)]
                    == [queue.to_list() for queue in in_process.batch(texts)])
        assert [queue.to_list() for queue in pipes(yielding)[1].batch(texts)] == [
            [[['hello', 'big', 'world'], [5, 3, 5]]], [[['foo', 'bar'], [3, 3]]]]


def test_ray_op_passes_the_operators_error_to_the_pipeline():
    def fail(x):
        raise ValueError(f'bad element {x}')

    def make_failing():
        return fail
    op = ray_op(make_failing)
    # Towhee names the node after the callable's type, which ray_op names after its step.
    with pytest.raises(RuntimeError, match=r'Node-ray_op\([^)]*make_failing\)-0 runs failed, error msg: '
                                           r'bad element 7'):
        pipe.input('x').map('x', 'y', op).output('y')(7)
    assert isinstance(op, RayOp) and type(op) is type(ray_op(make_failing))
    op.close()


@pytest.mark.parametrize('bad, error, message', [
    (42, TypeError, 'zero-argument factory'),
    (pipe.input('x').output('x'), TypeError, 'DataCollection'),
])
def test_ray_op_refuses_what_it_cannot_run(bad, error, message):
    with pytest.raises(error, match=message):
        ray_op(bad)


def test_ray_op_checks_its_settings():
    with pytest.raises(ValueError, match='num_worker must be a positive integer'):
        ray_op(ops.tests_ns.add_one(), num_worker=0)
    with pytest.raises(ValueError, match='ray_remote_args must be a dict'):
        ray_op(ops.tests_ns.add_one(), ray_remote_args=['num_cpus'])
    with pytest.raises(ValueError, match=r"ray_remote_args: 'num_gpu' is not an option of Ray's "
                                         r"\.options\(\) \(did you mean 'num_gpus'\?\); the options "
                                         r"for actors are "):
        ray_op(ops.tests_ns.add_one(), ray_remote_args={'num_gpu': 1})
    with pytest.raises(ValueError, match=r"'num_cpu' is not an option .* options for tasks or actors are "):
        DataCollection([1]).set_parallel(2, backend='ray', ray_remote_args={'num_cpu': 1})
    with pytest.raises(ValueError, match='num_gpus must be a non-negative number'):
        ray_op(ops.tests_ns.add_one(), num_gpus=-1)
    with pytest.raises(TypeError, match='num_gpu'):
        ray_op(ops.tests_ns.add_one(), num_gpu=1)
    with pytest.raises(ValueError, match='actors_per_gpu must be a positive integer'):
        ray_op(ops.tests_ns.add_one(), actors_per_gpu=0)
    with pytest.raises(ValueError, match='not both'):
        ray_op(ops.tests_ns.add_one(), num_gpus=0.5, actors_per_gpu=2)


# -- a whole pipeline per worker -------------------------------------------------------------

@pytest.mark.parametrize('num_worker', [1, 2])
def test_pipeline_per_actor_builds_the_pipeline_and_its_operators_exactly_num_worker_times(
        tmp_path, num_worker):
    first, second = tmp_path / 'first', tmp_path / 'second'
    p = (pipe.input('x')
         .map('x', 'y', ops.tests_ns.add_one(init_log=str(first)))
         .map('y', 'z', ops.tests_ns.add_one(init_log=str(second)))
         .output('x', 'z'))
    expected = [p(x).to_list() for x in range(200)]
    built_in_driver = init_count(first)
    out = DataCollection.range(200).stream().set_parallel(num_worker=num_worker, backend='ray').map(p)
    assert out.to_list() == expected
    assert init_count(first) - built_in_driver == num_worker
    assert init_count(second) - built_in_driver == num_worker


def _waits(x):
    import time
    start = time.monotonic()
    time.sleep(0.3)   # a node waiting on I/O: a download, a lookup
    return os.getpid(), start, time.monotonic()


def test_a_worker_runs_every_element_of_its_batch_at_once_through_nodes_that_wait():
    # Towhee's default pool in a 2-CPU worker (CPUs + 4 threads, two held per element) ran
    # about 2 of the 16 at a time: a pipeline that waits on I/O waited in turn
    p = pipe.input('x').map('x', 'span', _waits).output('span')
    spans = [rows[0][0] for rows in DataCollection.range(32).set_parallel(2, 'ray').map(p).to_list()]
    most = max(sum(1 for other in spans if other[0] == pid and other[1] < end and start < other[2])
               for pid, start, end in spans)
    assert most >= 8, spans   # at once in one worker (16 a batch)


def test_pipeline_gives_the_same_on_ray_threads_and_serially():
    @towhee.register(name='script_only/triple')
    class Triple:   # exists only here: a fresh worker's registry does not have it
        def __call__(self, x):
            return 3 * x

    p = (pipe.input('x')
         .map('x', 'y', ops.script_only.triple())
         .flat_map('y', 'z', lambda y: range(y % 4))
         .output('x', 'z'))
    expected = [p(x).to_list() for x in range(50)]
    assert DataCollection.range(50).map(p).to_list() == expected
    assert DataCollection.range(50).set_parallel(2, 'thread').map(p).to_list() == expected
    assert DataCollection.range(50).set_parallel(2, 'ray').map(p).to_list() == expected


def test_tuple_elements_are_the_inputs_of_a_pipeline_with_several():
    p = pipe.input('a', 'b').map(('a', 'b'), 'c', lambda a, b: a * b).output('c')
    pairs = [(x, x + 1) for x in range(30)]
    out = DataCollection(pairs).set_parallel(2, 'ray').map(p).to_list()
    assert out == [p(a, b).to_list() for a, b in pairs] == [[[a * b]] for a, b in pairs]


def test_a_failing_element_names_its_position_or_becomes_empty_after_safe():
    p = pipe.input('x').map('x', 'y', lambda x: 10 // (x - 21)).output('y')
    with pytest.raises(RuntimeError, match=r'map\(pipeline\) failed on element #21 \(21\)'):
        DataCollection.range(40).set_parallel(2, 'ray').map(p).to_list()
    out = DataCollection.range(40).safe().set_parallel(2, 'ray').map(p).to_list()
    assert isinstance(out[21], Empty) and out[21].value == 21
    assert out[20] == [[-10]] and out[22] == [[10]]


def test_pipeline_step_uses_the_local_hub_on_workers():
    p = (pipe.input('text').flat_map('text', 'passage', ops.towhee.text_split(max_words=2))
         .output('passage'))
    out = DataCollection(['One. Two three.', 'Four.']).set_parallel(2, 'ray').map(p).to_list()
    assert out == [[['One.'], ['Two three.']], [['Four.']]]


# -- progress ------------------------------------------------------------------------------------

def test_progress_counts_elements_with_total_from_the_length(capsys):
    out = DataCollection.range(30).progress(desc='squares').map(lambda x: x * x).to_list()
    assert out == [x * x for x in range(30)]
    err = capsys.readouterr().err
    assert 'squares: 100%' in err and '30/30' in err


def test_progress_never_materializes_a_stream(capsys):
    dc = DataCollection(itertools.count()).progress(total=None, desc='endless')
    assert dc.is_stream
    assert list(itertools.islice(dc, 5)) == [0, 1, 2, 3, 4]
    dc.close()
    assert 'endless: 5it' in capsys.readouterr().err


def test_progress_on_a_ray_stream(capsys):
    out = (DataCollection.range(100).stream().set_parallel(2, 'ray').map(lambda x: x + 1)
           .progress(total=100, desc='ray').to_list())
    assert out == list(range(1, 101))
    assert 'ray: 100%' in capsys.readouterr().err


def test_progress_counts_the_elements_of_batches_as_they_come_from_ray_with_count_len(capsys):
    # after sorted_batch, flatten() holds an element until its window's earlier ones came:
    # the bar goes before it, over the 4 batches, and counts their 12 elements
    out = (DataCollection.range(12).stream().set_parallel(2, 'ray').sorted_batch(3, key=lambda x: x % 4)
           .map(lambda batch: [x * 10 for x in batch])
           .progress(total=12, desc='tens', unit='number', count=len)
           .flatten().to_list())
    assert out == [x * 10 for x in range(12)]
    err = capsys.readouterr().err
    assert 'tens: 100%' in err and '12/12' in err and 'number' in err
    # not a stream: the total is what its elements count for
    assert DataCollection([[1, 2], [3]]).progress(desc='lists', count=len).flatten().to_list() == [1, 2, 3]
    err = capsys.readouterr().err
    assert 'lists: 100%' in err and '3/3' in err
    # a batch that failed in a safe() chain counts as its input did
    failed = DataCollection([[1, 2], [0]]).safe().map(lambda batch: [10 // x for x in batch])
    out = failed.progress(desc='safe', count=len).to_list()
    assert out[0] == [10, 5] and out[1].value == [0]
    assert '3/3' in capsys.readouterr().err


def test_progress_refuses_a_count_that_is_no_function_and_says_which_element_it_could_not_count():
    with pytest.raises(TypeError, match=r'progress\(count=\.\.\.\) takes a function giving how many units'):
        DataCollection([[1]]).progress(count=3)
    dc = DataCollection([[1, 2], 7]).stream().progress(total=3, count=len)
    with pytest.raises(TypeError, match=r"progress\(count='len'\) could not count 7 \(int\): "
                                        r".*len, for the lists"):
        dc.to_list()


def _omp_threads():
    import os
    return lambda: os.environ.get('OMP_NUM_THREADS')


@pytest.mark.parametrize('options, threads', [({}, '1'), ({'num_cpus': 2}, '2'),
                                              ({'ray_remote_args': {'num_cpus': 2}}, '2')])
def test_ray_op_actor_threads_follow_its_cpus(options, threads):
    # Ray sets OMP_NUM_THREADS (torch's thread count) from the CPUs an actor asks for.
    op = ray_op(_omp_threads, num_worker=1, **options)
    assert op() == threads
    op.close()


def _assigned_resources():
    import ray
    return lambda _=None: ray.get_runtime_context().get_assigned_resources()


def test_ray_op_resources_and_memory_reach_its_actors():
    from tests.support import TEST_RESOURCE
    op = ray_op(_assigned_resources, num_worker=1, resources={TEST_RESOURCE: 1}, memory=64 << 20)
    assert op() == {TEST_RESOURCE: 1.0, 'memory': float(64 << 20)}
    op.close()


def test_ray_op_in_a_time_window_step():
    total = ray_op(functools.partial(lambda: lambda values: sum(values)), num_worker=1)
    p = (pipe.input('rows')
         .flat_map('rows', ('t', 'x'), lambda rows: rows)
         .time_window('x', 'total', 't', 2, 2, total)
         .output('total'))
    rows = [(0, 1), (1000, 2), (2000, 3), (3000, 4), (4000, 5)]   # timestamps in ms, windows of 2 s
    assert p(rows).to_list() == [[3], [7], [5]]
    assert total.stats()[0]['calls'] == 3
    total.close()


def test_a_ray_op_pickled_into_another_process_starts_its_own_actors(python_process, tmp_path):
    import ray
    op = ray_op(ops.tests_ns.where(), num_worker=1)
    assert op(1)[0] == 1
    (tmp_path / 'op.pickle').write_bytes(pickle.dumps(op))
    script = '''
import json, pickle, sys
import ray
op = pickle.loads(open(sys.argv[1], 'rb').read())
x, pid, _ = op(5)
print(json.dumps({'x': x, 'pid': pid, 'stats': op.stats(),
                  'gcs': ray.get_runtime_context().gcs_address}))
op.close()
'''
    result = python_process('-c', script, str(tmp_path / 'op.pickle'))
    assert result.returncode == 0, result.stderr
    other = json.loads(result.stdout.splitlines()[-1])
    ours = op.stats()
    assert other['x'] == 5 and [stat['pid'] for stat in other['stats']] == [other['pid']]
    assert other['pid'] not in {stat['pid'] for stat in ours}
    assert other['gcs'] != ray.get_runtime_context().gcs_address   # its own Ray
    op.close()
