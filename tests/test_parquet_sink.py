"""to_parquet and read_parquet: real pyarrow, a real local Ray, re-runs and bad input."""
import re
import time
import zlib
from pathlib import Path

import numpy as np
import pandas
import pyarrow
import pyarrow.parquet as pq
import pytest

import towhee_ray
from towhee_ray import DataCollection
from towhee_ray.sinks.base import Batch, WriteResult
from towhee_ray.sinks.parquet import LOCK_FILE, UNCHECKED_MARKER, ParquetSink

DIMENSION = 8


def embed(key):
    """A vector only ``key`` makes, the same in every process."""
    return np.random.default_rng(zlib.crc32(str(key).encode())).random(DIMENSION)


def passages(keys):
    return DataCollection['id'](keys).runas_op['id', 'text'](func=lambda key: f'passage {key}')


def parts(folder):
    """The folder's files, hidden ones included (an unfinished part, a lock left behind)."""
    return sorted(path.name for path in folder.iterdir())


def test_a_ray_chain_ends_in_parquet_written_by_its_workers_and_reads_back_as_entity_rows(
        ray_cluster, tmp_path):
    folder = tmp_path / 'vectors'
    (folder / '.part-00000-0badc0de.parquet.inprogress').parent.mkdir()
    (folder / '.part-00000-0badc0de.parquet.inprogress').write_bytes(b'PAR1 no footer')   # a killed job's
    result = (DataCollection['id'](iter(range(2500))).set_parallel(2, backend='ray')
              .runas_op['id', 'text'](func=lambda key: f'passage {key}')
              .runas_op['id', 'vec'](func=embed)
              .to_parquet(folder, batch=1000))
    assert result.insert_count == 2500 and result.details['writers'] == 'workers'
    names = parts(folder)
    assert names == sorted(Path(path).name for path in result.details['files'])   # none unfinished, none left
    assert all(re.fullmatch(r'part-\d{5}-[0-9a-f]{8}\.parquet', name) for name in names)
    # each worker process its own parts (Ray may run a step's tasks in any of its workers)
    assert len(names) >= 2 and len(set(names)) == len(names)
    parquet = pq.ParquetFile(folder / names[0])
    assert parquet.schema_arrow.field('vec').type == pyarrow.list_(pyarrow.float32(), DIMENSION)
    assert parquet.schema_arrow.names == ['id', 'text', 'vec']
    rows = sorted(DataCollection.read_parquet(folder).to_list(), key=lambda row: row.id)
    assert [row.id for row in rows] == list(range(2500))
    assert rows[1234].text == 'passage 1234'
    assert rows[1234].vec.dtype == np.float32 and np.allclose(rows[1234].vec, embed(1234))
    rows[0].vec[0] = 5.0   # writable: rows are the user's to change


