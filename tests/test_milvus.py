"""to_milvus, skip_existing and the Milvus hub operators against a real Milvus Lite (served by a
process this test process owns: a Lite file is open in one process at a time) and a real local Ray."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from towhee import ops, pipe

from towhee_ray import DataCollection, ray_op
from towhee_ray.sinks import lite_server
from towhee_ray.sinks.milvus import connect
from tests.support import ODD_KEYS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / 'vectors.db')
    yield path
    lite_server.release(path)   # one server process per test's file, not one per test kept to the end


def unit(i, dim=8):
    vector = np.zeros(dim, dtype=np.float32)
    vector[i % dim] = 1
    vector[(i * 7 + 3) % dim] += 0.5
    return vector / np.linalg.norm(vector)


def stored(db, name, fields=('id',)):
    client = connect(db)
    client.load_collection(name)
    rows = client.query(name, filter='', output_fields=list(fields), limit=16384)
    return sorted(rows, key=lambda row: row[fields[0]])


def test_to_milvus_creates_the_collection_from_the_first_rows_and_inserts_in_batches(db):
    rows = DataCollection['id', 'vec', 'title', 'score', 'ok'](
        [(i, unit(i), f'title {i}', i / 2, i % 2 == 0) for i in range(25)]).stream()
    result = rows.to_milvus['id', 'vec', 'title', 'score', 'ok'](collection='items', uri=db, batch=10)
    assert (result.insert_count, result.batches, result.details['created']) == (25, 3, True)
    client = connect(db)
    fields = {field['name']: field for field in client.describe_collection('items')['fields']}
    assert fields['id']['is_primary'] and fields['id']['type'].name == 'INT64'
    assert fields['vec']['type'].name == 'FLOAT_VECTOR' and fields['vec']['params']['dim'] == 8
    assert [fields[name]['type'].name for name in ('title', 'score', 'ok')] == ['VARCHAR', 'DOUBLE', 'BOOL']
    assert client.list_indexes('items') == ['vec']
    got = stored(db, 'items', ('id', 'vec', 'title', 'score', 'ok'))
    assert [row['id'] for row in got] == list(range(25))
    assert got[7]['title'] == 'title 7' and got[7]['score'] == 3.5 and got[7]['ok'] is False
    np.testing.assert_allclose(got[7]['vec'], unit(7), atol=1e-6)
    hits = client.search('items', data=[unit(12)], limit=1, output_fields=['title'])[0]
    assert hits[0]['id'] == 12 and hits[0]['entity']['title'] == 'title 12'


def test_string_keys_and_01_fingerprints_go_in_as_float_vectors(db):
    bits = np.random.default_rng(0).integers(0, 2, (5, 64)).astype(bool)
    rows = DataCollection([{'smiles': f'C{i}', 'fp': bits[i]} for i in range(5)])
    assert rows.to_milvus['smiles', 'fp'](collection='mols', uri=db).insert_count == 5
    fields = {field['name']: field for field in connect(db).describe_collection('mols')['fields']}
    assert fields['smiles']['type'].name == 'VARCHAR' and fields['fp']['params']['dim'] == 64
    np.testing.assert_array_equal(stored(db, 'mols', ('smiles', 'fp'))[0]['fp'], bits[0].astype(np.float32))


def test_bytes_fingerprints_go_in_as_01_float_vectors(db):
    rows = DataCollection['id', 'fp'](([0, b'\x0f'], [1, b'\xf0']))
    result = rows.to_milvus['id', 'fp'](collection='fp', uri=db)
    assert (result.insert_count, result.details['created']) == (2, True)
    got = stored(db, 'fp', ('id', 'fp'))
    assert [list(row['fp']) for row in got] == [[0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]]


def test_a_key_is_never_held_twice_upsert_replaces_and_skip_keeps(db):
    first = DataCollection['id', 'vec', 'tag']([(i, unit(i), 'first') for i in range(6)])
    again = DataCollection['id', 'vec', 'tag']([(i, unit(i), 'again') for i in range(3, 9)]
                                               + [(8, unit(8), 'last')])
    first.to_milvus['id', 'vec', 'tag'](collection='up', uri=db)
    assert again.to_milvus['id', 'vec', 'tag'](collection='up', uri=db).insert_count == 6
    assert [(row['id'], row['tag']) for row in stored(db, 'up', ('id', 'tag'))] == \
        [(0, 'first'), (1, 'first'), (2, 'first'), (3, 'again'), (4, 'again'), (5, 'again'), (6, 'again'),
         (7, 'again'), (8, 'last')]
    first.to_milvus['id', 'vec', 'tag'](collection='skip', uri=db)
    result = again.to_milvus['id', 'vec', 'tag'](collection='skip', uri=db, on_existing='skip')
    assert (result.insert_count, result.details['skipped']) == (3, 3)
    assert [(row['id'], row['tag']) for row in stored(db, 'skip', ('id', 'tag'))][2:5] == \
        [(2, 'first'), (3, 'first'), (4, 'first')]


def test_text_keys_of_any_characters_resume_and_skip(db):
    def job(keys):
        return (DataCollection['id'](keys).stream()
                .skip_existing['id']('odd', uri=db)
                .runas_op['id', 'vec'](func=lambda key: unit(len(key)))
                .to_milvus['id', 'vec'](collection='odd', uri=db))

    assert job(ODD_KEYS[:8]).insert_count == 8
    assert job(ODD_KEYS).insert_count == len(ODD_KEYS) - 8        # only the new ones
    assert sorted(row['id'] for row in stored(db, 'odd')) == sorted(ODD_KEYS)
    again = DataCollection['id', 'vec']([(key, unit(1)) for key in ODD_KEYS])
    result = again.to_milvus['id', 'vec'](collection='odd', uri=db, on_existing='skip')
    assert (result.insert_count, result.details['skipped']) == (0, len(ODD_KEYS))


def test_to_milvus_holds_at_most_one_batch_of_a_long_stream(db):
    client = connect(db)
    pulled, behind = [0], []

    def rows():
        for i in range(600):
            if i >= 100 and i % 50 == 0:   # the collection exists once the first batch is written
                count = client.query('long', filter='', output_fields=['count(*)'])[0]['count(*)']
                behind.append(i - count)
            pulled[0] += 1
            yield {'id': i, 'vec': unit(i)}

    result = DataCollection(rows()).to_milvus['id', 'vec'](collection='long', uri=db, batch=100)
    assert result.insert_count == 600 and pulled[0] == 600
    assert behind and max(behind) <= 100, behind   # never more than one batch pulled and not yet stored


def test_skip_existing_drops_stored_keys_before_the_expensive_step(db):
    DataCollection['id', 'vec']([(i, unit(i)) for i in range(0, 40, 2)]).to_milvus['id', 'vec'](
        collection='half', uri=db)
    embedded, skipped = [], []

    def embed(i):
        embedded.append(i)
        return unit(i)

    source = DataCollection['id']((i for i in range(40)))
    chain = (source.skip_existing['id']('half', uri=db, batch=7, callback=skipped.append)
             .runas_op['id', 'vec'](func=embed))
    assert chain.is_stream
    result = chain.to_milvus['id', 'vec'](collection='half', uri=db)
    assert sorted(embedded) == list(range(1, 40, 2)) and result.insert_count == 20
    assert sorted(row.id for row in skipped) == list(range(0, 40, 2))
    assert [row['id'] for row in stored(db, 'half')] == list(range(40))
    # a collection that does not exist yet holds nothing
    assert len(DataCollection['id']([1, 2]).skip_existing['id']('nothing_yet', uri=db)) == 2


@pytest.mark.timeout(900)   # two actors loading a model on a loaded machine; a hang still fails
def test_ann_insert_and_ann_search_in_a_pipe_that_embeds_on_ray_op_actors(db, ray_cluster):
    passages = ['The try statement specifies exception handlers and cleanup code.',
                'A for loop iterates over the items of any sequence.',
                'Functions may be given default argument values.',
                'Module objects have a namespace implemented by a dictionary.']
    embed = ray_op(ops.sentence_embedding.minilm(), num_worker=2)
    client = connect(db)
    index = client.prepare_index_params()
    index.add_index('vec', index_type='AUTOINDEX', metric_type='COSINE')
    client.create_collection('texts', schema=_text_schema(db), index_params=index)
    insert = (pipe.input('id', 'text')
              .map('text', 'vec', embed)
              .map(('id', 'vec', 'text'), 'result',
                   ops.ann_insert.milvus_client(uri=db, collection_name='texts'))
              .output('result'))
    results = [queue.get()[0] for queue in insert.batch(list(enumerate(passages)))]
    assert [result.insert_count for result in results] == [1, 1, 1, 1]
    search = (pipe.input('question')
              .map('question', 'vec', embed)
              .flat_map('vec', 'hit', ops.ann_search.milvus_client(uri=db, collection_name='texts', limit=2,
                                                                   output_fields=['text']))
              .output('hit'))
    hits = search('what does a for loop do?').to_list()
    assert len(hits) == 2 and hits[0][0][0] == 1 and hits[0][0][2] == passages[1]
    assert 0 < hits[0][0][1] <= 1.0001 and hits[0][0][1] > hits[1][0][1]
    assert (sum(actor['calls'] for actor in embed.stats()) == 5
            and all(actor['pid'] != os.getpid() for actor in embed.stats()))
    embed.close()
    # the same search in a DataCollection chain
    vector = ops.sentence_embedding.minilm().get_op()('default values of arguments')
    found = DataCollection([vector]).ann_search.milvus_client(uri=db, collection_name='texts',
                                                              limit=1).to_list()
    assert found[0][0][0] == 2


def _text_schema(db):
    from pymilvus import DataType
    schema = connect(db).create_schema(auto_id=False)
    schema.add_field('id', DataType.INT64, is_primary=True)
    schema.add_field('vec', DataType.FLOAT_VECTOR, dim=384)
    schema.add_field('text', DataType.VARCHAR, max_length=1000)
    return schema


# -- jobs that resume --------------------------------------------------------------------------

def run_job(db, log, *args, **popen):
    return subprocess.Popen([sys.executable, str(ROOT / 'tests' / 'milvus_job.py'), db, log, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **popen)


def read_collection(db):
    """The rows of the job's collection, read in a fresh process (reading here would hold the file)."""
    code = ('import sys, json; from towhee_ray.sinks.milvus import connect; c = connect(sys.argv[1]); '
            'c.load_collection("passages"); '
            'rows = c.query("passages", filter="", output_fields=["id", "vec", "text"], limit=16384); '
            'print(json.dumps([[r["id"], [float(x) for x in r["vec"]], r["text"]] for r in rows]))')
    done = subprocess.run([sys.executable, '-c', code, db], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json
    return sorted(json.loads(done.stdout.splitlines()[-1]))


def test_a_job_sigkilled_mid_run_resumes_exactly_embedding_only_the_missing_rows(tmp_path):
    killed_db, log1, log2 = str(tmp_path / 'killed.db'), tmp_path / 'run1.log', tmp_path / 'run2.log'
    job = run_job(killed_db, str(log1), '--stop-at', '35')
    deadline = time.monotonic() + 240
    while not os.path.exists(killed_db + '.stopped'):
        assert job.poll() is None, job.communicate()
        assert time.monotonic() < deadline, 'the job never reached row 35'
        time.sleep(0.1)
    job.kill()                      # SIGKILL: no cleanup of any kind
    job.wait(timeout=60)
    committed = read_collection(killed_db)       # the file is free again: another process opens it
    assert [row[0] for row in committed] == list(range(30))   # the three batches before row 35
    resumed = run_job(killed_db, str(log2))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert out.split()[0] == '70'
    assert sorted(log2.read_text().split('\n')[:-1]) == sorted(f'passage {i}' for i in range(30, 100))
    whole_db = str(tmp_path / 'whole.db')
    whole = run_job(whole_db, str(tmp_path / 'whole.log'))
    assert whole.communicate(timeout=300) and whole.returncode == 0
    final, uninterrupted = read_collection(killed_db), read_collection(whole_db)
    assert [row[0] for row in final] == list(range(100))          # each key once
    assert [(row[0], row[2]) for row in final] == [(row[0], row[2]) for row in uninterrupted]
    np.testing.assert_allclose([row[1] for row in final], [row[1] for row in uninterrupted], atol=1e-6)


def test_a_new_owner_waits_for_the_server_of_a_killed_job_to_let_go_of_the_file(tmp_path):
    path = str(tmp_path / 'orphaned.db')
    # A process shaped as a Lite server whose owner (pid 1 here) is not its parent: a
    # server whose job died, still closing the file for a second.
    closing = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1.5)',
                                lite_server._SCRIPT, path, '1'])
    mine = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', lite_server._SCRIPT, path,
                             str(os.getpid())])   # one whose owner lives: not an orphan
    try:
        assert lite_server._orphans(path) == [closing.pid]
        start = time.monotonic()
        assert lite_server._wait_for_orphan(path)
        assert 1.0 < time.monotonic() - start < 30
        assert lite_server._orphans(path) == [] and not lite_server._wait_for_orphan(path)
    finally:
        for process in (closing, mine):
            process.kill()
            process.wait()


