"""Bad input is refused before any work starts, with a message naming what is wrong."""
import re
import threading

import pytest
import towhee

from tests import fault_ops  # noqa: F401  (registers the faults/ operators)
from tests.ops import init_count  # (and registers tests_ns/broken_init)
from tests.support import SESSION_CPUS, TEST_RESOURCE, chain_actors, eventually
from towhee_ray import DataCollection, OperatorNotFoundError, WorkerError

pytestmark = pytest.mark.usefixtures('ray_cluster')


def never_called(x):
    raise AssertionError('no work may start')


def test_an_unpicklable_function_is_refused_naming_it_and_what_it_captures():
    lock = threading.Lock()

    def count_with_lock(x):
        with lock:
            return x

    dc = DataCollection.range(10).stream().set_parallel(2, 'ray')
    with pytest.raises(TypeError) as failure:
        dc.map(count_with_lock)
    message = str(failure.value)
    assert message.startswith("map(count_with_lock) cannot be sent to Ray workers: it captures 'lock' "
                              "(a _thread.lock object), which cannot be pickled")
    assert 'Create such an object inside the function' in message


def test_an_operator_with_an_unpicklable_init_argument_is_refused_naming_it():
    with pytest.raises(TypeError, match=r"operator faults/served-by cannot be sent to Ray workers: "
                                        r"it captures kws\['seconds'\] \(a _thread.lock object\)"):
        DataCollection.range(3).set_parallel(2, 'ray').faults.served_by(seconds=threading.Lock())


@pytest.mark.parametrize('call, error, message', [
    (lambda dc: dc.set_parallel(2, backend='rya'), ValueError, "unknown parallel backend 'rya'; available"),
    (lambda dc: dc.set_parallel(0, backend='ray'), ValueError, 'num_worker must be a positive integer'),
    (lambda dc: dc.pmap(never_called, num_worker=-2, backend='ray'), ValueError, 'got -2'),
    (lambda dc: dc.set_parallel(2, 'ray', num_gpu=1), ValueError,
     r"backend 'ray' does not take the option 'num_gpu' \(did you mean 'num_gpus'\?\)"),
    (lambda dc: dc.pmap(never_called, backend='ray', num_cpu=1), ValueError,
     "'num_cpu' .did you mean 'num_cpus'"),
    (lambda dc: dc.set_parallel(2, 'thread', num_gpus=1), ValueError,
     r"backend 'thread' does not take the option 'num_gpus' \(an option of the 'ray' backend only\)"),
    (lambda dc: dc.mmap([never_called], backend='thread', max_retries=2), ValueError, "'max_retries'"),
    (lambda dc: dc.set_parallel(2, 'ray', num_gpus=-1), ValueError, 'num_gpus must be a non-negative number'),
    (lambda dc: dc.set_parallel(2, 'ray', num_gpus=1, actors_per_gpu=4), ValueError,
     r'give num_gpus= .* or actors_per_gpu= .*, not both'),
    (lambda dc: dc.set_parallel(4, 'ray', actors_per_gpu=0.25), ValueError,
     r'actors_per_gpu must be a positive integer \(how many actors share one GPU\), got 0.25'),
    (lambda dc: dc.set_parallel(2, 'thread', actors_per_gpu=2), ValueError,
     r"'actors_per_gpu' \(an option of the 'ray' backend only\)"),
    (lambda dc: dc.set_parallel(2, 'ray', memory=1.5), ValueError,
     r'memory \(bytes\) must be a non-negative integer'),
    (lambda dc: dc.set_parallel(2, 'ray', resources=['tpu']), ValueError, 'resources must be a dict'),
    (lambda dc: dc.set_parallel(2, 'ray', resources={'GPU': 1}), ValueError, 'ask for GPU with num_gpus='),
    (lambda dc: dc.set_parallel(2, 'ray', max_retries=-3), ValueError, 'max_retries'),
    (lambda dc: dc.set_parallel(2, 'ray').no_such_ns.no_such_op(), OperatorNotFoundError,
     "operator 'no-such-ns/no-such-op' not found"),
])
def test_bad_settings_are_refused_by_the_call_that_makes_them(call, error, message):
    # The call itself raises: no step exists yet, so no work can have started.
    dc = DataCollection.range(10).stream()
    with pytest.raises(error, match=message):
        call(dc)