def test_writers_driver_writes_in_the_chains_order_in_row_groups_of_a_batch(ray_cluster, tmp_path):
    folder = tmp_path / 'vectors'
    result = (DataCollection['id'](iter(range(2500))).set_parallel(2, backend='ray')
              .runas_op['id', 'vec'](func=embed)
              .to_parquet(folder, batch=1000, writers='driver'))
    assert result.insert_count == 2500 and 'writers' not in result.details
    assert parts(folder) == ['part-00000.parquet']
    parquet = pq.ParquetFile(folder / 'part-00000.parquet')
    assert ([parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
            == [1000, 1000, 500])
    assert [row.id for row in DataCollection.read_parquet(folder)] == list(range(2500))


def test_threads_write_their_own_parts_and_a_rerun_with_a_key_writes_each_key_once(tmp_path):
    folder = tmp_path / 'vectors'
    first = (DataCollection['id'](iter(range(300))).set_parallel(2, backend='thread')
             .runas_op['id', 'vec'](func=embed).to_parquet(folder, key='id'))
    assert first.insert_count == 300 and first.details['writers'] == 'workers'
    again = (DataCollection['id'](iter(range(500))).set_parallel(2, backend='thread')
             .runas_op['id', 'vec'](func=embed).to_parquet(folder, key='id'))
    assert again.insert_count == 200 and again.details['skipped'] == 300
    assert sorted(row.id for row in DataCollection.read_parquet(folder)) == list(range(500))
    assert not set(again.details['files']) & set(first.details['files'])


def test_writers_is_checked_and_a_bad_one_releases_the_chain(ray_cluster, alive_actors, tmp_path):
    with pytest.raises(ValueError, match="writers is 'auto', 'workers' or 'driver', got 'all'"):
        DataCollection['id'](range(3)).to_parquet(tmp_path / 'a', writers='all')
    with pytest.raises(ValueError, match=r"to_parquet\(writers='workers'\) needs a chain whose last step "
                                         r"runs on a parallel backend"):
        DataCollection['id'](range(3)).to_parquet(tmp_path / 'b', writers='workers')
    chain = DataCollection(iter(['a b c'])).set_parallel(1, backend='ray').towhee.text_split(max_words=1)
    before = set(alive_actors())
    with pytest.raises(ValueError, match='writers is'):
        chain.to_parquet['text'](tmp_path / 'c', writers='both')
    assert set(alive_actors()) <= before   # none started, none left


def test_read_parquet_is_a_lazy_stream_that_a_ray_chain_can_continue(ray_cluster, tmp_path):
    folder = tmp_path / 'vectors'
    DataCollection['id'](range(100)).runas_op['id', 'vec'](func=embed).to_parquet(folder)
    stream = towhee_ray.read_parquet(folder)
    assert stream.is_stream
    norms = (stream.set_parallel(2, backend='ray')
             .runas_op['vec', 'norm'](func=np.linalg.norm).select['id', 'norm']())
    assert [(row.id, round(row.norm, 4)) for row in norms] == [
        (key, round(float(np.linalg.norm(embed(key).astype(np.float32))), 4)) for key in range(100)]


def test_read_parquet_takes_a_file_a_folder_a_glob_and_columns(tmp_path):
    passages(range(3)).to_parquet(tmp_path / 'a')
    passages(range(3, 5)).to_parquet(tmp_path / 'b')
    assert [row.id for row in DataCollection.read_parquet(tmp_path / 'a' / 'part-00000.parquet')] == [0, 1, 2]
    assert [row.id for row in DataCollection.read_parquet(tmp_path / '*')] == [0, 1, 2, 3, 4]
    texts = towhee_ray.read_parquet(tmp_path / 'b', columns=['text']).as_raw().to_list()
    assert texts == ['passage 3', 'passage 4']
    with pytest.raises(FileNotFoundError, match="no Parquet file at .*nothing"):
        DataCollection.read_parquet(tmp_path / 'nothing')
    with pytest.raises(KeyError, match=r"part-00000.parquet has no column 'vec' "
                                       r"\(its columns: 'id', 'text'\)"):
        towhee_ray.read_parquet(tmp_path / 'b', columns=['text', 'vec']).to_list()


def test_a_rerun_adds_a_part_and_with_a_key_never_writes_a_key_twice(tmp_path):
    folder = tmp_path / 'out'
    first = passages(range(10)).to_parquet(folder, key='id')
    again = passages(range(5, 15)).to_parquet(folder, key='id')
    assert (first.insert_count, again.insert_count, again.details['skipped']) == (10, 5, 5)
    assert parts(folder) == ['part-00000.parquet', 'part-00001.parquet']
    assert [row.id for row in DataCollection.read_parquet(folder)] == list(range(15))
    sink = ParquetSink(['id', 'text'], folder, key='id')
    assert sink.existing_keys([3, 14, 15, np.int64(7)]) == {3, 14, np.int64(7)}


def test_without_a_key_every_row_is_written(tmp_path):
    rows = DataCollection['label', 'n']([('a', 1), ('a', 2), ('b', 3)])
    assert rows.to_parquet(tmp_path / 'out').insert_count == 3
    assert towhee_ray.read_parquet(tmp_path / 'out').as_raw().to_list() == [('a', 1), ('a', 2), ('b', 3)]
    with pytest.raises(ValueError, match=r"has no key to resume by.*key='id'"):
        ParquetSink(['label', 'n'], tmp_path / 'out').existing_keys(['a'])


def test_parts_close_every_rows_per_file_rows(tmp_path):
    result = passages(range(25)).to_parquet(tmp_path / 'out', batch=5, rows_per_file=10)
    assert parts(tmp_path / 'out') == ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
    assert [pq.ParquetFile(path).metadata.num_rows for path in result.details['files']] == [10, 10, 5]


def test_an_unfinished_part_of_a_killed_job_is_never_read_and_is_removed_by_the_next_job(tmp_path, caplog):
    folder = tmp_path / 'out'
    passages(range(3)).to_parquet(folder)
    (folder / '.part-00001.parquet.inprogress').write_bytes(b'PAR1 no footer')
    assert [row.id for row in DataCollection.read_parquet(folder)] == [0, 1, 2]
    assert len(pandas.read_parquet(folder)) == 3   # other readers skip it too
    passages(range(3, 4)).to_parquet(folder)
    assert parts(folder) == ['part-00000.parquet', 'part-00001.parquet']
    assert 'a part a killed job left unfinished' in caplog.text


def test_numpy_vectors_keep_their_kind(tmp_path):
    rows = DataCollection['id', 'bits', 'counts', 'score', 'tags']([
        (0, np.array([1, 0, 1], dtype=np.uint8), np.array([1, 2]), np.float64(0.5), ['x']),
        (1, np.array([0, 0, 1], dtype=np.uint8), np.array([3, 4]), np.float64(1.5), [])])
    rows.to_parquet(tmp_path / 'out')
    back = DataCollection.read_parquet(tmp_path / 'out').to_list()
    assert back[0].bits.dtype == np.uint8 and back[0].bits.tolist() == [1, 0, 1]
    assert back[1].counts.dtype == np.int64 and back[1].counts.tolist() == [3, 4]
    assert (back[1].score, back[0].tags, back[1].tags) == (1.5, ['x'], [])


def test_a_schema_can_be_given(tmp_path):
    schema = pyarrow.schema([('id', pyarrow.string()), ('note', pyarrow.string())])
    DataCollection['id', 'note']([('a', None), ('b', 'kept')]).to_parquet(tmp_path / 'out', schema=schema)
    assert towhee_ray.read_parquet(tmp_path / 'out').as_raw().to_list() == [('a', None), ('b', 'kept')]


def test_an_empty_stream_writes_nothing(tmp_path):
    assert DataCollection(iter([])).to_parquet(tmp_path / 'out').insert_count == 0
    assert passages([]).to_parquet['id', 'text'](tmp_path / 'out').insert_count == 0
    assert not (tmp_path / 'out').exists()


# -- bad input: each names the row and what was expected; committed rows stay ---------------

def test_a_vector_of_another_dimension_names_the_row_and_both_sizes_and_keeps_what_was_written(tmp_path):
    folder = tmp_path / 'out'

    def vec(key):
        return np.ones(DIMENSION + 1 if key == 7 else DIMENSION)

    with pytest.raises(ValueError, match=r"row #7 \(id=7\): field 'vec' has 9 dimensions, the Parquet column "
                                         r"\(typed from the first row\) holds 8"):
        DataCollection['id'](range(10)).runas_op['id', 'vec'](func=vec).to_parquet(folder, batch=3)
    assert [row.id for row in DataCollection.read_parquet(folder)] == list(range(6))
    with pytest.raises(ValueError, match=r"row #0 \(id=20\): field 'vec' has 9 dimensions, the Parquet "
                                         r"column \(as in part-00000.parquet\) holds 8"):
        DataCollection([{'id': 20, 'vec': np.ones(9)}]).to_parquet(folder)


def test_a_missing_field_names_the_row(tmp_path):
    rows = [{'id': 0, 'text': 'a'}, {'id': 1, 'txt': 'b'}]
    with pytest.raises(KeyError, match=r"row #1 \(id=1\) has no field 'text'"):
        DataCollection(rows).to_parquet(tmp_path / 'out', batch=1)
    assert [row.id for row in DataCollection.read_parquet(tmp_path / 'out')] == [0]


def test_a_key_of_the_wrong_type_names_the_row_and_the_column_type(tmp_path):
    rows = [{'id': 0, 'text': 'a'}, {'id': 1, 'text': 'b'}, {'id': 'two', 'text': 'c'}]
    with pytest.raises(TypeError, match=r"row #2 \(id='two'\): field 'id' is 'two' \(str\), but its Parquet "
                                        r"column holds int64"):
        DataCollection(rows).to_parquet(tmp_path / 'out', key='id', batch=2)
    assert [row.id for row in DataCollection.read_parquet(tmp_path / 'out')] == [0, 1]
    schema = pyarrow.schema([('id', pyarrow.int64()), ('text', pyarrow.string())])
    with pytest.raises(ValueError, match=r"row #0 \(id=None\): the key 'id' is None"):
        DataCollection([{'id': None, 'text': 'a'}]).to_parquet(tmp_path / 'none', key='id', schema=schema)


def test_values_parquet_cannot_type_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(TypeError, match=r"row #0 \(id=0\): field 'image' is an array of shape \(2, 2\)"
                                        r".*flatten"):
        DataCollection([{'id': 0, 'image': np.zeros((2, 2))}]).to_parquet(tmp_path / 'a')
    with pytest.raises(ValueError, match=r"field 'note' is None in all of the first 2 rows.*schema="):
        DataCollection([{'id': 0, 'note': None}, {'id': 1, 'note': None}]).to_parquet(tmp_path / 'b')
    with pytest.raises(TypeError, match=r"row #1 \(id=1\): field 'vec' is 'oops' \(str\), not a vector"):
        DataCollection([{'id': 0, 'vec': np.ones(2)}, {'id': 1, 'vec': 'oops'}]).to_parquet(tmp_path / 'c')
    with pytest.raises(TypeError, match=r"to_parquet writes entity or dict rows, got a int"
                                        r".*to_parquet\['name'\]"):
        DataCollection([1, 2]).to_parquet(tmp_path / 'd')
    written = DataCollection([1, 2]).to_parquet['n'](tmp_path / 'd')
    assert towhee_ray.read_parquet(written.destination).as_raw().to_list() == [1, 2]


def test_a_destination_that_does_not_fit_is_refused(tmp_path):
    (tmp_path / 'file.parquet').write_text('not a folder')
    with pytest.raises(FileExistsError, match='writes a folder of part files.*is a file'):
        passages(range(2)).to_parquet(tmp_path / 'file.parquet')
    passages(range(2)).to_parquet(tmp_path / 'out')
    with pytest.raises(ValueError, match=r"holds parts with the fields \['id', 'text'\]; these rows have "
                                         r"\['id', 'vec'\]: write them to another folder"):
        DataCollection['id'](range(2)).runas_op['id', 'vec'](func=embed).to_parquet(tmp_path / 'out')
    with pytest.raises(ValueError, match=r"key='name' is not one of the fields written, \['id', 'text'\]"):
        passages(range(2)).to_parquet(tmp_path / 'out', key='name')


def test_a_failing_ray_chain_keeps_what_was_written_and_leaves_no_worker(ray_cluster, alive_actors, tmp_path):
    import towhee

    @towhee.register(name='tests_sinks/parquet_embed')
    class Embed:
        def __call__(self, key):
            return embed(key)

    def key_for(n):
        return 'bad' if n == 250 else n

    def chain():
        return (DataCollection['n'](iter(range(400))).set_parallel(2, backend='ray')
                .runas_op['n', 'id'](func=key_for)
                .tests_sinks.parquet_embed['n', 'vec']())

    with pytest.raises(TypeError, match=r"row #250 \(n=250\): field 'id' is 'bad'"):
        chain().to_parquet(tmp_path / 'out', batch=100, writers='driver')
    assert len(towhee_ray.read_parquet(tmp_path / 'out').to_list()) == 200
    assert alive_actors() == []
    # Written by the workers: the element that failed is named; what the workers wrote
    # before it, in parts of their own, is whole and readable, each row once.
    with pytest.raises(TypeError, match=r"element #250.*the row \(n=250\): field 'id' is 'bad'"):
        chain().to_parquet(tmp_path / 'workers', batch=100)
    stored = [row.n for row in towhee_ray.read_parquet(tmp_path / 'workers')]
    assert len(stored) == len(set(stored)) and set(stored) <= set(range(400)) - {250}
    assert not [path for path in (tmp_path / 'workers').iterdir() if path.name.startswith('.')]
    assert alive_actors() == []


def test_a_failed_jobs_tasks_end_before_its_error_so_a_rerun_at_once_stores_each_key_once(ray_cluster,
                                                                                          tmp_path):
    # a function's step runs on Ray tasks, which a closed step let run on for a second:
    # they wrote on after the job's error, behind the folder's checks, and a rerun started
    # at once ended with keys stored twice
    def slow_embed(n):
        time.sleep(0.003)
        if n == 250:
            raise ValueError('bad element 250')
        return embed(n)

    folder = tmp_path / 'out'
    with pytest.raises(ValueError, match='bad element 250'):
        (DataCollection['id'](range(1000)).stream().set_parallel(2, backend='ray')
         .map['id', 'vec'](slow_embed).to_parquet(folder, key='id', batch=10))
    written = len(towhee_ray.read_parquet(folder).to_list())
    time.sleep(2)   # a task left running would write meanwhile
    assert len(towhee_ray.read_parquet(folder).to_list()) == written
    assert not [path for path in folder.iterdir() if path.name.startswith('.')]
    result = (DataCollection['id'](range(1000)).map['id', 'vec'](embed)
              .to_parquet(folder, key='id', batch=10))
    stored = [row.id for row in towhee_ray.read_parquet(folder)]
    assert sorted(stored) == list(range(1000)) and result.insert_count == 1000 - written


# -- keys across workers, one job at a time, what else is in the folder -----------------------

def test_workers_writing_the_same_key_store_it_once_and_count_it_once(ray_cluster, tmp_path):
    folder = tmp_path / 'out'
    keys = [i % 100 for i in range(2000)]   # every key 20 times, in the chunks of both workers
    chain = (DataCollection['id'](keys).stream().set_parallel(2, backend='ray', chunk_size=50)
             .runas_op['id', 'vec'](func=embed))
    result = chain.to_parquet(folder, key='id')
    assert result.details['writers'] == 'workers'
    stored = [row.id for row in DataCollection.read_parquet(folder)]
    assert sorted(stored) == list(range(100))
    assert (result.insert_count, result.details['skipped']) == (100, 1900)
    assert UNCHECKED_MARKER not in parts(folder)
    # threads too, and a key twice within one batch counts once
    again = (DataCollection['id']([100, 100, 101, 5]).stream().set_parallel(2, backend='thread')
             .runas_op['id', 'vec'](func=embed))
    result = again.to_parquet(folder, key='id')
    assert (result.insert_count, result.details['skipped'], result.details['writers']) == (2, 2, 'workers')
    assert sorted(row.id for row in DataCollection.read_parquet(folder)) == list(range(102))


def workers_wrote(sinks, batches):
    """Each sink writes its batch as a worker's does, all started before any wrote."""
    for sink, batch in zip(sinks, batches):
        sink.in_worker()
        sink.on_write_start(batch)
    for sink, batch in zip(sinks, batches):
        sink.write(batch)
        sink.on_chunk_complete()


def test_a_job_killed_before_checking_its_workers_keys_has_the_next_job_check_the_folder(tmp_path, caplog):
    folder = tmp_path / 'out'
    # What such a job leaves: two workers' parts holding keys 3 and 4 twice, and the marker.
    batches = [Batch([{'id': key, 'vec': embed(key)} for key in keys]) for keys in ([1, 2, 3, 4], [3, 4, 5])]
    sinks = [ParquetSink(['id', 'vec'], folder, key='id') for _ in batches]
    workers_wrote(sinks, batches)
    (folder / UNCHECKED_MARKER).write_text('pid 1\n')
    assert len(DataCollection.read_parquet(folder).to_list()) == 7
    result = DataCollection['id']([5, 6]).runas_op['id', 'vec'](func=embed).to_parquet(folder, key='id')
    assert (result.insert_count, result.details['skipped']) == (1, 1)
    assert sorted(row.id for row in DataCollection.read_parquet(folder)) == [1, 2, 3, 4, 5, 6]
    assert UNCHECKED_MARKER not in parts(folder)
    assert ('left its parts unchecked for keys written twice by its workers; 2 such rows removed'
            in caplog.text)


HOLD_THE_FOLDER = """
import sys, time
from towhee_ray.sinks.parquet import ParquetSink
from towhee_ray.sinks.base import Batch
sink = ParquetSink(['id'], sys.argv[1], key='id')
sink.on_write_start(Batch([{'id': 1}]))
print('holding', flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(300)
def test_one_job_writes_into_a_folder_at_a_time_and_a_killed_one_blocks_nothing(tmp_path):
    import subprocess
    import sys
    import time
    folder = tmp_path / 'out'
    holder = subprocess.Popen([sys.executable, '-c', HOLD_THE_FOLDER, str(folder)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == 'holding'
        with pytest.raises(BlockingIOError, match=rf'to_parquet cannot write {re.escape(str(folder))}: '
                                                  rf'another job is writing .* \(pid {holder.pid}\), and one '
                                                  rf'job at a time writes it.*or write into another folder'):
            passages(range(3)).to_parquet(folder, key='id')
        assert parts(folder) == [LOCK_FILE]   # the other job's folder, untouched
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert passages(range(3)).to_parquet(folder, key='id').insert_count == 3   # its lock died with it
    assert parts(folder) == ['part-00000.parquet']


def test_a_file_in_the_folder_that_is_not_a_part_of_it_is_named(tmp_path):
    folder = tmp_path / 'out'
    passages(range(3)).to_parquet(folder, key='id')
    pq.write_table(pyarrow.table({'other': [1, 2]}), folder / 'zzz.parquet')
    with pytest.raises(ValueError, match=r"zzz.parquet has no column 'id' \(its columns: \['other'\]\)"
                                         r".*move it out"):
        passages(range(5)).to_parquet(folder, key='id')
    (folder / 'zzz.parquet').unlink()
    (folder / 'notes.parquet').write_text('not parquet')
    with pytest.raises(ValueError, match=r"notes.parquet is in the folder to_parquet writes into, and it is "
                                         r"not a Parquet file pyarrow can read"):
        passages(range(5)).to_parquet(folder, key='id')


def test_a_vector_that_is_not_finite_is_refused_naming_the_row(tmp_path):
    rows = DataCollection['id', 'vec']([(0, embed(0)), (1, np.array([1.0, np.inf] + [0.0] * 6))])
    with pytest.raises(ValueError, match=r"row #1 \(id=1\): field 'vec' holds 1 value that is not a finite "
                                         r"number \(inf at index 1\)"):
        rows.to_parquet(tmp_path / 'out')


# -- values pyarrow would change without a word, options, parts --------------------------------

def test_a_float_into_an_integer_column_is_refused_and_a_schema_must_be_the_folders(tmp_path):
    folder = tmp_path / 'out'
    with pytest.raises(TypeError, match=r"row #1 \(id=1\): field 'n' is np.float64\(1.7\) \(float64\), but "
                                        r"its Parquet column holds int64 \(typed from the first row\); give "
                                        r"every row the same type"):
        DataCollection['id', 'n']([(0, 5), (1, np.float64(1.7))]).to_parquet(folder, batch=1)
    with pytest.raises(TypeError, match=r"row #0 \(id=2\): field 'n' is 0.75 \(float\), but its Parquet "
                                        r"column holds int64 \(as in part-00000.parquet\)"):
        DataCollection['id', 'n']([(2, 0.75)]).to_parquet(folder, key='id')
    with pytest.raises(TypeError, match=r"row #0 \(id=3\): field 'n' is True \(bool\)"):
        DataCollection['id', 'n']([(3, True)]).to_parquet(folder, key='id')
    schema = pyarrow.schema([('id', pyarrow.int64()), ('n', pyarrow.float64())])
    with pytest.raises(ValueError, match=r"schema= gives 'n' the type double, and the parts of .* hold int64 "
                                         r"\(as in part-00000.parquet\).*give schema= the folder's types"):
        DataCollection['id', 'n']([(2, 0.75)]).to_parquet(folder, key='id', schema=schema)
    assert towhee_ray.read_parquet(folder).as_raw().to_list() == [(0, 5)]
    # a float column takes ints as they are
    DataCollection['id', 'n']([(0, 0.5), (1, 2)]).to_parquet(tmp_path / 'floats', batch=1)
    assert towhee_ray.read_parquet(tmp_path / 'floats').as_raw().to_list() == [(0, 0.5), (1, 2.0)]


def test_a_dict_with_a_key_its_struct_column_lacks_is_refused_naming_the_row_and_the_key(tmp_path):
    rows = DataCollection['id', 'meta']([(0, {'a': 1}), (1, {'a': 2, 'b': 3}), (2, {'b': 4})])
    with pytest.raises(ValueError, match=r"row #1 \(id=1\): field 'meta' is \{'a': 2, 'b': 3\}, with the "
                                         r"key 'b', which its struct has no field for; its Parquet column "
                                         r"holds struct<a: int64> \(typed from the first row\); the first "
                                         r"batch types"):
        rows.to_parquet(tmp_path / 'out', batch=1)
    assert towhee_ray.read_parquet(tmp_path / 'out').as_raw().to_list() == [(0, {'a': 1})]
    rows.to_parquet(tmp_path / 'whole')   # one batch: its column has every key
    assert [row.meta for row in towhee_ray.read_parquet(tmp_path / 'whole')] == [
        {'a': 1, 'b': None}, {'a': 2, 'b': 3}, {'a': None, 'b': 4}]


def score_row(key):
    return {'id': key, 'vec': np.full(4, key, np.float32), 'score': key if key < 20 else key + .5}


def test_workers_typing_a_column_differently_fail_the_job_leaving_the_folder_as_before(
        ray_cluster, tmp_path):
    folder = tmp_path / 'out'
    DataCollection['id', 'vec', 'score']([(100, np.zeros(4), 1.5)]).to_parquet(folder, key='id')

    def chain():
        return DataCollection.range(40).stream().set_parallel(2, backend='ray', chunk_size=20).map(score_row)

    # Which worker types which part is Ray's choice: parts that disagree fail the job and
    # are removed; one worker typing both chunks from ints refuses the floats; from floats
    # it stores the ints as floats. The folder is always one readable dataset.
    other = tmp_path / 'other'
    try:
        chain().to_parquet(other, key='id')
    except (TypeError, ValueError) as error:
        assert re.search(r"the parts of .*other type the column 'score' differently: (int64|double) in "
                         r"part-\d{5}-[0-9a-f]{8}.parquet, (double|int64) in .*The 2 parts this job wrote "
                         r"\(40 rows\) are removed.*give schema=pyarrow.schema|field 'score' is \d+\.5 "
                         r"\(float\), but its Parquet column holds int64", str(error)), error
    if other.exists():
        assert len(pandas.read_parquet(other)) <= 40
    # the sinks of two workers, each typing its own parts: the end of the job checks them
    sinks = [ParquetSink(['id', 'score'], tmp_path / 'two') for _ in range(2)]
    driver = ParquetSink(['id', 'score'], tmp_path / 'two')
    driver.on_write_start(Batch([]))
    batches = [Batch([{'id': index, 'score': score} for index, score in enumerate(scores)])
               for scores in ([1, 2], [2.5, 3.5])]
    workers_wrote(sinks, batches)
    with pytest.raises(ValueError, match=r"type the column 'score' differently: (int64|double) in "
                                         r"part-00000-[0-9a-f]{8}.parquet, (double|int64) in .*The 2 parts "
                                         r"this job wrote \(4 rows\) are removed"):
        driver.on_write_complete(WriteResult(insert_count=4))
    assert not (tmp_path / 'two').exists()
    schema = pyarrow.schema([('id', pyarrow.int64()), ('vec', pyarrow.list_(pyarrow.float32(), 4)),
                             ('score', pyarrow.float64())])
    result = chain().to_parquet(tmp_path / 'given', key='id', schema=schema)
    assert result.insert_count == 40 and result.details['writers'] == 'workers'
    assert sorted(pandas.read_parquet(tmp_path / 'given').score)[18:22] == [18.0, 19.0, 20.5, 21.5]
    # a folder whose parts disagree already (an older job's) is refused before anything is written
    int_scores = pq.read_schema(folder / 'part-00000.parquet').set(2, pyarrow.field('score', pyarrow.int64()))
    older = pyarrow.table({'id': [7], 'vec': [[0.0] * 4], 'score': [1]}, schema=int_scores)
    pq.write_table(older, folder / 'part-00009.parquet')
    with pytest.raises(ValueError, match=r"type the column 'score' differently: double in "
                                         r"part-00000.parquet, int64 in part-00009.parquet.*move the parts "
                                         r"of one of them out"):
        DataCollection['id', 'vec', 'score']([(8, np.zeros(4), 1.0)]).to_parquet(folder, key='id')


def test_a_bad_compression_or_schema_is_refused_before_anything_runs(tmp_path):
    ran = []

    def rows():
        ran.append(1)
        yield (0, np.ones(2))

    with pytest.raises(ValueError, match=r"compression='bogus' is not one a Parquet writer takes.*"
                                         r"give 'snappy'"):
        DataCollection['id', 'vec'](rows()).to_parquet(tmp_path / 'out', compression='bogus')
    with pytest.raises(TypeError, match=r"schema= is a pyarrow schema, e.g. pyarrow.schema\(.*got "
                                        r"\{'id': 'int64'\} \(dict\)"):
        DataCollection['id', 'vec'](rows()).to_parquet(tmp_path / 'out', schema={'id': 'int64'})
    assert not ran and not (tmp_path / 'out').exists()
    DataCollection['id', 'vec']([(0, np.ones(2))]).to_parquet(tmp_path / 'out', compression='zstd')
    metadata = pq.ParquetFile(tmp_path / 'out' / 'part-00000.parquet').metadata
    assert metadata.row_group(0).column(0).compression == 'ZSTD'


def test_an_integer_beyond_int64_is_out_of_range_and_numpy_integers_type_the_column_int64(tmp_path):
    with pytest.raises(ValueError, match=r"row #0 \(id=9223372036854775808\): field 'id' is "
                                         r"9223372036854775808, out of int64 range "
                                         r"\(-9223372036854775808..9223372036854775807\)"):
        DataCollection['id', 'v']([(2 ** 63, 1), (-1, 2)]).to_parquet(tmp_path / 'big', key='id', batch=1)
    rows = DataCollection['id', 'v']([(np.int32(1), np.uint8(3)), (3_000_000_000, 300)])
    assert rows.to_parquet(tmp_path / 'out', key='id', batch=1).insert_count == 2
    assert pq.read_schema(tmp_path / 'out' / 'part-00000.parquet').field('id').type == pyarrow.int64()
    assert towhee_ray.read_parquet(tmp_path / 'out').as_raw().to_list() == [(1, 3), (3_000_000_000, 300)]


def test_a_batch_longer_than_rows_per_file_is_split_across_parts(tmp_path):
    result = passages(range(100)).to_parquet(tmp_path / 'out', rows_per_file=30)
    assert [pq.ParquetFile(path).metadata.num_rows for path in result.details['files']] == [30, 30, 30, 10]
    assert result.insert_count == 100
    assert [row.id for row in DataCollection.read_parquet(tmp_path / 'out')] == list(range(100))


def test_a_path_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.chdir(tmp_path)
    result = passages(range(3)).to_parquet('~/out')
    assert result.destination == str(tmp_path / 'home' / 'out')
    assert [row.id for row in DataCollection.read_parquet(tmp_path / 'home' / 'out')] == [0, 1, 2]
    assert not (tmp_path / '~').exists()


def test_lists_of_numbers_are_stored_as_lists_as_given_and_only_numpy_vectors_are_checked(tmp_path):
    rows = DataCollection['id', 'vec']([(0, [.1, .2, .3]), (1, [float('nan'), .2]), (2, [])])
    rows.to_parquet(tmp_path / 'out')
    assert pq.read_schema(tmp_path / 'out' / 'part-00000.parquet').field('vec').type == pyarrow.list_(
        pyarrow.float64())
    back = [row.vec for row in DataCollection.read_parquet(tmp_path / 'out')]
    assert back[0] == [.1, .2, .3] and np.isnan(back[1][0]) and back[2] == []


def test_a_vector_value_beyond_float32_range_is_named_as_such(tmp_path):
    rows = DataCollection['id', 'vec']([(0, np.array([1.0, 2.0])), (1, np.array([1e39, 0.0]))])
    with pytest.raises(ValueError, match=r"row #1 \(id=1\): field 'vec' holds 1 value that is not a finite "
                                         r"number \(1e\+39 at index 0 is out of float32 range"):
        rows.to_parquet(tmp_path / 'out')
    with pytest.raises(TypeError, match=r"row #1 \(id=1\): field 'vec' is a vector of float64, but its "
                                        r"Parquet column holds fixed_size_list<item: int64>\[2\]"):
        ints = DataCollection['id', 'vec']([(0, np.array([1, 2])), (1, np.array([1.5, 2.0]))])
        ints.to_parquet(tmp_path / 'ints')
