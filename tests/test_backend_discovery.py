"""Backends are found through the ``towhee.parallel_backends`` entry-point group."""
import sys
import textwrap

import pytest

import towhee_ray
from towhee_ray import DataCollection

ECHO_MODULE = '''
from towhee_ray import Backend

CALLS = []


class EchoBackend(Backend):
    """Runs each step in the calling thread and records what it was asked to do."""

    def map(self, fn, items):
        CALLS.append(('map', self.num_worker))
        return (fn(item) for item in items)

    def map_operator(self, operator, items):
        CALLS.append(('map_operator', operator.name))
        call = operator.create()
        return (call(item) for item in items)
'''


@pytest.fixture
def third_party_distribution(tmp_path, monkeypatch):
    """A throwaway installed distribution declaring backends ``echo`` and ``broken``."""
    (tmp_path / 'echo_backend.py').write_text(ECHO_MODULE)
    dist_info = tmp_path / 'echo_backend-1.0.dist-info'
    dist_info.mkdir()
    (dist_info / 'METADATA').write_text('Metadata-Version: 2.1\nName: echo-backend\nVersion: 1.0\n')
    (dist_info / 'entry_points.txt').write_text(textwrap.dedent('''
        [towhee.parallel_backends]
        echo = echo_backend:EchoBackend
        broken = echo_backend_missing_module:Backend
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop('echo_backend', None)


def test_builtin_backends_are_found_through_the_entry_point_group():
    assert {'thread', 'ray'} <= set(towhee_ray.available_backends())
    assert towhee_ray.get_backend('thread').__name__ == 'ThreadBackend'


def test_third_party_backend_is_used_without_changing_towhee_ray(third_party_distribution):
    assert {'echo', 'broken', 'thread', 'ray'} <= set(towhee_ray.available_backends())
    out = DataCollection.range(5).set_parallel(num_worker=3, backend='echo').map(lambda x: x * 2)
    assert out.to_list() == [0, 2, 4, 6, 8]
    import echo_backend
    assert echo_backend.CALLS == [('map', 3)]
    DataCollection(['a b. c']).set_parallel(backend='echo').towhee.text_split(max_words=1).to_list()
    assert echo_backend.CALLS[-1] == ('map_operator', 'towhee/text-split')


def test_unknown_backend_is_a_value_error_listing_the_available_ones():
    expected = r"unknown parallel backend 'nope'; available backends: .*ray.*thread"
    with pytest.raises(ValueError, match=expected):
        DataCollection([1]).set_parallel(backend='nope')
    for call in (lambda dc: dc.pmap(str, backend='nope'), lambda dc: dc.mmap([str], backend='nope')):
        with pytest.raises(ValueError, match='nope'):
            call(DataCollection([1]))


def test_backend_failing_to_import_names_its_distribution_and_others_still_work(third_party_distribution):
    with pytest.raises(ImportError) as failure:
        DataCollection([1]).set_parallel(backend='broken')
    message = str(failure.value)
    assert "'broken'" in message and "'echo-backend'" in message
    assert "No module named 'echo_backend_missing_module'" in message
    assert isinstance(failure.value.__cause__, ModuleNotFoundError)
    assert DataCollection([1, 2]).set_parallel(backend='echo').map(str).to_list() == ['1', '2']
    assert DataCollection([1, 2]).set_parallel(backend='thread').map(str).to_list() == ['1', '2']


def test_unknown_backend_option_is_refused_when_set():
    with pytest.raises(ValueError,
                       match=r"backend 'thread' does not take the option 'colour'; it takes: chunk_size"):
        DataCollection([1]).set_parallel(backend='thread', colour='red')
    with pytest.raises(ValueError, match='chunk_size must be a positive integer'):
        DataCollection([1]).set_parallel(backend='thread', chunk_size=0)


@pytest.mark.parametrize('bad', [0, -1, 1.5, '2', True])
def test_bad_num_worker_is_refused_by_the_call_that_sets_it(bad):
    dc = DataCollection([1])
    for call in (lambda: dc.set_parallel(num_worker=bad), lambda: dc.mmap([str], num_worker=bad),
                 lambda: dc.pmap(str, num_worker=bad, backend='ray')):
        with pytest.raises(ValueError, match=f'num_worker must be a positive integer .*got {bad!r}'):
            call()


def test_num_worker_none_is_set_parallels_default_of_2():
    # (for pmap and mmap None means: take the chain's setting, else 2; on ray with
    # actors_per_gpu, that many per GPU of the cluster: tests/test_ray_backend.py)
    assert DataCollection([1]).set_parallel(num_worker=None).get_num_worker() == 2
    assert DataCollection([1]).set_parallel().get_num_worker() == 2
    with pytest.raises(ValueError, match='num_worker must be a positive integer'):
        DataCollection([1]).set_parallel(num_worker=0)


def test_importing_towhee_ray_does_not_import_ray(python_process):
    code = 'import sys, towhee_ray; towhee_ray.DataCollection([1]).map(str); print("ray" in sys.modules)'
    out = python_process('-c', code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'False'
