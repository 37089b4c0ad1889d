"""to_faiss, as Towhee 0.9's: real Faiss, a real local Ray, re-runs, jobs at once and bad input."""
import json
import re
import shutil
import subprocess
import sys
import zlib

import faiss
import numpy as np
import pytest
import towhee

import towhee_ray
from tests import support
from towhee_ray import DataCollection
from towhee_ray.sinks.faiss import SAVE_GROWTH, FaissSink

DIMENSION = 8


def embed(key):
    """A vector only ``key`` makes, the same in every process."""
    return np.random.default_rng(zlib.crc32(str(key).encode())).random(DIMENSION).astype(np.float32)


@towhee.register(name='tests_sinks/embed')
class Embed:
    """An operator, so a ``ray`` chain runs it on actors."""

    def __call__(self, key):
        return embed(key)


def nearest(findex, query, k=1):
    _, ids = faiss.read_index(str(findex)).search(np.asarray([query], dtype=np.float32), k)
    return ids[0].tolist()


def embedded(keys):
    return DataCollection['id'](keys).runas_op['id', 'vec'](func=embed)


def ids_in(findex):
    index = faiss.read_index(str(findex))   # kept alive: id_map is a view into it
    return sorted(faiss.vector_to_array(index.id_map).tolist())


def keys_of(findex):
    return json.loads(findex.with_name(f'{findex.stem}_kv{findex.suffix}').read_text())


def test_a_ray_chain_ends_in_an_index_file_with_int_keys(ray_cluster, tmp_path):
    findex = tmp_path / 'faiss' / 'index.bin'
    result = (DataCollection['id'](iter(range(300))).set_parallel(2, backend='ray')
              .tests_sinks.embed['id', 'vec']()
              .to_faiss['id', 'vec'](findex=str(findex)))
    assert (result.insert_count, result.details['ntotal'], result.details['kv_file']) == (300, 300, None)
    assert ids_in(findex) == list(range(300))
    assert nearest(findex, embed(123)) == [123]
    assert not (tmp_path / 'faiss' / 'index_kv.bin').exists()


def test_str_keys_get_ids_and_a_key_value_file_as_in_towhee_09(ray_cluster, tmp_path):
    findex = tmp_path / 'index.bin'
    result = (DataCollection['id'](iter([f'k{i}' for i in range(50)])).set_parallel(2, backend='ray')
              .runas_op['id', 'vec'](func=embed)
              .to_faiss['id', 'vec'](findex, 'IDMap,Flat', faiss.METRIC_INNER_PRODUCT))
    assert result.insert_count == 50 and result.details['kv_file'] == str(tmp_path / 'index_kv.bin')
    keys = keys_of(findex)
    assert sorted(keys.values()) == sorted(f'k{i}' for i in range(50))
    assert sorted(map(int, keys)) == list(range(50))
    assert faiss.read_index(str(findex)).metric_type == faiss.METRIC_INNER_PRODUCT
    best = nearest(findex, embed('k7') / np.linalg.norm(embed('k7')), k=50)
    assert 'k7' in [keys[str(i)] for i in best]


def test_a_rerun_appends_and_never_holds_a_key_twice(tmp_path):
    findex = tmp_path / 'index.bin'
    first = embedded(range(10)).to_faiss['id', 'vec'](findex)
    again = embedded(range(5, 15)).to_faiss['id', 'vec'](findex)
    assert (first.insert_count, again.insert_count, again.details['skipped']) == (10, 5, 5)
    assert ids_in(findex) == list(range(15))


def test_a_rerun_with_str_keys_continues_the_ids(tmp_path):
    findex = tmp_path / 'index.bin'
    embedded(['a', 'b', 'c']).to_faiss['id', 'vec'](findex)
    result = embedded(['c', 'd', 'd']).to_faiss['id', 'vec'](findex)
    assert (result.insert_count, result.details['skipped']) == (1, 2)
    assert keys_of(findex) == {'0': 'a', '1': 'b', '2': 'c', '3': 'd'}
    assert nearest(findex, embed('d')) == [3]


