"""The one actor pool under a ``ray`` step's operators and ``ray_op``, on a real local Ray:
a dead actor is replaced, both users retry by the same rule, a load failure is raised at
once naming the step, and the step has one name in errors and in Ray."""
import functools
import logging
import os
import re
import signal
import threading

import pytest
from towhee import ops, pipe

from tests import ops as test_ops  # noqa: F401  (registers tests_ns/broken_init)
from tests import pool_ops
from tests.pool_ops import lines
from tests.support import eventually, gcs_address
from towhee_ray import DataCollection, WorkerError, ray_op, wide
from towhee_ray.backends.ray.backend import RayBackend
from towhee_ray.backends.ray.pool import ActorPool, PoolCall
from towhee_ray.backends.ray.shipping import Payload
from towhee_ray.operators import OperatorSpec

pytestmark = pytest.mark.usefixtures('ray_cluster')


def live_actors(prefix):
    """(Ray's name, the name Ray shows: its __repr__) of this session's live actors whose
    name starts with ``prefix``."""
    from ray.util.state import list_actors
    actors = list_actors(address=gcs_address(), filters=[('state', '=', 'ALIVE')], detail=True, limit=10_000)
    return sorted((actor.name, actor.repr_name) for actor in actors if (actor.name or '').startswith(prefix))


def test_a_dead_actor_is_replaced_and_the_call_it_was_running_runs_again(tmp_path, caplog):
    op = ray_op(functools.partial(pool_ops.ExitOnce, 3, str(tmp_path / 'died')), num_worker=1)
    _, first_pid, first_instance = op(0)
    with caplog.at_level(logging.WARNING):
        x, pid, instance = op(3)   # kills its actor once: runs again on the replacement
    assert (tmp_path / 'died').exists()
    assert x == 3 and pid != first_pid and instance != first_instance
    assert op(4)[1] == pid                                 # the replacement serves the next calls
    assert [stat['pid'] for stat in op.stats()] == [pid]
    assert "ray_op(ExitOnce): actor #1 died running a call with arguments (3,)" in caplog.text
    assert 'replacing it and re-running its calls' in caplog.text
    # its name in Ray says which replacement it is
    assert eventually(lambda: [shown for _, shown in live_actors('towhee_ray ray_op(ExitOnce)')]
                      == ['towhee_ray ray_op(ExitOnce) #1 (replacement 1)'])
    op.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize('max_retries, tries', [(0, 'its only try (max_retries=0)'),
                                                (1, 'each of its 2 tries (max_retries=1)')])
def test_a_ray_step_and_a_ray_op_retry_a_crashing_call_by_the_same_rule(tmp_path, max_retries, tries):
    # The same operator kills its actor on 7, through a ray step and through a ray_op: 7 is
    # tried max_retries + 1 times by each, then fails naming the step and what it ran; the
    # other elements and calls are answered.
    step_tries, op_tries = tmp_path / 'step tries', tmp_path / 'ray_op tries'
    dc = DataCollection.range(10).set_parallel(1, 'ray', chunk_size=1, max_retries=max_retries)
    with pytest.raises(WorkerError) as failure:
        dc.pool_tests.exit_on(7, str(step_tries)).to_list()
    # Always 7, never the element before it, though an actor that dies just after answering
    # 6 can take that answer with it (6 is then the earliest unfinished, and counts that
    # death): a call is failed only for a death where it was its actor's only unfinished
    # call, and every call unfinished on a dead actor runs again alone.
    confirmed = ' and again when run alone, to tell it from the other calls on its worker'
    assert re.match(f'operator pool-tests/exit-on: the Ray worker process running element #7 died on '
                    f'{re.escape(tries)}({re.escape(confirmed)})?: ', str(failure.value)), str(failure.value)
    # 1 + max_retries runs, and one more where 7's first death was in doubt (with 8 waiting
    # behind it, 7 counted it; with 0 retries it runs once more alone to be sure) or was
    # counted against 6 (whose answer it took with it)
    assert max_retries + 1 <= len(lines(step_tries)) <= max_retries + 2

    op = ray_op(ops.pool_tests.exit_on(7, str(op_tries)), num_worker=1, max_retries=max_retries)
    assert [op(x) for x in range(7)] == [x * 10 for x in range(7)]
    with pytest.raises(WorkerError) as failure:
        op(7)
    assert str(failure.value).startswith(
        f'ray_op(pool-tests/exit-on): the Ray worker process running a call with arguments (7,) '
        f'died on {tries}: ')
    assert len(lines(op_tries)) == max_retries + 1   # one call at a time: no answer to lose
    assert op(8) == 80   # the pool lives on: a new actor answers the next call
    op.close()


