"""to_milvus, skip_existing, the hub's Milvus operators and Towhee 0.9 scripts against a real
Milvus server (the session's ``milvus_server``: Milvus 2.3.5 standalone) and a real local Ray.

With a server, the workers of a stream's last parallel step write the rows they make; the
driver sees one marker per row."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from towhee import ops, pipe

from towhee_ray import DataCollection, ray_op
from towhee_ray.sinks.milvus import MilvusSink, connect
from tests.support import ODD_KEYS, ROOT, kill_session

DIM = 8

# a Towhee 0.9 script uses the pymilvus ORM, which pymilvus 3.0 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:tests.test_milvus_server")


def unit(i, dim=DIM):
    vector = np.zeros(dim, dtype=np.float32)
    vector[i % dim] = 1
    vector[(i * 7 + 3) % dim] += 0.5
    return vector / np.linalg.norm(vector)


def make_row(i):
    return {'id': i, 'vec': unit(i), 'text': f'passage {i}', 'pid': os.getpid()}


def stored(uri, name, fields=('id',)):
    client = connect(uri)
    client.load_collection(name)
    rows = client.query(name, filter='id >= 0', output_fields=list(fields), limit=16384,
                        consistency_level='Strong')
    client.close()
    return sorted(rows, key=lambda row: row[fields[0]])


@pytest.fixture
def collection(request):
    """A collection name of this test's own."""
    return f'c_{request.node.name[:40].replace("[", "_").replace("]", "_").replace("-", "_")}_{os.getpid()}'


def test_ray_workers_write_the_rows_they_make_and_the_driver_writes_none(milvus_server, collection, mocker):
    driver_writes = mocker.spy(MilvusSink, 'write')
    chain = DataCollection.range(300).stream().set_parallel(2, backend='ray', chunk_size=40).map(make_row)
    result = chain.to_milvus['id', 'vec', 'text', 'pid'](collection=collection, uri=milvus_server, batch=25)
    assert result.insert_count == 300 and result.details['writers'] == 'workers'
    assert result.details['created'] is True and result.details['skipped'] == 0
    assert 300 // 25 <= result.batches <= 300 // 25 + 300 // 40 + 1   # each chunk in batches of 25
    assert driver_writes.call_count == 0          # no row was written from this process
    rows = stored(milvus_server, collection, ('id', 'vec', 'text', 'pid'))
    assert [row['id'] for row in rows] == list(range(300))
    assert rows[17]['text'] == 'passage 17'
    np.testing.assert_allclose(rows[17]['vec'], unit(17), atol=1e-6)
    assert os.getpid() not in {row['pid'] for row in rows}       # made and written in Ray workers


def test_writers_driver_writes_from_the_driver_even_after_a_parallel_step(milvus_server, collection, mocker):
    driver_writes = mocker.spy(MilvusSink, 'write')
    chain = DataCollection.range(120).stream().set_parallel(2, backend='ray', chunk_size=40).map(make_row)
    result = chain.to_milvus['id', 'vec'](collection=collection, uri=milvus_server, batch=50,
                                          writers='driver')
    assert result.insert_count == 120 and 'writers' not in result.details
    assert driver_writes.call_count == 3
    assert [row['id'] for row in stored(milvus_server, collection)] == list(range(120))


def test_operator_actors_and_threads_write_too_and_a_key_is_never_held_twice(milvus_server, collection):
    passages = [f'The {word} statement.' for word in ('try', 'for', 'while', 'with', 'if', 'def')]
    rows = (DataCollection['id', 'text'](list(enumerate(passages))).stream()
            .set_parallel(2, backend='ray')
            .towhee.text_split['text', 'parts'](max_words=2)
            .runas_op['id', 'vec'](func=unit))
    # the last step is a plain function here; its tasks write
    first = rows.to_milvus['id', 'vec'](collection=collection, uri=milvus_server)
    assert first.insert_count == 6 and first.details['writers'] == 'workers'
    again = (DataCollection['id']((i for i in range(3, 9))).set_parallel(2, backend='thread')
             .runas_op['id', 'vec'](func=unit))
    result = again.to_milvus['id', 'vec'](collection=collection, uri=milvus_server, on_existing='skip')
    assert (result.insert_count, result.details['skipped']) == (3, 3)
    assert 'writers' not in result.details        # with on_existing='skip' the driver writes
    assert [row['id'] for row in stored(milvus_server, collection)] == list(range(9))