def test_existing_keys_reads_the_index_file_before_any_write(tmp_path):
    findex = tmp_path / 'index.bin'
    embedded(['a', 'b']).to_faiss['id', 'vec'](findex)
    DataCollection['n'](range(3)).runas_op['n', 'vec'](func=embed).to_faiss['n', 'vec'](tmp_path / 'ints.bin')
    assert FaissSink(['id', 'vec'], findex).existing_keys(['b', 'x', 'a']) == {'a', 'b'}
    assert FaissSink(['n', 'vec'], tmp_path / 'ints.bin').existing_keys([np.int64(2), 5]) == {2}
    assert FaissSink(['id', 'vec'], tmp_path / 'none.bin').existing_keys(['a']) == set()


def test_a_key_value_file_ahead_of_its_index_is_trimmed(tmp_path, caplog):
    # A job killed between the two renames of a save: the key-value file names an id the
    # index does not hold, and the save is left beside the index. Here that save is not
    # one the next run can put in place (not the index the key-value file names), so the
    # row is not "already there", and is written again.
    findex = tmp_path / 'index.bin'
    embedded(['a', 'b']).to_faiss['id', 'vec'](findex)
    (tmp_path / 'index_kv.bin').write_text(json.dumps({'0': 'a', '1': 'b', '2': 'c'}))
    shutil.copy(findex, tmp_path / '.index.bin.123.tmp')
    assert FaissSink(['id', 'vec'], findex).existing_keys(['a', 'c']) == {'a'}
    assert 'names 1 ids its index lacks' in caplog.text
    result = embedded(['c']).to_faiss['id', 'vec'](findex)
    assert result.insert_count == 1 and keys_of(findex) == {'0': 'a', '1': 'b', '2': 'c'}
    assert sorted(path.name for path in tmp_path.iterdir()) == ['index.bin', 'index_kv.bin']


def test_the_key_value_file_of_a_larger_index_is_refused(tmp_path):
    # No unfinished save explains the extra ids: the key-value file is another index's,
    # whose names would be given to this index's vectors.
    embedded(['x', 'y', 'z']).to_faiss['id', 'vec'](tmp_path / 'large.bin')
    findex = tmp_path / 'small.bin'
    embedded(['a']).to_faiss['id', 'vec'](findex)
    (tmp_path / 'small_kv.bin').write_bytes((tmp_path / 'large_kv.bin').read_bytes())
    with pytest.raises(ValueError, match=r'small_kv.bin names 2 ids more than .*small.bin.* holds, and '
                                         r'no save of the index was left unfinished .* do not belong '
                                         r'together'):
        embedded(['b']).to_faiss['id', 'vec'](findex)
    assert keys_of(findex) == {'0': 'x', '1': 'y', '2': 'z'}   # both files as they were
    assert faiss.read_index(str(findex)).ntotal == 1


def test_an_index_object_is_filled_in_place(tmp_path):
    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIMENSION))
    embedded(range(4)).to_faiss['id', 'vec'](findex=index)
    assert index.ntotal == 4 and not list(tmp_path.iterdir())
    named = faiss.IndexIDMap(faiss.IndexFlatL2(DIMENSION))
    result = (DataCollection['id'](['x', 'y']).runas_op['id', 'vec'](func=embed)
              .to_faiss['id', 'vec'](named, kv_file=tmp_path / 'keys.json'))
    assert result.insert_count == 2
    assert json.loads((tmp_path / 'keys.json').read_text()) == {'0': 'x', '1': 'y'}


def test_an_index_that_needs_training_is_trained_on_the_first_batch(tmp_path):
    findex = tmp_path / 'ivf.bin'
    result = (DataCollection['id'](range(400)).runas_op['id', 'vec'](func=embed)
              .to_faiss['id', 'vec'](findex, 'IVF4,Flat', batch=200))
    index = faiss.read_index(str(findex))
    assert result.insert_count == 400 and index.is_trained and index.ntotal == 400
    with pytest.raises(ValueError, match=r"'IDMap,IVF64,Flat' needs training.*first batch \(10 rows\)"
                                         r".*larger batch="):
        embedded(range(20)).to_faiss['id', 'vec'](
            tmp_path / 'small.bin', 'IVF64,Flat', batch=10)


