"""Large elements on the ``ray`` backend: chunks and in-flight work bounded by bytes."""

import os
import resource

import cloudpickle
import numpy as np
import pytest

import towhee_ray.backends.sizes
from towhee_ray import DataCollection
from towhee_ray.backends import chunking
from towhee_ray.backends.ray import backend as ray_backend
from towhee_ray.backends.sizes import estimate_bytes

pytestmark = pytest.mark.usefixtures('ray_cluster')

MB = 1 << 20


def arrays(count, mb, pulled=None):
    """A generator of ``count`` float64 arrays of ``mb`` MiB, the i-th filled with i."""
    for index in range(count):
        if pulled is not None:
            pulled.append(index)
        yield np.full(mb * MB // 8, index, dtype=np.float64)


def first(array):
    return float(array[0])


def submitted_chunks(spy):
    return [call.args[1] for call in spy.call_args_list]


def chunk_mb(chunk):
    """MiB of a chunk of arrays, by numpy's own count (not the estimate the chunking uses)."""
    return sum(array.nbytes for array in chunk) / MB


def test_no_submitted_chunk_exceeds_the_byte_target(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    out = (DataCollection(arrays(40, 1)).set_parallel(2, 'ray', chunk_bytes=4 * MB)
           .map(first).to_list())
    assert out == [float(i) for i in range(40)]
    chunks = submitted_chunks(submit)
    assert sum(map(len, chunks)) == 40
    assert max(chunk_mb(chunk) for chunk in chunks) <= 4
    assert max(map(len, chunks)) == 3   # 3 arrays of 1 MiB (and a little) fit, not 4


def test_default_byte_target_holds_for_cheap_work_on_8_mb_arrays(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    out = DataCollection(arrays(30, 8)).set_parallel(2, 'ray').map(first).to_list()
    assert out == [float(i) for i in range(30)]
    assert max(chunk_mb(chunk) for chunk in submitted_chunks(submit)) <= chunking.DEFAULT_CHUNK_BYTES / MB


def test_operator_steps_are_bounded_the_same_way(mocker):
    import towhee

    @towhee.register(name='tests_large/first_value')
    class FirstValue:
        def __call__(self, array):
            return float(array[0])

    submit = mocker.spy(ray_backend._ActorWorkers, 'submit')
    out = (DataCollection(arrays(24, 1)).set_parallel(2, 'ray', chunk_bytes=2 * MB + MB // 2)
           .tests_large.first_value().to_list())
    assert out == [float(i) for i in range(24)]
    assert max(map(len, submitted_chunks(submit))) == 2


def test_outputs_are_bounded_by_bytes_too(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    out = (DataCollection(range(30)).set_parallel(2, 'ray', chunk_bytes=4 * MB)
           .map(lambda i: np.full(MB // 8, i, dtype=np.float64)))
    assert [array[-1] for array in out] == list(range(30))
    sizes = [len(chunk) for chunk in submitted_chunks(submit)]
    assert sizes[0] == 1          # the first chunk teaches the output size ...
    assert max(sizes[1:]) <= 3    # ... then no chunk brings back more than 4 MiB


def test_an_element_larger_than_the_target_travels_alone(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    out = (DataCollection(arrays(6, 3)).set_parallel(2, 'ray', chunk_bytes=1 * MB)
           .map(first).to_list())
    assert out == [float(i) for i in range(6)]
    assert [len(chunk) for chunk in submitted_chunks(submit)] == [1] * 6


def heap_faults(_):
    """Page faults of making 32 MiB in 8 MiB blocks, after the same was made and freed twice:
    what a worker pays again for each chunk of four 8 MB outputs if its heap went back to
    the kernel in between. (Blocks filled by Python, so that every page is touched.)"""
    def make_chunk():
        return [b'\x01' * (8 * MB) for _ in range(4)]

    for _ in range(2):
        make_chunk()   # made, then freed at once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = make_chunk()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del blocks
    return faults


@pytest.mark.skipif(not hasattr(os, 'confstr') or not os.confstr('CS_GNU_LIBC_VERSION'),
                    reason='the heap thresholds are glibc malloc\'s')
def test_workers_reuse_the_heap_a_chunk_of_large_outputs_freed():
    # Freed, 32 MiB at the top of the heap is over glibc's dynamic trim threshold (16 MiB
    # once 8 MiB blocks were freed): without towhee_ray's thresholds the third chunk faults
    # in all its 8,192 pages again; with them its blocks come from the heap just freed.
    import towhee

    @towhee.register(name='tests_large/heap_faults')
    class HeapFaults:
        def __call__(self, item):
            return heap_faults(item)

    pages_of_one_block = 8 * MB // resource.getpagesize()
    on_tasks = DataCollection(range(4)).set_parallel(2, 'ray', chunk_size=1).map(heap_faults).to_list()
    on_actors = (DataCollection(range(4)).set_parallel(2, 'ray', chunk_size=1)
                 .tests_large.heap_faults().to_list())
    assert max(on_tasks) < pages_of_one_block, on_tasks
    assert max(on_actors) < pages_of_one_block, on_actors


@pytest.mark.parametrize('direction', ['in', 'out'])
def test_bytes_in_flight_stay_bounded_between_the_source_and_the_consumer(direction):
    # Elements of 1 MiB, at most 6 MiB held by the step: whatever was pulled from the
    # input and not yet handed to the consumer is in flight (or waits in the driver to
    # be sent), so it never exceeds the bound plus one chunk (2 MiB) plus the chunk the
    # consumer is reading.
    pulled = []
    if direction == 'in':
        source, fn = arrays(200, 1, pulled), first
    else:
        source, fn = ((pulled.append(i) or i for i in range(200)),
                      lambda i: np.full(MB // 8, i, dtype=np.float64))
    dc = DataCollection(source).set_parallel(2, 'ray', chunk_bytes=2 * MB, max_bytes_in_flight=6 * MB).map(fn)
    ahead = []
    for consumed, output in enumerate(dc, start=1):
        ahead.append(len(pulled) - consumed)
        assert (output if direction == 'in' else output[-1]) == consumed - 1
    assert consumed == 200
    assert max(ahead) <= 6 + 2 + 2


def test_small_elements_keep_count_and_time_sized_chunks(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    measured = mocker.spy(towhee_ray.backends.sizes, 'estimate_bytes')
    n = 100_000
    out = DataCollection(iter(range(n))).set_parallel(2, 'ray').map(lambda x: x + 1)
    assert sum(out) == n * (n + 1) // 2
    sizes = [len(chunk) for chunk in submitted_chunks(submit)]
    assert max(sizes) >= 4096            # as large as before byte bounds existed
    assert measured.call_count < n / 50  # sampled, not every element measured


def test_mmap_branches_are_bounded_each(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    firsts, lasts = DataCollection(arrays(20, 1)).stream().mmap(
        [first, lambda array: float(array[-1])], num_worker=2, backend='ray', chunk_bytes=3 * MB)
    assert list(zip(firsts, lasts)) == [(float(i), float(i)) for i in range(20)]
    assert max(map(len, submitted_chunks(submit))) == 2


def test_fixed_chunk_size_is_not_cut_by_bytes(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    out = (DataCollection(arrays(12, 1)).set_parallel(2, 'ray', chunk_size=4, chunk_bytes=1 * MB)
           .map(first).to_list())
    assert out == [float(i) for i in range(12)]
    assert [len(chunk) for chunk in submitted_chunks(submit)] == [4, 4, 4]


@pytest.mark.parametrize('option, value', [('chunk_bytes', 0), ('chunk_bytes', '32MB'),
                                           ('max_bytes_in_flight', -1), ('max_bytes_in_flight', 1.5)])
def test_bad_byte_bounds_are_refused_before_any_work(option, value):
    with pytest.raises(ValueError, match=rf'{option} must be a positive integer \(a number of bytes'):
        DataCollection([1]).set_parallel(2, 'ray', **{option: value})


def test_byte_bounds_are_a_ray_option_only():
    with pytest.raises(ValueError, match='chunk_bytes'):
        DataCollection([1]).set_parallel(2, 'thread', chunk_bytes=MB)


def test_sizes_come_from_what_objects_know_without_copying_arrays():
    from towhee.types import Image

    image = Image(np.zeros((1000, 1000, 3), dtype=np.uint8), 'RGB')
    assert estimate_bytes(image) == pytest.approx(image.nbytes, rel=0.01)

    class Frame:   # an arbitrary object holding an array: pickled with out-of-band buffers
        def __init__(self):
            self.pixels = np.zeros(5 * MB, dtype=np.uint8)
            self.name = 'frame'

    # the reference: what pickling (as Ray does) really produces
    for value in (Frame(), {'a': np.zeros(MB, dtype=np.uint8), 'b': b'x' * 10},
                  [bytes([i % 256]) * 100 for i in range(1000)]):
        assert estimate_bytes(value) == pytest.approx(len(cloudpickle.dumps(value)), rel=0.05)
