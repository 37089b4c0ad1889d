"""Benchmark W7 (ingest into Milvus Lite) runs in quick mode; what it stored is checked, timings only reported."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(1200)
def test_w7_quick_prints_the_table_and_writes_json(tmp_path):
    results = tmp_path / 'w7.json'
    run = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'w7_ingest.py'), '--quick', '--memory', '5000',
                          '--json', str(results)], capture_output=True, text=True, timeout=1150, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = json.loads(results.read_text())
    assert report['mode'] == 'quick' and report['passages'] == 128 and 'others_cpu_share' in report
    cases = [row['case'] for row in report['rows']]
    assert cases == ['towhee_ray ray, 2 actors, to_milvus', '(a) the same, without the sink',
                     '(b) single process, token-sorted encode + MilvusClient.insert',
                     'towhee_ray to_milvus', 'bare MilvusClient.insert loop']
    for row in report['rows']:
        assert row['case'] in run.stdout
        assert row['passages_per_s'] > 0 if 'passages_per_s' in row else row['growth_mb'] >= 0
