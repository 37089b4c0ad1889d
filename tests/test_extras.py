"""A feature whose optional dependency is missing says which one and how to install it,
and writes nothing. (The dependency is hidden from the import system, the seam that a
virtualenv without the extra has.)"""
import sys

import numpy as np
import pytest

from towhee_ray import DataCollection


def vectors():
    return DataCollection['id'](range(3)).runas_op['id', 'vec'](func=lambda i: np.full(4, i, np.float32))


CASES = {
    'faiss': ('faiss', lambda folder: vectors().to_faiss['id', 'vec'](folder / 'index.bin'),
              "to_faiss needs faiss, which cannot be imported: pip install 'towhee-ray[faiss]'"),
    'parquet': ('pyarrow.parquet', lambda folder: vectors().to_parquet(folder / 'vectors'),
                "to_parquet/read_parquet needs pyarrow.parquet, which cannot be imported: "
                "pip install 'towhee-ray[parquet]'"),
    'milvus': ('pymilvus',
               lambda folder: vectors().to_milvus['id', 'vec']('passages', uri=str(folder / 'm.db')),
               "Milvus needs pymilvus, which cannot be imported: pip install 'towhee-ray[milvus]'"),
    'pandas': ('pandas', lambda folder: vectors().to_df(),
               'to_df()/from_df() needs pandas, which cannot be imported: pip install pandas'),
}


@pytest.mark.parametrize('case', CASES)
def test_a_missing_optional_dependency_names_the_package_to_install(case, monkeypatch, tmp_path):
    module, write, message = CASES[case]
    folder = tmp_path / 'out'
    folder.mkdir()
    monkeypatch.setitem(sys.modules, module, None)   # `import module` now fails
    with pytest.raises(ModuleNotFoundError) as failure:
        write(folder)
    assert str(failure.value).startswith(message)
    assert failure.value.name == module
    assert list(folder.iterdir()) == []
