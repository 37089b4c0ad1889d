"""The benchmark suite runs (quick mode, its own Ray); timings are reported, never asserted."""
import json

import pytest

from tests.support import ROOT


# W4 and W6 start a fresh process (and a fresh Ray) per case: minutes on a loaded machine.
@pytest.mark.timeout(1200)
def test_quick_benchmark_prints_the_table_and_writes_json(tmp_path, python_process):
    results = tmp_path / 'results.json'
    run = python_process(str(ROOT / 'benchmarks' / 'run.py'), '--quick', '--json', str(results))
    assert run.returncode == 0, run.stderr
    report = json.loads(results.read_text())
    assert report['mode'] == 'quick' and report['machine']['cpu_count'] >= 1
    rows = {(row['workload'].split()[0], row['case']): row for row in report['rows']}
    assert {workload for workload, _ in rows} == {'W1', 'W2', 'W3', 'W4', 'W6'}
    for case in ('serial python', 'towhee_ray thread', 'towhee_ray ray',
                 'multiprocessing.Pool.imap', 'Ray Data map_batches'):
        assert rows['W1', case]['value'] > 0
    assert rows['W3', 'towhee_ray ray: __init__ runs']['value'] == 2
    w6 = [row for row in report['rows'] if row['workload'].startswith('W6')]
    assert len(w6) == 8 and all(row['value'] > 0 for row in w6)   # 4 cases x 2 directions
    for row in report['rows']:
        assert row['case'] in run.stdout   # the same rows are printed as a table
    assert 'load_average_before' in report['machine'] and 'load average' in run.stdout
