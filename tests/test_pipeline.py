"""Towhee pipelines on Ray: ray_op inside a pipe, a whole pipeline per actor, progress."""
import copy
import functools
import gc
import itertools
import pickle

import pytest
import towhee
from towhee import ops, pipe

from tests.ops import Where, init_count
from towhee_ray import DataCollection, Empty, RayOp, ray_op

pytestmark = pytest.mark.usefixtures('ray_cluster')


def assert_dead(actors):
    import ray
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.stats.remote(), timeout=60)


# -- ray_op --------------------------------------------------------------------------------

def test_ray_op_spreads_batch_calls_over_its_actors_and_builds_each_operator_once(tmp_path):
    log = tmp_path / 'inits'
    add_one = ray_op(ops.tests_ns.add_one(init_log=str(log)), num_worker=2)
    where = ray_op(functools.partial(Where), num_worker=2)   # a user module's class, by factory
    p = (pipe.input('x').map('x', 'y', add_one).map('y', ('z', 'pid', 'instance'), where)
         .output('z', 'pid', 'instance'))
    for _ in range(3):   # the pipeline called many times: its operators load once
        rows = [queue.get() for queue in p.batch(list(range(60)))]
        assert [row[0] for row in rows] == list(range(1, 61))
    assert init_count(log) == 2
    assert len({row[2] for row in rows}) == 2           # both actors served calls
    assert sorted(stat['calls'] > 0 for stat in where.stats()) == [True, True]
    add_one.close()
    where.close()


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


def test_ray_op_passes_the_operators_error_to_the_pipeline():
    def fail(x):
        raise ValueError(f'bad element {x}')
    op = ray_op(functools.partial(lambda: fail))
    with pytest.raises(RuntimeError, match='bad element 7'):
        pipe.input('x').map('x', 'y', op).output('y')(7)
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
    with pytest.raises(ValueError, match='num_gpus must be a non-negative number'):
        ray_op(ops.tests_ns.add_one(), num_gpus=-1)
    with pytest.raises(TypeError, match='num_gpu'):
        ray_op(ops.tests_ns.add_one(), num_gpu=1)


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
