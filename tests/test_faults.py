"""Faults survived on a real local Ray: dead workers and actors, consumers that stop early,
Ray shut down under a stream. Each checks elements in == elements out, in order."""
import _thread
import gc
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import fault_ops
from tests import ops  # noqa: F401  (registers tests_ns/exit_on)
from towhee_ray import DataCollection, WorkerError

pytestmark = pytest.mark.usefixtures('ray_cluster')


def gcs_address():
    """This session's Ray, for the state API (which would otherwise look for this machine's
    "current cluster", possibly someone else's)."""
    import ray
    return ray.get_runtime_context().gcs_address
ROOT = Path(__file__).resolve().parent.parent


def eventually(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def step_tasks(name, states=('RUNNING', 'PENDING_NODE_ASSIGNMENT', 'PENDING_ARGS_AVAIL',
                             'SUBMITTED_TO_WORKER', 'PENDING_ACTOR_TASK_ARGS_AVAIL')):
    from ray.util.state import list_tasks
    tasks = list_tasks(address=gcs_address(), filters=[('name', '=', f'towhee_ray {name}')], limit=10_000)
    return [task for task in tasks if task.state in states]


def chain_actors(prefix='towhee_ray operator'):
    from ray.util.state import list_actors
    actors = list_actors(address=gcs_address(), filters=[('state', '!=', 'DEAD')], limit=10_000)
    return [actor for actor in actors if (actor.name or '').startswith(prefix)]


def test_an_operator_actor_killed_mid_stream_is_replaced_and_its_chunks_rerun():
    dc = (DataCollection.range(3000).stream()
          .set_parallel(2, 'ray', chunk_size=20).faults.served_by(seconds=0.001))
    out, killed = [], None
    for item in dc:
        out.append(item)
        if len(out) == 300 and killed is None:
            killed = item[1]
            os.kill(killed, signal.SIGKILL)
    assert [x for x, _, _ in out] == list(range(3000))
    before = {instance for x, _, instance in out[:300]}
    after = {instance for x, _, instance in out[-300:]}
    assert len(before) == 2 and after - before, 'a new operator instance took over'
    assert killed not in {pid for _, pid, _ in out[-300:]}


def test_a_task_worker_dying_once_is_retried(tmp_path):
    marker = str(tmp_path / 'died')
    out = (DataCollection.range(500).stream().set_parallel(2, 'ray', chunk_size=10)
           .map(fault_ops.exit_once(marker, 123)).to_list())
    assert out == list(range(500))
    assert os.path.exists(marker)


@pytest.mark.timeout(180)
def test_a_task_crashing_on_every_try_fails_naming_the_step_after_the_retries():
    def die_on_3(x):
        if x == 3:
            os._exit(1)
        return x

    dc = DataCollection.range(10).stream().set_parallel(2, 'ray', chunk_size=1, max_retries=1)
    with pytest.raises(WorkerError) as failure:
        dc.map(die_on_3).to_list()
    message = str(failure.value)
    assert 'map(die_on_3)' in message and 'element #3' in message
    assert '2 tries (max_retries=1)' in message
    assert eventually(lambda: not step_tasks('map(die_on_3)'))


@pytest.mark.timeout(180)
def test_an_operator_crashing_on_every_try_fails_naming_the_step_and_releases_its_actors():
    dc = DataCollection.range(100).set_parallel(2, 'ray', chunk_size=10, max_retries=1)
    with pytest.raises(WorkerError) as failure:
        dc.tests_ns.exit_on(13).to_list()
    message = str(failure.value)
    assert 'operator tests-ns/exit-on' in message and 'elements #10-#19' in message
    assert '2 tries (max_retries=1)' in message
    assert eventually(lambda: not chain_actors())


class Killer(threading.Thread):
    """SIGKILLs a worker or actor process of the chain about every second, alternating
    between the two kinds, at most ``limit`` times, then stops by itself."""

    def __init__(self, limit: int, task_name: str) -> None:
        super().__init__(daemon=True)
        self.limit = limit
        self.task_name = task_name
        self.stop = threading.Event()
        self.killed = {'actor': [], 'task': []}

    def candidates(self, kind):
        if kind == 'actor':
            return [actor.pid for actor in chain_actors() if actor.state == 'ALIVE' and actor.pid]
        return [task.worker_pid for task in step_tasks(self.task_name, ('RUNNING',)) if task.worker_pid]

    def run(self):
        kinds = ['actor', 'task']
        while not self.stop.wait(1.0) and sum(map(len, self.killed.values())) < self.limit:
            kind = kinds[sum(map(len, self.killed.values())) % 2]
            pids = self.candidates(kind)
            if pids:
                pid = random.choice(pids)
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed[kind].append(pid)
                except ProcessLookupError:
                    pass


@pytest.mark.timeout(600)
def test_chaos_100000_elements_through_a_task_step_and_an_operator_step_while_workers_die():
    def work(x):
        fault_ops.busy(0.00005)
        return x + 1

    # Every kill may hit the same chunk (a retried chunk is running again when the next kill
    # comes): with as many retries as kills, no chunk can run out of tries.
    kills = 8
    killer = Killer(limit=kills, task_name='map(work)')
    dc = (DataCollection(iter(range(100_000))).set_parallel(2, 'ray', max_retries=kills)
          .map(work).faults.double(seconds=0.00005))
    killer.start()
    try:
        out = dc.to_list()
    finally:
        killer.stop.set()
        killer.join()
    assert out == [2 * (x + 1) for x in range(100_000)]
    assert killer.killed['actor'] and killer.killed['task'], killer.killed


def slow(x):
    time.sleep(0.3)
    return x


@pytest.mark.parametrize('how', ['break', 'close', 'exception', 'KeyboardInterrupt'])
def test_a_consumer_stopping_early_cancels_tasks_and_removes_actors(how):
    def make():
        return (DataCollection.range(1000).stream().set_parallel(2, 'ray', chunk_size=1)
                .faults.served_by().map(slow))

    if how == 'break':
        for _ in make():
            break
    elif how == 'close':
        dc = make()
        next(iter(dc))
        dc.close()
    elif how == 'exception':
        with pytest.raises(LookupError):
            for _ in make():
                raise LookupError('the consumer failed')
    else:
        timer = threading.Timer(1.5, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            make().to_list()   # waiting for a chunk when the interrupt comes
        timer.join()
    gc.collect()
    assert eventually(lambda: not chain_actors()), chain_actors()
    assert eventually(lambda: not step_tasks('map(slow)')), step_tasks('map(slow)')
    assert DataCollection.range(100).set_parallel(2, 'ray').faults.double().to_list() == [
        2 * x for x in range(100)]


def test_ray_shut_down_under_a_running_stream_raises_saying_so():
    script = '''
import threading, time, ray, towhee_ray
from towhee_ray import DataCollection, WorkerError

def slow(x):
    time.sleep(0.01)
    return x

towhee_ray.init()
dc = DataCollection.range(100_000).stream().set_parallel(2, 'ray').map(slow)
try:
    for position, _ in enumerate(dc):
        if position == 0:   # the stream runs: shut Ray down under it
            threading.Timer(1, ray.shutdown).start()
except WorkerError as error:
    print('WorkerError:', error)
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 'WorkerError: Ray was shut down while map(slow) was running' in result.stdout


def test_tasks_and_actors_carry_their_steps_name_in_ray():
    from ray.util.state import list_actors

    def parse_row(x):
        time.sleep(0.01)
        return x

    dc = (DataCollection.range(200).stream().set_parallel(2, 'ray', chunk_size=5)
          .map(parse_row).faults.double())
    iterator = iter(dc)
    next(iterator)

    def ours():   # (name, the __repr__ Ray prefixes log lines with), once the actor is built
        actors = list_actors(address=gcs_address(), filters=[('state', '=', 'ALIVE')], detail=True)
        return sorted((actor.name, actor.repr_name) for actor in actors
                      if (actor.name or '').startswith('towhee_ray operator faults/double'))

    expected = ['towhee_ray operator faults/double #1', 'towhee_ray operator faults/double #2']
    assert eventually(lambda: [repr_name for _, repr_name in ours()] == expected), ours()
    assert all(name.startswith(f'{repr_name} [') for name, repr_name in ours())
    assert list(iterator) == [2 * x for x in range(1, 200)]
    assert eventually(lambda: step_tasks('map(parse_row)', states=('FINISHED',)))
