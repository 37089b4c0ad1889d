"""The manual (``docs/``) builds with warnings as errors, says what the code does, and every
Python block of it runs as written.

The blocks run as README.md's do (``tests/test_readme.py``): each in a fresh process with
its own Ray, in an empty folder, with the small data a block names but does not define; a
block that cannot run (it needs a server, a cluster, a GPU) starts with
``# not run by the README test: <reason>``. A block that appears on several pages runs once.
README.md is checked here for what the manual asks of it (short, links that resolve, figures
of recorded runs); its blocks run in tests/test_readme.py.
"""
import doctest
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import towhee_ray
from tests.support import ROOT
from tests.test_readme import NOT_RUN, check_block_runs

DOCS = ROOT / 'docs'
PAGES = sorted(DOCS.rglob('*.md'))
README = ROOT / 'README.md'
PYTHON_BLOCK = re.compile(r'^```python\n(.*?)^```', re.S | re.M)


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


report = load_module(ROOT / 'benchmarks' / 'report.py', 'benchmarks_report')
griffe_doctests = load_module(DOCS / 'griffe_doctests.py', 'docs_griffe_doctests')


def page_blocks():
    """{code: [where, ...]} of every ```python block of docs/, in page order."""
    blocks = {}
    for page in PAGES:
        text = page.read_text()
        for match in PYTHON_BLOCK.finditer(text):
            where = f'{page.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}'
            blocks.setdefault(match[1], []).append(where)
    return blocks


BLOCKS = page_blocks()
RUN = [(places[0], code) for code, places in BLOCKS.items() if not code.startswith(NOT_RUN)]


# -- the site ---------------------------------------------------------------------------