def make_repeated(i):
    return {'id': i % 20, 'vec': unit(i), 'src': i}


def test_skip_after_ray_workers_stores_each_key_once_written_from_the_driver(milvus_server, collection):
    chain = DataCollection.range(40).stream().set_parallel(2, backend='ray', chunk_size=20).map(make_repeated)
    result = chain.to_milvus['id', 'vec', 'src'](collection=collection, uri=milvus_server, on_existing='skip',
                                                 batch=20)
    assert 'writers' not in result.details and result.insert_count == 20 and result.details['skipped'] == 20
    rows = stored(milvus_server, collection, ('id', 'src'))
    assert [(row['id'], row['src']) for row in rows] == [(i, i) for i in range(20)]    # the first of each key
    again = DataCollection.range(40).stream().set_parallel(2, backend='ray', chunk_size=20).map(make_repeated)
    with pytest.raises(ValueError, match=r"writers='workers'.*with on_existing='skip' the driver writes"):
        again.to_milvus['id', 'vec', 'src'](collection=collection, uri=milvus_server, on_existing='skip',
                                            writers='workers')


@pytest.mark.timeout(600)   # a model loading in an actor on a loaded machine
def test_an_operator_step_writes_from_its_actors(milvus_server, collection):
    texts = ['A for loop iterates over a sequence.', 'The try statement handles exceptions.',
             'Functions may have default argument values.']
    rows = DataCollection['id', 'text'](list(enumerate(texts))).stream().set_parallel(1, backend='ray')
    embedded = rows.sentence_embedding.minilm['text', 'vec']()
    result = embedded.to_milvus['id', 'vec', 'text'](collection=collection, uri=milvus_server)
    assert result.insert_count == 3 and result.details['writers'] == 'workers'
    got = stored(milvus_server, collection, ('id', 'vec', 'text'))
    assert [row['text'] for row in got] == texts and len(got[0]['vec']) == 384
    # text_split makes lists of strings, not vectors: the worker's error names the element
    split = (DataCollection['id', 'text'](list(enumerate(texts))).stream().set_parallel(1, backend='ray')
             .towhee.text_split['text', 'vec'](max_words=3))
    with pytest.raises(TypeError, match=r"operator towhee/text-split\[.*\] \+ to_milvus failed on element "
                                        r"#0.*none of the fields \['vec'\] is a vector"):
        split.to_milvus['id', 'vec'](collection=collection + '_split', uri=milvus_server)


def test_skip_existing_on_the_server_embeds_only_the_missing_rows(milvus_server, collection):
    DataCollection['id', 'vec']([(i, unit(i)) for i in range(0, 40, 2)]).to_milvus['id', 'vec'](
        collection=collection, uri=milvus_server)
    chain = (DataCollection['id']((i for i in range(40)))
             .skip_existing['id'](collection, uri=milvus_server, batch=7)
             .set_parallel(2, backend='ray').runas_op['id', 'vec'](func=unit))
    result = chain.to_milvus['id', 'vec'](collection=collection, uri=milvus_server)
    assert result.insert_count == 20 and result.details['writers'] == 'workers'
    assert [row['id'] for row in stored(milvus_server, collection)] == list(range(40))


