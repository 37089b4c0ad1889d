"""Helpers shared by the tests: waiting on a condition, running a subprocess that cannot
outlive its test, finding this session's own Ray processes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent

#: The CPUs of the session's Ray (see the repository's conftest.py): the tests are written
#: for this count, whatever the machine has.
SESSION_CPUS = 4
#: A custom resource only the session's Ray has (4 of it), for the tests of ``resources=``.
TEST_RESOURCE = 'towhee_ray_tests'

#: How long a cleanup (actors killed, tasks cancelled) may take before a test fails. Generous
#: on purpose: the tests wait on a condition, so an idle machine returns in well under a
#: second, and a machine loaded by other jobs (a load average of 10 on 2 cores was seen)
#: still passes; only a cleanup that never happens reaches it.
CLEANUP_TIMEOUT_SECONDS = 120.0
#: A subprocess must end this long before the test's own pytest timeout, so that the test
#: fails with the subprocess's output (and kills its processes) instead of being killed.
SUBPROCESS_MARGIN_SECONDS = 30.0


def eventually(condition: Callable[[], object], timeout: float = CLEANUP_TIMEOUT_SECONDS) -> bool:
    """Whether ``condition()`` becomes true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def gcs_address() -> str:
    """This session's Ray, for the state API: without an address, that API looks for this
    machine's "current cluster", which may be another user's."""
    import ray
    return ray.get_runtime_context().gcs_address


def this_node_id() -> str:
    import ray
    return ray.get_runtime_context().get_node_id()


def chain_actors(prefix: str = 'towhee_ray operator'):
    """This session's live actors of towhee_ray steps (named ``towhee_ray operator ...``)."""
    from ray.util.state import list_actors
    actors = list_actors(address=gcs_address(), filters=[('state', '!=', 'DEAD')], limit=10_000)
    return [actor for actor in actors if (actor.name or '').startswith(prefix)]


def step_tasks(name: str, states: Sequence[str] = (
        'RUNNING', 'PENDING_NODE_ASSIGNMENT', 'PENDING_ARGS_AVAIL', 'SUBMITTED_TO_WORKER',
        'PENDING_ACTOR_TASK_ARGS_AVAIL')):
    """This session's tasks of the step ``name`` (e.g. ``map(f)``) in one of ``states``."""
    from ray.util.state import list_tasks
    tasks = list_tasks(address=gcs_address(), filters=[('name', '=', f'towhee_ray {name}')], limit=10_000)
    return [task for task in tasks if task.state in states]


def kill_session(session: int) -> None:
    """SIGKILL every process still in the session ``session`` (a child started with
    ``start_new_session=True`` leads it; Ray processes it started stay in it)."""
    import psutil
    try:
        os.killpg(session, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session:
                process.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass


#: How many times a subprocess whose Ray did not start within Ray's own fixed waits is run:
#: towhee_ray's own starts already try again (``cluster.LOCAL_START_TRIES``); this covers
#: scripts that start Ray otherwise (``ray.cluster_utils.Cluster``: the multi-node tests). A
#: whole suite once failed so with a load average of 42 on 2 cores, and passed on the next start.
RAY_START_ATTEMPTS = 3


def ray_start_timed_out(stderr: str) -> bool:
    """Whether a process failed because its local Ray missed one of Ray's start-up waits."""
    from towhee_ray.cluster import LOCAL_START_TIMEOUTS
    return any(text in stderr for text in LOCAL_START_TIMEOUTS)


def run(args: Sequence[str], timeout: float, *, env: Optional[Dict[str, str]] = None,
        cwd: Optional[os.PathLike] = None,
        fresh_cwd: Optional[Callable[[], os.PathLike]] = None) -> subprocess.CompletedProcess:
    """:func:`run_once`, run again (up to :data:`RAY_START_ATTEMPTS` times in all) while Ray
    itself times out starting, within the same ``timeout``. ``fresh_cwd``, instead of
    ``cwd``, makes the folder of each try: a second try of a script that writes files (a
    Lite file, a collection) must not find what the first one wrote."""
    deadline = time.monotonic() + timeout
    for _ in range(RAY_START_ATTEMPTS):
        result = run_once(args, max(1.0, deadline - time.monotonic()), env=env,
                          cwd=fresh_cwd() if fresh_cwd else cwd)
        if result.returncode == 0 or not ray_start_timed_out(result.stderr):
            break
    return result


def run_once(args: Sequence[str], timeout: float, *, env: Optional[Dict[str, str]] = None,
             cwd: Optional[os.PathLike] = None) -> subprocess.CompletedProcess:
    """Run ``args`` in a new session, text output captured; on a timeout, kill the whole
    session (the child and any Ray it started) and fail saying what it printed.

    Use it through the ``run_process`` fixture, which keeps ``timeout`` below the test's
    own pytest timeout. Whatever the outcome, processes left in the session are killed.
    """
    process = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=cwd or ROOT, env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        stdout, stderr = process.communicate()
        raise AssertionError(f'{" ".join(map(str, args))[:200]} did not finish within {timeout:g} s; '
                             f'its output:\n{stdout[-4000:]}\n{stderr[-4000:]}') from None
    except BaseException:
        kill_session(process.pid)
        process.communicate()
        raise
    kill_session(process.pid)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def python(*args: str) -> list:
    """A command line running this interpreter."""
    return [sys.executable, *args]


def free_port() -> int:
    """A TCP port of the loopback that nothing listens on now."""
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


#: Text keys that a Milvus filter must quote right (Milvus Lite's parser refuses JSON's \uXXXX
#: escapes): non-ASCII, emoji, control characters, quotes and backslashes.
ODD_KEYS = ['café', '日本語', 'emoji 😀', 'say "hi"', "it's", 'back\\slash', 'ends\\', 'two\nlines',
            'cr\r', 'tab\t', 'bell\x07', 'nul\x00', 'del\x7f', 'looks escaped \\u00e9', 'plain']