def test_the_index_is_saved_as_it_grows(tmp_path):
    findex = tmp_path / 'index.bin'
    seen = []

    def rows(count):
        for key in range(count):
            if key % 10 == 0 and findex.exists():   # pulled after the previous batches were written
                seen.append((key, faiss.read_index(str(findex)).ntotal))
            yield {'id': key, 'vec': embed(key)}

    DataCollection(rows(40)).to_faiss['id', 'vec'](findex, batch=2, save_every=4)
    assert seen and all(saved >= key - 4 for key, saved in seen)
    seen.clear()
    (tmp_path / 'index.bin').unlink()
    DataCollection(rows(400)).to_faiss['id', 'vec'](findex, batch=10)
    # Geometric saves: what is not yet saved stays within SAVE_GROWTH of what is, plus a batch.
    assert len(seen) > 5 and all(key - saved <= SAVE_GROWTH * saved + 10 for key, saved in seen)
    assert faiss.read_index(str(findex)).ntotal == 400


# -- bad input: each names the row and what was expected; committed rows stay ---------------

def test_to_faiss_has_towhee_09s_defaults_and_so_does_its_sink():
    import inspect
    method = inspect.signature(DataCollection.to_faiss).parameters
    sink = inspect.signature(FaissSink).parameters
    for name, default in (('findex', './index.bin'), ('string', 'IDMap,Flat'), ('metric', None)):
        assert method[name].default == sink[name].default == default


def test_to_faiss_needs_exactly_two_fields(tmp_path):
    rows = DataCollection['id'](range(3)).runas_op['id', 'vec'](func=embed)
    with pytest.raises(TypeError, match=r"to_faiss needs two fields.*to_faiss\['id', 'vec'\]"):
        rows.to_faiss(findex=tmp_path / 'index.bin')
    with pytest.raises(TypeError, match=r"two fields, the key and the vector.*got \['vec'\]"):
        rows.to_faiss['vec'](tmp_path / 'index.bin')
    with pytest.raises(TypeError, match=r"got \['id', 'vec', 'text'\]"):
        rows.to_faiss['id', 'vec', 'text'](tmp_path / 'index.bin')
    with pytest.raises(ValueError, match=r"the field 'id' is named twice"):
        rows.to_faiss['id', 'id'](tmp_path / 'index.bin')
    assert not (tmp_path / 'index.bin').exists()


def test_a_vector_of_another_dimension_names_the_row_and_both_sizes_and_keeps_what_was_written(tmp_path):
    findex = tmp_path / 'index.bin'

    def vec(key):
        return np.ones(DIMENSION + 1 if key == 7 else DIMENSION)

    with pytest.raises(ValueError, match=r"row #7 \(id=7\): field 'vec' has 9 dimensions, "
                                         r"the index .* holds 8"):
        DataCollection['id'](range(10)).runas_op['id', 'vec'](func=vec).to_faiss['id', 'vec'](findex, batch=3)
    assert ids_in(findex) == list(range(6))


def test_a_missing_field_names_the_row(tmp_path):
    rows = [{'id': 0, 'vec': embed(0)}, {'id': 1, 'vector': embed(1)}]
    with pytest.raises(KeyError, match=r"row #1 \(id=1\) has no field 'vec'"):
        DataCollection(rows).to_faiss['id', 'vec'](tmp_path / 'index.bin', batch=1)
    assert faiss.read_index(str(tmp_path / 'index.bin')).ntotal == 1


def test_a_key_of_the_wrong_type_names_the_row_and_the_type_expected(tmp_path):
    findex = tmp_path / 'index.bin'
    rows = [{'id': key, 'vec': embed(0)} for key in (0, 1, 'two')]
    with pytest.raises(TypeError, match=r"row #2 \(id='two'\): the key 'id' is 'two' \(str\), but the first "
                                        r"row's key is int"):
        DataCollection(rows).to_faiss['id', 'vec'](findex, batch=2)
    assert faiss.read_index(str(findex)).ntotal == 2
    with pytest.raises(TypeError, match=rf"row #0 \(id='a'\).*but {findex} holds int keys"):
        DataCollection([{'id': 'a', 'vec': embed(0)}]).to_faiss['id', 'vec'](findex)
    with pytest.raises(TypeError, match=r"row #0 \(id=1.5\): the key 'id' is 1.5 \(float\); "
                                        r"to_faiss keys are int"):
        DataCollection([{'id': 1.5, 'vec': embed(0)}]).to_faiss['id', 'vec'](tmp_path / 'other.bin')
    with pytest.raises(ValueError, match=r'row #0 \(id=-1\).*0 <= id'):
        DataCollection([{'id': -1, 'vec': embed(0)}]).to_faiss['id', 'vec'](tmp_path / 'other.bin')