def test_text_keys_of_any_characters_resume_on_the_server(milvus_server, collection):
    def job(keys):
        return (DataCollection['id'](keys).stream()
                .skip_existing['id'](collection, uri=milvus_server)
                .set_parallel(2, backend='ray')
                .runas_op['id', 'vec'](func=lambda key: unit(len(key))))

    assert job(ODD_KEYS[:8]).to_milvus['id', 'vec'](collection=collection,
                                                    uri=milvus_server).insert_count == 8
    result = job(ODD_KEYS).to_milvus['id', 'vec'](collection=collection, uri=milvus_server)
    assert (result.insert_count, result.details['writers']) == (len(ODD_KEYS) - 8, 'workers')
    client = connect(milvus_server)
    client.load_collection(collection)
    rows = client.query(collection, filter='id != ""', output_fields=['id'], consistency_level='Strong')
    client.close()
    assert sorted(row['id'] for row in rows) == sorted(ODD_KEYS)


def test_bad_rows_from_workers_name_the_element_and_keep_what_came_before(milvus_server, collection):
    rows = [{'id': i, 'vec': unit(i, DIM if i != 13 else 5)} for i in range(20)]
    chain = DataCollection(iter(rows)).set_parallel(1, backend='ray', chunk_size=5).map(lambda row: row)
    with pytest.raises(ValueError) as error:
        chain.to_milvus['id', 'vec'](collection=collection, uri=milvus_server, batch=5)
    message = str(error.value)
    assert 'failed on element #13' in message and '(id=13)' in message
    assert '5 dimensions' in message and f'holds {DIM}' in message
    keys = [row['id'] for row in stored(milvus_server, collection)]
    # every row before it, none of its chunk after it; the chunk queued behind it may be in
    # (workers write in parallel): a rerun with skip_existing or upserts repairs either way
    assert keys[:13] == list(range(13)) and set(keys[13:]) <= set(range(15, 20))
    missing = (DataCollection(iter([{'id': 1, 'vec': unit(1)}, {'id': 2}])).set_parallel(1, backend='ray')
               .map(dict))
    with pytest.raises(KeyError, match=r"element #1.*the row \(id=2\) has no field 'vec'"):
        missing.to_milvus['id', 'vec'](collection=collection, uri=milvus_server)


def test_a_collection_the_workers_made_and_left_empty_is_dropped_again(milvus_server, collection):
    # the first rows are refused (NaN): the collection the workers made for this job holds
    # nothing, and goes again, as one the driver made does, so that a rerun with vectors of
    # another dimension is not held to it
    for writers in ('workers', 'driver'):
        name = f'{collection}_{writers}'
        with pytest.raises(ValueError) as error:
            (DataCollection['id'](range(20)).stream().set_parallel(2, backend='ray')
             .map['id', 'vec'](lambda i: np.full(8, np.nan, dtype=np.float32))
             .to_milvus['id', 'vec'](collection=name, uri=milvus_server, writers=writers))
        notes = '\n'.join(getattr(error.value, '__notes__', []))
        assert f"'{name}' at {milvus_server} was created by this job and held no row" in notes
        client = connect(milvus_server)
        assert not client.has_collection(name)
        client.close()
    result = (DataCollection['id'](range(20)).stream().set_parallel(2, backend='ray')
              .map['id', 'vec'](lambda i: unit(i, 16))
              .to_milvus['id', 'vec'](collection=name, uri=milvus_server))
    assert result.insert_count == 20


def test_a_batch_the_server_refuses_whole_is_named_as_a_batch_from_workers_and_the_driver(
        milvus_server, collection):
    # a set cannot be JSON: pymilvus refuses the batch, without saying which row
    rows = [{'id': i, 'vec': unit(i), 'meta': {'n': i} if i != 6 else {'s': {1, 2}}} for i in range(12)]
    chain = DataCollection(iter(rows)).set_parallel(1, backend='ray', chunk_size=12).map(lambda row: row)
    with pytest.raises(Exception, match='not JSON serializable') as error:
        chain.to_milvus['id', 'vec', 'meta'](collection=collection, uri=milvus_server, batch=4)
    told = ' '.join([str(error.value)] + error.value.__notes__)   # pymilvus's own type keeps its message
    assert error.value.code == 1 and 'failed on element #4' in told
    assert ('to_milvus refused the batch of 4 rows this element starts, as a whole: the bad value may be in '
            'any of them') in told
    with pytest.raises(Exception, match='not JSON serializable') as error:
        DataCollection(rows).to_milvus['id', 'vec', 'meta'](collection=collection, uri=milvus_server, batch=4)
    assert 'to_milvus refused rows #4-#7 (one batch) as a whole' in ''.join(error.value.__notes__)
    assert [row['id'] for row in stored(milvus_server, collection)] == list(range(4))


