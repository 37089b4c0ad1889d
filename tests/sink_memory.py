"""Driver memory of a sink, measured in a fresh process (run by tests/test_sink_memory.py).

``python tests/sink_memory.py CASE COUNT DIMENSION FOLDER`` streams COUNT random float32
vectors of DIMENSION from a generator (so they never exist all at once) and prints, as
JSON, the peak growth of this process's anonymous memory (RssAnon, sampled every 10 ms as
benchmarks/large_elements.py does) over its value once everything is imported and warm.

Cases: ``parquet_write`` (to_parquet), ``parquet_read`` (read_parquet of what
parquet_write wrote, rows dropped as read), ``faiss_sink`` (to_faiss) and ``faiss_bare``
(the same batches added to a Faiss index directly: what the index itself needs).
"""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))

from large_elements import MB, PeakAnonymous  # noqa: E402

BATCH = 1000


def rows(count, dimension):
    generator = np.random.default_rng(0)
    for key in range(count):
        yield {'id': key, 'vec': generator.random(dimension, dtype=np.float32)}


def faiss_bare(count, dimension, folder):
    import faiss
    index = faiss.index_factory(dimension, 'IDMap,Flat')
    batch = []
    for row in rows(count, dimension):
        batch.append(row['vec'])
        if len(batch) == BATCH:
            index.add_with_ids(np.stack(batch), np.arange(index.ntotal, index.ntotal + len(batch)))
            batch = []
    if batch:
        index.add_with_ids(np.stack(batch), np.arange(index.ntotal, index.ntotal + len(batch)))
    return index.ntotal


def run(case, count, dimension, folder):
    from towhee_ray import DataCollection
    if case == 'parquet_write':
        return DataCollection(rows(count, dimension)).to_parquet(folder / case, batch=BATCH).insert_count
    if case == 'parquet_read':
        return sum(1 for _ in DataCollection.read_parquet(folder / 'parquet_write'))
    if case == 'faiss_sink':
        return DataCollection(rows(count, dimension)).to_faiss['id', 'vec'](folder / case / 'index.bin',
                                                                            batch=BATCH).insert_count
    return faiss_bare(count, dimension, folder)


def main():
    case, count, dimension, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    warm = folder / 'warm'
    warm.mkdir(parents=True, exist_ok=True)
    run(case if case != 'parquet_read' else 'parquet_write', 2 * BATCH, dimension, warm)
    if case == 'parquet_read':
        run(case, 2 * BATCH, dimension, warm)
    with PeakAnonymous() as memory:
        done = run(case, count, dimension, folder)
    print(json.dumps({'case': case, 'rows': done, 'growth_mb': memory.growth_mb,
                      'vectors_mb': count * dimension * 4 / MB}))


if __name__ == '__main__':
    main()
