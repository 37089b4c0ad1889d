"""Entity rows and file sources: input that would lose a value or a row silently is an
error that says which and what to do (from an audit of the 0.9 row methods)."""

import numpy as np
import pandas
import pyarrow
import pyarrow.parquet
import pytest

import towhee_ray
from towhee_ray import DataCollection, Entity


def fields(collection):
    return [dict(row.__dict__) if isinstance(row, Entity) else row for row in collection]


def test_combine_is_called_on_the_class_and_refuses_fields_in_common():
    a, b = towhee_ray.range['a'](1, 3), towhee_ray.range['b'](5, 7)
    assert fields(DataCollection.combine(a, b)) == [{'a': 1, 'b': 5}, {'a': 2, 'b': 6}]
    with pytest.raises(TypeError, match=r'combine is called on the class with every collection: '
                                        r'DataCollection.combine\(a, b\), not a.combine\(b\)'):
        a.combine(b)
    # as long as the shortest, as zip (and Towhee 0.9's own examples) have it
    assert len(DataCollection.combine(towhee_ray.range['a'](1, 4),
                                      towhee_ray.range['b'](5, 7)).to_list()) == 2
    with pytest.raises(ValueError, match=r"row #0 of collection #1 has a field 'a', as an earlier "
                                         r"collection does"):
        DataCollection.combine(towhee_ray.range['a'](1, 2), towhee_ray.range['a'](5, 6)).to_list()


def test_as_entity_takes_one_name_as_one_field_and_refuses_what_it_would_split():
    assert fields(DataCollection(['abcd']).as_entity(schema='text')) == [{'text': 'abcd'}]
    assert fields(DataCollection([1]).as_entity(schema='num')) == [{'num': 1}]
    with pytest.raises(ValueError, match=r"the field 'a' is named twice"):
        DataCollection([(1, 2)]).as_entity(schema=['a', 'a'])
    with pytest.raises(ValueError, match=r"the field 'a' is named twice"):
        DataCollection['a', 'a']([(1, 2)])
    with pytest.raises(TypeError, match=r'needs the field names in order .* got a set'):
        DataCollection([(1, 2)]).as_entity(schema={'a', 'b'})
    with pytest.raises(TypeError, match=r"2 fields \['a', 'b'\] take a tuple of 2 values, got 'xy' \(str\), "
                                        r"which would be split into its characters"):
        DataCollection(['xy']).as_entity(schema=['a', 'b']).to_list()
    with pytest.raises(TypeError, match=r'which would be split into its keys'):
        DataCollection([{'p': 1, 'q': 2}]).as_entity(schema=['a', 'b']).to_list()


def test_rename_refuses_to_overwrite_a_field_and_swaps_work():
    rows = DataCollection['a', 'b']([(1, 2)])
    with pytest.raises(ValueError, match=r"the row already has a field 'b', which the rename would replace"):
        rows.rename(a='b').to_list()
    with pytest.raises(ValueError, match=r"two fields would be named 'c'"):
        rows.rename(a='c', b='c')
    with pytest.raises(TypeError, match=r"rename takes the old and new names as a dict"):
        rows.rename('a')
    assert fields(rows.rename(a='b', b='a')) == [{'b': 1, 'a': 2}]


def test_dropna_takes_one_value_counts_nan_and_passes_vectors():
    assert DataCollection['a'](['N', '', 'x', 'NA']).dropna(na='NA').as_raw().to_list() == ['N', '', 'x']
    frame = pandas.DataFrame({'a': [1.0, None, 3.0]})
    assert DataCollection(frame).dropna().as_raw().to_list() == [1.0, 3.0]
    rows = DataCollection['v', 'n']([(np.zeros(3), 1), (np.ones(2), None)]).dropna().to_list()
    assert len(rows) == 1 and rows[0].n == 1


def test_a_data_frame_is_read_as_many_times_as_from_df_allows():
    collection = DataCollection(pandas.DataFrame({'a': [1, 2]}))
    assert not collection.is_stream
    assert collection.as_raw().to_list() == [1, 2] and collection.as_raw().to_list() == [1, 2]


