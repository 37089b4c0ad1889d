"""The ``ray`` backend against a real local Ray: tasks, ordering, laziness, pipelining."""
import itertools
import os
import time

import pytest

from tests.support import SESSION_CPUS
from towhee_ray import DataCollection
from towhee_ray.backends.ray import backend as ray_backend

pytestmark = pytest.mark.usefixtures('ray_cluster')


def test_seed_example_runs_verbatim():
    dc = DataCollection.range(1000).stream().set_parallel(num_worker=2, backend='ray')
    a = dc.map(lambda x: x + 1)
    b = a.map(lambda x: x * 2)
    c = b.to_list()
    assert c == [(x + 1) * 2 for x in range(1000)]


def test_both_maps_run_in_ray_worker_processes_not_in_the_driver():
    dc = DataCollection.range(1000).stream().set_parallel(num_worker=2, backend='ray')
    a = dc.map(lambda x: (x + 1, os.getpid()))
    b = a.map(lambda pair: (pair[0] * 2, pair[1], os.getpid()))
    out = b.to_list()
    assert [value for value, _, _ in out] == [(x + 1) * 2 for x in range(1000)]
    first_pids = {pid for _, pid, _ in out}
    second_pids = {pid for _, _, pid in out}
    assert os.getpid() not in first_pids | second_pids


def test_order_is_kept_under_uneven_work():
    out = DataCollection.range(300).set_parallel(num_worker=2, backend='ray').map(
        lambda x: time.sleep(0.002 * (x % 5 == 0)) or x).to_list()
    assert out == list(range(300))


