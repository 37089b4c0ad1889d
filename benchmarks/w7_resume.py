"""W7, resume at scale: a million-vector job SIGKILLed halfway, then run again, stores each key
once, into Milvus Lite and into a Milvus server.

The job (run as its own process, in its own session, so that the kill takes it and every
process it started): ids -> ``skip_existing['id']`` (keys looked up 1,000 at a time, as they
stream past) -> 2 Ray workers make the vectors -> ``to_milvus``. Into a Lite file the
driver writes (Lite has one writer); into a server the workers write. The job prints
where its source is; when it passes ``--kill-at`` of the rows, it is SIGKILLed. Then:

* the rows stored after the kill are counted (``count(*)``, strongly consistent);
* the job runs again to its end, and says how many rows it wrote (only the missing ones
  should be made and written) and how much its driver's memory grew;
* every key is read back, range by range: each of 0..N-1 must be there, and ``count(*)``
  must be N (a key written twice would count twice until Milvus compacts).

    python benchmarks/w7_resume.py                        # 1,000,000 vectors, Lite and a server
    python benchmarks/w7_resume.py --vectors 20000 --target server
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_elements import PeakAnonymous  # noqa: E402
from rounds import LoadWatch  # noqa: E402
from w7_ingest import BASE_ROWS, DIM, _base_matrix  # noqa: E402

COLLECTION = 'resume'
#: Keys per read-back query: Milvus returns at most 16,384 rows a query.
READ_RANGE = 16_000
#: The job prints its source's position every this many rows.
PROGRESS_EVERY = 10_000


def vector_for(key: int) -> np.ndarray:
    return _base_matrix()[key % BASE_ROWS]


def _source(count: int) -> Iterator[int]:
    for key in range(count):
        if key % PROGRESS_EVERY == 0:
            print(f'at {key}', flush=True)
        yield key


def job(uri: str, count: int) -> Dict[str, Any]:
    """The resumable job, in this process."""
    from towhee_ray import DataCollection, connect
    connect()
    start = time.perf_counter()
    with PeakAnonymous() as memory:
        result = (DataCollection['id'](_source(count))
                  .skip_existing['id'](COLLECTION, uri=uri)
                  .set_parallel(2, backend='ray')
                  .runas_op['id', 'vec'](func=vector_for)
                  .to_milvus['id', 'vec'](collection=COLLECTION, uri=uri))
    return {'written': result.insert_count, 'writers': result.details.get('writers', 'driver'),
            'seconds': time.perf_counter() - start, 'growth_mb': memory.growth_mb}


def _run_job(uri: str, count: int, kill_at: int = 0) -> Dict[str, Any]:
    """Run the job in a child process; with ``kill_at``, SIGKILL it once its source passed that row."""
    child = subprocess.Popen([sys.executable, __file__, '--job', uri, '--vectors', str(count)],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    last = ''
    for line in child.stdout:
        last = line
        if kill_at and line.startswith('at ') and int(line.split()[1]) >= kill_at:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return {'killed_at': int(line.split()[1])}
    if child.wait() != 0:
        raise RuntimeError(f'the job into {uri} failed (exit {child.returncode})')
    return json.loads(last)


def _client(uri: str) -> Any:
    """A client; a Lite file may still be held for a moment by the killed job's server,
    which stops when it sees its owner gone."""
    from towhee_ray.sinks.milvus import connect
    deadline = time.monotonic() + 60
    while True:
        try:
            return connect(uri)
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _count(uri: str) -> int:
    client = _client(uri)
    if not client.has_collection(COLLECTION):   # killed before its first batch
        return 0
    client.flush(COLLECTION)
    client.load_collection(COLLECTION)
    return client.query(COLLECTION, filter='', output_fields=['count(*)'],
                        consistency_level='Strong')[0]['count(*)']


def _keys_seen(uri: str, count: int) -> np.ndarray:
    client = _client(uri)
    client.load_collection(COLLECTION)
    seen = np.zeros(count, dtype=np.int64)
    for low in range(0, count, READ_RANGE):
        rows = client.query(COLLECTION, filter=f'id >= {low} and id < {low + READ_RANGE}',
                            output_fields=['id'], limit=READ_RANGE + 1, consistency_level='Strong')
        np.add.at(seen, [row['id'] for row in rows], 1)
    return seen


def _release(uri: str) -> None:
    if '://' not in uri:   # let the next job own the Lite file
        from towhee_ray.sinks import lite_server
        lite_server.release(uri)


def resume_case(target: str, uri: str, count: int, kill_fraction: float) -> Dict[str, Any]:
    killed = _run_job(uri, count, kill_at=max(1, int(count * kill_fraction)))
    stored_after_kill = _count(uri)
    _release(uri)
    rerun = _run_job(uri, count)
    total = _count(uri)
    seen = _keys_seen(uri, count)
    _release(uri)
    return {'target': target, 'vectors': count, 'killed_at_source_row': killed['killed_at'],
            'stored_after_kill': stored_after_kill, 'rerun_written': rerun['written'],
            'rerun_writers': rerun['writers'], 'rerun_seconds': rerun['seconds'],
            'rerun_driver_growth_mb': rerun['growth_mb'], 'count_after_rerun': total,
            'keys_missing': int((seen == 0).sum()), 'keys_twice_or_more': int((seen > 1).sum()),
            'ok': bool(total == count and (seen == 1).all()
                       and stored_after_kill + rerun['written'] == count)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--vectors', type=int, default=1_000_000, help='rows of the job (default 1,000,000)')
    parser.add_argument('--kill-at', type=float, default=0.5,
                        help='fraction of the source at which to kill (0.5)')
    parser.add_argument('--target', choices=('both', 'lite', 'server'), default='both')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--job', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(job(args.job, args.vectors)), flush=True)
        return
    load = LoadWatch()
    folder = tempfile.mkdtemp(prefix='w7-resume-')
    results = []
    if args.target in ('both', 'lite'):
        print(f'  W7 resume into Milvus Lite (load average {os.getloadavg()[0]:.1f})',
              file=sys.stderr, flush=True)
        results.append(resume_case('Milvus Lite', os.path.join(folder, 'resume.db'), args.vectors,
                                   args.kill_at))
    if args.target in ('both', 'server'):
        from milvus import MilvusServer
        server = MilvusServer()
        server.set_base_dir(os.path.join(folder, 'server'))
        server.start()
        try:
            print(f'  W7 resume into a Milvus server (load average {os.getloadavg()[0]:.1f})',
                  file=sys.stderr, flush=True)
            results.append(resume_case('Milvus server', f'http://127.0.0.1:{server.listen_port}',
                                       args.vectors, args.kill_at))
        finally:
            server.stop()
    load.stop()
    print(f"W7 resume: {args.vectors:,} vectors, killed at {args.kill_at:.0%} of the source")
    print(f"{'target':<14} {'killed at':>10} {'stored':>9} {'rerun wrote':>12} {'by':>8} {'count':>9} "
          f"{'missing':>8} {'twice':>6} {'rerun s':>8} {'driver +MB':>11} {'ok':>4}")
    for row in results:
        print(f"{row['target']:<14} {row['killed_at_source_row']:>10,} {row['stored_after_kill']:>9,} "
              f"{row['rerun_written']:>12,} {row['rerun_writers']:>8} {row['count_after_rerun']:>9,} "
              f"{row['keys_missing']:>8} {row['keys_twice_or_more']:>6} {row['rerun_seconds']:>8.0f} "
              f"{row['rerun_driver_growth_mb']:>11.0f} {'yes' if row['ok'] else 'NO':>4}")
    if args.json:
        Path(args.json).write_text(json.dumps({'vectors': args.vectors, 'kill_at': args.kill_at,
                                               **load.as_dict(), 'rows': results}, indent=1))
    print(load.summary())
    if not all(row['ok'] for row in results):
        sys.exit(1)


if __name__ == '__main__':
    main()