def test_an_operator_whose_init_fails_raises_once_with_its_name_and_its_actors_go(tmp_path):
    log = tmp_path / 'inits'
    dc = DataCollection.range(100).stream().set_parallel(2, 'ray', chunk_size=10)
    iterator = iter(dc.tests_ns.broken_init(init_log=str(log)))
    with pytest.raises(OSError,
                       match='operator tests-ns/broken-init: building the operator failed') as failure:
        next(iterator)
    assert 'model file missing' in str(failure.value)
    assert list(iterator) == []          # raised once: the stream is over, not one error per chunk
    assert 1 <= init_count(log) <= 2     # each actor tried to build it at most once (no retries)
    assert eventually(lambda: not chain_actors('towhee_ray operator tests-ns/broken-init')), chain_actors()


@pytest.mark.timeout(120)
def test_actors_asking_more_than_the_cluster_has_fail_naming_the_step_and_the_ask():
    # (a hang instead of the error would end in this test's timeout)
    cpus = SESSION_CPUS
    dc = DataCollection.range(10).set_parallel(cpus + 1, 'ray', num_cpus=1)
    with pytest.raises(WorkerError) as failure:
        dc.faults.double().to_list()
    message = str(failure.value)
    assert f'operator faults/double cannot be placed on this Ray cluster: each of its {cpus + 1} actors ' \
           f"asks for {{CPU: 1}}, but the nodes hold only {cpus} of them at once" in message


@pytest.mark.timeout(120)
def test_tasks_asking_for_a_gpu_the_cluster_lacks_fail_naming_the_step(ray_cluster):
    assert 'GPU' not in ray_cluster.cluster_resources()
    expected = (rf'map\(never_called\) cannot be placed on this Ray cluster: each of its tasks asks for '
                rf'\{{CPU: 1, GPU: 1\}}, but no node has them \(the nodes have: CPU {SESSION_CPUS}, '
                rf'memory [\d.]+ GiB, {TEST_RESOURCE} 4\)')
    with pytest.raises(WorkerError, match=expected):
        DataCollection.range(10).pmap(never_called, backend='ray', num_gpus=1).to_list()


def _assigned(_=None):
    import ray
    return ray.get_runtime_context().get_assigned_resources()


@towhee.register(name='tests_reliability/assigned')
def assigned_to_actor(x):
    return _assigned()


def test_named_resources_reach_the_steps_tasks_and_actors():
    options = {'num_cpus': 0.5, 'resources': {TEST_RESOURCE: 1}, 'memory': 32 << 20}
    expected = {'CPU': 0.5, TEST_RESOURCE: 1.0, 'memory': float(32 << 20)}
    tasks = DataCollection.range(4).pmap(_assigned, backend='ray', **options).to_list()
    actors = DataCollection.range(4).set_parallel(2, 'ray', **options).tests_reliability.assigned().to_list()
    assert tasks == actors == [expected] * 4


def test_a_hub_operator_never_runs_pip_install(tmp_path, monkeypatch):
    folder = tmp_path / 'acme' / 'needs_things'
    folder.mkdir(parents=True)
    (folder / 'requirements.txt').write_text('towhee-ray-no-such-package==9.9\n')
    (folder / '__init__.py').write_text('def needs_things():\n    return lambda x: -x\n')
    monkeypatch.setenv('TOWHEE_RAY_HUB', str(tmp_path))
    assert DataCollection([1, 2]).set_parallel(2, 'ray').acme.needs_things().to_list() == [-1, -2]


# -- workers waiting for resources that other work holds --------------------------------

def _hold_then_free_on_warning(holder, caplog, found):
    """Close ``holder`` once the warning is logged (at most 60 s): the waiting work then runs."""
    def close():
        if eventually(lambda: 'for Ray to place them' in caplog.text, 60):
            found.set()
        holder.close()
    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    return thread