def test_a_value_that_is_not_a_vector_names_the_row(tmp_path):
    rows = [{'id': 0, 'vec': embed(0)}, {'id': 1, 'vec': 'oops'}]
    with pytest.raises(TypeError, match=r"row #1 \(id=1\): field 'vec' is 'oops' \(str\), not a vector"):
        DataCollection(rows).to_faiss['id', 'vec'](tmp_path / 'index.bin')


def test_a_findex_under_home_is_the_users_home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.chdir(tmp_path)
    result = embedded(['a', 'b']).to_faiss['id', 'vec']('~/index.bin')
    assert result.insert_count == 2
    assert sorted(path.name for path in (tmp_path / 'home').iterdir()) == ['index.bin', 'index_kv.bin']
    assert not (tmp_path / '~').exists()


def test_settings_that_do_not_fit_the_index_file_are_refused(tmp_path):
    findex = tmp_path / 'index.bin'
    embedded(range(2)).to_faiss['id', 'vec'](findex, metric='IP')
    with pytest.raises(ValueError, match=r"measures with Faiss metric 'IP', not 'L2'"):
        embedded(range(2)).to_faiss['id', 'vec'](findex, metric='L2')
    with pytest.raises(ValueError, match=r"Faiss cannot make an index from string='IDMap,NoSuchIndex'"):
        embedded(range(2)).to_faiss['id', 'vec'](
            tmp_path / 'new.bin', string='NoSuchIndex')
    with pytest.raises(ValueError, match="metric must be"):
        DataCollection([]).to_faiss['id', 'vec'](findex, metric='cosine')
    faiss.write_index(faiss.IndexFlatL2(DIMENSION), str(tmp_path / 'flat.bin'))
    with pytest.raises(TypeError, match='keeps no ids: to_faiss needs an IDMap index'):
        embedded(range(2)).to_faiss['id', 'vec'](tmp_path / 'flat.bin')


def test_a_failing_ray_chain_saves_what_was_written_and_leaves_no_actor(ray_cluster, alive_actors, tmp_path):
    findex = tmp_path / 'index.bin'

    def key_for(n):
        return 'bad' if n == 250 else n

    with pytest.raises(TypeError, match=r"row #250 \(id='bad'\)"):
        (DataCollection['n'](iter(range(400))).set_parallel(2, backend='ray')
         .runas_op['n', 'id'](func=key_for)
         .tests_sinks.embed['n', 'vec']()
         .to_faiss['id', 'vec'](findex, batch=100))
    assert faiss.read_index(str(findex)).ntotal == 200
    assert alive_actors() == []


def test_an_empty_stream_makes_no_index(tmp_path):
    result = DataCollection(iter([])).to_faiss['id', 'vec'](tmp_path / 'index.bin')
    assert (result.insert_count, result.details['ntotal']) == (0, 0)
    assert not (tmp_path / 'index.bin').exists()


def test_towhee_09s_to_faiss_example_runs_with_the_local_hub(ray_cluster, tmp_path):
    # 0.9's docstring: glob -> image_decode -> image_embedding.timm -> to_faiss['path', 'vec'];
    # a colour histogram stands in for the hub model (nothing can be downloaded here).
    from PIL import Image

    colours = {'red': (220, 20, 20), 'green': (20, 200, 40), 'blue': (30, 30, 210), 'grey': (128, 128, 128)}
    for name, colour in colours.items():
        Image.new('RGB', (32, 32), colour).save(tmp_path / f'{name}.png')
    findex = tmp_path / 'faiss' / 'faiss.index'
    result = (towhee_ray.glob['path'](str(tmp_path / '*.png'))
              .set_parallel(2, backend='ray')
              .towhee.image_decode['path', 'img']()
              .towhee.color_histogram['img', 'vec'](bins=4)
              .to_faiss['path', 'vec'](findex=str(findex)))
    assert result.insert_count == 4
    keys = json.loads((tmp_path / 'faiss' / 'faiss_kv.index').read_text())
    blue = towhee.ops.towhee.image_decode()(str(tmp_path / 'blue.png'))
    query = towhee.ops.towhee.color_histogram(bins=4)(blue)
    assert keys[str(nearest(findex, query)[0])] == str(tmp_path / 'blue.png')


