"""Column style (Towhee 0.9's ``['in', 'out']``) with the same results on every backend;
on ``ray`` column-style operator steps are actors and column-style callables tasks."""
import os
import re
from pathlib import Path

import pytest

from tests.ops import Where  # noqa: F401  (registers tests_ns/where and tests_ns/add_one)
from towhee_ray import DataCollection, Empty, Entity, dc

BACKENDS = [None, 'thread', 'ray']


@pytest.fixture(params=BACKENDS, ids=lambda b: b or 'serial')
def backend(request):
    if request.param == 'ray':
        request.getfixturevalue('ray_cluster')
    return request.param


def rows(backend, names, values):
    collection = DataCollection[names](values)
    return collection if backend is None else collection.set_parallel(2, backend=backend)


def fields(collection):
    return [dict(vars(row)) for row in collection]


def test_operator_reads_one_field_and_writes_another_keeping_the_others(backend):
    out = rows(backend, ('a', 'tag'), [(i, 'x') for i in range(10)]).tests_ns.add_one['a', 'b']()
    assert fields(out) == [{'a': i, 'tag': 'x', 'b': i + 1} for i in range(10)]
    assert all(isinstance(row, Entity) for row in out)


def test_runas_op_with_func_keyword_or_positional(backend):
    source = rows(backend, 'a', range(5))
    by_keyword = source.runas_op['a', 'b'](func=lambda x: x * 10)
    positional = source.runas_op['a', 'b'](lambda x: x * 10)
    assert fields(by_keyword) == fields(positional) == [{'a': i, 'b': i * 10} for i in range(5)]