def test_bad_index_options_and_values_only_a_server_would_refuse_are_named_and_leave_no_collection(
        milvus_server, collection):
    client = connect(milvus_server)
    rows = DataCollection['id', 'vec']([(0, unit(0)), (1, unit(1))])
    with pytest.raises(ValueError, match=r"metric_type is 'COSINE', 'IP' or 'L2' .*got 'BAD'"):
        rows.to_milvus['id', 'vec'](collection=collection, uri=milvus_server, metric_type='BAD')
    assert not client.has_collection(collection)
    with pytest.raises(ValueError, match=r"cannot index the vector field 'vec' of .*HNSW.*the collection "
                                         r"this job created was dropped again: fix metric_type= or "
                                         r"index_params="):
        rows.to_milvus['id', 'vec'](collection=collection, uri=milvus_server,
                                    index_params={'index_type': 'HNSW', 'params': {'M': -3}})
    assert not client.has_collection(collection)
    with pytest.raises(ValueError, match=r"row #1 \(id=1\): field 'vec' holds 1 value that is not a "
                                         r"finite number \(1e\+39 at index 0 is out of float32 range"):
        DataCollection([{'id': 0, 'vec': unit(0)}, {'id': 1, 'vec': np.array([1e39] + [0.0] * (DIM - 1))}]) \
            .to_milvus['id', 'vec'](collection=collection, uri=milvus_server)
    with pytest.raises(ValueError, match=r"row #1 \(id=1\): field 'm' is None, and the collection's "
                                         r"field JSON holds no nulls"):
        DataCollection([{'id': 0, 'vec': unit(0), 'm': {'a': 1}}, {'id': 1, 'vec': unit(1), 'm': None}]) \
            .to_milvus['id', 'vec', 'm'](collection=collection + '_json', uri=milvus_server)
    with pytest.raises(TypeError, match=r"row #0 \(id=0\): fields 'vec' and 'tags' are both vectors"):
        DataCollection([{'id': 0, 'vec': unit(0), 'tags': [1, 2]}]) \
            .to_milvus['id', 'vec', 'tags'](collection=collection + '_tags', uri=milvus_server)
    assert not client.has_collection(collection + '_tags')
    assert [row['id'] for row in stored(milvus_server, collection)] == [0]
    client.close()


def test_a_bad_call_releases_the_chains_actors(milvus_server, alive_actors):
    chain = (DataCollection(['a b c']).stream().set_parallel(1, backend='ray')
             .towhee.text_split(max_words=1))
    before = set(alive_actors())
    with pytest.raises(TypeError, match='needs the fields to write'):
        chain.to_milvus(collection='x', uri=milvus_server)
    assert set(alive_actors()) <= before   # none started, none left


def test_a_server_that_is_not_there_is_a_clear_error_within_seconds(collection):
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        address = f'http://127.0.0.1:{probe.getsockname()[1]}'   # closed once the block ends
    start = time.monotonic()
    chain = DataCollection.range(4).stream().set_parallel(1, backend='ray').map(make_row)
    with pytest.raises(ConnectionError, match=f'cannot reach Milvus at {address} within'):
        chain.to_milvus['id', 'vec'](collection=collection, uri=address)
    assert time.monotonic() - start < 30


