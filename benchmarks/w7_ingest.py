"""W7, ingest end to end: CPython's help topics text-split, embedded with MiniLM and stored
into Milvus Lite; and a million vectors into Milvus Lite and a Milvus server.

Throughput contenders, interleaved in rounds (each a fresh collection in one Lite file):

* towhee_ray, the demo's form: ``minilm_tokenizer()`` in the driver, then
  ``set_parallel(2, 'ray').sorted_batch(64).sentence_embedding.minilm()`` on 2 Ray actors,
  ``to_milvus`` in the driver (actor start and model loads included);
* (a) the same chain without the sink (the vectors are counted, not kept): what the sink costs;
* (b) one process: the operator's token-sorted encode (model loaded beforehand, as a
  long-running process would have it), then ``MilvusClient.insert`` in batches of 1,000.

At scale (``--vectors N``, 1,000,000 by default): N 384-dimensional vectors into Milvus,
each contender in a fresh process, interleaved (``--scale-rounds``): a bare pymilvus insert
loop (batches of 1,000) into Milvus Lite opened in that process (pymilvus's default) and
into a Milvus server (Milvus 2.3.5 standalone, started here); towhee_ray's ``to_milvus`` from the
driver into each; and 2 Ray workers writing to the server. Reported: inserts/s, the
driver's anonymous memory growth (``RssAnon`` sampled every 10 ms) and the peak RSS of the
process holding Milvus's data (Lite's server process, or the server).

    python benchmarks/w7_ingest.py                   # 1,277 passages x 3 rounds, 1,000,000 vectors
    python benchmarks/w7_ingest.py --quick           # 128 passages x 1 round, 20,000 vectors
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

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
                .sentence_embedding.minilm(device='cpu').flatten())


def run_towhee_ray(passages: List[str], db: str, name: str) -> int:
    from towhee_ray import DataCollection
    return (DataCollection(_with_ids(embedded(passages)))
            .to_milvus['id', 'vec'](collection=name, uri=db).insert_count)


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
    model = resolve_operator('sentence_embedding.minilm', kws={'device': 'cpu'}).create()
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


# -- at scale: a million vectors, the driver's memory, Lite and a server ---------------------------

#: The vectors of the scale cases repeat these rows (made once per process, so making a
#: vector costs a lookup, the same in every contender, and nothing is read from disk).
BASE_ROWS = 4096
SCALE_WORKERS = 2


def _base() -> np.ndarray:
    return np.random.default_rng(0).random((BASE_ROWS, DIM), dtype=np.float32)


def vector_row(i: int, base: Any = None) -> Dict[str, Any]:
    base = _base_matrix() if base is None else base
    return {'id': i, 'vec': base[i % BASE_ROWS]}


_BASE: List[np.ndarray] = []


def _base_matrix() -> np.ndarray:   # once per process (a Ray worker makes its own)
    if not _BASE:
        _BASE.append(_base())
    return _BASE[0]


def vectors(count: int) -> Iterator[Dict[str, Any]]:
    base = _base()
    for i in range(count):
        yield vector_row(i, base)


def _bare_loop(client: Any, count: int) -> None:
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


def scale_case(case: str, count: int, uri: str) -> Dict[str, Any]:
    """One contender in this (fresh) process: seconds, the driver's anonymous memory growth,
    and the peak RSS of the process that holds Milvus's data (Lite's server, or the server)."""
    import psutil
    from towhee_ray import DataCollection
    from towhee_ray.sinks import lite_server
    from towhee_ray.sinks.milvus import connect
    lite = '://' not in uri
    if case == 'bare':
        from pymilvus import MilvusClient
        client = MilvusClient(uri) if lite else MilvusClient(uri=uri)   # Lite in this process: its default
        holder = None
    else:
        client = connect(uri)   # Lite's server process started, pymilvus imported, before the baseline
        holder = psutil.Process(lite_server.server_for(uri).process.pid) if lite else None
    if case == 'workers':
        import towhee_ray
        towhee_ray.connect()   # Ray started before the clock, as for a long-running driver
    server_pid = int(os.environ.get('W7_SERVER_PID', '0'))
    holder = holder or (psutil.Process(server_pid) if server_pid and not lite else None)
    peak_holder = [holder.memory_info().rss if holder else 0]
    base_holder = peak_holder[0]
    sampling = threading.Event()

    def sample_holder() -> None:
        while holder and not sampling.wait(0.2):
            peak_holder.append(max(peak_holder.pop(), holder.memory_info().rss))
    threading.Thread(target=sample_holder, daemon=True).start()
    start = time.perf_counter()
    with PeakAnonymous() as memory:
        if case == 'bare':
            _bare_loop(client, count)
        elif case == 'to_milvus':
            result = DataCollection(vectors(count)).to_milvus['id', 'vec'](collection='m', uri=uri)
        else:
            result = (DataCollection.range(count).stream().set_parallel(SCALE_WORKERS, 'ray')
                      .map(vector_row).to_milvus['id', 'vec'](collection='m', uri=uri))
            assert result.details['writers'] == 'workers'
        if case != 'bare':
            assert result.insert_count == count, result
    seconds = time.perf_counter() - start
    sampling.set()
    client.flush('m')
    stored = client.query('m', filter='', output_fields=['count(*)'],
                          consistency_level='Strong')[0]['count(*)']
    return {'case': case, 'vectors': count, 'seconds': seconds, 'inserts_per_s': count / seconds,
            'growth_mb': memory.growth_mb, 'stored': stored,
            'holder_mb': max(peak_holder) / 2 ** 20 if holder else None,
            'holder_growth_mb': (max(peak_holder) - base_holder) / 2 ** 20 if holder else None}


SCALE_CASES = [  # (name, case, target)
    ('bare pymilvus insert loop, Milvus Lite in the process', 'bare', 'lite'),
    ('towhee_ray to_milvus, Milvus Lite (its own process)', 'to_milvus', 'lite'),
    ('bare pymilvus insert loop, server, 1 client', 'bare', 'server'),
    ('towhee_ray to_milvus from the driver, server', 'to_milvus', 'server'),
    (f'towhee_ray {SCALE_WORKERS} Ray workers writing, server', 'workers', 'server'),
]
#: ``--cases`` names them ``<target>-<case>``: lite-bare, lite-to_milvus, server-bare, ...
CASE_KEYS = [f'{target}-{case}' for _, case, target in SCALE_CASES]


def at_scale(count: int, rounds: int, only: Sequence[str] = (),
             progress: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every scale contender (or those ``only`` names) once per round, each in a fresh
    process and collection; each result is also appended to ``progress`` (JSON lines)
    as it comes, so a run that stops keeps what it measured."""
    from milvus import MilvusServer
    cases = [entry for entry, key in zip(SCALE_CASES, CASE_KEYS) if not only or key in only]
    folder = tempfile.mkdtemp(prefix='w7-scale-')
    server = MilvusServer()
    server.set_base_dir(os.path.join(folder, 'server'))
    server.start()
    env = dict(os.environ, W7_SERVER_PID=str(server.server_proc.pid))
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _, _ in cases}
    try:
        for number in range(rounds):
            for index, (name, case, target) in enumerate(cases):
                print(f'  W7 at scale, round {number + 1}/{rounds}: {name} (load average '
                      f'{os.getloadavg()[0]:.1f})', file=sys.stderr, flush=True)
                uri = (os.path.join(folder, f'r{number}_{index}.db') if target == 'lite'
                       else f'http://127.0.0.1:{server.listen_port}')
                if target == 'server':   # a fresh collection 'm' on the one server
                    from pymilvus import MilvusClient
                    MilvusClient(uri=uri).drop_collection('m')
                done = subprocess.run([sys.executable, __file__, '--case', case, '--vectors', str(count),
                                       '--uri', uri], capture_output=True, text=True, timeout=7200, env=env)
                if done.returncode != 0:
                    raise RuntimeError(f'W7 scale case {name} failed:\n{done.stderr}')
                result = json.loads(done.stdout.splitlines()[-1])
                if result['stored'] != count:
                    raise RuntimeError(f'W7 scale case {name} stored {result["stored"]} of {count} rows')
                result['load_average'] = os.getloadavg()[0]
                results[name].append(result)
                if progress is not None:
                    with open(progress, 'a') as file:
                        file.write(json.dumps({'name': name, **result}) + '\n')
    finally:
        server.stop()
    rows = []
    for name, runs in results.items():
        rates = [run['inserts_per_s'] for run in runs]
        holder = [run['holder_mb'] for run in runs if run['holder_mb'] is not None]
        rows.append({'workload': f'W7 at scale, {count:,} x {DIM} float32', 'case': name,
                     'inserts_per_s': statistics.median(rates), 'min': min(rates), 'max': max(rates),
                     'growth_mb': max(run['growth_mb'] for run in runs),
                     'milvus_process_mb': max(holder) if holder else None, 'rounds': rounds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='128 passages, 1 round, 20,000 vectors')
    parser.add_argument('--rounds', type=int, help='rounds of the throughput contenders (default 3)')
    parser.add_argument('--vectors', type=int, help='vectors in the at-scale cases (default 1,000,000)')
    parser.add_argument('--scale-rounds', type=int, default=1,
                        help='rounds of the at-scale cases (default 1)')
    parser.add_argument('--part', choices=('all', 'throughput', 'scale'), default='all',
                        help='run only the embedding throughput or only the at-scale cases')
    parser.add_argument('--cases', help=f'only these at-scale cases, comma-separated: {",".join(CASE_KEYS)}')
    parser.add_argument('--case', help=argparse.SUPPRESS)
    parser.add_argument('--uri', help=argparse.SUPPRESS)
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args()
    count = args.vectors or (20_000 if args.quick else 1_000_000)
    only = [key.strip() for key in (args.cases or '').split(',') if key.strip()]
    unknown = [key for key in only if key not in CASE_KEYS]
    if unknown:
        parser.error(f'unknown --cases {unknown}; the cases are {", ".join(CASE_KEYS)}')
    if args.case:
        print(json.dumps(scale_case(args.case, count, args.uri)))
        return
    load = LoadWatch()
    passages = corpus(128 if args.quick else None)
    rows = []
    if args.part in ('all', 'throughput'):
        rows += throughput(passages, args.rounds or (1 if args.quick else 3))
    if args.part in ('all', 'scale'):
        progress = Path(args.json).with_suffix('.progress.jsonl') if args.json else None
        rows += at_scale(count, args.scale_rounds, only, progress)
    load.stop()
    print(f'W7 ingest: {len(passages)} passages, {os.cpu_count()} CPUs')
    best = next((row['passages_per_s'] for row in rows if row['case'].startswith('(a)')), 1.0)
    print(f"{'case':<66} {'passages/s':>11} {'min-max':>14} {'vs (a)':>7}")
    for row in rows:
        if 'passages_per_s' in row:
            print(f"{row['case']:<66} {row['passages_per_s']:>11.1f} "
                  f"{row['min']:>6.1f}-{row['max']:<7.1f} {row['passages_per_s'] / best:>6.2f}x")
    print(f"{'W7 at scale: ' + format(count, ',') + ' vectors':<58} {'inserts/s':>10} {'min-max':>15} "
          f"{'driver +MB':>11} {'Milvus MB':>10}")
    for row in rows:
        if 'inserts_per_s' in row:
            holder = '' if row['milvus_process_mb'] is None else f"{row['milvus_process_mb']:.0f}"
            print(f"{row['case']:<58} {row['inserts_per_s']:>10,.0f} {row['min']:>7,.0f}-{row['max']:<7,.0f} "
                  f"{row['growth_mb']:>11.0f} {holder:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps({'mode': 'quick' if args.quick else 'full',
                                               'passages': len(passages), 'vectors': count,
                                               **load.as_dict(), 'rows': rows}, indent=1))
    print(load.summary())


if __name__ == '__main__':
    main()
