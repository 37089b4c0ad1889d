"""The examples run as a user runs them: a fresh process with its own embedded Ray."""
import ast
import os
import re

import pytest

from tests.support import ROOT

# Each example starts its own Ray; the demo loads a model in two actors. Minutes under load.
pytestmark = pytest.mark.timeout(900)


def ran_elsewhere(line):
    """The pids in 'ran in ... processes [1, 2], not in this one (3)', checked: the work
    ran in processes other than the example's own."""
    match = re.search(r'processes (\[[\d, ]+\]), not in this one \((\d+)\)', line)
    assert match, line
    pids, driver = ast.literal_eval(match[1]), int(match[2])
    assert pids and driver not in pids, line
    return pids


def run_example(python_process, name, *args, env=None):
    result = python_process(str(ROOT / 'examples' / name), *args, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_quickstart_runs_on_an_embedded_local_ray(python_process):
    result = run_example(python_process, 'quickstart.py')
    lines = result.stdout.splitlines()
    assert lines[0] == 'set_parallel(backend="ray"): 1000 elements, first five [2, 4, 6, 8, 10]'
    assert 'the maps ran in Ray worker processes' in lines[1]
    ran_elsewhere(lines[1])
    assert 'passages' in lines[2] and 'on Ray actors' in lines[2]
    assert 'failed on element #3 (3): ZeroDivisionError' in result.stdout
    assert 'Empty(value=3' in result.stdout
    # quiet: no Ray start-up banner or warnings in the user's terminal
    assert 'Started a local Ray instance' not in result.stdout + result.stderr
    assert 'WARNING' not in result.stderr, result.stderr


def test_every_example_is_run_by_this_module():
    tested = {'quickstart.py', 'semantic_search.py', 'ray_op_pipe.py', 'pipeline_on_ray.py',
              'images.py', 'cluster.py'}
    assert {path.name for path in (ROOT / 'examples').glob('*.py')} == tested


# Questions whose right topics are among the first 12 help topics (the corpus of --limit 12:
# assert, assignment, async, atom-identifiers, atom-literals, attribute-access,
# attribute-references, augassign, await, binary, bitwise, bltin-code-objects).
QUESTIONS = {'how do I check that a condition holds while debugging?': {'assert'},
             'how do I wait for a coroutine?': {'await', 'async'}}


def test_semantic_search_demo_stores_into_milvus_lite_answers_and_resumes(python_process, tmp_path):
    db = str(tmp_path / 'help.db')
    args = ['--db', db, '--limit', '12'] + [arg for question in QUESTIONS for arg in ('--query', question)]
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    result = run_example(python_process, 'semantic_search.py', *args, env=env)
    lines = result.stdout.splitlines()
    assert lines[0].startswith('12 CPython help topics -> ') and 'passages' in lines[0]
    passages = int(lines[0].split('-> ')[1].split()[0])
    assert 'embedding: 100%' in result.stderr                   # the tqdm bar
    for question, topics in QUESTIONS.items():
        at = lines.index(question)
        answers = [line.split()[:2] for line in lines[at + 1:at + 4]]   # the top 3: score, topic
        scores = [float(score) for score, _ in answers]
        assert all(0 < score <= 1 for score in scores) and scores == sorted(scores, reverse=True)
        assert answers[0][1] in topics, (question, answers)
        assert lines[at + 4] == '', lines[at:at + 5]                    # exactly 3 answers
    assert lines[-1].startswith(f'stored {passages:,} new passages, 0 already there ({db})')
    assert 'by 2 Ray actors; model loads: 2' in lines[-1] and 'passages/s' in lines[-1]
    again = run_example(python_process, 'semantic_search.py', *args, env=env)   # embeds nothing
    assert again.stdout.splitlines()[-1] == (f'stored 0 new passages, {passages:,} already there ({db}); '
                                             f'nothing to embed, no Ray actor started')
    assert 'embedding:' not in again.stderr
    at = lines.index(next(iter(QUESTIONS)))
    assert again.stdout.splitlines()[at:at + 4] == lines[at:at + 4]   # the same answers


def test_ray_op_example(python_process):
    lines = run_example(python_process, 'ray_op_pipe.py').stdout.splitlines()
    assert lines[0].startswith("[['TOWHEE BUILDS PIPELINES.!'")
    assert lines[1].startswith('80 passages; the operator ran in actor processes [')
    ran_elsewhere(lines[1])
    calls = ast.literal_eval(lines[2].split(': ', 1)[1])
    assert lines[2].startswith('calls per actor: [') and sum(calls) >= 80   # one call per passage


def test_pipeline_on_ray_example(python_process):
    result = run_example(python_process, 'pipeline_on_ray.py')
    lines = result.stdout.splitlines()
    assert lines[0].endswith('(pid aside): True')
    assert lines[1].startswith('40 topics -> ') and 'the pipeline ran in Ray actor processes' in lines[2]
    ran_elsewhere(lines[2])
    assert 'topics: 100%' in result.stderr


def test_images_example_finds_every_near_duplicate_and_leaves_no_folder_behind(python_process, tmp_path):
    # Its temporary folder goes to TMPDIR (Ray's own files stay in /tmp/ray: RAY_TMPDIR).
    env = {**os.environ, 'TMPDIR': str(tmp_path), 'RAY_TMPDIR': '/tmp'}
    lines = run_example(python_process, 'images.py', env=env).stdout.splitlines()
    assert 'near-duplicates found: 16 of 16' in lines
    assert lines[-1] == 'decoding bytes works too: (128, 128, 3)'
    assert f'images in {tmp_path}/towhee-ray-images-' in lines[0]
    # (other libraries' own temporary folders, e.g. multiprocessing's pymp-*, are not its)
    assert list(tmp_path.glob('towhee-ray-images-*')) == []


def test_cluster_example_on_an_embedded_ray(python_process):
    # Without an address it starts a local Ray; tests/multinode_checks.py runs it against a
    # real two-node cluster.
    lines = run_example(python_process, 'cluster.py').stdout.splitlines()
    assert lines[0].startswith('Ray cluster at ') and '1 node' in lines[0]
    assert lines[1].startswith('100 elements on ') and 'elements per node' in lines[1]
    assert sum(ast.literal_eval(lines[1].split('per node: ')[1]).values()) == 100
    assert lines[2] == "text_split on Ray actors: ['Ray runs it.', 'On every node.', 'Of the cluster.']"
