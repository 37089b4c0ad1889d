"""The README's demo runs as a user runs it: a fresh process with its own embedded Ray."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_on_an_embedded_local_ray():
    result = subprocess.run([sys.executable, str(ROOT / 'examples' / 'quickstart.py')],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'set_parallel(backend="ray"): 1000 elements, first five [2, 4, 6, 8, 10]'
    assert 'the maps ran in Ray worker processes' in lines[1]
    assert 'passages' in lines[2] and 'on Ray actors' in lines[2]
    assert 'failed on element #3 (3): ZeroDivisionError' in result.stdout
    assert 'Empty(value=3' in result.stdout
    # quiet: no Ray start-up banner or warnings in the user's terminal
    assert 'Started a local Ray instance' not in result.stdout + result.stderr
    assert 'WARNING' not in result.stderr, result.stderr


def run_example(name, *args, timeout=600):
    result = subprocess.run([sys.executable, str(ROOT / 'examples' / name), *args],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result


def test_every_example_is_run_by_this_module():
    tested = {'quickstart.py', 'semantic_search.py', 'ray_op_pipe.py', 'pipeline_on_ray.py',
              'images.py', 'cluster.py'}
    assert {path.name for path in (ROOT / 'examples').glob('*.py')} == tested


def test_semantic_search_demo_stores_into_milvus_lite_answers_and_resumes(tmp_path):
    db = str(tmp_path / 'help.db')
    args = ('--db', db, '--limit', '12', '--query', 'how do I catch an exception?',
            '--query', 'assign a value to a variable')
    result = run_example('semantic_search.py', *args)
    lines = result.stdout.splitlines()
    assert lines[0].startswith('12 CPython help topics -> ') and 'passages' in lines[0]
    passages = int(lines[0].split('-> ')[1].split()[0])
    assert 'embedding: 100%' in result.stderr                   # the tqdm bar
    question = lines.index('how do I catch an exception?')
    score, topic = lines[question + 1].split()[:2]
    assert 0 < float(score) <= 1 and topic in {'assert', 'async', 'assignment', 'atom-identifiers',
                                               'atom-literals', 'attribute-access', 'attribute-references',
                                               'augassign', 'await', 'binary', 'bitwise', 'bltin-code-objects'}
    assert len(lines[question + 1:question + 4]) == 3
    assert lines[-1].startswith(f'stored {passages:,} new passages, 0 already there ({db})')
    assert 'by 2 Ray actors; model loads: 2' in lines[-1] and 'passages/s' in lines[-1]
    again = run_example('semantic_search.py', *args)            # the second run embeds nothing
    assert again.stdout.splitlines()[-1] == (f'stored 0 new passages, {passages:,} already there ({db}); '
                                             f'nothing to embed, no Ray actor started')
    assert 'embedding:' not in again.stderr
    assert again.stdout.splitlines()[question + 1] == lines[question + 1]   # the same answers


def test_ray_op_example():
    lines = run_example('ray_op_pipe.py').stdout.splitlines()
    assert lines[0].startswith("[['TOWHEE BUILDS PIPELINES.!'")
    assert lines[1].startswith('80 passages; the operator ran in actor processes [')
    assert lines[2].startswith('calls per actor: [')


def test_pipeline_on_ray_example():
    result = run_example('pipeline_on_ray.py')
    lines = result.stdout.splitlines()
    assert lines[0].endswith('(pid aside): True')
    assert lines[1].startswith('40 topics -> ') and 'the pipeline ran in Ray actor processes' in lines[2]
    assert 'topics: 100%' in result.stderr


def test_images_example_finds_every_near_duplicate():
    lines = run_example('images.py').stdout.splitlines()
    assert 'near-duplicates found: 16 of 16' in lines
    assert lines[-1] == 'decoding bytes works too: (128, 128, 3)'


def test_cluster_example_on_an_embedded_ray():
    # Without an address it starts a local Ray; tests/multinode_checks.py runs it against a
    # real two-node cluster.
    lines = run_example('cluster.py').stdout.splitlines()
    assert lines[0].startswith('Ray cluster at ') and '1 node' in lines[0]
    assert lines[1].startswith('100 elements on ') and 'elements per node' in lines[1]
    assert lines[2] == "text_split on Ray actors: ['Ray runs it.', 'On every node.', 'Of the cluster.']"