def test_read_csv_refuses_ragged_lines_and_repeated_columns_naming_the_file_and_line(tmp_path):
    ragged = tmp_path / 'ragged.csv'
    ragged.write_text('a,b\n1,2\n\n3\n')
    with pytest.raises(ValueError, match=r'ragged.csv, line 4: 1 values for the 2 columns of the header'):
        towhee_ray.read_csv(ragged).to_list()
    repeated = tmp_path / 'repeated.csv'
    repeated.write_text('a,a\n1,2\n')
    with pytest.raises(ValueError, match=r"repeated.csv names the column 'a' twice"):
        towhee_ray.read_csv(repeated).to_list()
    good = tmp_path / 'good.csv'
    good.write_text('a,b\n1,2\n\n3,"4,5"\n')
    assert fields(towhee_ray.read_csv(good)) == [{'a': '1', 'b': '2'}, {'a': '3', 'b': '4,5'}]


def test_read_csv_and_read_json_name_the_file_for_bad_text_and_resolve_paths_now(tmp_path, monkeypatch):
    latin = tmp_path / 'latin.csv'
    latin.write_bytes('a\ncaf\xe9\n'.encode('latin-1'))
    with pytest.raises(ValueError, match=r"read_csv: .*latin.csv is not utf-8-sig text "
                                         r".* encoding='latin-1'"):
        towhee_ray.read_csv(latin).to_list()
    assert fields(towhee_ray.read_csv(latin, encoding='latin-1')) == [{'a': 'café'}]
    with pytest.raises(LookupError, match=r"read_csv: unknown encoding 'utf9'"):
        towhee_ray.read_csv(latin, encoding='utf9')
    with pytest.raises(IsADirectoryError, match=r'read_json: .* is a folder; give a file'):
        towhee_ray.read_json(tmp_path)
    lines = tmp_path / 'rows.json'
    lines.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r'rows.json, line 2: a JSON list, not an object'):
        towhee_ray.read_json(lines).to_list()
    monkeypatch.chdir(tmp_path)
    stream = towhee_ray.read_csv('latin.csv', encoding='latin-1')
    monkeypatch.chdir('/')
    assert len(stream.to_list()) == 1   # the file of the directory it was called in


def test_select_replace_combine_and_indexing_say_what_they_take():
    rows = DataCollection['a', 'b']([(1, 2), (3, 4)])
    assert rows.select(['a', 'b']).as_raw().to_list() == [(1, 2), (3, 4)]   # as pandas takes it
    assert rows.select(('b',)).as_raw().to_list() == [2, 4]
    with pytest.raises(TypeError, match=r'replace\(a=...\) takes a dict from old value to new value, e.g. '
                                        r'replace\(a=\{0: 10, 1: 11\}\); got \[1, 2\] \(list\)'):
        rows.replace(a=[1, 2])
    assert rows.replace(a={1: 10}).as_raw().to_list() == [(10, 2), (3, 4)]
    with pytest.raises(TypeError, match=r'combine joins the fields of entity rows: row #0 of collection #0 '
                                        r'is 1 \(int\); make entity rows first'):
        DataCollection.combine([1], [2]).to_list()
    with pytest.raises(IndexError, match=r'dc\[10\]: the collection has 2 elements \(indices 0 to 1, or -1 '
                                         r'to -2 from the end\)'):
        rows[10]
    with pytest.raises(IndexError, match=r'dc\[0\]: the collection has 0 elements \(no index\)'):
        DataCollection([])[0]
    assert rows[-1].a == 3


def test_as_json_writes_json_that_any_parser_reads():
    import json
    row = Entity(n=np.float32(0.5), i=np.int64(3), v=np.arange(2.0), gone=float('nan'), big=float('inf'))
    text, = DataCollection([row]).as_json().to_list()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f'{name} is not JSON')) == \
        {'n': 0.5, 'i': 3, 'v': [0.0, 1.0], 'gone': None, 'big': None}
    assert DataCollection([text]).parse_json()[0].v == [0.0, 1.0]