# -- jobs at once, and files that are not what to_faiss expects ----------------------------

#: A job of its own process: ``findex start count [folder]`` writes the int keys start,
#: start + 1, ... (batches of 100). With a folder it pauses after its first two batches
#: (written and saved): it makes ``folder/ready`` and goes on when ``folder/go`` appears.
JOB = '''
import sys, time
from pathlib import Path
import numpy as np
from towhee_ray import DataCollection

findex, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pause = Path(sys.argv[4]) if len(sys.argv) > 4 else None

def rows():
    for key in range(start, start + count):
        if pause is not None and key == start + 200:
            (pause / 'ready').touch()
            deadline = time.monotonic() + 120
            while not (pause / 'go').exists():
                if time.monotonic() > deadline:
                    sys.exit('nobody said go')
                time.sleep(0.05)
        yield key, np.ones(8, np.float32)

result = DataCollection['id', 'vec'](rows()).to_faiss['id', 'vec'](findex=findex, batch=100)
print(result.insert_count, result.details['ntotal'])
'''


def paused_job(findex, start, count, folder):
    """The JOB above in a process of its own, once it has written its first two batches."""
    job = subprocess.Popen([sys.executable, '-c', JOB, str(findex), str(start), str(count), str(folder)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=support.ROOT)
    if not support.eventually(lambda: (folder / 'ready').exists() or job.poll() is not None, 120):
        job.kill()
    assert job.poll() is None, job.communicate()
    return job


def test_a_second_job_writing_the_same_index_is_refused_at_once_and_nothing_is_lost(tmp_path, python_process):
    findex = tmp_path / 'index.bin'
    first = paused_job(findex, 0, 2000, tmp_path)
    try:
        second = python_process('-c', JOB, str(findex), '100000', '2000')
        assert second.returncode != 0, second.stdout
        assert f'another job is writing {findex} (pid {first.pid})' in second.stderr
        assert 'Wait for it to end and run this one again' in second.stderr
        (tmp_path / 'go').touch()
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        first.kill()
        first.wait()
    assert out.split() == ['2000', '2000'] and ids_in(findex) == list(range(2000))
    again = python_process('-c', JOB, str(findex), '100000', '2000')   # once the first job ended
    assert again.returncode == 0, again.stderr
    assert ids_in(findex) == list(range(2000)) + list(range(100000, 102000))
    assert sorted(path.name for path in tmp_path.iterdir()) == ['go', 'index.bin', 'ready']


def test_a_killed_job_leaves_no_lock_that_blocks_the_next_run(tmp_path, python_process):
    findex = tmp_path / 'index.bin'
    killed = paused_job(findex, 0, 2000, tmp_path)
    killed.kill()   # SIGKILL: no cleanup of any kind
    killed.wait()
    resumed = python_process('-c', JOB, str(findex), '0', '2000')
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ['1800', '2000']   # the two batches saved before the kill are kept
    assert ids_in(findex) == list(range(2000))
    assert sorted(path.name for path in tmp_path.iterdir()) == ['index.bin', 'ready']


#: A job killed (SIGKILL) as it renames the index file of its ``save``-th save, after the
#: key-value file's: ``findex save``, 300 str keys in batches of 100.
KILLED_BETWEEN_RENAMES = '''
import os, signal, sys
import numpy as np
from towhee_ray import DataCollection

findex, save = sys.argv[1], int(sys.argv[2])
renames = 0

def kill_as_the_index_is_renamed(event, args):
    global renames
    if event == 'os.rename' and os.fspath(args[1]) == findex:
        renames += 1
        if renames == save:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(kill_as_the_index_is_renamed)
rows = [(f'k{i}', np.full(8, i, np.float32)) for i in range(300)]
DataCollection['id', 'vec'](rows).to_faiss['id', 'vec'](findex=findex, batch=100)
'''


@pytest.mark.parametrize('save', [1, 2])
def test_a_job_killed_between_the_two_renames_of_a_save_is_completed_by_the_next_run(tmp_path, python_process,
                                                                                     save):
    findex = tmp_path / 'index.bin'
    killed = python_process('-c', KILLED_BETWEEN_RENAMES, str(findex), str(save))
    assert killed.returncode == -9, killed.stderr
    assert len(keys_of(findex)) == 100 * save   # the key-value file is ahead of its index
    assert findex.exists() == (save > 1) and list(tmp_path.glob('.index.bin.*.tmp'))
    rows = [(f'k{i}', np.full(DIMENSION, i, np.float32)) for i in range(300)]
    result = DataCollection['id', 'vec'](rows).to_faiss['id', 'vec'](findex=findex, batch=100)
    # The killed job's last save is put in place, not redone: its rows are there already.
    assert (result.insert_count, result.details['skipped']) == (300 - 100 * save, 100 * save)
    assert keys_of(findex) == {str(i): f'k{i}' for i in range(300)} and ids_in(findex) == list(range(300))
    assert nearest(findex, np.full(DIMENSION, 42, np.float32)) == [42]
    assert sorted(path.name for path in tmp_path.iterdir()) == ['index.bin', 'index_kv.bin']


def test_the_temporary_files_of_killed_jobs_are_removed_by_the_next_run(tmp_path):
    findex = tmp_path / 'index.bin'
    embedded(['a', 'b']).to_faiss['id', 'vec'](findex)
    whole = findex.read_bytes()
    (tmp_path / '.index.bin.4242.tmp').write_bytes(whole[:len(whole) // 2])   # cut short by a kill
    (tmp_path / '.index_kv.bin.4242.tmp').write_text('{"0": "a"')
    (tmp_path / '.index.bin.mine.tmp').write_text('a file of the user: not a temporary of to_faiss')
    # ahead of its index with no save to complete, as a kill by an earlier towhee_ray leaves it
    (tmp_path / 'index_kv.bin').write_text(json.dumps({'0': 'a', '1': 'b', '2': 'c'}))
    result = embedded(['c', 'd']).to_faiss['id', 'vec'](findex)
    assert (result.insert_count, result.details['skipped']) == (2, 0)
    assert keys_of(findex) == {'0': 'a', '1': 'b', '2': 'c', '3': 'd'} and ids_in(findex) == [0, 1, 2, 3]
    assert sorted(path.name for path in tmp_path.iterdir()) == ['.index.bin.mine.tmp', 'index.bin',
                                                                'index_kv.bin']


def test_str_keys_never_overwrite_a_file_in_the_place_of_their_key_value_file(tmp_path):
    def rows(keys):
        return DataCollection['id', 'vec']([(key, np.ones(DIMENSION, np.float32)) for key in keys])

    other = tmp_path / 'a_kv.bin'
    rows(range(10)).to_faiss['id', 'vec'](findex=other)   # an index whose name is a.bin's key-value file
    kept = other.read_bytes()
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(other))} is not a key-value file: it looks "
                                              rf"like a Faiss index .*not overwritten: move it away, or "
                                              rf"give kv_file="):
        rows(['x', 'y']).to_faiss['id', 'vec'](findex=tmp_path / 'a.bin')
    assert other.read_bytes() == kept and sorted(path.name for path in tmp_path.iterdir()) == ['a_kv.bin']
    # int keys need no key-value file: that file stays as it is
    assert rows(range(3)).to_faiss['id', 'vec'](findex=tmp_path / 'a.bin').insert_count == 3
    assert other.read_bytes() == kept
    result = rows(['x', 'y']).to_faiss['id', 'vec'](findex=tmp_path / 'b.bin', kv_file=tmp_path / 'b.json')
    assert result.insert_count == 2 and other.read_bytes() == kept
    with pytest.raises(ValueError, match=r'kv_file= is findex=.*a path of its own'):
        rows(['x']).to_faiss['id', 'vec'](findex=tmp_path / 'c.bin', kv_file=str(tmp_path / 'c.bin'))