@pytest.mark.timeout(600)
def test_the_site_builds_with_warnings_as_errors(tmp_path, run_process):
    if importlib.util.find_spec('mkdocs') is None or importlib.util.find_spec('mkdocstrings') is None:
        pytest.skip("mkdocs and mkdocstrings are not installed: pip install -e '.[docs]' (make test does)")
    site = tmp_path / 'site'
    result = run_process([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(site)],
                         cwd=ROOT, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    assert result.returncode == 0, (f'mkdocs build --strict failed:\n{result.stdout[-3000:]}\n'
                                    f'{result.stderr[-6000:]}')
    published = {page.relative_to(DOCS).with_suffix('') for page in PAGES}
    for page in published:
        index = site / ('index.html' if page == Path('index') else page / 'index.html')
        assert index.exists(), f'{page} was not built'
    api = (site / 'reference' / 'api' / 'index.html').read_text()
    for name in set(towhee_ray.__all__) - {'Entity', 'dc', 'glob'}:
        assert f'id="towhee_ray.{name}"' in api, f'the API reference has no entry for towhee_ray.{name}'
    assert 'id="towhee_ray.DataCollection.to_milvus"' in api          # inherited from the mixins
    assert '&gt;&gt;&gt;' in api and '<blockquote>' not in api         # doctests fenced, not quoted


def test_the_api_reference_names_every_public_name():
    text = (DOCS / 'reference' / 'api.md').read_text()
    documented = set(re.findall(r'^::: towhee_ray\.(\w+)$', text, re.M))
    documented |= set(re.findall(r'^### `towhee_ray\.(\w+)`$', text, re.M))
    assert set(towhee_ray.__all__) <= documented, sorted(set(towhee_ray.__all__) - documented)


def test_every_page_is_in_the_navigation():
    nav = (ROOT / 'mkdocs.yml').read_text()
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in nav, f'{page.relative_to(ROOT)} is not in mkdocs.yml nav'


@pytest.mark.parametrize('module', [report, griffe_doctests],
                         ids=['benchmarks/report.py', 'docs/griffe_doctests.py'])
def test_the_docs_tools_doctests_pass(module):
    # testpaths holds tests/ and towhee_ray/ only: these two modules' examples run here
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried and not failures


def test_doctests_become_fenced_code_and_roles_become_code():
    text = 'Add.\n\n  >>> f(1)\n  2\n\nSee :func:`~towhee_ray.init` and :class:`Sink`::\n\n    code'
    assert griffe_doctests.markdown_docstring(text) == (
        'Add.\n\n  ```pycon\n  >>> f(1)\n  2\n  ```\n\nSee `init` and `Sink`:\n\n    code')


# -- the code blocks --------------------------------------------------------------------

def test_the_manual_has_python_blocks_and_each_not_run_block_says_why():
    assert len(RUN) >= 20, f'docs/ has only {len(RUN)} runnable Python blocks'
    for code, places in BLOCKS.items():
        if code.startswith(NOT_RUN):
            reason = code.splitlines()[0][len(NOT_RUN):].strip()
            assert len(reason) > 5, f'{places[0]}: say why the block is not run'


@pytest.mark.timeout(600)
@pytest.mark.parametrize('where, code', RUN, ids=[where for where, _ in RUN])
def test_docs_block_runs(where, code, tmp_path, python_process):
    check_block_runs(where, code, tmp_path, python_process)


# -- figures ----------------------------------------------------------------------------

def test_every_results_table_is_made_from_its_json():
    assert report.regions((DOCS / 'performance.md').read_text()), 'performance.md has no results regions'
    assert report.stale() == [], 'run: python benchmarks/report.py write'


def test_a_results_region_is_rendered_from_a_recorded_json(tmp_path):
    results = {'mode': 'full', 'load_average_before': 0.5, 'load_average_after': 2.7,
               'others_cpu_share': 0.02, 'idle': True,
               'rows': [{'case': 'towhee_ray', 'inserts_per_s': 15123.4, 'growth_mb': 12.0, 'rounds': [1, 2]},
                        {'case': 'bare loop', 'inserts_per_s': 11000.0, 'growth_mb': 3.0}]}
    document = {'benchmark': 'w7_ingest', 'command': 'python benchmarks/w7_ingest.py',
                'recorded': {'date': '2026-12-04T21:00:00+00:00', 'commit': 'abc1234',
                             'machine': {'cpus': 2, 'memory_gib': 24, 'gpus': []}},
                'results': results}
    (tmp_path / 'w7_ingest.json').write_text(__import__('json').dumps(document))
    body = report.render('w7_ingest', tmp_path)
    assert 'Recorded 2026-12-04T21:00:00+00:00, commit `abc1234`, on 2 CPUs, 24 GiB, no GPU.' in body
    assert 'Load average 0.50 before, 2.70 after; other processes used 2% of the CPU (idle).' in body
    assert '| case | inserts per s | growth mb |\n|---|---|---|\n| towhee_ray | 15,123 | 12.0 |' in body
    text = '# P\n\n<!-- results: w7_ingest -->\nold figures\n<!-- /results -->\n'
    expected = f'# P\n\n<!-- results: w7_ingest -->\n{body}<!-- /results -->\n'
    assert report.refreshed(text, tmp_path) == expected


def test_a_run_records_the_machine_it_ran_on_where_it_names_one(tmp_path):
    import json
    gpu_machine = {'platform': 'Linux-x86_64', 'cpus': 16, 'memory_gib': 128,
                   'gpus': ['NVIDIA H200, 143771 MiB']}
    (tmp_path / 'there.json').write_text(json.dumps({'date': '2026-12-05T10:00:00+00:00',
                                                     'ran_on': gpu_machine}))
    (tmp_path / 'here.json').write_text(json.dumps({'rows': []}))
    there = json.loads(report.record('w8_gpu', tmp_path / 'there.json',
                                     results_dir=tmp_path / 'r').read_text())
    assert there['recorded']['machine'] == gpu_machine
    assert there['recorded']['date'] == '2026-12-05T10:00:00+00:00' and there['recorded']['commit']
    here = json.loads(report.record('w1', tmp_path / 'here.json', results_dir=tmp_path / 'r').read_text())
    assert here['recorded']['machine'] == report.machine()
    assert 'on 16 CPUs, 128 GiB, NVIDIA H200' in report.render('w8_gpu', tmp_path / 'r')


def test_the_readme_performance_table_holds_only_figures_of_recorded_runs():
    region = report.summary_table(README.read_text())
    assert region is not None, 'README.md lost its <!-- results-summary --> table'
    assert 'PLACEHOLDER' not in region, (
        "README.md's performance table still holds placeholder rows: fill them from "
        'benchmarks/results/*.json (machine, date, commit from each "recorded"), '
        'or say "not measured yet"')
    unbacked = report.unbacked_figures(region)
    assert not unbacked, f'README.md: figures found in no benchmarks/results/*.json: {unbacked}'


# -- the README ----------------------------------------------------------------

def test_the_readme_is_short_and_its_links_resolve_from_the_repository_root():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for heading in ('## Is it for you?', '## Install', '## Two commands', '## Quick start',
                    '## Coming from Towhee 0.9', '## How it runs', '## Performance', '## Documentation',
                    '## Development', '## Licence'):
        assert heading in text, heading
    prose = re.sub(r'`[^`\n]*`', '', re.sub(r'^```.*?^```', '', text, flags=re.S | re.M))
    links = re.findall(r'\]\((?!https?://)([^)#]+)(?:#[^)]*)?\)', prose)
    assert links
    for link in links:
        assert (ROOT / link).exists(), f'README.md links to {link}, missing from the repository root'


def test_the_install_commands_give_cpu_and_cuda_torch_one_line_each():
    for path in (DOCS / 'install.md', README):
        text = path.read_text()
        cpu = r'^pip install torch --index-url https://download\.pytorch\.org/whl/cpu\b.*CPU'
        assert re.search(cpu, text, re.M)
        assert re.search(r'^pip install torch +# CUDA', text, re.M)


# -- logging ----------------------------------------------------------------------------

def test_the_logging_page_lists_every_logger_of_the_package():
    page = (DOCS / 'errors-and-logging.md').read_text()
    listed = set(re.findall(r'^\| `(towhee_ray(?:\.\w+)+)` \|', page, re.M))
    modules = set()
    for path in (ROOT / 'towhee_ray').rglob('*.py'):
        if 'logging.getLogger(__name__)' in path.read_text():
            parts = path.relative_to(ROOT).with_suffix('').parts
            modules.add('.'.join(parts[:-1] if parts[-1] == '__init__' else parts))
    assert listed == modules, (f'loggers missing from the page: {sorted(modules - listed)}; '
                               f'listed but gone: {sorted(listed - modules)}')
    assert "setdefault('logging_level', logging.ERROR)" in (ROOT / 'towhee_ray' / 'cluster.py').read_text(), (
        'init() no longer sets Ray\'s log level as "What init() does to Ray\'s own log level" says')
    assert logging.getLogger('towhee_ray').level == logging.NOTSET   # no level of its own


def test_the_changelog_has_a_section_per_version_and_the_version_is_written_once():
    changelog = (ROOT / 'CHANGELOG.md').read_text()
    assert f'## {towhee_ray.__version__} — ' in changelog
    setup = (ROOT / 'setup.cfg').read_text()
    assert re.search(r'^version = attr: towhee_ray\.__version__$', setup, re.M)
    assert towhee_ray.__version__ not in setup
    assert (ROOT / 'towhee_ray' / 'py.typed').exists() and 'towhee_ray = py.typed' in setup
    assert 'Apache License' in (ROOT / 'LICENSE').read_text() and 'license = Apache-2.0' in setup
    installed = 'import importlib.metadata as m; print(m.version("towhee-ray"))'
    result = subprocess.run([sys.executable, '-c', installed],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() in ('', towhee_ray.__version__), result.stdout


def test_every_operator_folder_has_a_readme():
    folders = [init.parent for init in (ROOT / 'operators').glob('*/*/__init__.py')]
    assert folders
    assert [str(folder.relative_to(ROOT)) for folder in folders if not (folder / 'README.md').exists()] == []
