"""Sinks stream: the driver's anonymous memory stays bounded by a batch (Parquet) or by
what the Faiss index itself needs (Faiss), whatever the number of vectors.

Each case runs in a fresh process (tests/sink_memory.py), so no other test's garbage
counts; 100,000 vectors of 384 float32 dimensions are 146 MB, streamed from a generator.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / 'sink_memory.py'
COUNT, DIMENSION = 100_000, 384


def measure(case, folder):
    done = subprocess.run([sys.executable, str(SCRIPT), case, str(COUNT), str(DIMENSION), str(folder)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result['rows'] == COUNT
    return result


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp('sink_memory')


def test_to_parquet_then_read_parquet_hold_a_batch_not_the_vectors(folder):
    written = measure('parquet_write', folder)
    read = measure('parquet_read', folder)
    # Holding the vectors would grow by 146 MB; a batch of 1,000 is 1.5 MB (and pyarrow's
    # allocator keeps some tens of MB it has freed).
    assert written['growth_mb'] < 0.35 * written['vectors_mb'], written
    assert read['growth_mb'] < 0.35 * read['vectors_mb'], read


def test_to_faiss_holds_the_vectors_once(folder):
    bare = measure('faiss_bare', folder)     # the index alone, batches added directly
    sink = measure('faiss_sink', folder)
    # Faiss doubles its storage as it grows, copying: both peaks can include that copy, or
    # (sampled every 10 ms) miss it. Towhee 0.9 kept every vector in a list and stacked
    # them, twice the vectors more than the index holds at its end: well over this bound.
    assert sink['growth_mb'] < bare['growth_mb'] + 0.75 * sink['vectors_mb'], (bare, sink)