def test_a_key_value_file_of_another_index_is_refused_and_kept(tmp_path):
    keys = tmp_path / 'keys.json'
    embedded(['a', 'b', 'c']).to_faiss['id', 'vec'](tmp_path / 'first.bin', kv_file=keys)
    kept = keys.read_text()
    second = tmp_path / 'second.bin'
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(keys))} holds the keys of 3 ids, but "
                                              rf"{re.escape(str(second))} does not exist: .*another index"
                                              rf".*kv_file="):
        embedded(['x', 'y']).to_faiss['id', 'vec'](second, kv_file=keys)
    faiss.write_index(faiss.IndexIDMap(faiss.IndexFlatL2(DIMENSION)), str(second))   # made empty by hand
    with pytest.raises(FileExistsError, match=rf"holds the keys of 3 ids, but {re.escape(str(second))} "
                                              rf"holds no vectors"):
        embedded(['x', 'y']).to_faiss['id', 'vec'](second, kv_file=keys)
    assert keys.read_text() == kept and faiss.read_index(str(second)).ntotal == 0
    again = embedded(['a', 'b', 'c', 'd']).to_faiss['id', 'vec'](tmp_path / 'first.bin', kv_file=keys)
    assert (again.insert_count, again.details['skipped']) == (1, 3)
    assert json.loads(keys.read_text()) == {'0': 'a', '1': 'b', '2': 'c', '3': 'd'}
    assert sorted(path.name for path in tmp_path.iterdir()) == ['first.bin', 'keys.json', 'second.bin']


