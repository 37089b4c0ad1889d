"""to_milvus, skip_existing and the Milvus hub operators against a real Milvus Lite (in this
process: a Lite file is open in one process at a time) and a real local Ray."""
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
from towhee_ray.sinks.milvus import connect

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / 'vectors.db')


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


def test_a_key_is_never_held_twice_upsert_replaces_and_skip_keeps(db):
    first = DataCollection['id', 'vec', 'tag']([(i, unit(i), 'first') for i in range(6)])
    again = DataCollection['id', 'vec', 'tag']([(i, unit(i), 'again') for i in range(3, 9)] + [(8, unit(8), 'last')])
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
              .map(('id', 'vec', 'text'), 'result', ops.ann_insert.milvus_client(uri=db, collection_name='texts'))
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
    assert sum(actor['calls'] for actor in embed.stats()) == 5 and all(actor['pid'] != os.getpid() for actor in embed.stats())
    embed.close()
    # the same search in a DataCollection chain
    vector = ops.sentence_embedding.minilm().get_op()('default values of arguments')
    found = DataCollection([vector]).ann_search.milvus_client(uri=db, collection_name='texts', limit=1).to_list()
    assert found[0][0][0] == 2


def _text_schema(db):
    from pymilvus import DataType
    schema = connect(db).create_schema(auto_id=False)
    schema.add_field('id', DataType.INT64, is_primary=True)
    schema.add_field('vec', DataType.FLOAT_VECTOR, dim=384)
    schema.add_field('text', DataType.VARCHAR, max_length=1000)
    return schema