def test_a_lite_server_leaves_no_log_behind_once_it_closed_the_file_cleanly(tmp_path):
    # Released by its owner: the owner removes the log.
    path = str(tmp_path / 'released.db')
    lite_server.served(path)
    log = lite_server.running(path).log_path
    assert os.path.exists(log)
    lite_server.release(path)
    assert not os.path.exists(log)
    # Its owner killed (SIGKILL: no cleanup of any kind): the server closes the file, exits and
    # removes its log itself.
    owner = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from towhee_ray.sinks import lite_server; lite_server.served(sys.argv[1]); '
        'server = lite_server.running(sys.argv[1]); print(server.log_path, server.process.pid, flush=True); '
        'time.sleep(300)'), str(tmp_path / 'orphaned.db')], stdout=subprocess.PIPE, text=True)
    try:
        log, pid = owner.stdout.readline().split()
        assert os.path.exists(log)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + lite_server.ORPHAN_WAIT_SECONDS
    while lite_server._running(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lite_server._running(int(pid)), 'the server of a killed owner did not exit'
    assert not os.path.exists(log)


def test_a_lite_server_whose_owner_died_before_it_heard_the_port_closes_the_file_and_leaves_no_log(tmp_path):
    # The owner's end of the server's stdout closes with the owner: here it is closed before
    # the server (a second to start) writes its port; the owner's stdin pipe stays open.
    path, log = str(tmp_path / 'unheard.db'), tmp_path / 'server.log'
    log.write_text('')
    server = subprocess.Popen([sys.executable, lite_server._SCRIPT, path, str(os.getpid())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open('w'),
                              env={**os.environ, lite_server.LOG_ENV: str(log)})
    server.stdout.close()
    try:
        assert server.wait(timeout=lite_server.ORPHAN_WAIT_SECONDS) == 0
    finally:
        server.kill()
        server.stdin.close()
    assert not log.exists()
    lite_server.served(path)   # the file was closed: a new server opens it
    lite_server.release(path)


# -- bad input ---------------------------------------------------------------------------------

def test_a_vector_of_the_wrong_dimension_names_the_row_and_both_sizes_and_keeps_what_was_written(db):
    rows = [{'id': i, 'vec': unit(i, 8 if i != 13 else 5)} for i in range(20)]
    with pytest.raises(ValueError) as error:
        DataCollection(rows).to_milvus['id', 'vec'](collection='dims', uri=db, batch=5)
    message = str(error.value)
    assert 'row #13 (id=13)' in message and '5 dimensions' in message and 'holds 8' in message
    assert 'the 3 rows before it in its batch were written' in ''.join(error.value.__notes__)
    assert [row['id'] for row in stored(db, 'dims')] == list(range(13))


def test_writers_workers_into_milvus_lite_is_refused_with_why_and_releases_the_chain(
        db, ray_cluster, alive_actors):
    chain = DataCollection(iter(['a b c'])).set_parallel(1, backend='ray').towhee.text_split(max_words=1)
    before = set(alive_actors())
    with pytest.raises(ValueError, match=r"to_milvus\(writers='workers'\): workers write into a Milvus "
                                         r"server.*Milvus Lite file has one writer"):
        chain.to_milvus['text', 'vec'](collection='lite', uri=db, writers='workers')
    assert set(alive_actors()) <= before


def test_a_missing_field_and_a_key_of_the_wrong_type_name_the_row(db):
    good = [{'id': i, 'vec': unit(i)} for i in range(3)]
    with pytest.raises(KeyError, match=r"row #3 \(id=3\) has no field 'vec'.*\['id', 'vec'\]"):
        DataCollection(good + [{'id': 3}]).to_milvus['id', 'vec'](collection='bad', uri=db, batch=2)
    assert [row['id'] for row in stored(db, 'bad')] == [0, 1]
    with pytest.raises(TypeError, match=r"row #1 \(id='7'\): the key 'id' is '7' \(str\); .*int64.*func=int"):
        DataCollection(good[:1] + [{'id': '7', 'vec': unit(7)}]).to_milvus['id', 'vec'](
            collection='bad', uri=db)
    with pytest.raises(TypeError, match=r"row #0 \(id=1.5\).*primary key is an int or a str"):
        DataCollection([{'id': 1.5, 'vec': unit(1)}]).to_milvus['id', 'vec'](collection='new', uri=db)
    with pytest.raises(TypeError, match='needs the fields to write in a subscript'):
        DataCollection(good).to_milvus(collection='bad', uri=db)


def test_a_vector_that_is_not_finite_names_the_row_and_keeps_what_came_before(db):
    rows = [{'id': i, 'vec': unit(i) if i != 6 else np.full(8, np.nan, np.float32)} for i in range(10)]
    with pytest.raises(ValueError, match=r"row #6 \(id=6\): field 'vec' holds 8 values that are not a finite "
                                         r"number \(nan at index 0\).*drop such rows first"):
        DataCollection(rows).to_milvus['id', 'vec'](collection='nan', uri=db, batch=4)
    assert [row['id'] for row in stored(db, 'nan')] == list(range(6))


@pytest.mark.parametrize('rows, error, message', [
    ([{'id': 0, 'vec': unit(0), 't': None}], ValueError,
     r"row #0 \(id=0\): field 't' is None, so its Milvus type is unknown.*give it a value in every row"),
    ([{'id': 0, 'vec': unit(0), 't': 'a'}, {'id': 1, 'vec': unit(1), 't': None}], ValueError,
     r"row #1 \(id=1\): field 't' is None, and the collection's field VARCHAR holds no nulls"),
    ([{'id': 0, 'vec': unit(0), 't': 'a'}, {'id': 1, 'vec': unit(1), 't': 7}], TypeError,
     r"row #1 \(id=1\): field 't' is 7 \(int\), but the collection's field is VARCHAR, which holds str"
     r".*func=str"),
    ([{'id': 0, 'vec': unit(0), 'n': 1}, {'id': 1, 'vec': unit(1), 'n': 1.5}], TypeError,
     r"row #1 \(id=1\): field 'n' is 1.5 \(float\), but the collection's field is INT64, which holds int"),
    ([{'id': 2**70, 'vec': unit(0)}], ValueError,
     r"row #0 \(id=1180591620717411303424\).*field 'id' is 1180591620717411303424, out of its range.*INT64"),
    ([{'id': 0, 'vec': unit(0), 'm': {'a': 1}}, {'id': 1, 'vec': unit(1), 'm': None}], ValueError,
     r"row #1 \(id=1\): field 'm' is None, and the collection's field JSON holds no nulls"),
    ([{'id': 0, 'vec': unit(0), 'tags': [1, 2, 3]}], TypeError,
     r"row #0 \(id=0\): fields 'vec' and 'tags' are both vectors.*one vector field: leave 'tags' out of "
     r"to_milvus\[...\], or make it JSON first"),
    ([{'id': float('nan'), 'vec': unit(0)}], ValueError,
     r"row #0 \(id=nan\): the key 'id' is NaN, which equals no key.*every re-run would write the row again"),
], ids=['none-first', 'none-later', 'str-then-int', 'int-then-float', 'key-past-int64', 'json-none',
        'second-vector', 'nan-key'])
def test_a_scalar_the_collection_cannot_hold_names_the_row_and_what_the_field_holds(db, rows, error, message):
    with pytest.raises(error, match=message):
        DataCollection(rows).to_milvus[tuple(rows[0])](collection='scalars', uri=db)


def test_a_collection_field_the_rows_lack_is_named_before_anything_is_written(db):
    DataCollection([{'id': 0, 'vec': unit(0), 'title': 'zero'}]).to_milvus['id', 'vec', 'title'](
        collection='titled', uri=db)
    with pytest.raises(ValueError, match=r"needs a value for \['title'\] in every row, and to_milvus\[...\] "
                                         r"writes only \['id', 'vec'\]: name it in to_milvus\[...\]"):
        DataCollection([{'id': 1, 'vec': unit(1)}]).to_milvus['id', 'vec'](collection='titled', uri=db)
    assert [row['id'] for row in stored(db, 'titled')] == [0]


def test_a_lite_server_that_dies_mid_job_is_named_with_what_to_do_and_the_rerun_resumes(db):
    def rows(keys, kill_at=None):
        for i in keys:
            if i == kill_at:   # killed as the out-of-memory killer would
                server = lite_server.running(db)
                server.process.kill()
                server.process.wait()
            yield {'id': i, 'vec': unit(i)}

    with pytest.raises(ConnectionError, match=r"the Milvus Lite server of '.*vectors.db' \(pid \d+\) exited "
                                              r"during the job, with code -9 .*run the job again"):
        DataCollection(rows(range(300), kill_at=150)).to_milvus['id', 'vec'](
            collection='dies', uri=db, batch=50)
    written = len(stored(db, 'dies'))   # a new server, on what the old one committed
    assert written <= 150
    rerun = (DataCollection['id'](range(300)).skip_existing['id']('dies', uri=db)
             .runas_op['id', 'vec'](func=unit))
    assert rerun.to_milvus['id', 'vec'](collection='dies', uri=db).insert_count == 300 - written
    assert [row['id'] for row in stored(db, 'dies')] == list(range(300))


def test_a_lite_path_that_cannot_be_a_lite_folder_says_what_to_do(tmp_path):
    (tmp_path / 'plain.db').write_text('not Milvus Lite 3')
    rows = DataCollection([{'id': 1, 'vec': unit(1)}])
    with pytest.raises(FileExistsError, match=r"plain.db' is a file, and Milvus Lite keeps its collections "
                                              r"in a folder of that name.*give another path ending in .db"):
        rows.to_milvus['id', 'vec'](collection='c', uri=str(tmp_path / 'plain.db'))
    with pytest.raises(OSError, match=r"cannot make the folder of the Milvus Lite file .*plain.db/inner.db.*"
                                      r"give a path where this process may write"):
        rows.to_milvus['id', 'vec'](collection='c', uri=str(tmp_path / 'plain.db' / 'inner.db'))


def test_an_unreachable_milvus_is_a_connection_error_naming_the_address_within_30_seconds(db):
    silent = socket.socket()        # accepts connections and never answers
    silent.bind(('127.0.0.1', 0))
    silent.listen(8)
    address = f'http://127.0.0.1:{silent.getsockname()[1]}'
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f'cannot reach Milvus at {address} within'):
        DataCollection([{'id': 1, 'vec': unit(1)}]).to_milvus['id', 'vec'](collection='x', uri=address)
    assert time.monotonic() - start < 30
    silent.close()


def test_a_lite_file_held_by_another_process_is_a_connection_error_saying_so(tmp_path):
    db = str(tmp_path / 'held.db')
    code = ('import sys, time; from towhee_ray.sinks.milvus import connect; connect(sys.argv[1]); '
            'print("open", flush=True); time.sleep(600)')
    holder = subprocess.Popen([sys.executable, '-c', code, db], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'open'
        with pytest.raises(ConnectionError, match=r'held.db.*one\s+process at a time'):
            DataCollection([{'id': 1, 'vec': unit(1)}]).to_milvus['id', 'vec'](collection='x', uri=db)
    finally:
        holder.kill()
        holder.wait()


def test_a_lite_file_is_never_opened_in_a_ray_worker(db, ray_cluster):
    with pytest.raises(RuntimeError, match='cannot be opened in a Ray worker'):
        DataCollection([1]).set_parallel(1, 'ray').map(lambda _: connect(db)).to_list()


def test_a_bad_metric_type_or_index_params_is_refused_before_anything_runs(db):
    rows = DataCollection['id', 'vec']([(0, unit(0)), (1, unit(1))])
    with pytest.raises(ValueError, match=r"metric_type is 'COSINE', 'IP' or 'L2' .*got 'BAD'"):
        rows.to_milvus['id', 'vec'](collection='bm', uri=db, metric_type='BAD')
    with pytest.raises(ValueError, match=r"index_params\['metric_type'\] is 'COSINE', .*got 'HAMMING'"):
        rows.to_milvus['id', 'vec'](collection='bm', uri=db, index_params={'metric_type': 'HAMMING'})
    with pytest.raises(TypeError, match='index_params is a dict'):
        rows.to_milvus['id', 'vec'](collection='bm', uri=db, index_params='HNSW')
    assert 'bm' not in connect(db).list_collections()
    assert rows.to_milvus['id', 'vec'](collection='bm', uri=db, metric_type='l2').insert_count == 2
    assert connect(db).describe_index('bm', 'vec')['metric_type'] == 'L2'


def test_fields_go_by_position_only_where_no_name_of_the_collection_says_otherwise(db):
    first = DataCollection['id', 'vec', 'title', 'body']([(0, unit(0), 'T0', 'B0')])
    first.to_milvus['id', 'vec', 'title', 'body'](collection='sw', uri=db)
    swapped = DataCollection['id', 'vec', 'body', 'titles']([(1, unit(1), 'B1', 'T1')])
    with pytest.raises(ValueError, match=r"'sw' at .* has no field 'titles' \(its fields: "
                                         r"\['id', 'vec', 'title', 'body'\]\)"):
        swapped.to_milvus['id', 'vec', 'body', 'titles'](collection='sw', uri=db)
    renamed = DataCollection['key', 'emb', 't', 'b']([(2, unit(2), 'T2', 'B2')])   # none is the collection's
    assert renamed.to_milvus['key', 'emb', 't', 'b'](collection='sw', uri=db).insert_count == 1
    assert [(row['id'], row['title'], row['body']) for row in stored(db, 'sw', ('id', 'title', 'body'))] == \
        [(0, 'T0', 'B0'), (2, 'T2', 'B2')]


@pytest.mark.filterwarnings('error::RuntimeWarning')   # numpy's overflow warning stays in
def test_a_vector_beyond_float32_range_names_the_row_and_a_collection_left_empty_is_dropped(db):
    big = np.array([1e39, 0, 0, 0, 0, 0, 0, 1.0])
    message = (r"row #{} \(id={}\): field 'vec' holds 1 value that is not a finite number "
               r"\(1e\+39 at index 0 is out of float32 range")
    with pytest.raises(ValueError, match=message.format(2, 2)):
        DataCollection([{'id': i, 'vec': unit(i) if i != 2 else big} for i in range(4)]) \
            .to_milvus['id', 'vec'](collection='big', uri=db)
    assert [row['id'] for row in stored(db, 'big')] == [0, 1]
    with pytest.raises(ValueError, match=message.format(0, 0)) as error:
        DataCollection([{'id': 0, 'vec': big}]).to_milvus['id', 'vec'](collection='new', uri=db)
    assert 'was created by this job and held no row: it was dropped again' in ''.join(error.value.__notes__)
    assert 'new' not in connect(db).list_collections()


def test_a_lite_path_may_be_a_path_object_or_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rows = DataCollection([{'id': 1, 'vec': unit(1)}])
    try:
        assert rows.to_milvus['id', 'vec'](collection='c', uri=tmp_path / 'p.db').insert_count == 1
        result = rows.to_milvus['id', 'vec'](collection='c', uri='~/t.db')
        assert result.insert_count == 1 and str(tmp_path / 't.db') in result.destination
        assert sorted(os.listdir(tmp_path)) == ['p.db', 't.db']      # no './~' folder
        assert [row['id'] for row in stored(str(tmp_path / 't.db'), 'c')] == [1]
    finally:
        lite_server.release(str(tmp_path / 'p.db'))
        lite_server.release(str(tmp_path / 't.db'))
