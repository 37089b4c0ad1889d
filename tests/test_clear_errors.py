"""Common slips get an error that names the step or the call and says what to do, on real
Ray and real Towhee pipelines: ray_op given a function instead of a factory, an operator
raising in an unbatched ray_op, elements of the wrong shape for a step."""
import functools
import sys

import pytest
from towhee import pipe

from towhee_ray import DataCollection, ray_op


class Rejects:
    """An operator that refuses odd numbers."""

    def __call__(self, x):
        if x % 2:
            raise ValueError(f'odd value {x}')
        return x


def test_an_unbatched_ray_op_raises_the_operators_own_error_naming_itself_and_the_call():
    op = ray_op(Rejects, num_worker=1)
    try:
        assert op(2) == 2
        with pytest.raises(ValueError) as failure:
            op(3)
        error = failure.value
        assert type(error) is ValueError and str(error) == 'odd value 3'   # not Ray's RayTaskError
        notes = '\n'.join(error.__notes__)
        assert 'ray_op(Rejects) raised this in its Ray actor on a call with arguments (3,)' in notes
        assert "raise ValueError(f'odd value {x}')" in notes   # the worker's traceback
        assert op(4) == 4   # the actor lives on
        assert [stat['calls'] for stat in op.stats()] == [3]
    finally:
        op.close()


def test_an_unbatched_ray_op_error_reaches_a_towhee_pipe_with_its_message():
    op = ray_op(Rejects, num_worker=1)
    try:
        p = pipe.input('x').map('x', 'y', op).output('y')
        assert p(2).get() == [2]
        with pytest.raises(RuntimeError, match='odd value 3') as failure:
            p(3).get()
        assert 'ray_op(Rejects) raised this' in str(failure.value)
    finally:
        op.close()


def embed(text):
    return [float(len(text))]


class Needs:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k


def test_ray_op_refuses_a_function_that_takes_the_row_pointing_to_a_factory():
    with pytest.raises(TypeError, match=r'ray_op\(embed\): .* embed needs text; .*ray_op\(lambda: embed\)'):
        ray_op(embed, num_worker=1)
    op = ray_op(lambda: embed, num_worker=1)   # what the error says to do
    try:
        assert op('abc') == [3.0]
    finally:
        op.close()


def test_ray_op_refuses_an_operator_class_without_its_init_arguments():
    with pytest.raises(TypeError, match=r'Needs needs k; give its init arguments: '
                                        r'ray_op\(functools.partial\(Needs, k=...\)\)'):
        ray_op(Needs)
    op = ray_op(functools.partial(Needs, k=3), num_worker=1)
    try:
        assert op(2) == 6
    finally:
        op.close()


def test_ray_op_refuses_an_operator_object_pointing_to_its_class():
    with pytest.raises(TypeError, match=r'Rejects needs x; give its class and init arguments instead, '
                                        r'functools.partial\(Rejects, ...\), so that each actor builds'):
        ray_op(Rejects())


def test_ray_op_whose_factory_returns_no_operator_fails_its_first_call_saying_so():
    op = ray_op(lambda k=1: k + 1, num_worker=1)   # a factory with defaults: it builds 2
    try:
        for _ in range(2):   # and again, without asking Ray
            with pytest.raises(TypeError, match=r'ray_op\(<lambda>\): building the operator in its Ray actor '
                                                r'failed: TypeError: the factory returned 2 \(int\), which '
                                                r'cannot be called'):
                op(1)
    finally:
        op.close()


@pytest.mark.parametrize('backend', [None, 'ray'])
def test_a_pipeline_of_two_inputs_given_one_value_per_element_says_to_give_tuples(backend):
    p = pipe.input('a', 'b').map(('a', 'b'), 'c', lambda a, b: a + b).output('c')
    dc = DataCollection([(1, 2), 3])
    if backend:
        dc = dc.set_parallel(num_worker=1, backend=backend)
    with pytest.raises(TypeError, match=r'map\(pipeline\) failed on element #1 \(3\): TypeError: this '
                                        r'pipeline takes 2 inputs \(a, b\): give each element as a tuple '
                                        r'of as many values, got 3 \(int\)'):
        dc.map(p).to_list()
    assert DataCollection([(1, 2), (3, 4)]).map(p).to_list() == [[[3]], [[7]]]


def test_a_sorted_batch_key_that_gives_no_number_names_the_element():
    with pytest.raises(TypeError, match=r"sorted_batch\(key=<lambda>\): element #1 costs None \(NoneType\), "
                                        r"which cannot be ordered .* The element: 'bb'"):
        DataCollection(['a', 'bb', 'c']).sorted_batch(2, key=lambda text: len(text) if text != 'bb' else None
                                                      ).to_list()