def test_show_takes_none_for_all_checks_the_header_and_keeps_a_cell_on_one_line(capsys):
    rows = DataCollection['a', 'b']([(i, f'line\n{i}') for i in range(7)])
    rows.show(limit=None)
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 8 and shown[1].split() == ['0', 'line\\n0']
    rows.show(limit=2, header=['A', 'B'], formatter={'a': lambda value: f'<{value}>'})
    assert capsys.readouterr().out.split() == ['A', 'B', '<0>', 'line\\n0', '<1>', 'line\\n1']
    with pytest.raises(ValueError, match=r"header=\['A'\] names 1 column and the table has 2 \('a', 'b'\): "
                                         r"give one name per column"):
        rows.show(header=['A'])
    with pytest.raises(ValueError, match=r"formatter names 'c', which is not a column of the table "
                                         r"\(its columns: 'a', 'b'\)"):
        rows.show(formatter={'c': str})
    with pytest.raises(TypeError, match=r"show\(limit=...\) takes a number of elements, or None for all; "
                                        r"got '5'"):
        rows.show(limit='5')


def test_to_csv_writes_every_row_or_nothing(tmp_path):
    path = tmp_path / 'rows.csv'
    DataCollection['a', 'b']([(1, 'x'), (2, 'y')]).to_csv(path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r'to_csv: row #1 is \(2,\) \(tuple\) and row #0 an entity row: a CSV '
                                        r'file holds entity rows .* or plain values, not both'):
        DataCollection([Entity(a=1), (2,)]).to_csv(path)
    with pytest.raises(TypeError, match=r'row #1 is <Entity .* and row #0 a plain value'):
        DataCollection([(2,), Entity(a=1)]).to_csv(path)
    with pytest.raises(ValueError, match=r"to_csv: row #2 has the fields \['b'\], row #0 \['a'\]: the file "
                                         r"has one header line, so every row needs the same fields"):
        DataCollection([Entity(a=1), Entity(a=2), Entity(b=3)]).to_csv(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ['rows.csv']
    DataCollection([Entity(a=1, b=2), {'b': 4, 'a': 3}]).to_csv(path)   # the same fields, in another order
    assert DataCollection.read_csv(path).as_raw().to_list() == [('1', '2'), ('3', '4')]
    with pytest.raises(IsADirectoryError, match=r'to_csv: .* is a folder; give a file path'):
        DataCollection([1]).to_csv(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"to_csv: the folder '.*nowhere' does not exist"):
        DataCollection([1]).to_csv(tmp_path / 'nowhere' / 'rows.csv')
    with pytest.raises(LookupError, match=r"to_csv: unknown encoding 'utf-9'"):
        DataCollection([1]).to_csv(path, encoding='utf-9')


def test_read_parquet_keeps_null_vectors_as_none_and_checks_files_and_columns_at_once(tmp_path):
    vectors = pyarrow.array([[1.0, 2.0], None, [3.0, 4.0]], type=pyarrow.list_(pyarrow.float32(), 2))
    written = pyarrow.table({'text': ['x', 'y', 'z'], 'v': vectors})
    pyarrow.parquet.write_table(written, tmp_path / 'a.parquet')
    read = DataCollection.read_parquet(tmp_path / 'a.parquet').to_list()
    assert [type(row.v).__name__ for row in read] == ['ndarray', 'NoneType', 'ndarray']
    assert read[2].v.tolist() == [3.0, 4.0]
    assert DataCollection.read_parquet(tmp_path, columns='text').as_raw().to_list() == ['x', 'y', 'z']
    with pytest.raises(ValueError, match=r'read_parquet\(columns=\[\]\) reads no column'):
        DataCollection.read_parquet(tmp_path, columns=[])
    with pytest.raises(KeyError, match=r"a.parquet has no column 'vector' \(its columns: 'text', 'v'\)"):
        DataCollection.read_parquet(tmp_path, columns=['text', 'vector'])
    (tmp_path / 'notes.txt').write_text('not parquet')
    with pytest.raises(ValueError, match=r"notes.txt is not a Parquet file .*give a pattern that matches "
                                         r"only them, e.g. 'folder/\*.parquet'"):
        DataCollection.read_parquet(tmp_path / '*')


def test_from_glob_takes_a_list_and_the_home_folder(tmp_path, monkeypatch):
    (tmp_path / 'a.txt').write_text('a')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert list(DataCollection.from_glob('~/*.txt')) == [str(tmp_path / 'a.txt')]
    assert list(towhee_ray.glob([str(tmp_path / '*.txt')])) == [str(tmp_path / 'a.txt')]
