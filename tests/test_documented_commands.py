"""Every command the manual tells a user to type works as written: each example answers
``--help``, and each documented ``make bench``/``make demo`` argument and each
``python benchmarks/...``/``python examples/...`` option is one the script accepts.

An option is checked twice: it must be listed by the script's ``--help``, and the script run
with the documented arguments followed by ``--help`` must exit 0 (argparse checks the values
it has read by then: a bad choice or a number that is not one fails). Nothing runs a
benchmark or an example for real here; ``tests/test_examples.py`` and the benchmark tests do.
"""
import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

MANUAL = [ROOT / 'README.md', ROOT / 'examples' / 'README.md', *sorted((ROOT / 'docs').rglob('*.md'))]
SHELL_BLOCK = re.compile(r'^```(?:bash|sh|shell)\n(.*?)^```', re.S | re.M)
INLINE = re.compile(r'`((?:make|python|HF_HUB_OFFLINE=1 python) [^`]+)`')
EXAMPLES = sorted((ROOT / 'examples').glob('*.py'))
HELP_TIMEOUT_SECONDS = 120


def make_recipe(target):
    """The scripts a Makefile target runs with ``$(ARGS)``, as paths from the root."""
    text = (ROOT / 'Makefile').read_text()
    recipe = re.search(rf'^{target}:.*?\n((?:\t.*\n)+)', text, re.M)
    assert recipe, f'the Makefile has no {target} target'
    return re.findall(r'(\S+\.py) \$\(ARGS\)', recipe[1])


def documented_commands():
    """(where, script, arguments) for every command of the manual that runs a script."""
    found = []
    for path in MANUAL:
        if not path.exists():
            continue
        text = path.read_text()
        lines = [line for block in SHELL_BLOCK.findall(text) for line in block.splitlines()]
        lines += INLINE.findall(text)
        for line in lines:
            line = re.sub(r'\s+#.*$', '', line).strip()
            words = shlex.split(line) if line else []
            while words and re.match(r'^[A-Z_]+=', words[0]):   # HF_HUB_OFFLINE=1 ...
                words.pop(0)
            where = f'{path.relative_to(ROOT)}: {line}'
            if words[:2] in (['make', 'bench'], ['make', 'demo']):
                args = [word.split('=', 1)[1] for word in words[2:] if word.startswith('ARGS=')]
                for script in make_recipe(words[1]):
                    found.append((where, script, shlex.split(args[0]) if args else []))
            elif words[:1] == ['python'] and re.match(r'(benchmarks|examples)/\w+\.py$', ''.join(words[1:2])):
                found.append((where, words[1], words[2:]))
    unique = {}
    for where, script, args in found:   # a command documented twice is checked once
        unique.setdefault((script, tuple(args)), where)
    return [(where, script, list(args)) for (script, args), where in unique.items()]


COMMANDS = documented_commands()


@functools.lru_cache(maxsize=None)
def help_text(script):
    result = subprocess.run([sys.executable, str(ROOT / script), '--help'], capture_output=True, text=True,
                            cwd=ROOT, timeout=HELP_TIMEOUT_SECONDS, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert result.returncode == 0 and 'usage:' in result.stdout, (
        f'{script} --help failed:\n{result.stderr[-3000:]}')
    return result.stdout


def test_the_manual_documents_commands_of_the_benchmarks_and_the_examples():
    scripts = {script for _, script, _ in COMMANDS}
    assert {'benchmarks/run.py', 'benchmarks/w5_model.py', 'benchmarks/w7_ingest.py',
            'examples/semantic_search.py', 'examples/cluster.py'} <= scripts, scripts
    assert any(where.endswith("make bench ARGS=--quick") for where, _, _ in COMMANDS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize('example', EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_each_example_answers_help(example):
    text = help_text(str(example.relative_to(ROOT)))
    assert text.startswith('usage: ') and len(text.splitlines()) > 2


@pytest.mark.timeout(600)
@pytest.mark.parametrize('where, script, args', COMMANDS,
                         ids=[f'{where} [{script}]' for where, script, _ in COMMANDS])
def test_a_documented_command_is_accepted_by_its_script(where, script, args):
    assert (ROOT / script).exists(), f'{where}: {script} does not exist'
    options = [arg.split('=', 1)[0] for arg in args if arg.startswith('--')]
    listed = help_text(script)
    for option in options:
        assert re.search(rf'(^|[\s\[,]){re.escape(option)}\b', listed), (
            f'{where}: {script} does not take {option}; its options:\n{listed}')
    result = subprocess.run([sys.executable, str(ROOT / script), *args, '--help'],
                            capture_output=True, text=True,
                            cwd=ROOT, timeout=HELP_TIMEOUT_SECONDS, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert result.returncode == 0, f'{where}: {script} refuses {args}:\n{result.stderr[-2000:]}'


def test_make_bench_arguments_must_suit_every_script_it_runs():
    # What the manual may put in ARGS: only what all three scripts take.
    scripts = make_recipe('bench')
    assert scripts == ['benchmarks/run.py', 'benchmarks/w5_model.py', 'benchmarks/w7_ingest.py']
    common = set.intersection(*({option for option in re.findall(r'--[\w-]+', help_text(script))}
                                for script in scripts))
    assert '--quick' in common and '--repeat' not in common   # w7_ingest.py takes --rounds


def test_documented_paths_exist():
    for path in MANUAL[1:]:   # the docs and examples/README.md
        if not path.exists():
            continue
        named = r'`((?:benchmarks|examples|operators|tests|towhee_ray)/[\w./-]+)`'
        for name in set(re.findall(named, path.read_text())):
            if '<' in name or name.endswith('/'):
                continue
            assert (ROOT / name).exists() or Path(ROOT / name).with_suffix('').exists() or name.startswith(
                'benchmarks/results/'), f'{path.relative_to(ROOT)} names {name}, which does not exist'