@pytest.mark.timeout(900)   # two actors loading a model on a loaded machine; a hang still fails
def test_ann_insert_runs_in_ray_op_actors_against_the_server_and_ann_search_finds_it(
        milvus_server, collection):
    from pymilvus import DataType
    client = connect(milvus_server)
    schema = client.create_schema(auto_id=False)
    schema.add_field('id', DataType.INT64, is_primary=True)
    schema.add_field('vec', DataType.FLOAT_VECTOR, dim=384)
    index = client.prepare_index_params()
    index.add_index('vec', index_type='AUTOINDEX', metric_type='COSINE')
    client.create_collection(collection, schema=schema, index_params=index)
    passages = ['The try statement specifies exception handlers.', 'A for loop iterates over a sequence.']
    embed = ray_op(ops.sentence_embedding.minilm(), num_worker=1)
    insert_op = ray_op(ops.ann_insert.milvus_client(uri=milvus_server, collection_name=collection),
                       num_worker=2)
    insert = pipe.input('id', 'text').map('text', 'vec', embed).map(('id', 'vec'), 'r', insert_op).output('r')
    assert [queue.get()[0].insert_count for queue in insert.batch(list(enumerate(passages)))] == [1, 1]
    assert all(actor['pid'] != os.getpid() for actor in insert_op.stats())
    insert_op.close()
    client.flush(collection)
    search = (pipe.input('q').map('q', 'vec', embed)
              .flat_map('vec', 'hit', ops.ann_search.milvus_client(uri=milvus_server,
                                                                   collection_name=collection, limit=1))
              .output('hit'))
    assert search('how do I loop over a list?').get()[0][0] == 1
    embed.close()


def test_a_towhee_09_script_writes_through_an_orm_collection(milvus_server, collection):
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections
    host, port = milvus_server.rsplit('//', 1)[1].split(':')
    connections.connect(alias='t09', host=host, port=port)
    try:
        fields = [FieldSchema('id', DataType.INT64, is_primary=True),
                  FieldSchema('embedding', DataType.FLOAT_VECTOR, dim=DIM)]
        orm = Collection(collection, CollectionSchema(fields), using='t09')
        orm.create_index('embedding', {'index_type': 'FLAT', 'metric_type': 'L2', 'params': {}})
        result = (DataCollection['id', 'vec']([(i, unit(i)) for i in range(12)])
                  .to_milvus['id', 'vec'](collection=orm, batch=5))
        assert result.insert_count == 12
        orm.flush()
        assert orm.num_entities == 12
    finally:
        connections.disconnect('t09')


# -- a job killed at any point stores each key once when run again ------------------------------

def test_a_job_killed_mid_run_resumes_with_each_key_exactly_once(milvus_server, collection, tmp_path):
    marker, sessions = tmp_path / 'stopped', []

    def job(*args):
        process = subprocess.Popen([sys.executable, str(ROOT / 'tests' / 'milvus_server_job.py'),
                                    milvus_server, collection, str(marker), *args], start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        sessions.append(process.pid)
        return process

    try:
        killed = job('--stop-at', '150')
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert killed.poll() is None, killed.communicate()
            assert time.monotonic() < deadline, 'the job never reached row 150'
            time.sleep(0.1)
        killed.kill()                 # SIGKILL, the driver only: its GCS and raylet die with it
        killed.wait(timeout=60)
        before = len(stored(milvus_server, collection))
        assert 0 < before < 400
        again = job()
        out, err = again.communicate(timeout=300)
    finally:
        for session in sessions:      # the killed job's Ray workers linger for up to a minute
            kill_session(session)
    assert again.returncode == 0, err
    made, skipped = map(int, out.split()[:2])
    # A worker of the killed job may finish the batch it was writing after `before` was counted
    # (upserted: a key written twice is still held once), so the resume may find more stored.
    assert before <= skipped < 400
    assert made == 400 - skipped                       # only the missing rows were made
    keys = [row['id'] for row in stored(milvus_server, collection)]
    assert keys == list(range(400))                    # each key once
