"""The load scripts of towhee-io/examples that end in Milvus, run against towhee_ray.

``chemical/molecular_search/load.py`` and ``image/reverse_image_search/load.py`` as written
for Towhee 0.9, with only what this machine forces changed, each marked ``# was:``: the
import line, Milvus Lite (a file) instead of a server, float vectors instead of binary
ones (Milvus Lite has none), and operators that need no download in place of RDKit and
timm (a fingerprint registered here; the local hub's colour histogram).
"""
import csv
import hashlib
import warnings

import numpy as np
import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
from towhee import register

import towhee_ray as towhee   # was: import towhee
from tests.test_hub_operators import encoded, near_duplicate, scene

# pymilvus's ORM, as the scripts use it
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')

MOLECULES = ['CCO', 'CC(=O)O', 'c1ccccc1', 'CCN(CC)CC', 'C1CCCCC1', 'CC(C)O', 'OC(=O)c1ccccc1', 'CCOC(=O)C',
             'not a molecule!', 'CCCCCCCC', 'N#CC', 'C=CC=C']


@register(name='molecular-fingerprinting')   # dc.molecular_fingerprinting looks up this name
class MolecularFingerprinting:
    """A stand-in for the RDKit operator: a 2048-bit 0/1 fingerprint of a SMILES string's
    one- to three-character fragments; not a SMILES string raises, as RDKit's does."""

    def __init__(self, algorithm: str = 'daylight', size: int = 2048) -> None:
        self.size = size

    def __call__(self, smiles: str) -> np.ndarray:
        if ' ' in smiles or '!' in smiles:
            raise ValueError(f'invalid SMILES {smiles!r}')
        bits = np.zeros(self.size, dtype=bool)
        for width in (1, 2, 3):
            for start in range(len(smiles) - width + 1):
                digest = hashlib.md5(smiles[start:start + width].encode()).digest()
                bits[int.from_bytes(digest[:4], 'little') % self.size] = True
        return bits


def create_milvus_collection(collection_name, dim, vector_type, index_params):
    if utility.has_collection(collection_name):
        utility.drop_collection(collection_name)
    fields = [
        FieldSchema(name='id', dtype=DataType.INT64, descrition='ids', is_primary=True, auto_id=False),
        FieldSchema(name='embedding', dtype=vector_type, descrition='embedding vectors', dim=dim),
    ]
    schema = CollectionSchema(fields=fields, description='search')
    collection = Collection(name=collection_name, schema=schema)
    collection.create_index(field_name='embedding', index_params=index_params)
    return collection


@pytest.fixture
def milvus_lite(tmp_path):
    db = str(tmp_path / 'milvus.db')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        connections.connect(uri=db)   # was: connections.connect(host='127.0.0.1', port='19530')
    yield db
    connections.disconnect('default')


def test_molecular_search_load_script(tmp_path, milvus_lite):
    smi = tmp_path / 'pubchem_10000.smi'
    with open(smi, 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['smiles', 'id'])
        writer.writerows([smiles, str(100 + i)] for i, smiles in enumerate(MOLECULES))

    collection = create_milvus_collection(
        'molecular_search', 2048,
        DataType.FLOAT_VECTOR,   # was: DataType.BINARY_VECTOR
        {'metric_type': 'COSINE', 'index_type': 'FLAT', 'params': {}})   # was: JACCARD, BIN_FLAT
    dc = (towhee.read_csv(str(smi))
          .exception_safe()
          .set_parallel(4)
          .runas_op['id', 'id'](func=lambda x: int(x))
          .molecular_fingerprinting['smiles', 'fp'](algorithm='daylight')
          .drop_empty()
          .to_milvus['id', 'fp'](collection=collection, batch=100))

    assert dc.insert_count == len(MOLECULES) - 1                         # the invalid SMILES dropped
    rows = collection.query('id >= 0', output_fields=['id', 'embedding'])
    assert sorted(row['id'] for row in rows) == [100 + i for i in range(len(MOLECULES)) if i != 8]
    stored = {row['id']: np.asarray(row['embedding']) for row in rows}
    np.testing.assert_array_equal(stored[102], MolecularFingerprinting()('c1ccccc1').astype(np.float32))
    # search.py: the most similar molecule to one in the collection is itself
    found = (towhee.dc['smiles'](['OC(=O)c1ccccc1'])
             .molecular_fingerprinting['smiles', 'fp'](algorithm='daylight')
             .ann_search.milvus_client['fp', 'result'](uri=milvus_lite, collection_name='molecular_search',
                                                       limit=3)
             .to_list())
    assert [hit[0] for hit in found[0].result][0] == 106 and len(found[0].result) == 3


def test_reverse_image_search_load_script(tmp_path, milvus_lite, ray_cluster):
    originals = [scene(seed) for seed in range(8)]
    with open(tmp_path / 'reverse_image_search.csv', 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['id', 'path', 'label'])
        for i, pixels in enumerate(originals):
            path = tmp_path / f'train_{i}.png'
            path.write_bytes(encoded(pixels))
            writer.writerow([str(i), str(path), f'label{i % 3}'])

    collection = create_milvus_collection(
        'reverse_image_search', 512,   # was: 2048, resnet50's size
        DataType.FLOAT_VECTOR,
        {'metric_type': 'L2', 'index_type': 'IVF_FLAT', 'params': {'nlist': 4}})   # was: nlist 2048
    dc = (towhee.read_csv(str(tmp_path / 'reverse_image_search.csv'))
          .runas_op['id', 'id'](func=lambda x: int(x))
          .set_parallel(num_worker=2, backend='ray')               # towhee_ray: the steps run on Ray
          .image_decode['path', 'img']()
          # was: .image_embedding.timm[...](model_name='resnet50')
          .towhee.color_histogram['img', 'vec'](bins=8)
          # .tensor_normalize: the histogram is unit-norm
          .to_milvus['id', 'vec'](collection=collection, batch=100))

    assert dc.insert_count == 8
    assert sorted(row['id'] for row in collection.query('id >= 0', output_fields=['id'])) == list(range(8))
    # search: a re-encoded, brightened, resized copy of each image finds its original
    queries = []
    for i, pixels in enumerate(originals):
        path = tmp_path / f'query_{i}.jpg'
        path.write_bytes(near_duplicate(pixels, i))
        queries.append(str(path))
    found = (towhee.glob['path'](str(tmp_path / 'query_*.jpg'))
             .image_decode['path', 'img']()
             .towhee.color_histogram['img', 'vec'](bins=8)
             .ann_search.milvus_client['vec', 'result'](uri=milvus_lite,
                                                        collection_name='reverse_image_search', limit=1)
             .select['path', 'result']()
             .to_list())
    assert [(row.path, row.result[0][0]) for row in found] == [(path, i) for i, path in enumerate(queries)]
