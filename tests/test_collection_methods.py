"""The everyday Towhee 0.9 methods of towhee_ray's DataCollection and 0.9's chain semantics."""
import random
import sys
import threading

import numpy
import pandas
import pytest

import towhee_ray
from towhee_ray import DataCollection, Empty, Entity, dc, glob


def test_entity_is_towhees_class_and_importing_towhee_ray_does_not_import_towhee(python_process):
    from towhee.datacollection.entity import Entity as TowheeEntity
    assert Entity is TowheeEntity
    code = 'import sys, towhee_ray; print("towhee" in sys.modules)'
    out = python_process('-c', code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'False'


# -- chain settings ----------------------------------------------------------------------

def test_set_parallel_as_a_statement_makes_the_following_maps_parallel():
    source = DataCollection.range(200)
    returned = source.set_parallel(4)
    assert returned is source
    threads = set()
    out = source.map(lambda x: threads.add(threading.current_thread().ident) or x).to_list()
    assert out == list(range(200))
    assert threading.current_thread().ident not in threads


def test_chains_already_derived_keep_their_settings():
    source = DataCollection.range(5)
    before = source.map(lambda x: x)
    source.set_parallel(3)
    after = source.map(lambda x: x)
    assert before.get_backend() is None and after.get_num_worker() == 3
    source.set_parallel(2, backend='thread')
    assert after.get_num_worker() == 3


def test_chunk_size_settings():
    parallel = DataCollection.range(50).set_parallel(2)
    assert parallel.get_chunksize() is None
    assert parallel.set_chunksize(7) is parallel and parallel.get_chunksize() == 7
    assert parallel.map(lambda x: x + 1).to_list() == list(range(1, 51))
    with pytest.raises(ValueError, match='call set_parallel'):
        DataCollection.range(3).set_chunksize(2)
    with pytest.raises(ValueError, match='chunk_size must be a positive integer'):
        parallel.set_chunksize(0)


def test_a_towhee_09_method_that_is_not_provided_says_so():
    not_provided = "Towhee 0.9's DataCollection method to_video is not provided by towhee_ray"
    with pytest.raises(AttributeError, match=not_provided):
        DataCollection.range(3).to_video('out.mp4')
    with pytest.raises(AttributeError, match='ray_start is not provided by towhee_ray: use towhee_ray.conn'):
        DataCollection.range(3).ray_start
    assert not hasattr(DataCollection.range(3), 'with_metrics')
    with pytest.raises(towhee_ray.OperatorNotFoundError):     # any other name is still an operator
        DataCollection.range(3).no_such_namespace.no_such_op()


# -- safety ----------------------------------------------------------------------------

def test_fill_empty_and_drop_empty_callback_on_a_parallel_chain():
    chain = DataCollection.range(6).set_parallel(2).safe().map(lambda x: 10 // (x % 3))
    assert chain.fill_empty(None).to_list() == [None, 10, 5, None, 10, 5]
    failed = []
    assert chain.drop_empty(failed.append).to_list() == [10, 5, 10, 5]
    assert [e.value for e in failed] == [0, 3]
    assert all(isinstance(e.exception, ZeroDivisionError) for e in failed)
    with pytest.raises(TypeError, match='drop_empty'):
        chain.drop_empty(callback=3)


def test_conversions_pass_empty_through_and_name_the_failing_row():
    out = dc['a']([1, 0]).safe().runas_op['a', 'b'](lambda x: 1 // x).select['b']().as_raw().to_list()
    assert out[0] == 1 and isinstance(out[1], Empty)
    with pytest.raises(ValueError, match=r"as_entity failed on element #1 \(\(1, 2, 3\)\).*3 parts"):
        DataCollection([(1, 2), (1, 2, 3)]).as_entity(schema=['a', 'b']).to_list()
    with pytest.raises(AttributeError, match=r"select\['x'\] failed on element #0.*no field 'x'"):
        dc['a']([1]).select('x').to_list()


# -- entity conversions on dict rows -----------------------------------------------------

def test_dict_rows_stay_dicts_through_the_conversions():
    rows = DataCollection([{'a': 1, 'b': ''}, {'a': 2, 'b': 'y'}])
    assert rows.rename(a='A').to_list() == [{'A': 1, 'b': ''}, {'A': 2, 'b': 'y'}]
    assert rows.replace(a={1: 10}).to_list() == [{'a': 10, 'b': ''}, {'a': 2, 'b': 'y'}]
    assert rows.fill_entity(c=0).to_list() == [{'a': 1, 'b': '', 'c': 0}, {'a': 2, 'b': 'y', 'c': 0}]
    assert rows.dropna().to_list() == [{'a': 2, 'b': 'y'}]
    assert rows.as_json().to_list() == ['{"a": 1, "b": ""}', '{"a": 2, "b": "y"}']
    assert rows.as_raw().to_list() == [(1, ''), (2, 'y')]
    assert rows.to_list()[0] == {'a': 1, 'b': ''}    # the input rows are unchanged


def test_flatten_without_fields_passes_empty_and_asks_rows_for_their_fields():
    out = DataCollection([[1], 0, [2, 3]]).safe().map(lambda x: x * 1 if x else 1 // x).flatten().to_list()
    assert out[0] == 1 and isinstance(out[1], Empty) and out[2:] == [2, 3]
    with pytest.raises(TypeError, match=r"needs the list field\(s\) to flatten: flatten\('field'\)"):
        dc['a']([[1]]).flatten().to_list()


def test_group_by_and_flatten_on_dicts():
    rows = DataCollection([{'k': 1, 'v': 'a'}, {'k': 1, 'v': 'b'}, {'k': 2, 'v': 'c'}])
    grouped = rows.group_by('k')
    assert grouped.to_list() == [{'k': 1, 'v': ['a', 'b']}, {'k': 2, 'v': ['c']}]
    assert grouped.flatten('v').to_list() == rows.to_list()


def test_flatten_of_fields_of_different_lengths_names_the_row_and_drops_no_value():
    rows = dc['id', 'a', 'b']([(1, ['p1', 'p2'], [0.1, 0.2]), (2, ['p1', 'p2', 'p3'], [0.1, 0.2])])
    expected = (r"flatten\['a', 'b'\] failed on element #1 .*: ValueError: flatten\['a', 'b'\] pairs the "
                r"values of its fields one to one, and they hold different numbers of them \('a' 3, 'b' 2\)")
    with pytest.raises(ValueError, match=expected):
        rows.flatten('a', 'b').to_list()
    out = rows.safe().flatten('a', 'b').to_list()
    assert [(row.id, row.a, row.b) for row in out[:2]] == [(1, 'p1', 0.1), (1, 'p2', 0.2)]
    assert len(out) == 3 and isinstance(out[2], Empty)


# -- everyday methods ------------------------------------------------------------------

def test_head_of_a_stream_is_lazy_and_run_consumes():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i
    assert DataCollection(source()).head(3).to_list() == [0, 1, 2]
    assert len(pulled) <= 4
    seen = []
    assert DataCollection.range(4).stream().set_parallel(2).map(seen.append).run() is None
    assert sorted(seen) == [0, 1, 2, 3]


def test_slicing_concatenation_and_streams():
    unstreamed = DataCollection.range(10)
    assert unstreamed[-1] == 9 and unstreamed[2:5].to_list() == [2, 3, 4] and not unstreamed[2:5].is_stream
    joined = DataCollection(iter([1])) + DataCollection([2, 3])
    assert joined.is_stream and joined.to_list() == [1, 2, 3]
    with pytest.raises(TypeError, match='column subscript goes on a step'):
        unstreamed['a']


@pytest.mark.parametrize('method, args', [
    ('append', (1,)), ('extend', ([1],)), ('insert', (0, 1)), ('pop', ()), ('remove', (1,)),
    ('clear', ()), ('copy', ()), ('count', (1,)), ('reverse', ()), ('sort', ())])
def test_list_methods_refuse_a_stream(method, args):
    with pytest.raises(TypeError, match=f'{method}\\(\\) is only supported for unstreamed'):
        getattr(DataCollection(iter([1, 2])), method)(*args)


def test_list_methods_turn_a_range_into_a_list():
    numbers = DataCollection.range(3).append(3)
    assert numbers.to_list() == [0, 1, 2, 3] and numbers.count(3) == 1


def test_split_train_test_shuffles_reproducibly():
    train, test = DataCollection.range(100).split_train_test(size=[0.75, 0.25], random_state=1)
    assert len(train) == 75 and len(test) == 25
    assert sorted(train.to_list() + test.to_list()) == list(range(100))
    again, _ = DataCollection.range(100).split_train_test(size=[0.75, 0.25], random_state=1)
    assert again.to_list() == train.to_list() != list(range(75))
    assert [len(part) for part in DataCollection.range(10).split_train_test(size=[5, 2])] == [5, 2]
    with pytest.raises(ValueError, match='asks for 9 \\+ 2 elements of 10'):
        DataCollection.range(10).split_train_test(size=[0.9, 0.2])
    with pytest.raises(TypeError, match='unstream'):
        DataCollection(iter([1])).split_train_test()


def test_shuffle_sample_split_batch_rolling_arguments():
    random.seed(3)   # shuffle() draws from the random module, as 0.9's did
    shuffled = DataCollection.range(50).shuffle().to_list()
    assert sorted(shuffled) == list(range(50)) and shuffled != list(range(50))
    assert DataCollection.range(10).sample(0).to_list() == []
    assert len(DataCollection.range(10).sample(1.0)) == 10
    with pytest.raises(ValueError, match='between 0 and 1'):
        DataCollection.range(3).sample(2)
    with pytest.raises(ValueError, match='rolling size must be a positive integer'):
        DataCollection.range(3).rolling(0)
    first, second = DataCollection.range(3).split(2)
    assert first.to_list() == second.to_list() == [0, 1, 2]


# -- sources and sinks -----------------------------------------------------------------

def test_from_glob_is_a_lazy_stream_of_paths_and_glob_makes_rows(tmp_path):
    for name in ['b.txt', 'a.txt', 'c.md']:
        (tmp_path / name).write_text(name)
    paths = DataCollection.from_glob(tmp_path / '*.txt', tmp_path / '*.md')
    assert paths.is_stream
    assert [p.rsplit('/', 1)[-1] for p in paths] == ['a.txt', 'b.txt', 'c.md']
    rows = glob['path'](str(tmp_path / '*.txt')).runas_op['path', 'text'](lambda p: open(p).read())
    assert [row.text for row in rows] == ['a.txt', 'b.txt']
    assert towhee_ray.glob(str(tmp_path / '*.md')).to_list()[0].endswith('c.md')
    with pytest.raises(FileNotFoundError, match='no file matches'):
        DataCollection.from_glob(tmp_path / '*.jpg')


def test_read_files_lazily_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='read_csv: no file'):
        DataCollection.read_csv(tmp_path / 'nope.csv')
    bad = tmp_path / 'bad.json'
    bad.write_text('{"a": 1}\nnot json\n')
    rows = DataCollection.read_json(bad)
    assert rows.is_stream
    with pytest.raises(ValueError, match='line 2: not a JSON object'):
        rows.to_list()


def test_to_csv_of_plain_values(tmp_path):
    path = tmp_path / 'plain.csv'
    DataCollection([(1, 2), (3, 4)]).to_csv(path)
    assert path.read_text(encoding='utf-8-sig').splitlines() == ['1,2', '3,4']


def test_pandas_round_trip_gives_rows_not_column_names():
    frame = pandas.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})
    rows = DataCollection.from_df(frame)
    assert [str(row) for row in rows][0] == "{'a': 1, 'b': 'x'}" and len(rows) == 3
    assert DataCollection.from_df(frame, as_stream=True).is_stream
    assert [str(row) for row in DataCollection(frame)] == [str(row) for row in rows]
    assert rows.runas_op['a', 'c'](lambda a: a * 2).to_df()['c'].tolist() == [2, 4, 6]
    assert rows.to_df().equals(frame)
    assert DataCollection([1, 2]).to_df()[0].tolist() == [1, 2]
    with pytest.raises(TypeError, match='needs a pandas DataFrame'):
        DataCollection.from_df([1, 2])


# -- display ---------------------------------------------------------------------------

def test_show_shortens_long_values_arrays_and_images(capsys):
    from towhee.types import Image
    image = Image(numpy.zeros((32, 48, 3), dtype='uint8'), 'RGB')
    rows = dc['path', 'img', 'vec', 'text']([('a.jpg', image, numpy.arange(512.0), 'w' * 200)])
    rows.show()
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ['path', 'img', 'vec', 'text']
    assert 'Image shape=(32, 48, 3) mode=RGB' in out
    assert '[0.0, 1.0, 2.0, ...] shape=(512,)' in out
    assert 'w' * 57 + '...' in out and 'w' * 61 not in out
    dc([1, 2, 3, 4, 5, 6, 7]).show(limit=2, tablefmt='grid')
    grid = capsys.readouterr().out
    assert '| 1 |' in grid and '| 3 |' not in grid
    with pytest.raises(ValueError, match="supports 'plain', 'grid' and 'html'"):
        dc([1]).show(tablefmt='latex')


def test_a_notebook_shows_an_html_table_and_never_reads_a_stream():
    html = dc['name', 'n']([('<b>', 1)] * 7)._repr_html_()
    assert html.startswith('<table><caption>first 5 of 7 elements</caption><tr><th>name</th><th>n</th></tr>')
    assert html.count('<td>&lt;b&gt;</td>') == 5
    assert DataCollection(iter([1]))._repr_html_() is None


def test_in_a_notebook_show_displays_html(mocker):
    import types
    shown = []
    ipython = types.ModuleType('IPython')
    ipython.get_ipython = lambda: type('ZMQInteractiveShell', (), {})()
    ipython_display = types.ModuleType('IPython.display')
    ipython_display.HTML = lambda data: ('HTML', data)
    ipython_display.display = shown.append
    mocker.patch.dict(sys.modules, {'IPython': ipython, 'IPython.display': ipython_display})
    dc['a']([1]).show()
    assert shown == [('HTML', '<table><tr><th>a</th></tr><tr><td>1</td></tr></table>')]


def test_html_without_ipython_is_printed(capsys, mocker):
    mocker.patch.dict(sys.modules, {'IPython': None, 'IPython.display': None})
    dc['a']([1]).show(tablefmt='html')
    assert capsys.readouterr().out == '<table><tr><th>a</th></tr><tr><td>1</td></tr></table>\n'


def test_dropna_with_its_own_missing_values():
    rows = dc['a', 'b']([(1, 'n/a'), (2, ''), (3, 'x'), (4, None)])
    assert rows.dropna(na={'n/a', None}).as_raw().to_list() == [(2, ''), (3, 'x')]
    assert rows.dropna().as_raw().to_list() == [(1, 'n/a'), (3, 'x')]


def test_show_with_a_header_of_its_own_labels_the_columns_as_in_towhee_09(capsys):
    dc['a', 'b']([(1, 'x'), (2, 'y')]).show(header=['A', 'B'], tablefmt='grid')
    grid = capsys.readouterr().out.splitlines()
    assert grid[1].split() == ['|', 'A', '|', 'B', '|'] and grid[3].split() == ['|', '1', '|', 'x', '|']
    DataCollection(['p', 'q']).show(header=['letter'])     # one column per element otherwise
    assert capsys.readouterr().out.split() == ['letter', 'p', 'q']
