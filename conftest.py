"""The one Ray every test and doctest of this repository runs against (this file is at the
root so that the doctests under ``towhee_ray/`` get it too).

It is always a fresh local Ray with a fixed number of CPUs, whatever the machine or the
environment: the tests are written for ``SESSION_CPUS`` CPUs (e.g. "more actors than
CPUs"), so they behave the same on a 2-core laptop and a 64-core server, and they never
touch a cluster named by ``RAY_ADDRESS`` (the fault tests SIGKILL processes).
"""
import os

import pytest

# Unset for this process and for every subprocess a test starts (they inherit os.environ):
# towhee_ray.connect() and init() would otherwise connect there. A test that needs it sets
# it itself (monkeypatch.setenv, or the env of its subprocess).
os.environ.pop('RAY_ADDRESS', None)

from tests.support import SESSION_CPUS, TEST_RESOURCE  # noqa: E402


def _start_session_ray():
    import towhee_ray

    # 'local': a new Ray instance of this process, never an existing one of this machine.
    # towhee_ray.init starts it again where Ray's own fixed waits ran out on a loaded machine.
    return towhee_ray.init('local', num_cpus=SESSION_CPUS, resources={TEST_RESOURCE: 4})


@pytest.fixture(scope='session', autouse=True)
def ray_cluster():
    """The session's Ray (the ``ray`` module, connected), shut down after the last test."""
    import ray

    if ray.is_initialized():   # a plugin or an import connected before the session: not ours
        ray.shutdown()
    _start_session_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _session_ray_is_connected(ray_cluster):
    # Library code connects lazily (towhee_ray.connect()): were Ray left shut down by a test,
    # the next one would start a Ray with this machine's CPU count. Start the session's again.
    if not ray_cluster.is_initialized():
        _start_session_ray()
    yield
