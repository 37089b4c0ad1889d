"""Entity rows and file sources: input that would lose a value or a row silently is an
error that says which and what to do (from an audit of the 0.9 row methods)."""

import numpy as np
import pandas
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
    assert len(DataCollection.combine(towhee_ray.range['a'](1, 4), towhee_ray.range['b'](5, 7)).to_list()) == 2
    with pytest.raises(ValueError, match=r"row #0 of collection #1 has a field 'a', as an earlier collection does"):
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
    with pytest.raises(ValueError, match=r"read_csv: .*latin.csv is not utf-8-sig text .* encoding='latin-1'"):
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
