"""The benchmarks' recorded results, and the tables of the manual made from them.

A benchmark script writes its results as JSON (``--json PATH``). Recording one keeps it in
``benchmarks/results/<name>.json`` with what it needs to be read later: the date, the commit
and the machine::

    python benchmarks/w7_ingest.py --json /tmp/w7.json
    python benchmarks/report.py record w7_ingest /tmp/w7.json --command 'python benchmarks/w7_ingest.py'

The manual's result tables are regions of Markdown between ``<!-- results: NAME -->`` and
``<!-- /results -->``, made from ``benchmarks/results/NAME.json`` alone::

    python benchmarks/report.py write    # rewrite every region from its JSON
    python benchmarks/report.py check    # exit 1, naming them, when a region differs from its JSON

``tests/test_docs.py`` runs the check, so no figure of the manual can drift from its run.
Only the standard library is used: the check runs anywhere.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results'

#: What each recorded name is, and the command that makes it (run from the repository root).
BENCHMARKS: Dict[str, Tuple[str, str]] = {
    'run': ('W1-W4 and W6: CPU-bound work, overhead, operator start-up, memory, large elements',
            'python benchmarks/run.py --json /tmp/run.json'),
    'w5_model': ('W5: a real model (all-MiniLM-L6-v2) on CPUs',
                 'HF_HUB_OFFLINE=1 python benchmarks/w5_model.py --json /tmp/w5_model.json'),
    'w7_ingest': ('W7: ingest into Milvus, the demo end to end and a million vectors',
                  'HF_HUB_OFFLINE=1 python benchmarks/w7_ingest.py --json /tmp/w7_ingest.json'),
    'w7_resume': ('W7: a million-vector job killed halfway and run again',
                  'python benchmarks/w7_resume.py --json /tmp/w7_resume.json'),
    'w8_gpu': ('W8: embedding on a GPU',
               'HF_HUB_OFFLINE=1 python benchmarks/w8_gpu.py --json /tmp/w8_gpu.json'),
    'w8_overhead': ("W8's forms with an operator that costs nothing: each form's ceiling on this machine",
                    'python benchmarks/w8_overhead.py --json /tmp/w8_overhead.json'),
}

SUMMARY = re.compile(r'<!-- results-summary -->\n(?P<body>.*?)<!-- /results-summary -->', re.S)
REGION = re.compile(r'(<!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)', re.S)
# Keys describing the load during a run, wherever a script put them (top level or 'machine').
LOAD_KEYS = ('load_average_before', 'load_average_after', 'others_cpu_share', 'idle', 'cores')


# -- recording --------------------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        done = subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ''


def commit() -> str:
    """The checkout's commit, ``-dirty`` when tracked files differ from it."""
    head = _git('rev-parse', '--short', 'HEAD') or 'unknown'
    return head + ('-dirty' if _git('status', '--porcelain', '--untracked-files=no') else '')


def machine() -> Dict[str, Any]:
    """What the results were measured on: CPU model and count, memory, GPUs, OS."""
    info: Dict[str, Any] = {'platform': platform.platform(), 'python': platform.python_version(),
                            'cpus': os.cpu_count()}
    try:
        text = Path('/proc/cpuinfo').read_text()
        model = re.search(r'^model name\s*:\s*(.+)$', text, re.M)
        if model:
            info['cpu'] = model[1].strip()
        memory = re.search(r'^MemTotal:\s*(\d+) kB', Path('/proc/meminfo').read_text(), re.M)
        if memory:
            info['memory_gib'] = round(int(memory[1]) / 2 ** 20)
    except OSError:
        pass
    gpus: List[str] = []
    if shutil.which('nvidia-smi'):
        listed = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                                capture_output=True, text=True)
        gpus = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    info['gpus'] = gpus
    return info


def record(name: str, source: Path, command: str = '', results_dir: Path = RESULTS) -> Path:
    """Keep ``source`` (a script's JSON) as ``<results_dir>/<name>.json``, with the date, the
    commit and the machine. A date the script wrote itself is kept as the date; so is the
    machine it ran on, where it wrote one (``ran_on``: :func:`machine` called there, for a
    run made on another machine, W8 on a GPU), else this machine is the one recorded."""
    results = json.loads(Path(source).read_text())
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    date = _find(results, 'date') or now
    ran_on = results.get('ran_on') if isinstance(results, dict) else None
    document = {'benchmark': name, 'command': command or BENCHMARKS.get(name, ('', ''))[1],
                'recorded': {'date': date, 'commit': commit(),
                             'machine': ran_on if isinstance(ran_on, dict) else machine()},
                'results': results}
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f'{name}.json'
    target.write_text(json.dumps(document, indent=1) + '\n')
    return target


# -- rendering --------------------------------------------------------------------------

def _find(document: Any, key: str) -> Any:
    """``document[key]``, else ``document['machine'][key]``, else None."""
    if not isinstance(document, dict):
        return None
    if key in document:
        return document[key]
    inner = document.get('machine')
    return inner.get(key) if isinstance(inner, dict) else None


