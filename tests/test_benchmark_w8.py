"""Benchmark W8 (a GPU kept full) runs its smoke version: the structure of its report and the
deviation of every contender's vectors are checked, its timings only reported."""
import json

import pytest

from tests.support import ROOT


@pytest.mark.timeout(600)
def test_w8_smoke_reports_every_form_in_both_dtypes_with_their_deviations_after_each_round(
        tmp_path, python_process):
    results = tmp_path / 'w8.json'
    run = python_process(str(ROOT / 'benchmarks' / 'w8_gpu.py'), '--quick', '--repeat', '2', '--json',
                         str(results))
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(results.read_text())
    assert (report['mode'] == 'smoke' and report['device'] == 'cpu'
            and report['rounds'] == report['rounds_done'] == 2)
    assert f'round 1 of 2 done; its figures so far are in {results}' in run.stderr   # a cut run keeps them
    assert report['n'] == 48 and report['corpus_passages'] % 16 == 0
    assert report['commit'] and 'load_average_before' in report['machine'] and report['date']
    assert report['reference'] == 'sentence-transformers float32 on cpu'
    assert 'load average' in run.stdout and any('smoke version' in note for note in report['notes'])
    assert any('passages cut to their first 16 words' in note for note in report['notes'])
    forms = [(row['form'], row['dtype']) for row in report['rows']]
    assert forms == [(form, dtype) for form in ('sentence-transformers, one process', 'operator, one process',
                                                'DataCollection, Ray actors', 'Towhee pipe, ray_op',
                                                'Towhee pipe of lists, ray_op')
                     for dtype in ('float32', 'bfloat16')]
    for row in report['rows']:
        assert row['case'] in run.stdout
        assert row['passages_2n'] == 2 * row['passages_n'] and row['with_start_passages_per_s'] > 0
        assert len(row['marginal_passages_per_s_rounds']) == 2
        assert row['gpu_utilization_percent'] is None   # no nvidia-smi on a CPU machine
        if row['dtype'] == 'float32':   # every form computes sentence-transformers' vectors
            assert row['max_abs_diff'] < 1e-5 and row['min_cosine'] > 0.99999, row
        else:
            assert row['min_cosine'] >= 0.999, row
    assert report['targets']['judged'] is False   # no GPU: the targets are not judged


@pytest.mark.timeout(600)
def test_w8_overhead_smoke_reports_every_form_with_its_rate(tmp_path, python_process):
    results = tmp_path / 'w8_overhead.json'
    run = python_process(str(ROOT / 'benchmarks' / 'w8_overhead.py'), '--quick', '--json', str(results))
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(results.read_text())
    assert report['mode'] == 'smoke' and set(report['n'].values()) == {256} and report['rounds'] == 1
    assert report['commit'] and 'load_average_before' in report['machine'] and report['date']
    assert [row['case'] for row in report['rows']] == [
        'DataCollection, Ray actors', 'Towhee pipe, one row a call, no Ray',
        'Towhee pipe, one row a call, no Ray, wide batch', 'Towhee pipe, one row a call, ray_op batching',
        'Towhee pipe of documents, flat_map + ray_op batching', 'Towhee pipe of lists, window + ray_op',
        'Towhee pipe of lists, map + ray_op']
    for row in report['rows']:
        assert row['case'] in run.stdout and row['passages_2n'] == 512
        assert row['with_start_passages_per_s'] > 0 and len(row['marginal_passages_per_s_rounds']) == 1