def test_elements_travel_in_chunks_not_one_task_per_element(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    out = DataCollection.range(20_000).stream().set_parallel(2, 'ray').map(lambda x: x + 1).to_list()
    assert out == list(range(1, 20_001))
    assert submit.call_count < 100


def test_fixed_chunk_size_is_honoured(mocker):
    submit = mocker.spy(ray_backend._TaskWorkers, 'submit')
    DataCollection.range(1000).set_parallel(2, 'ray', chunk_size=100).map(str).to_list()
    assert [len(call.args[1]) for call in submit.call_args_list] == [100] * 10


def test_at_most_num_worker_tasks_run_at_once(ray_cluster):
    # One worker on a Ray with more CPUs: each element reports its task's start and
    # end, and no two tasks overlap, although chunks are queued ahead.
    assert ray_cluster.cluster_resources()['CPU'] == SESSION_CPUS >= 2
    spans = DataCollection.range(30).set_parallel(1, 'ray', chunk_size=1).map(
        lambda x: (time.time(), time.sleep(0.02), time.time())).to_list()
    spans.sort()
    assert all(end <= next_start for (_, _, end), (next_start, _, _) in zip(spans, spans[1:]))


def test_stream_is_lazy_with_bounded_work_in_flight():
    pulled = itertools.count()

    def million():
        for i in range(1_000_000):
            next(pulled)
            yield i

    dc = DataCollection(million()).set_parallel(num_worker=2, backend='ray').map(lambda x: x + 1)
    assert list(itertools.islice(dc, 10)) == list(range(1, 11))
    assert next(pulled) < 100_000
    dc.close()


def test_consecutive_steps_run_concurrently(tmp_path):
    # A barrier between the steps: step one's last element waits until step two has finished
    # its first. Run one step after the other, step two could not start before step one
    # ended: the wait would time out and say so.
    first_done = tmp_path / 'step two finished its first element'

    def step_one(x):
        if x == 99:
            return x, meet_file(first_done)
        return x, True

    def step_two(pair):
        first_done.touch()
        return pair

    dc = DataCollection.range(100).stream().set_parallel(num_worker=2, backend='ray', chunk_size=5)
    out = dc.map(step_one).map(step_two).to_list()
    assert out == [(x, True) for x in range(100)]


def meet_file(path, timeout=120.0):
    """Whether ``path`` exists within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_filter_flatten_and_zip_on_ray():
    dc = DataCollection.range(100).set_parallel(2, 'ray')
    assert dc.filter(lambda x: x % 10 == 0).to_list() == list(range(0, 100, 10))
    pairs = dc.map(lambda x: [x, -x]).flatten().batch(2).to_list()
    assert pairs == [[x, -x] for x in range(100)]
    squares = dc.map(lambda x: (x * x, os.getpid()))
    zipped = dc.map(lambda x: -x).zip(squares).to_list()
    assert [(minus, square) for minus, (square, _) in zipped] == [(-x, x * x) for x in range(100)]
    assert os.getpid() not in {pid for _, (_, pid) in zipped}


def test_mmap_branches_on_ray_read_zipped_or_one_after_the_other():
    for zipped in (True, False):
        plus, minus = DataCollection.range(500).stream().mmap(
            [lambda x: x + 1, lambda x: -x], num_worker=2, backend='ray')
        if zipped:
            assert list(zip(plus, minus)) == [(x + 1, -x) for x in range(500)]
        else:
            assert minus.to_list() == [-x for x in range(500)]
            assert plus.to_list() == [x + 1 for x in range(500)]


def test_closures_and_local_functions_are_shipped_by_value():
    offset = 7

    def add_offset(x):
        return x + offset

    assert DataCollection.range(5).pmap(add_offset, backend='ray').to_list() == [7, 8, 9, 10, 11]


class _Gauge:
    """Counts the elements being processed at once, across the processes of this machine,
    in a locked file (a Ray actor would do, but a task waiting in ray.get lends its CPU)."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, 'w') as file:
            file.write('0 0')

    def _update(self, change):
        import fcntl
        with open(self.path, 'r+') as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            now, most = map(int, file.read().split())
            now += change
            file.seek(0)
            file.truncate()
            file.write(f'{now} {max(now, most)}')

    def enter(self):
        self._update(1)

    def leave(self):
        self._update(-1)

    def peak(self):
        with open(self.path) as file:
            return int(file.read().split()[1])


@pytest.mark.parametrize('num_worker, options', [
    (1, {'num_cpus': 0.5}),   # the cluster could run 4 such tasks at once: the step chains them
    (2, {}),                  # 1 CPU each: Ray's accounting (and the chains, if more CPUs) bound them
])
def test_a_step_never_runs_more_tasks_at_once_than_num_worker(num_worker, options, tmp_path):
    import ray

    gauge = _Gauge(tmp_path / 'gauge')

    def busy(x):
        gauge.enter()
        time.sleep(0.02)   # long enough for another task to start meanwhile, were it allowed
        gauge.leave()
        return x

    out = DataCollection(range(16)).pmap(busy, num_worker=num_worker, backend='ray', chunk_size=1,
                                         **options).to_list()
    assert out == list(range(16))
    cpus = int(ray.cluster_resources()['CPU'])
    assert 1 <= gauge.peak() <= min(num_worker, cpus)


def test_actors_per_gpu_asks_each_actor_for_its_share_of_one_gpu():
    from towhee_ray.backends.ray.backend import ACTOR_REMOTE_ARGS, RayBackend
    from towhee_ray.backends.ray.resources import step_remote_args
    backend = RayBackend(4, actors_per_gpu=4)
    assert step_remote_args(ACTOR_REMOTE_ARGS, actor=True, **backend.step_options)['num_gpus'] == 0.25
    assert RayBackend(2).step_options['num_gpus'] is None


FILL_GPUS = '''
import collections, os
import ray, towhee
import towhee_ray
from towhee import pipe
from towhee_ray import DataCollection, ray_op

towhee_ray.init('local', num_cpus=2, num_gpus=2)   # two GPUs for Ray to hand out, real or not

@towhee.register(name='fill/where')
class Where:
    def __call__(self, x):
        return os.getpid(), tuple(str(gpu) for gpu in ray.get_gpu_ids())

dc = DataCollection.range(60).stream().set_parallel(backend='ray', actors_per_gpu=3, chunk_size=1)
print('repr', repr(dc))
print('num_worker', dc.get_num_worker())
out = dc.fill.where().to_list()
gpus_of = dict(out)
print('step', len(gpus_of), sorted(collections.Counter(gpus_of.values()).items()))

op = ray_op(Where, actors_per_gpu=2)
p = pipe.input('x').map('x', 'where', op).output('where')
[queue.get() for queue in p.batch(list(range(40)))]
print('ray_op', op.calls_to_fill // 2, len(op.stats()), len({stat['pid'] for stat in op.stats()}))
op.close()
fixed = DataCollection.range(8).set_parallel(3, backend='ray', actors_per_gpu=2)
print('fixed', fixed.get_num_worker(), len({pid for pid, _ in fixed.fill.where().to_list()}))
'''


@pytest.mark.timeout(300)
def test_actors_per_gpu_without_num_worker_starts_that_many_on_every_gpu_of_the_cluster(python_process):
    # A fresh local Ray that declares 2 GPUs: Ray hands them out (CUDA_VISIBLE_DEVICES, ray.get_gpu_ids)
    # whether or not they exist, which is all the count and the packing depend on.
    result = python_process('-c', FILL_GPUS)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(line.split(' ', 1) for line in result.stdout.splitlines())
    assert lines['repr'] == '<DataCollection stream, parallel=ray x3 per GPU>'
    assert lines['num_worker'] == '6'
    assert lines['step'] == "6 [(('0',), 3), (('1',), 3)]"   # 6 actors, 3 holding each GPU
    assert lines['ray_op'] == '4 4 4'                         # 2 per GPU: 4 actors, each its own process
    assert lines['fixed'] == '3 3'                            # num_worker given: that many, GPUs or not


def test_actors_per_gpu_without_num_worker_on_a_cluster_without_gpus_says_what_to_do(ray_cluster):
    from towhee import ops
    from towhee_ray import ray_op
    assert 'GPU' not in ray_cluster.cluster_resources()
    message = (r'actors_per_gpu=4 without num_worker= starts 4 actors on each GPU of the Ray cluster, '
               r'and it has no GPU \(the nodes have: CPU 4, .*\)\. Give num_worker= as well .*'
               r'or leave out actors_per_gpu to run on the CPUs')
    # nothing counted yet
    dc = DataCollection.range(4).stream().set_parallel(backend='ray', actors_per_gpu=4)
    with pytest.raises(ValueError, match=message):
        dc.map(str)
    with pytest.raises(ValueError, match=message):
        ray_op(ops.towhee.text_split(max_words=8), actors_per_gpu=4)
    assert DataCollection.range(4).set_parallel(backend='ray').get_num_worker() == 2


@pytest.mark.parametrize('backend', ['ray', 'thread'])
def test_close_from_another_thread_ends_the_stream_being_read_and_releases_its_workers(backend, alive_actors):
    import threading
    import towhee
    from tests.support import eventually

    @towhee.register(name='tests_close/slow')
    class Slow:
        def __call__(self, x):
            time.sleep(0.05)
            return x

    before = set(alive_actors())
    stream = DataCollection(range(2000)).stream().set_parallel(2, backend=backend).tests_close.slow().map(str)
    read = []
    reader = threading.Thread(target=lambda: read.extend(stream))   # 2,000 x 50 ms on 2 workers: ~50 s
    reader.start()
    assert eventually(lambda: read, timeout=60)   # it is running
    stream.close()                                 # from this thread, a watchdog's
    reader.join(timeout=60)
    assert not reader.is_alive() and 0 < len(read) < 2000
    assert read == [str(x) for x in range(len(read))]   # what it gave, in order
    assert eventually(lambda: set(alive_actors()) <= before)


def test_close_from_another_thread_of_a_stream_without_parallel_steps_says_what_to_do():
    import threading
    stream = DataCollection(range(100)).stream().map(lambda x: time.sleep(0.02) or x)
    errors = []

    def close_soon():
        time.sleep(0.2)
        try:
            stream.close()
        except RuntimeError as error:
            errors.append(str(error))

    closer = threading.Thread(target=close_soon)
    closer.start()
    assert list(stream) == list(range(100))
    closer.join()
    assert errors and errors[0].startswith('close() from another thread stops the parallel steps of a '
                                           'stream, and this one has none')