def number(value: Any) -> str:
    """A figure as the tables show it: 3 significant digits at most, thousands separated;
    a figure just below 1 (a cosine) with the digits that tell it from 1.

    >>> [number(v) for v in (1277, 13897.4, 91.43, 2.4412, 0.554, 0.0016, 1.9e-07, 0.0, True, None)]
    ['1,277', '13,897', '91.4', '2.44', '0.554', '1.6e-03', '1.9e-07', '0', 'yes', '—']
    >>> [number(v) for v in (0.99997, 0.9991, 0.99999994, 1.0)]
    ['0.99997', '0.999', '1.000', '1.00']
    """
    if value is None:
        return '—'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        size = abs(value)
        if size == 0:
            return '0'
        if size < 0.01:
            return f'{value:.1e}'
        if 0.999 <= size < 1:
            digits = next((d for d in range(3, 7) if round(size, d) < 1), 3)
            return f'{value:.{digits}f}'
        if size >= 100:
            return f'{value:,.0f}'
        digits = 1 if size >= 10 else 2 if size >= 1 else 3
        return f'{value:.{digits}f}'
    return str(value).replace('|', '\\|').replace('\n', ' ')


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def tables(rows: Iterable[Dict[str, Any]]) -> List[str]:
    """Markdown tables of ``rows``: rows with the same fields share a table, in order; fields
    holding lists or dicts (per-round values, vectors) are left out.

    >>> print(tables([{'case': 'a', 'rate': 2.0, 'rounds': [1, 2]}, {'case': 'b', 'rate': 30.5}])[0])
    | case | rate |
    |---|---|
    | a | 2.00 |
    | b | 30.5 |
    """
    groups: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
    for row in rows:
        keys = tuple(key for key, value in row.items() if _scalar(value))
        groups.setdefault(keys, []).append(row)
    out = []
    for keys, members in groups.items():
        lines = ['| ' + ' | '.join(key.replace('_', ' ') for key in keys) + ' |',
                 '|' + '---|' * len(keys)]
        lines += ['| ' + ' | '.join(number(row.get(key)) for key in keys) + ' |' for row in members]
        out.append('\n'.join(lines))
    return out


def _describe_machine(info: Dict[str, Any]) -> str:
    parts = [f"{info['cpus']} CPUs" if info.get('cpus') else '']
    if info.get('cpu'):
        parts[0] += f" ({info['cpu']})"
    if info.get('memory_gib'):
        parts.append(f"{info['memory_gib']} GiB")
    parts.append(', '.join(info['gpus']) if info.get('gpus') else 'no GPU')
    if info.get('platform'):
        parts.append(info['platform'])
    return ', '.join(part for part in parts if part)


def render(name: str, results_dir: Path = RESULTS) -> str:
    """The Markdown of the region ``name``: how the run was made, then its tables."""
    what, command = BENCHMARKS.get(name, (name, ''))
    path = results_dir / f'{name}.json'
    if not path.exists():
        return (f'*Not measured yet at this commit: there is no `benchmarks/results/{name}.json`* '
                f'(see "How to reproduce").\n')
    document = json.loads(path.read_text())
    results = document.get('results', document)
    recorded = document.get('recorded', {})
    date = recorded.get('date') or _find(results, 'date')
    where = _describe_machine(recorded['machine']) if recorded.get('machine') else 'a machine not recorded'
    lines = [f'**{what}.**',
             f"Recorded {date or '(no date in the JSON)'}, "
             f"commit `{recorded.get('commit', 'not recorded')}`, "
             f"on {where}."]
    load = {key: _find(results, key) for key in LOAD_KEYS}
    if load['load_average_before'] is not None:
        share = load['others_cpu_share']
        lines.append(f"Load average {load['load_average_before']:.2f} before, "
                     f"{load['load_average_after']:.2f} after"
                     + (f"; other processes used {share:.0%} of the CPU" if share is not None else '')
                     + ('' if load['idle'] is None else
                        ' (idle).' if load['idle'] else ' (**not idle: indicative only**).'))
    mode = _find(results, 'mode')
    if mode:
        lines.append(f'Mode: {mode}.')
    if document.get('command'):
        lines.append(f"Command: `{document['command']}`.")
    rows = results.get('rows', []) if isinstance(results, dict) else results
    body = ' '.join(lines) + '\n'
    for table in tables(rows):
        body += '\n' + table + '\n'
    return body


def regions(text: str) -> List[Tuple[str, str]]:
    """(name, body) of every results region of a Markdown text."""
    return [(match['name'], match['body']) for match in REGION.finditer(text)]


def refreshed(text: str, results_dir: Path = RESULTS) -> str:
    """``text`` with every results region rendered again from its JSON."""
    return REGION.sub(lambda match: match[1] + render(match['name'], results_dir) + match[4], text)


def manual_files() -> List[Path]:
    """The Markdown files that may hold results regions: the README and the docs."""
    return [path for path in [ROOT / 'README.md', *sorted((ROOT / 'docs').rglob('*.md'))] if path.exists()]


