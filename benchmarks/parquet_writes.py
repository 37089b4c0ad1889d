"""Parquet write options for vector columns: why ``to_parquet`` turns dictionary encoding off
for them (``towhee_ray/sinks/parquet.py``).

Writes ``--rows`` random float32 vectors of ``--dimension`` (and an int64 id) with one
``ParquetWriter`` in row groups of ``--group`` rows, under each contender, in interleaved
rounds (A B C, A B C, ...); prints the median write time with min-max, the file size and
the load average before and after. Run: ``python benchmarks/parquet_writes.py``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pyarrow
import pyarrow.parquet as pq

CONTENDERS: Dict[str, Dict[str, Any]] = {
    'pyarrow defaults (snappy, dictionary on)': {},
    'snappy, no dictionary for vectors (to_parquet)': {'use_dictionary': ['id']},
    'zstd, no dictionary for vectors': {'use_dictionary': ['id'], 'compression': 'zstd'},
    'uncompressed, no dictionary for vectors': {'use_dictionary': ['id'], 'compression': 'none'},
}


def tables(rows: int, dimension: int, group: int) -> List[Any]:
    generator = np.random.default_rng(0)
    made = []
    for first in range(0, rows, group):
        count = min(group, rows - first)
        vectors = generator.random((count, dimension), dtype=np.float32).reshape(-1)
        made.append(pyarrow.table({
            'id': pyarrow.array(np.arange(first, first + count)),
            'vec': pyarrow.FixedSizeListArray.from_arrays(pyarrow.array(vectors), dimension)}))
    return made


def write(path: Path, batches: List[Any], options: Dict[str, Any]) -> float:
    start = time.perf_counter()
    with pq.ParquetWriter(path, batches[0].schema, **options) as writer:
        for table in batches:
            writer.write_table(table)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=40_000)
    parser.add_argument('--dimension', type=int, default=384)
    parser.add_argument('--group', type=int, default=1000, help='rows per row group (to_parquet: batch=)')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    batches = tables(args.rows, args.dimension, args.group)
    seconds: Dict[str, List[float]] = {name: [] for name in CONTENDERS}
    sizes: Dict[str, int] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, options in CONTENDERS.items():
                path = Path(folder) / 'vectors.parquet'
                seconds[name].append(write(path, batches, options))
                sizes[name] = path.stat().st_size
    load_after = os.getloadavg()
    print(f'{args.rows:,} vectors of {args.dimension} float32, row groups of {args.group}; '
          f'median of {args.rounds} interleaved rounds (min-max)')
    print(f'{"contender":50} {"write s":>22} {"MB":>6}')
    for name in CONTENDERS:
        times = seconds[name]
        print(f'{name:50} {statistics.median(times):8.2f} ({min(times):.2f}-{max(times):.2f}) '
              f'{sizes[name] / 2 ** 20:6.0f}')
    print(f'load average before {load_before[0]:.1f}, after {load_after[0]:.1f}')


if __name__ == '__main__':
    main()