def test_several_inputs_and_several_outputs(backend):
    source = rows(backend, ('a', 'b'), [(1, 2), (3, 4)])
    summed = source.runas_op[('a', 'b'), 'c'](lambda a, b: a + b)
    assert fields(summed) == [{'a': 1, 'b': 2, 'c': 3}, {'a': 3, 'b': 4, 'c': 7}]
    split = summed.runas_op['c', ('half', 'rest')](lambda c: (c // 2, c % 2))
    assert [(r.half, r.rest) for r in split] == [(1, 1), (3, 1)]


def test_filter_flatten_select_on_fields(backend):
    source = rows(backend, ('name', 'words'), [('a', ['x', 'y']), ('b', []), ('c', ['z'])])
    kept = source.filter['words'](lambda words: len(words) > 0)
    assert [r.name for r in kept] == ['a', 'c']
    flat = kept.flatten('words')
    assert fields(flat) == [{'name': 'a', 'words': 'x'}, {'name': 'a', 'words': 'y'},
                            {'name': 'c', 'words': 'z'}]
    assert flat.select['words']().as_raw().to_list() == ['x', 'y', 'z']
    assert flat.select('name', 'words').as_raw().to_list() == [('a', 'x'), ('a', 'y'), ('c', 'z')]


def test_dict_rows_stay_dicts(backend):
    source = DataCollection([{'a': 1}, {'a': 2}])
    source = source if backend is None else source.set_parallel(2, backend=backend)
    out = source.runas_op['a', 'b'](lambda x: -x).tests_ns.add_one['b', 'c']()
    assert out.to_list() == [{'a': 1, 'b': -1, 'c': 0}, {'a': 2, 'b': -2, 'c': -1}]
    assert out.select['c']().to_list() == [{'c': 0}, {'c': -1}]


def test_the_input_rows_are_not_changed(backend):
    source = rows(backend, 'a', range(3))
    source.runas_op['a', 'b'](lambda x: x).to_list()
    assert fields(source) == [{'a': 0}, {'a': 1}, {'a': 2}]


def test_a_missing_field_names_it_with_the_step_and_position(backend):
    source = rows(backend, 'a', range(3))
    with pytest.raises(AttributeError) as failure:
        source.runas_op['z', 'b'](lambda x: x).to_list()
    message = str(failure.value)
    assert "runas_op['z' -> 'b'](<lambda>) failed on element #0" in message
    assert "no field 'z' (its fields: 'a')" in message
    with pytest.raises(KeyError, match="operator tests-ns/add-one\\['q' -> 'b'\\] failed on element #0"):
        DataCollection([{'a': 1}]).tests_ns.add_one['q', 'b']().to_list()


def test_column_style_on_rows_that_are_not_entities_names_the_row_type(backend):
    source = DataCollection([1, 2])
    source = source if backend is None else source.set_parallel(2, backend=backend)
    with pytest.raises(TypeError) as failure:
        source.tests_ns.add_one['a', 'b']().to_list()
    assert 'failed on element #0' in str(failure.value)
    assert 'Entity or dict rows, got a row of type int (1)' in str(failure.value)
    assert "DataCollection['name'](...)" in str(failure.value)


def test_a_wrong_number_of_outputs_is_explained(backend):
    with pytest.raises(ValueError, match='returned 3 values for the 2 output fields'):
        rows(backend, 'a', [1]).runas_op['a', ('b', 'c')](lambda x: (x, x, x)).to_list()


def test_safe_chain_keeps_failing_rows_as_empty(backend):
    out = rows(backend, 'a', [1, 0, 2]).safe().runas_op['a', 'b'](lambda x: 1 // x)
    values = out.to_list()
    assert isinstance(values[1], Empty) and vars(values[1].value) == {'a': 0}
    assert [r.b for r in out.drop_empty()] == [1, 0]


def test_bad_subscripts_are_refused_at_once():
    with pytest.raises(TypeError, match='field name or a tuple of field names'):
        dc['a'](range(2)).runas_op['a', 3](lambda x: x)
    with pytest.raises(TypeError, match="column subscript is \\['in'\\] or \\['in', 'out'\\]"):
        dc['a'](range(2)).runas_op['a', 'b', 'c'](lambda x: x)
    with pytest.raises(TypeError, match='runas_op takes one function'):
        dc['a'](range(2)).runas_op['a', 'b']()


def test_on_ray_a_column_operator_runs_as_actors_and_a_callable_as_tasks(ray_cluster, mocker):
    from towhee_ray.backends.ray.backend import RayBackend
    map_operator = mocker.spy(RayBackend, 'map_operator')
    map_tasks = mocker.spy(RayBackend, 'map')
    source = dc['x'](range(40)).set_parallel(2, backend='ray')
    served = source.tests_ns.where['x', 'where']().to_list()
    assert map_operator.call_count == 1 and map_tasks.call_count == 0
    assert [row.where[0] for row in served] == list(range(40))
    assert len({row.where[2] for row in served}) <= 2            # one operator per actor
    assert all(row.where[1] != os.getpid() for row in served)    # built in Ray workers
    pids = source.runas_op['x', 'pid'](lambda x: os.getpid()).to_list()
    assert map_tasks.call_count == 1 and map_operator.call_count == 1
    assert all(row.pid != os.getpid() for row in pids)


def test_the_manuals_column_style_example_runs_on_ray_as_shown(tmp_path, python_process):
    # A fresh process in the docs' folder, as a user runs it: the Ray it starts has the
    # same working directory, where the workers resolve the relative paths.
    page = (Path(__file__).resolve().parent.parent / 'docs' / 'datacollection.md').read_text()
    section = page[page.index('## Column style'):]
    blocks = re.findall(r'```(\w*)\n(.*?)```', section, re.S)
    code = next(body for lang, body in blocks if lang == 'python' and 'demo/word_count' in body)
    shown = next(body for lang, body in blocks if lang in ('', 'text') and 'words' in body)
    docs = tmp_path / 'docs'
    docs.mkdir()
    (docs / 'install.txt').write_text(' '.join(f'w{i}' for i in range(101)) + '.')
    (docs / 'usage.txt').write_text(' '.join(f'u{i}' for i in range(64)) + '. Short one.')
    result = python_process('-c', code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown
