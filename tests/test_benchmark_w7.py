"""Benchmark W7 (ingest into Milvus Lite and a Milvus server) runs in quick mode; what it stored is checked
(the benchmark itself fails on a row count that is off), timings only reported."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(1200)
def test_w7_quick_prints_the_table_and_writes_json(tmp_path):
    results = tmp_path / 'w7.json'
    run = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'w7_ingest.py'), '--quick',
                          '--vectors', '3000', '--json', str(results)],
                         capture_output=True, text=True, timeout=1150, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = json.loads(results.read_text())
    assert report['mode'] == 'quick' and report['passages'] == 128 and 'others_cpu_share' in report
    cases = [row['case'] for row in report['rows']]
    assert cases == ['towhee_ray ray, 2 actors, to_milvus', '(a) the same, without the sink',
                     '(b) single process, token-sorted encode + MilvusClient.insert',
                     'bare pymilvus insert loop, Milvus Lite in the process',
                     'towhee_ray to_milvus, Milvus Lite (its own process)',
                     'bare pymilvus insert loop, server, 1 client',
                     'towhee_ray to_milvus from the driver, server',
                     'towhee_ray 2 Ray workers writing, server']
    assert report['vectors'] == 3000
    for row in report['rows']:
        assert row['case'] in run.stdout
        assert row['passages_per_s'] > 0 if 'passages_per_s' in row else row['inserts_per_s'] > 0
    scale = {row['case']: row for row in report['rows'] if 'inserts_per_s' in row}
    # Milvus's data lives in another process, not the driver's: Lite's server, or the server
    assert scale['towhee_ray to_milvus, Milvus Lite (its own process)']['milvus_process_mb'] > 0