def stale(files: Optional[Iterable[Path]] = None, results_dir: Path = RESULTS) -> List[str]:
    """``file: region`` for every region that differs from what its JSON gives."""
    out = []
    for path in files or manual_files():
        text = path.read_text()
        for name, body in regions(text):
            if body != render(name, results_dir):
                out.append(f'{path.relative_to(ROOT)}: {name}')
    return out


# -- figures written by hand (the README's one table) ---------------------------------

_DATE = re.compile(r'\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:[+-]\d{2}:\d{2}|Z)?)?')
_FIGURE = re.compile(r'(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:e([-+]?\d+))?(\s?%|x\b)?')


def _numbers(value: Any) -> Iterable[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def summary_table(text: str) -> Optional[str]:
    """The README's hand-written performance table (between ``<!-- results-summary -->``
    markers), if the text has one."""
    match = SUMMARY.search(text)
    return match['body'] if match else None


def recorded(results_dir: Path = RESULTS) -> Dict[str, Dict[str, Any]]:
    """Every recorded result file, by name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(results_dir.glob('*.json'))}


def unbacked_figures(table: str, results_dir: Path = RESULTS) -> List[str]:
    """The figures of a hand-written Markdown table that no recorded run gives.

    A figure (in any column but the first, outside backticks, dates left aside) is backed
    when a number of one recorded JSON rounds to it at the precision shown; a percentage may
    also be a share (0.03 for 3 %), and a ratio (``1.45x``) the quotient of two numbers of
    one file. A table with figures must also name the commit of a recorded run.

    >>> unbacked_figures('| case | rate |\\n|---|---|\\n| W1 | 1.8x |', Path('/nonexistent'))
    ['1.8x', 'no commit of a recorded run named']
    """
    files = {name: sorted(set(_numbers(document))) for name, document in recorded(results_dir).items()}
    commits = {document.get('recorded', {}).get('commit', '') for document in recorded(results_dir).values()}
    problems = []
    seen = 0
    for line in table.splitlines():
        cells = [cell for cell in line.strip().strip('|').split('|')]
        if not line.lstrip().startswith('|') or set(line.replace('|', '').strip()) <= set('-: '):
            continue
        for cell in cells[1:]:
            text = _DATE.sub(' ', re.sub(r'`[^`]*`', ' ', cell))
            for match in _FIGURE.finditer(text):
                whole, fraction, exponent = match[1], match[2] or '', match[3]
                suffix = (match[4] or '').strip()
                value = float(whole.replace(',', '') + fraction + (f'e{exponent}' if exponent else ''))
                half_unit = 0.5 * 10 ** (int(exponent or 0) - len(fraction.lstrip('.')))
                seen += 1
                if not any(_backs(value, half_unit, suffix, numbers) for numbers in files.values()):
                    problems.append(match[0].strip())
    if seen and not any(commit and commit.split('-')[0] in table for commit in commits):
        problems.append('no commit of a recorded run named')
    return problems


def _backs(value: float, half_unit: float, suffix: str, numbers: List[float]) -> bool:
    def near(candidate: float) -> bool:
        return abs(candidate - value) <= half_unit + 1e-9 * abs(value)
    if any(near(number) for number in numbers):
        return True
    if suffix == '%' and any(near(number * 100) for number in numbers):
        return True
    if suffix == 'x':
        return any(near(a / b) for a in numbers for b in numbers if b)
    return False


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='action', required=True)
    keep = commands.add_parser('record', help='keep a benchmark JSON in benchmarks/results/ with date, '
                                              'commit and machine')
    keep.add_argument('name', choices=sorted(BENCHMARKS), help='which benchmark it is')
    keep.add_argument('json', type=Path, help='the JSON the benchmark wrote (--json PATH)')
    keep.add_argument('--command', default='', help='the command that made it (default: the usual one)')
    commands.add_parser('write', help="rewrite the manual's results regions from benchmarks/results/")
    commands.add_parser('check', help='exit 1 when a results region differs from its JSON')
    args = parser.parse_args(argv)
    if args.action == 'record':
        print(f'recorded {record(args.name, args.json, args.command).relative_to(ROOT)}; '
              f'now run: python benchmarks/report.py write')
        return 0
    if args.action == 'write':
        for path in manual_files():
            text = path.read_text()
            new = refreshed(text)
            if new != text:
                path.write_text(new)
                print(f'rewrote the results of {path.relative_to(ROOT)}')
        return 0
    differing = stale()
    for line in differing:
        print(f'{line} differs from benchmarks/results/ (python benchmarks/report.py write)', file=sys.stderr)
    summary = summary_table((ROOT / 'README.md').read_text())
    unbacked = unbacked_figures(summary) if summary and 'PLACEHOLDER' not in summary else []
    if unbacked:
        print(f'README.md: figures of its performance table that no benchmarks/results/*.json gives: '
              f'{unbacked}', file=sys.stderr)
    return 1 if differing or unbacked else 0


if __name__ == '__main__':
    sys.exit(main())
