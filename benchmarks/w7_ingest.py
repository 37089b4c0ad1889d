"""W7, ingest end to end: CPython's help topics text-split, embedded with MiniLM and stored
into Milvus Lite, and the driver's memory while 200,000 vectors stream into Milvus Lite.

Throughput contenders, interleaved in rounds (each a fresh collection in one Lite file):

* towhee_ray, the demo's form: ``minilm_tokenizer()`` in the driver, then
  ``set_parallel(2, 'ray').sorted_batch(64).sentence_embedding.minilm()`` on 2 Ray actors,
  ``to_milvus`` in the driver (actor start and model loads included);
* (a) the same chain without the sink (the vectors are counted, not kept): what the sink costs;
* (b) one process: the operator's token-sorted encode (model loaded beforehand, as a
  long-running process would have it), then ``MilvusClient.insert`` in batches of 1,000.

Memory (``--memory N``): N random 384-dimensional vectors, made lazily, streamed into
Milvus Lite by ``to_milvus`` and, as the reference, by a bare ``MilvusClient.insert`` loop;
each in a fresh process (``--case``), the driver's anonymous memory (``RssAnon``) sampled
every 10 ms as in W6. Milvus Lite runs inside the process that opens the file and keeps
its data in that process's memory, so the reference is Lite's own share.

    python benchmarks/w7_ingest.py            # 1,277 passages x 3 rounds, 200,000 vectors
    python benchmarks/w7_ingest.py --quick    # 128 passages x 1 round, 20,000 vectors
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_elements import PeakAnonymous  # noqa: E402
from rounds import LoadWatch  # noqa: E402
from w5_model import corpus  # noqa: E402

os.environ.setdefault('HF_HUB_OFFLINE', '1')
WORKERS = 2
PASSAGES_PER_CALL = 64
INSERT_BATCH = 1000
DIM = 384


def passage_rows(passages: List[str]) -> List[Dict[str, Any]]:
    return [{'id': i, 'text': text} for i, text in enumerate(passages)]


def _with_ids(vectors: Iterator[Any]) -> Iterator[Dict[str, Any]]:
    for i, vector in enumerate(vectors):
        yield {'id': i, 'vec': vector}


def embedded(passages: List[str]) -> Iterator[Any]:
    from towhee_ray import DataCollection
    return iter(DataCollection(passages).stream().sentence_embedding.minilm_tokenizer()
                .set_parallel(WORKERS, 'ray').sorted_batch(PASSAGES_PER_CALL)
                .sentence_embedding.minilm().flatten())


def run_towhee_ray(passages: List[str], db: str, name: str) -> int:
    from towhee_ray import DataCollection
    return DataCollection(_with_ids(embedded(passages))).to_milvus['id', 'vec'](collection=name, uri=db).insert_count


def run_without_sink(passages: List[str], db: str, name: str) -> int:
    return sum(1 for _ in embedded(passages))


def run_single_process(passages: List[str], db: str, name: str, model: Any = None) -> int:
    from towhee_ray.sinks.milvus import connect
    client = connect(db)
    client.create_collection(name, dimension=DIM, primary_field_name='id', vector_field_name='vec',
                             metric_type='COSINE', auto_id=False)
    vectors = model(passages)   # the operator sorts by token count and encodes 32 at a time
    for start in range(0, len(vectors), INSERT_BATCH):
        client.insert(name, [{'id': start + i, 'vec': vector}
                             for i, vector in enumerate(vectors[start:start + INSERT_BATCH])])
    return len(vectors)


CASES = {'towhee_ray ray, 2 actors, to_milvus': run_towhee_ray,
         '(a) the same, without the sink': run_without_sink,
         '(b) single process, token-sorted encode + MilvusClient.insert': run_single_process}


def throughput(passages: List[str], rounds: int) -> List[Dict[str, Any]]:
    from towhee_ray import connect, resolve_operator
    connect()
    model = resolve_operator('sentence_embedding.minilm').create()
    model(passages[:8])   # loaded and warm
    db = os.path.join(tempfile.mkdtemp(), 'w7.db')
    times: Dict[str, List[float]] = {case: [] for case in CASES}
    for round_number in range(rounds):
        for index, (case, run) in enumerate(CASES.items()):
            start = time.perf_counter()
            kws = {'model': model} if run is run_single_process else {}
            count = run(passages, db, f'r{round_number}_c{index}', **kws)
            times[case].append(time.perf_counter() - start)
            if count != len(passages):
                raise RuntimeError(f'W7: {case} handled {count} of {len(passages)} passages')
    rows = []
    for case, seconds in times.items():
        rates = [len(passages) / s for s in seconds]
        rows.append({'workload': 'W7 ingest', 'case': case, 'passages_per_s': statistics.median(rates),
                     'min': min(rates), 'max': max(rates), 'rounds': rounds})
    return rows


# -- memory ---------------------------------------------------------------------------------------

def vectors(count: int) -> Iterator[Dict[str, Any]]:
    rng = np.random.default_rng(0)
    for i in range(count):
        yield {'id': i, 'vec': rng.random(DIM, dtype=np.float32)}


def memory_case(case: str, count: int) -> Dict[str, Any]:
    from towhee_ray import DataCollection
    from towhee_ray.sinks.milvus import connect
    db = os.path.join(tempfile.mkdtemp(), 'memory.db')
    client = connect(db)   # Lite opened (and its modules imported) before the baseline
    start = time.perf_counter()
    with PeakAnonymous() as memory:
        if case == 'to_milvus':
            DataCollection(vectors(count)).to_milvus['id', 'vec'](collection='m', uri=db)
        else:
            client.create_collection('m', dimension=DIM, primary_field_name='id', vector_field_name='vec',
                                     metric_type='COSINE', auto_id=False)
            batch = []
            for row in vectors(count):
                batch.append(row)
                if len(batch) == INSERT_BATCH:
                    client.insert('m', batch)
                    batch = []
            if batch:
                client.insert('m', batch)
    return {'case': case, 'vectors': count, 'growth_mb': memory.growth_mb, 'seconds': time.perf_counter() - start}


def memory(count: int) -> List[Dict[str, Any]]:
    rows = []
    for case, name in (('to_milvus', 'towhee_ray to_milvus'), ('bare_insert', 'bare MilvusClient.insert loop')):
        done = subprocess.run([sys.executable, __file__, '--case', case, '--memory', str(count)],
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f'W7 memory case {case} failed:\n{done.stderr}')
        result = json.loads(done.stdout.splitlines()[-1])
        rows.append({'workload': f'W7 memory, {count:,} x {DIM} float32', 'case': name,
                     'growth_mb': result['growth_mb'], 'seconds': result['seconds']})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='128 passages, 1 round, 20,000 vectors')
    parser.add_argument('--rounds', type=int, help='rounds of the throughput contenders (default 3)')
    parser.add_argument('--memory', type=int, help='vectors streamed in the memory cases (default 200,000)')
    parser.add_argument('--case', help=argparse.SUPPRESS)
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args()
    count = args.memory or (20_000 if args.quick else 200_000)
    if args.case:
        print(json.dumps(memory_case(args.case, count)))
        return
    load = LoadWatch()
    passages = corpus(128 if args.quick else None)
    rows = throughput(passages, args.rounds or (1 if args.quick else 3)) + memory(count)
    load.stop()
    print(f'W7 ingest: {len(passages)} passages, {os.cpu_count()} CPUs')
    best = next(row['passages_per_s'] for row in rows if row['case'].startswith('(a)'))
    print(f"{'case':<66} {'passages/s':>11} {'min-max':>14} {'vs (a)':>7}")
    for row in rows:
        if 'passages_per_s' in row:
            print(f"{row['case']:<66} {row['passages_per_s']:>11.1f} "
                  f"{row['min']:>6.1f}-{row['max']:<7.1f} {row['passages_per_s'] / best:>6.2f}x")
    for row in rows:
        if 'growth_mb' in row:
            print(f"{row['workload']}: {row['case']:<32} driver anonymous memory +{row['growth_mb']:.0f} MB "
                  f"({row['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({'mode': 'quick' if args.quick else 'full', 'passages': len(passages),
                                               **load.as_dict(), 'rows': rows}, indent=1))
    print(load.summary())


if __name__ == '__main__':
    main()