@pytest.mark.timeout(120)
def test_a_call_that_may_not_have_caused_a_death_runs_once_more_alone_before_it_fails(tmp_path, caplog):
    # Two calls on one actor, max_retries=0, and its process killed from outside while the
    # first runs: the first counts the death, but with the second waiting behind it, it is
    # not certain that it caused it. It runs once more, alone (the second waits in the
    # driver), and answers; the second then runs too. Killed again while a call runs alone,
    # that call fails: its death is certainly its own.
    log = tmp_path / 'runs'
    op = ray_op(functools.partial(pool_ops.Slow, str(log), 1.0), num_worker=1, max_retries=0)
    assert op(0) == 0   # the actor is up
    first_pid = op.stats()[0]['pid']
    answers = {}
    threads = [threading.Thread(target=lambda x=x: answers.update({x: op(x)})) for x in (1, 2)]
    threads[0].start()
    assert eventually(lambda: lines(log)[1:] == [f'1 {first_pid}'])
    threads[1].start()
    assert eventually(lambda: len(op._pool._in_flight) == 2)   # 2 was sent, behind 1
    os.kill(first_pid, signal.SIGKILL)
    for thread in threads:
        thread.join(60)
    assert answers == {1: 10, 2: 20}
    second_pid = op.stats()[0]['pid']
    # 1 ran again on the new actor (2 may go ahead of it there: the death's first notice decides)
    assert sorted(lines(log)[1:]) == sorted([f'1 {first_pid}', f'1 {second_pid}', f'2 {second_pid}'])
    assert 'actor #1 died running a call with arguments (1,)' in caplog.text

    failed = []
    alone = threading.Thread(target=lambda: failed.append(pytest.raises(WorkerError, op, 3)))
    alone.start()
    assert eventually(lambda: lines(log)[-1:] == [f'3 {second_pid}'])
    os.kill(second_pid, signal.SIGKILL)
    alone.join(60)
    assert str(failed[0].value).startswith('ray_op(Slow): the Ray worker process running a call with '
                                           'arguments (3,) died on its only try (max_retries=0): ')
    assert op(4) == 40
    op.close()


@pytest.mark.parametrize('user', ['ray step', 'ray_op'])
def test_an_operator_the_actors_cannot_load_is_raised_at_once_naming_the_step(user, caplog):
    if user == 'ray step':
        backend = RayBackend(num_worker=2)
        with pytest.raises(ModuleNotFoundError) as failure:
            list(backend.map_operator(pool_ops.Unloadable(), range(5)))
        backend.close()
        step = 'operator pool-tests/unloadable'
    else:
        op = ray_op(pool_ops.Unloadable(), num_worker=2)
        with pytest.raises(ModuleNotFoundError) as failure:
            op(1)
        with pytest.raises(ModuleNotFoundError, match=r'^ray_op\(Unloadable\) cannot be loaded'):
            op(2)   # raised again, without asking the actors
        op.close()
        step = 'ray_op(Unloadable)'
    message = str(failure.value)
    assert message.startswith(f"{step} cannot be loaded in a Ray worker: ModuleNotFoundError: No module "
                              f"named 'only_on_the_driver'. Every Ray worker must be able to import")
    assert 'towhee_ray.init(local_packages=[...])' in message
    assert failure.value.name == 'only_on_the_driver'
    assert 'replacing it' not in caplog.text   # not a crash: no actor was replaced


def test_an_operator_whose_init_raises_in_the_actor_fails_the_ray_op_at_once(tmp_path, caplog):
    log = tmp_path / 'inits'
    op = ray_op(ops.tests_ns.broken_init(init_log=str(log)), num_worker=2)
    for _ in range(2):   # the second time without asking the actors
        with pytest.raises(OSError, match=r'^ray_op\(tests-ns/broken-init\): building the operator in its '
                                          r'Ray actor failed: OSError: model file missing'):
            op(1)
    # each of the 2 actors tried once (the second in the background): none was replaced
    assert eventually(lambda: len(lines(log)) == 2) and 'replacing it' not in caplog.text
    op.close()