def test_flatten_of_elements_that_hold_nothing_names_the_first():
    with pytest.raises(TypeError, match=r'flatten\(\): element #1 is 7 \(int\), which holds no elements'):
        DataCollection([[1, 2], 7, [3]]).flatten().to_list()


def test_a_data_collection_of_one_value_says_to_give_an_iterable():
    with pytest.raises(TypeError, match=r'DataCollection takes the elements as an iterable .* got 5 \(int\); '
                                        r'for one element, DataCollection\(\[element\]\)'):
        DataCollection(5)
    assert DataCollection('ab').to_list() == ['a', 'b']   # a string is an iterable of characters


def test_a_missing_field_error_names_the_step_in_its_message():
    with pytest.raises(KeyError) as failure:
        DataCollection([{'a': 1}]).runas_op['b', 'c'](func=abs).to_list()
    assert failure.value.args[0] == ("runas_op['b' -> 'c'](abs) failed on element #0 ({'a': 1}): KeyError: "
                                     "the row has no field 'b' (its fields: 'a')")


@pytest.mark.parametrize('backend', [None, 'ray'])
def test_map_with_fields_reads_and_writes_them_as_runas_op_does(backend):
    dc = DataCollection['a', 'b']([(1, 2), (3, 4)])
    if backend:
        dc = dc.set_parallel(num_worker=2, backend=backend)
    assert dc.map['a', 'c'](lambda a: -a).as_raw().to_list() == [(1, 2, -1), (3, 4, -3)]
    assert dc.map[('a', 'b'), 'c'](lambda a, b: a * b).select['c']().as_raw().to_list() == [2, 12]
    with pytest.raises(TypeError, match=r"map\['a', 'c'\]\(fn\) takes one function, got 2"):
        dc.map['a', 'c'](abs, abs)


def test_an_operator_found_nowhere_through_towhee_ops_is_not_downloaded_but_named():
    from towhee import ops
    import towhee_ray
    with pytest.raises(RuntimeError, match=r"operator 'sentence-embedding/minilmm' not found") as failure:
        ops.sentence_embedding.minilmm()('hello')
    assert isinstance(failure.value.__cause__, towhee_ray.OperatorNotFoundError)
    assert 'towhee_ray never downloads operators' in str(failure.value)
    # each folder looked at once: 'minilmm' has no '-' to spell two ways
    looked_at = [line for line in str(failure.value).splitlines() if line.startswith('  ')]
    assert len(looked_at) == len(set(looked_at))


@pytest.mark.parametrize('make', [
    lambda: DataCollection([1]).set_parallel(1, backend='ray', num_gpus=1.5),
    lambda: ray_op(Rejects, num_worker=1, num_gpus=1.5),
])
def test_a_fraction_of_more_than_one_gpu_is_refused_when_asked(make):
    with pytest.raises(ValueError, match=r'num_gpus=1.5: Ray gives an actor a share of one GPU \(at most 1\) '
                                         r'or whole GPUs, not 1.5; give num_gpus=1 or 2'):
        make()


def test_local_packages_takes_one_package_alone_or_an_imported_modules_name():
    import towhee_ray
    from towhee_ray.cluster import build_runtime_env
    folder = build_runtime_env(False, local_packages=[towhee_ray])['py_modules']
    assert build_runtime_env(False, local_packages=towhee_ray)['py_modules'] == folder
    assert build_runtime_env(False, local_packages='towhee_ray')['py_modules'] == folder
    with pytest.raises(ValueError, match=r"local_packages: 'no_such_module' is neither an imported module"):
        build_runtime_env(False, local_packages='no_such_module')


def _exits_on_five(x):
    if x == 5:
        sys.exit('bad record 5')   # how many legacy scripts stop on bad input
    return x


@pytest.mark.usefixtures('ray_cluster')
@pytest.mark.parametrize('backend', ['thread', 'ray'])
def test_sys_exit_in_an_elements_code_fails_that_element_on_every_backend(backend):
    # on Ray, SystemExit ended the worker's process: the chunk ran 4 times and failed as a crash
    expected = r'map\(_exits_on_five\) failed on element #5 \(5\): SystemExit: bad record 5'
    with pytest.raises(SystemExit, match=expected):
        DataCollection(range(10)).set_parallel(2, backend=backend).map(_exits_on_five).to_list()
    with pytest.raises(SystemExit) as exited:   # an exit status is kept
        (DataCollection(range(10)).set_parallel(2, backend=backend)
         .map(lambda x: sys.exit(3) if x == 5 else x).to_list())
    assert exited.value.code == 3 and 'failed on element #5 (5)' in exited.value.__notes__[-1]
    out = DataCollection(range(10)).safe().set_parallel(2, backend=backend).map(_exits_on_five).to_list()
    assert out[:5] == [0, 1, 2, 3, 4] and out[6:] == [6, 7, 8, 9] and out[5].value == 5
