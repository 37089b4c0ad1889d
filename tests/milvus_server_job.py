"""A resumable job for tests/test_milvus_server.py, run as its own process (so the test can
SIGKILL it): 400 rows -> skip the keys the server holds -> make vectors on 2 Ray workers,
which write them to the server themselves.

    python milvus_server_job.py URI COLLECTION MARKER [--stop-at N]

With ``--stop-at N`` the worker that makes row N writes MARKER and sleeps there. Prints the
rows written, the rows skipped as stored already and the pid.
"""
import argparse
import os
import time

import numpy as np

from towhee_ray import DataCollection

ROWS = 400


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('uri')
    parser.add_argument('collection')
    parser.add_argument('marker')
    parser.add_argument('--stop-at', type=int)
    args = parser.parse_args()
    stop_at, marker = args.stop_at, args.marker

    def embed(i):
        if i == stop_at:
            open(marker, 'w').close()
            time.sleep(3600)
        vector = np.random.default_rng(i).random(16, dtype=np.float32)
        return vector / np.linalg.norm(vector)

    skipped = []
    result = (DataCollection['id']((i for i in range(ROWS)))
              .skip_existing['id'](args.collection, uri=args.uri, batch=50, callback=skipped.append)
              .set_parallel(2, backend='ray', chunk_size=10)
              .runas_op['id', 'vec'](func=embed)
              .to_milvus['id', 'vec'](collection=args.collection, uri=args.uri, batch=10))
    print(result.insert_count, len(skipped), os.getpid())


if __name__ == '__main__':
    main()
