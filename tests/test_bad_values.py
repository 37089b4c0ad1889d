"""Values that cannot travel between the driver and its Ray workers: exceptions whose class
pickle cannot rebuild, elements and outputs that cannot be pickled. Each gets a clear error
naming the step and the element (or an Empty after safe()), and loses no earlier output."""
import functools
import os
import re
import threading

import pytest
import towhee

from tests.ops import AddOne  # noqa: F401  (registers tests_ns/add_one)
from towhee_ray import DataCollection, Empty, ray_op


class CodedError(Exception):
    """Its __init__ takes other arguments than its message: pickle alone cannot rebuild it."""

    def __init__(self, code, detail):
        super().__init__(f'code {code}: {detail}')
        self.code = code


def fails_on_two(x):
    if x == 2:
        raise CodedError(404, 'not found')
    return x


def chain(backend, items, **options):
    dc = DataCollection(items)
    return dc if backend is None else dc.set_parallel(num_worker=2, backend=backend, **options)


@pytest.mark.parametrize('backend', [None, 'thread', 'ray'])
def test_an_exception_whose_init_takes_other_arguments_keeps_its_type_and_message(backend, request):
    if backend == 'ray':
        request.getfixturevalue('ray_cluster')
    with pytest.raises(CodedError, match='code 404: not found') as failure:
        chain(backend, [1, 2, 3]).map(fails_on_two).to_list()
    assert any('map(fails_on_two) failed on element #1 (2)' in note for note in failure.value.__notes__)
    assert not any('cannot be loaded' in note for note in failure.value.__notes__)
    out = chain(backend, [1, 2, 3]).safe().map(fails_on_two).to_list()
    assert out[0] == 1 and out[2] == 3
    assert isinstance(out[1], Empty) and isinstance(out[1].exception, CodedError)
    assert str(out[1].exception) == 'code 404: not found' and out[1].exception.code == 404


def test_a_milvus_exception_keeps_its_code_and_message():
    from pymilvus import exceptions   # installed by make test (the milvus extra)

    def insert(x):
        if x == 2:
            raise exceptions.MilvusException(1100, 'collection not found')
        return x

    with pytest.raises(exceptions.MilvusException) as failure:
        chain('ray', [1, 2, 3]).map(insert).to_list()
    assert failure.value.code == 1100 and failure.value.message == 'collection not found'
    assert any('map(insert) failed on element #1 (2)' in note for note in failure.value.__notes__)


def test_ray_op_passes_an_exception_whose_init_takes_other_arguments():
    op = ray_op(functools.partial(lambda: fails_on_two))
    try:
        assert op(1) == 1
        with pytest.raises(CodedError, match='code 404: not found') as failure:
            op(2)
        assert any('a call with arguments (2,)' in note for note in failure.value.__notes__)
    finally:
        op.close()


class RebuiltOnlyInWorkers:
    """Unpickles in the workers but not in the driver: a result whose class only the
    workers can import, say."""

    def __reduce__(self):
        return _rebuild_in_workers, ()


def _rebuild_in_workers():
    # the workers' environment is the raylet's, from before the test set the variable
    if os.environ.get('TOWHEE_RAY_TEST_DRIVER') == str(os.getpid()):
        raise ValueError('cannot be rebuilt in the driver')
    return RebuiltOnlyInWorkers()


def test_a_result_the_driver_cannot_unpickle_says_so_not_that_the_step_cannot_be_loaded(monkeypatch):
    monkeypatch.setenv('TOWHEE_RAY_TEST_DRIVER', str(os.getpid()))
    with pytest.raises(ValueError, match='came back from their Ray worker but cannot be unpickled in this '
                                         'process: ValueError: cannot be rebuilt') as failure:
        DataCollection([1]).set_parallel(2, 'ray').map(lambda x: RebuiltOnlyInWorkers()).to_list()
    assert 'cannot be loaded' not in str(failure.value)


def _with_a_lock_at(position, count):
    lock = threading.Lock()
    for index in range(count):
        yield lock if index == position else index


@pytest.mark.parametrize('step', ['function', 'operator'])
def test_an_element_that_cannot_be_pickled_fails_after_every_output_before_it(step):
    dc = DataCollection(_with_a_lock_at(29, 60)).set_parallel(2, 'ray', chunk_size=4)
    dc = dc.map(lambda x: x) if step == 'function' else dc.tests_ns.add_one()
    got = []
    expected = (r'failed on element #29 \(<unlocked _thread.lock.*element #29 cannot be pickled, so it '
                r'cannot be sent to a Ray worker.*backend=\'thread\'')
    with pytest.raises(TypeError, match=expected):
        for value in dc:
            got.append(value)
    assert got == [x if step == 'function' else x + 1 for x in range(29)]


def test_after_safe_an_element_that_cannot_be_pickled_becomes_empty_and_the_rest_go_on():
    out = (DataCollection(_with_a_lock_at(29, 60)).safe().set_parallel(2, 'ray', chunk_size=4)
           .map(lambda x: x).tests_ns.add_one().to_list())   # the Empty passes the second step too
    assert [x for x in out if not isinstance(x, Empty)] == [x + 1 for x in range(60) if x != 29]
    assert isinstance(out[29], Empty) and 'element #29 cannot be pickled' in str(out[29].exception)


def test_ray_op_refuses_an_argument_that_cannot_be_pickled_naming_it():
    op = ray_op(functools.partial(lambda: abs))
    try:
        expected = (r'ray_op\(<lambda>\): a call with arguments \(<unlocked _thread.lock.*\) cannot be '
                    r'pickled, so it cannot be sent to a Ray actor')
        with pytest.raises(TypeError, match=expected):
            op(threading.Lock())
        assert op(-3) == 3   # the pool goes on
    finally:
        op.close()


def lock_for_two(x):
    return threading.Lock() if x == 2 else x


@towhee.register(name='tests_bad/lock_for_two')
class LockForTwo:
    def __call__(self, x):
        return lock_for_two(x)


@pytest.mark.parametrize('step', ['map(lock_for_two)', 'operator tests-bad/lock-for-two'])
def test_an_output_that_cannot_be_pickled_fails_its_element(step):
    def on(dc):
        dc = dc.set_parallel(2, 'ray')
        return dc.map(lock_for_two) if step.startswith('map') else dc.tests_bad.lock_for_two()

    expected = (rf'{re.escape(step)} failed on element #1 \(2\): TypeError: it returned a lock, which cannot '
                rf'travel back from its Ray worker')
    with pytest.raises(TypeError, match=expected):
        on(DataCollection([1, 2, 3])).to_list()
    out = on(DataCollection([1, 2, 3]).safe()).to_list()
    assert out[0] == 1 and out[2] == 3 and isinstance(out[1], Empty) and out[1].value == 2


def test_a_generator_returned_by_map_says_to_return_a_list_and_flatten_it():
    expected = (r'map\(<lambda>\) failed on element #0 \(1\): TypeError: it returned a generator, which '
                r'cannot travel back .* Return a list instead \(list\(...\)\), and flatten\(\) it')
    with pytest.raises(TypeError, match=expected):
        DataCollection([1, 2]).set_parallel(2, 'ray').map(lambda x: (i for i in range(x))).to_list()
