"""What a process may use (``towhee_ray.machine``), asked of a real local Ray from its driver
and from inside its tasks and actors."""
import os

import ray

from towhee_ray.machine import cgroup_quota_cpus, quota_cpus, ray_given_cpus, ray_worker_resources, usable_cpus


def test_the_driver_is_given_nothing_by_ray_and_may_use_its_affinitys_cpus():
    assert ray_worker_resources() is None and ray_given_cpus() == 0
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_a_ray_task_or_actor_may_use_the_cpus_ray_gave_it():
    @ray.remote(num_cpus=1)
    def one_cpu():
        return ray_worker_resources(), ray_given_cpus(), usable_cpus()

    @ray.remote(num_cpus=0)
    class NoCpu:
        def ask(self):
            return ray_worker_resources(), ray_given_cpus(), usable_cpus()

    given, cpus, usable = ray.get(one_cpu.remote(), timeout=120)
    assert given.get('CPU') == 1 and cpus == 1 and usable == 1
    actor = NoCpu.remote()
    given, cpus, usable = ray.get(actor.ask.remote(), timeout=120)
    assert 'CPU' not in given and cpus == 0   # a GPU actor's shape: it takes the node's idle cores
    assert usable == max(1, min(len(os.sched_getaffinity(0)), cgroup_quota_cpus() or float('inf')))
    ray.kill(actor)


def test_a_cgroup_quota_reads_as_cpus_and_none_where_it_sets_none():
    assert quota_cpus('200000 100000\n') == 2 and quota_cpus('50000 100000') == 0.5
    assert quota_cpus('max 100000') is None and quota_cpus('-1 100000') is None
