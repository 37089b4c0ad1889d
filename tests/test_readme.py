"""Every Python block of README.md runs as written, each in a fresh process with its own
Ray, so the manual cannot drift from the code.

A block runs in an empty temporary folder, with the data it names but does not define
(``documents``, ``paths``, ...) made up front by :data:`DATA` and the files it reads
(``docs/*.txt``) written there. A block that cannot run as it stands (it needs a cluster,
a server, your own module) starts with the line ``# not run by the README test: <reason>``.
"""
import builtins
import os
import re
import symtable
import textwrap

import pytest

from tests.support import ROOT

NOT_RUN = '# not run by the README test:'

# What a block may use without defining it: the data a reader has at hand, made small.
DATA = {
    'documents': '''
from pydoc_data.topics import topics as _topics
documents = [_topics[name] for name in ('try', 'for', 'with', 'assert')]
''',
    'passages': '''
from pydoc_data.topics import topics as _topics
passages = [line.strip() for line in _topics['try'].splitlines() if len(line.split()) > 5][:24]
''',
    'paths': '''
import numpy as _np
from PIL import Image as _Image
paths = []
for _seed in range(4):
    _pixels = _np.random.default_rng(_seed).integers(0, 256, (32, 32, 3), dtype=_np.uint8)
    _Image.fromarray(_pixels).save(f'picture{_seed}.png')
    paths.append(f'picture{_seed}.png')
''',
    'MyTagger': '''
class MyTagger:
    """A user's operator class: the first k words of a passage."""
    def __init__(self, k):
        self.k = k
    def __call__(self, passage):
        return passage.split()[:self.k]
''',
}

# Files a block reads by name (the column-style example's glob['path']('docs/*.txt')).
FILES = {
    'docs/install.txt': ' '.join(f'w{i}' for i in range(101)) + '.',
    'docs/usage.txt': ' '.join(f'u{i}' for i in range(64)) + '. Short one.',
}


def readme_blocks():
    """(line number, code) of every ```python block of README.md."""
    text = (ROOT / 'README.md').read_text()
    return [(text[:match.start()].count('\n') + 1, match[1])
            for match in re.finditer(r'^```python\n(.*?)^```', text, re.S | re.M)]


def undefined_names(code):
    """The global names ``code`` reads but neither assigns, imports nor finds in builtins."""
    module = symtable.symtable(code, 'block', 'exec')
    read, defined = set(), set()

    def walk(table, top):
        for symbol in table.get_symbols():
            if top:
                if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace():
                    defined.add(symbol.get_name())
                elif symbol.is_referenced():
                    read.add(symbol.get_name())
            elif symbol.is_global() and symbol.is_referenced():
                read.add(symbol.get_name())
        for child in table.get_children():
            walk(child, False)
    walk(module, True)
    return sorted(read - defined - set(dir(builtins)))


BLOCKS = readme_blocks()
RUN = [(line, code) for line, code in BLOCKS if not code.startswith(NOT_RUN)]


def test_readme_has_python_blocks_and_each_not_run_block_says_why():
    assert len(RUN) >= 5, f'README has only {len(RUN)} runnable Python blocks'
    for line, code in BLOCKS:
        if code.startswith(NOT_RUN):
            reason = code.splitlines()[0][len(NOT_RUN):].strip()
            assert len(reason) > 5, f'README.md:{line}: say why the block is not run'


def check_block_runs(where, code, tmp_path, python_process):
    """Run a manual's block (``where``: ``file:line``) in ``tmp_path`` with the data it
    names, in a fresh process; fail with its stderr (tests/test_docs.py runs docs/ so too)."""
    missing = [name for name in undefined_names(code) if name not in DATA]
    assert not missing, (
        f'{where} uses {missing} without defining them: define them in the block, add '
        f'small data for them to DATA in {__file__}, or start the block with "{NOT_RUN} <reason>"')
    tries = []

    def fresh_folder():   # each try in a folder of its own, with the block's files
        folder = tmp_path / f'try{len(tries)}'
        tries.append(folder)
        folder.mkdir()
        for name, content in FILES.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(content)
        return folder

    prelude = ''.join(textwrap.dedent(DATA[name]) for name in undefined_names(code))
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    result = python_process('-c', prelude + code, fresh_cwd=fresh_folder, env=env)
    assert result.returncode == 0, f'{where} failed:\n{result.stderr[-6000:]}'


@pytest.mark.timeout(600)
@pytest.mark.parametrize('line, code', RUN, ids=[f'README.md:{line}' for line, _ in RUN])
def test_readme_block_runs(line, code, tmp_path, python_process):
    check_block_runs(f'README.md:{line}', code, tmp_path, python_process)
