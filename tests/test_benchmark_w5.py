"""Benchmark W5 (a real model) runs in quick mode; its embeddings are checked, timings only reported."""
import json

import pytest

from tests.support import ROOT


@pytest.mark.timeout(1200)
def test_w5_quick_prints_the_table_and_writes_json_with_equal_embeddings(tmp_path, python_process):
    results = tmp_path / 'w5.json'
    run = python_process(str(ROOT / 'benchmarks' / 'w5_model.py'), '--quick', '--json', str(results))
    assert run.returncode == 0, run.stderr
    report = json.loads(results.read_text())
    assert report['mode'] == 'quick' and report['passages'] == 256
    cases = [row['case'] for row in report['rows']]
    assert cases == ['single process, encode(batch_size=32)', 'single process, one passage per call',
                     'single process, batches sorted by token count',
                     'towhee_ray ray step, 2 actors x 1 CPU, sorted_batch(64) of token ids',
                     'towhee_ray ray step, 2 actors x 1 CPU, batch(64) of texts',
                     'towhee_ray ray step, 1 actor x 2 CPUs, sorted_batch(64) of token ids',
                     'Ray Data map_batches, actor pool of 2',
                     'single process, batches sorted by token count, bfloat16',
                     'towhee_ray ray step, 2 actors x 1 CPU, sorted_batch(64) of token ids, bfloat16']
    assert report['rounds'] == 1 and 'load_average_before' in report['machine']
    assert 'load average' in run.stdout
    for row in report['rows']:
        assert row['passages_per_s'] > 0 and row['case'] in run.stdout
        if row['case'].endswith('bfloat16'):   # the operator's half precision: the same directions
            assert 1e-5 < row['max_abs_diff'] < 0.05 and row['min_cosine'] >= 0.999, row
        else:   # every float32 contender computes the same vectors
            assert row['max_abs_diff'] < 1e-5 and row['min_cosine'] > 0.99999, row
    rows = {row['case']: row for row in report['rows']}
    assert (rows['towhee_ray ray step, 2 actors x 1 CPU, sorted_batch(64) of token ids']['torch_threads']
            == [1])
    assert (rows['towhee_ray ray step, 1 actor x 2 CPUs, sorted_batch(64) of token ids']['torch_threads']
            == [2])
    padding = report['padding']
    assert padding['sorted by tokens, batch 32'] < padding['sorted by characters, batch 32']