def _holder(amount):
    from towhee_ray import ray_op
    holder = ray_op(lambda: abs, num_worker=2, resources={TEST_RESOURCE: amount})
    assert holder(-1) == 1 and len(holder.stats()) == 2   # both actors placed: they hold it all
    return holder


@pytest.mark.timeout(180)
def test_tasks_waiting_for_resources_a_ray_op_holds_are_reported_then_run_once_free(monkeypatch, caplog):
    # Ray waits for held resources without a word: the step seemed to hang
    monkeypatch.setattr('towhee_ray.backends.ray.resources.HELD_WARNING_SECONDS', 1.0)
    holder, found = _holder(2), threading.Event()
    closer = _hold_then_free_on_warning(holder, caplog, found)
    out = DataCollection.range(6).pmap(abs, num_worker=2, backend='ray',
                                       resources={TEST_RESOURCE: 1}).to_list()
    closer.join()
    assert out == list(range(6)) and found.is_set()   # warned, then ran once the holder was closed
    assert re.search(rf'map\(abs\): [12] of its workers ha(s|ve) waited 1 s for Ray to place them: each asks '
                     rf'for \{{CPU: 1, {TEST_RESOURCE}: 1\}}, and the cluster has CPU [\d.]+ of '
                     rf'{SESSION_CPUS}, {TEST_RESOURCE} 0 of 4 free\. Held by actors: towhee_ray '
                     rf'ray_op\(<lambda>\) \(2, {TEST_RESOURCE} 2 each\)\. It goes on waiting until they '
                     rf'are free: close what holds them \(RayOp\.close\(\)', caplog.text), caplog.text


@pytest.mark.timeout(180)
def test_a_ray_op_whose_actors_wait_for_held_resources_is_reported_then_answers(monkeypatch, caplog):
    from towhee_ray import ray_op
    monkeypatch.setattr('towhee_ray.backends.ray.resources.HELD_WARNING_SECONDS', 1.0)
    holder, found = _holder(2), threading.Event()
    waiting = ray_op(lambda: str, num_worker=1, resources={TEST_RESOURCE: 1})
    closer = _hold_then_free_on_warning(holder, caplog, found)
    try:
        assert waiting(5) == '5'
    finally:
        waiting.close()
    closer.join()
    assert found.is_set()
    assert (f'ray_op(<lambda>): 1 of its workers has waited 1 s for Ray to place them: each asks for '
            f'{{{TEST_RESOURCE}: 1}}, and the cluster has {TEST_RESOURCE} 0 of 4 free. Held by actors: '
            f'towhee_ray ray_op(<lambda>) (2, {TEST_RESOURCE} 2 each).') in caplog.text


def _slow_to_build():
    import time
    time.sleep(3)
    return abs


def _slow(x):
    import time
    time.sleep(2.5)
    return x


@pytest.mark.timeout(180)
def test_workers_that_are_only_slow_to_start_or_busy_with_their_own_step_are_not_reported(
        monkeypatch, caplog):
    from towhee_ray import ray_op
    # Ray's state API shows an actor whose process is still starting as it shows one that
    # waits for resources (no pid): 2 s, under the 3 s build, leaves a process that much time
    # to start on a loaded machine (the default is 20 s)
    monkeypatch.setattr('towhee_ray.backends.ray.resources.HELD_WARNING_SECONDS', 2.0)
    slow = ray_op(_slow_to_build, num_worker=2, resources={TEST_RESOURCE: 2})   # placed, building for 3 s
    try:
        assert slow(-2) == 2
    finally:
        slow.close()
    # the step's own running tasks hold every unit its queued tasks wait for; a step looks
    # at its 1 s polls, from the second one on at 1 s: 2 s after its tasks went out
    monkeypatch.setattr('towhee_ray.backends.ray.resources.HELD_WARNING_SECONDS', 1.0)
    out = DataCollection.range(6).pmap(_slow, num_worker=2, backend='ray',
                                       resources={TEST_RESOURCE: 2}).to_list()
    assert out == list(range(6))
    assert 'for Ray to place them' not in caplog.text
