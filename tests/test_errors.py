"""Errors reach the user as the original type, naming the step and the element."""
import gc

import pytest

from tests.ops import BrokenInit  # noqa: F401  (registers tests_ns/broken_init)
from tests.support import eventually
from towhee_ray import DataCollection, Empty

BACKENDS = [None, 'thread', 'ray']


def chain(backend, items):
    dc = DataCollection(items)
    return dc if backend is None else dc.set_parallel(num_worker=2, backend=backend)


@pytest.fixture(params=BACKENDS, ids=lambda b: b or 'serial')
def backend(request):
    if request.param == 'ray':
        request.getfixturevalue('ray_cluster')
    return request.param


def reciprocal(x):
    return 1 / (x - 37)


def test_failure_raises_the_original_type_with_step_and_position(backend):
    with pytest.raises(ZeroDivisionError) as failure:
        chain(backend, range(100)).map(lambda x: x).map(reciprocal).to_list()
    message = str(failure.value)
    assert 'map(reciprocal) failed on element #37 (37): ZeroDivisionError: division by zero' == message
    assert isinstance(failure.value.__cause__, ZeroDivisionError)


def test_failure_in_a_stream_stops_the_chain_cleanly(backend):
    consumed = []
    dc = chain(backend, iter(range(1000))).map(reciprocal).map(lambda x: -x)
    with pytest.raises(ZeroDivisionError, match='element #37'):
        for item in dc:
            consumed.append(item)
    # every element before the failing one arrives, in order, on every backend: the second
    # step finishes the chunks it holds before it raises the first step's error
    assert consumed == [-reciprocal(x) for x in range(37)]
    assert list(dc) == []


def test_a_failure_passes_later_steps_unchanged(backend):
    with pytest.raises(ZeroDivisionError) as failure:
        chain(backend, range(100)).map(reciprocal).map(lambda x: -x).filter(bool).to_list()
    assert str(failure.value).startswith('map(reciprocal) failed on element #37')
    # no later step claims it: the notes name no step at all
    assert not any('while running' in note for note in getattr(failure.value, '__notes__', ()))


def test_worker_traceback_is_kept_as_a_note(backend):
    with pytest.raises(KeyError) as failure:
        chain(backend, [{'a': 1}, {}]).map(lambda row: row['a']).to_list()
    assert "failed on element #1 ({})" in str(failure.value)
    notes = getattr(failure.value.__cause__, '__notes__', [])
    assert any("row['a']" in note for note in notes)


def test_exception_with_a_custom_constructor_keeps_its_identity(backend):
    def decode(data):
        return data.decode('ascii')

    with pytest.raises(UnicodeDecodeError) as failure:
        chain(backend, [b'ok', b'\xff']).map(decode).to_list()
    assert any('map(' in note and 'element #1' in note for note in failure.value.__notes__)


def test_safe_chain_turns_failures_into_empty_and_goes_on(backend):
    out = chain(backend, range(5)).safe().map(lambda x: 10 // (x - 2)).map(lambda x: x + 1).to_list()
    assert out[:2] == [-4, -9] and out[3:] == [11, 6]
    assert isinstance(out[2], Empty)
    assert out[2].value == 2 and isinstance(out[2].exception, ZeroDivisionError)
    assert DataCollection(out).drop_empty().to_list() == [-4, -9, 11, 6]


def test_filter_failure_names_the_filter(backend):
    with pytest.raises(TypeError, match=r'filter\(<lambda>\) failed on element #2'):
        chain(backend, [1, 2, 'x']).filter(lambda x: x > 1).to_list()


@pytest.mark.parametrize('safe', [False, True], ids=['raising', 'safe'])
def test_operator_whose_init_fails_fails_the_step_at_once_naming_it(backend, safe):
    # even after safe(): every element would become Empty, and drop_empty() would give []
    expected = (r'^operator tests-ns/broken-init: building the operator failed: OSError: model file missing: '
                r'/nowhere/model.bin\. safe\(\) does not apply.*misspelt keyword')
    dc = chain(backend, range(10))
    with pytest.raises(OSError, match=expected) as failure:
        (dc.safe() if safe else dc).tests_ns.broken_init().drop_empty().to_list()
    assert 'element #' not in str(failure.value)


def test_a_hub_operator_given_a_misspelt_argument_fails_the_step_after_safe(ray_cluster):
    dc = chain('ray', ['a b c'] * 5).safe()
    expected = r"^operator towhee/text-split: building the operator failed: TypeError: .*unexpected keyword"
    with pytest.raises(TypeError, match=expected + " argument 'max_wrds'"):
        dc.towhee.text_split(max_wrds=3).drop_empty().to_list()


def test_unpicklable_exception_still_reaches_the_user():
    import threading

    class Unpicklable(Exception):
        def __init__(self):
            super().__init__('holds a lock')
            self.lock = threading.Lock()

    def fail(x):
        raise Unpicklable()

    with pytest.raises(RuntimeError, match='Unpicklable: holds a lock'):
        DataCollection([1]).set_parallel(2, 'ray').map(fail).to_list()


@pytest.mark.parametrize('how', ['exhausted', 'closed', 'garbage-collected', 'failed'])
def test_operator_actors_are_released_when_a_stream_ends(alive_actors, how):
    dc = DataCollection.range(10_000).stream().set_parallel(2, 'ray').tests_ns.add_one()
    if how == 'failed':
        dc = dc.map(lambda x: 1 // (x - 50))
    iterator = iter(dc)
    next(iterator)
    assert len(alive_actors()) == 2
    if how == 'exhausted':
        list(iterator)
    elif how == 'closed':
        dc.close()
    elif how == 'garbage-collected':
        del dc, iterator
        gc.collect()
    else:
        with pytest.raises(ZeroDivisionError):
            list(iterator)
    assert eventually(lambda: not alive_actors()), alive_actors()


def test_a_dying_task_worker_raises_a_worker_error_naming_the_step(ray_cluster):
    import os
    from ray.exceptions import WorkerCrashedError
    from towhee_ray import WorkerError

    def die(x):
        if x == 3:
            os._exit(1)
        return x

    dc = DataCollection.range(10).stream().set_parallel(2, 'ray', chunk_size=1,
                                                        ray_remote_args={'max_retries': 0})
    with pytest.raises(WorkerError, match=r'map\(die\): the Ray worker process running element #3 '
                                          r'died on its only try \(max_retries=0\)') as failure:
        dc.map(die).map(lambda x: x + 1).to_list()
    assert isinstance(failure.value.__cause__, WorkerCrashedError)
    steps = [note for note in failure.value.__notes__ if 'while running' in note]
    assert steps == ['while running map(die) on the RayBackend']   # the later step adds none


def test_an_operator_actor_dying_on_every_try_raises_and_releases_the_other_actors(alive_actors):
    from ray.exceptions import RayActorError
    from towhee_ray import WorkerError

    with pytest.raises(WorkerError,
                       match='operator tests-ns/exit-on: .* died on each of its 4 tries') as failure:
        DataCollection.range(100).set_parallel(2, 'ray').tests_ns.exit_on(13).to_list()
    assert isinstance(failure.value.__cause__, RayActorError)
    assert eventually(lambda: not alive_actors()), alive_actors()
