"""A resumable embedding job for tests/test_milvus.py, run as its own process (so the test
can SIGKILL it): 100 text rows -> skip the stored ones -> embed (logged) -> to_milvus.

    python milvus_job.py DB LOG [--stop-at N]

With ``--stop-at N`` the job stops (sleeps) when the sink asks for row N, after writing
``DB.stopped``: by then the sink has committed every batch of 10 before row N.
"""
import argparse
import hashlib
import os
import time

import numpy as np

from towhee_ray import DataCollection

ROWS = 100
BATCH = 10


def vector(text):
    digest = hashlib.sha256(text.encode()).digest()
    values = np.frombuffer(digest, dtype=np.uint8)[:16].astype(np.float32) + 1
    return values / np.linalg.norm(values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('db')
    parser.add_argument('log')
    parser.add_argument('--stop-at', type=int)
    args = parser.parse_args()

    def embed(text):
        with open(args.log, 'a') as log:   # one line per model call, flushed at once
            log.write(text + '\n')
        return vector(text)

    def to_sink(rows):
        for position, row in enumerate(rows):
            if position == args.stop_at:
                open(args.db + '.stopped', 'w').close()
                time.sleep(3600)
            yield row

    rows = DataCollection['id', 'text'](((i, f'passage {i}') for i in range(ROWS)))
    embedded = (rows.skip_existing['id']('passages', uri=args.db, batch=BATCH)
                .set_parallel(num_worker=2, backend='thread')
                .runas_op['text', 'vec'](func=embed))
    result = DataCollection(to_sink(embedded)).to_milvus['id', 'vec', 'text'](
        collection='passages', uri=args.db, batch=BATCH)
    print(result.insert_count, os.getpid())


if __name__ == '__main__':
    main()