def test_a_findex_that_is_not_an_index_file_says_what_it_is_and_what_to_do(tmp_path):
    folder = tmp_path / 'folder'
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=rf"findex {re.escape(str(folder))} is a folder: give findex= "
                                                rf"a file path, e.g. ") as error:
        embedded(range(2)).to_faiss['id', 'vec'](findex=folder)
    assert isinstance(error.value.__cause__, RuntimeError)
    with pytest.raises(IsADirectoryError,
                       match=r"findex \. is a folder: give findex= a file path, e.g. index.bin"):
        embedded(range(2)).to_faiss['id', 'vec'](findex='.')
    hello = tmp_path / 'hello.bin'
    hello.write_text('hello')
    for write in (lambda: embedded(range(2)).to_faiss['id', 'vec'](findex=hello),
                  lambda: FaissSink(['id', 'vec'], hello).existing_keys([1])):
        with pytest.raises(ValueError, match=rf'{re.escape(str(hello))} is not a Faiss index Faiss can read '
                                             rf'\(Index type 0x6c6c6568 \("hell"\) not recognized\).*give '
                                             rf'findex= a new file') as error:
            write()
        assert isinstance(error.value.__cause__, RuntimeError)
    assert hello.read_text() == 'hello' and sorted(path.name for path in tmp_path.iterdir()) == [
        'folder', 'hello.bin']
    (tmp_path / 'elsewhere').mkdir()
    (tmp_path / 'elsewhere' / 'a-file').write_text('not a folder')
    with pytest.raises(FileExistsError, match=r"to_faiss cannot make the folder of findex=.*a-file/index.bin "
                                              r"\(File exists: .*\); give findex= a path in a folder where"):
        embedded(range(2)).to_faiss['id', 'vec'](findex=tmp_path / 'elsewhere' / 'a-file' / 'index.bin')


def test_a_damaged_key_value_file_is_named_with_what_to_do(tmp_path):
    findex, kv_file = tmp_path / 'index.bin', tmp_path / 'index_kv.bin'
    embedded(['a', 'b']).to_faiss['id', 'vec'](findex)
    kv_file.write_text('{"0": "a", "1": ')   # cut short
    with pytest.raises(ValueError, match=rf'{re.escape(str(kv_file))}, the key-value file of '
                                         rf'{re.escape(str(findex))}, cannot be read: it is not JSON '
                                         rf'\(Expecting value: line 1 column 17.*restore .* from a backup, '
                                         rf'or delete both files') as error:
        embedded(['c']).to_faiss['id', 'vec'](findex)
    assert isinstance(error.value.__cause__, json.JSONDecodeError)
    kv_file.write_text('["a", "b"]')
    with pytest.raises(ValueError, match=r'cannot be read: it is JSON, but a list, not an object '
                                         r'\{"<id>": "<key>"\}'):
        FaissSink(['id', 'vec'], findex).existing_keys(['a'])
    assert kv_file.read_text() == '["a", "b"]' and ids_in(findex) == [0, 1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ['index.bin', 'index_kv.bin']