def test_a_pool_names_its_step_alike_in_errors_and_in_ray():
    spec = OperatorSpec('pool-tests/upper', lambda: str.upper)
    pool = ActorPool(Payload(spec, 'operator pool-tests/upper'), 'operator pool-tests/upper', num_worker=2)
    assert pool.call('call', (('abc',), {}), "a call with arguments ('abc',)") == 'ABC'
    expected = ['towhee_ray operator pool-tests/upper #1', 'towhee_ray operator pool-tests/upper #2']
    assert eventually(lambda: [shown for _, shown in live_actors('towhee_ray operator pool-tests/upper')]
                      == expected)
    assert all(name.startswith(f'{shown} [') for name, shown in live_actors('towhee_ray operator pool-'))
    pool.close()
    with pytest.raises(RuntimeError, match=r'^operator pool-tests/upper was closed; create a new one'):
        pool.call('call', (('abc',), {}), 'a call')
    assert eventually(lambda: not live_actors('towhee_ray operator pool-tests/upper'))


def test_closing_a_pool_returns_once_the_calls_its_actors_were_running_have_ended(tmp_path):
    # a sink writing in the workers must find nothing of the step still running (its part
    # half written) when the job that failed completes the sink
    import ray

    log = tmp_path / 'started'
    spec = OperatorSpec('pool-tests/slow', functools.partial(pool_ops.Slow, str(log), 60))
    pool = ActorPool(Payload(spec, 'operator pool-tests/slow'), 'operator pool-tests/slow', num_worker=1)
    call = PoolCall('call', ((7,), {}), 'a call with arguments (7,)')
    pool.submit(call)
    assert eventually(lambda: lines(log) != [], timeout=60)   # inside its call: 60 s to go
    pool.close()
    ready, _ = ray.wait([call.ref], timeout=0)
    assert ready == [call.ref]   # it ended with its actor, before close returned
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(call.ref)


#: The pool's actor class with a base from a module only the driver can import: Ray's
#: workers then cannot load it, as on nodes whose Python lacks a module towhee_ray imports
#: (towhee, or this towhee_ray); each worker given it exits, as if its call crashed it.
DRIVER_ONLY_ACTOR = '''
import ray
from towhee_ray.backends.ray import pool

import driver_only_base


@ray.remote
class OperatorActor(pool._OperatorActor.__ray_actor_class__, driver_only_base.Base):
    pass
'''


@pytest.mark.parametrize('user', ['ray step', 'ray_op', 'ray_op batching'])
def test_actors_whose_class_the_workers_cannot_load_fail_the_step_at_once(user, tmp_path, monkeypatch, mocker,
                                                                          caplog):
    (tmp_path / 'driver_only_base.py').write_text('class Base:\n    pass\n')
    (tmp_path / 'driver_only_actor.py').write_text(DRIVER_ONLY_ACTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    import driver_only_actor
    mocker.patch('towhee_ray.backends.ray.pool._OperatorActor', driver_only_actor.OperatorActor)
    if user == 'ray step':
        with pytest.raises(ModuleNotFoundError) as raised:
            (DataCollection(['a b c'] * 8).set_parallel(2, backend='ray')
             .towhee.text_split(max_words=2).to_list())
        failure, step = raised.value, 'operator towhee/text-split'
    elif user == 'ray_op':
        op = ray_op(ops.towhee.text_split(max_words=2), num_worker=2)
        with pytest.raises(ModuleNotFoundError) as raised:
            op('a b c')
        with pytest.raises(ModuleNotFoundError, match=r"^ray_op\(towhee/text-split\): the Ray workers"):
            op('d e f')   # raised again, without asking the actors
        op.close()
        failure, step = raised.value, 'ray_op(towhee/text-split)'
    else:   # each batch that died would run again row by row: 64 rows, up to 4 deaths each
        with ray_op(pool_ops.Tagged, num_worker=2, max_batch_size=8) as op:
            p = wide(pipe.input('x').map('x', 'y', op).output('y'), in_flight=32)
            with pytest.raises(RuntimeError) as raised:
                p.batch(list(range(64)))
        failure, step = raised.value.__cause__, 'ray_op(Tagged)'
    assert str(failure).startswith(f"{step}: the Ray workers cannot load towhee_ray's actor: "
                                   f"ModuleNotFoundError: No module named 'driver_only_base'. Where they "
                                   f"run, Python lacks what towhee_ray ")
    assert 'install towhee_ray with its requirements on every node' in str(failure)
    assert failure.name == 'driver_only_base'
    assert 'replacing it' not in caplog.text   # no call was blamed, and no actor replaced
