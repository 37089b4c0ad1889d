"""Operators and functions for the fault tests, importable by Ray workers (as a user's package)."""
import os
import time
from pathlib import Path
from typing import Iterable, List

import towhee


def busy(seconds: float) -> None:
    """Burn CPU for ``seconds`` (a sleep would not keep a worker busy the same way)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@towhee.register(name='faults/served_by')
class ServedBy:
    """Tags each element with the pid and instance of the operator that served it."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.instance = f'{os.getpid()}:{id(self)}'

    def __call__(self, x):
        if self.seconds:
            time.sleep(self.seconds)
        return x, os.getpid(), self.instance


@towhee.register(name='faults/double')
class Double:
    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def __call__(self, x):
        busy(self.seconds)
        return 2 * x


def exit_once(marker: str, value: int):
    """A function whose worker process dies the first time it sees ``value``."""
    def maybe_die(x):
        if x == value and not os.path.exists(marker):
            open(marker, 'w').close()
            os._exit(1)
        return x
    return maybe_die


# -- faults triggered by the stream itself ------------------------------------------------

def wait_to_be_killed(folder: str, name: str, seconds: float = 240.0) -> None:
    """On its first attempt, ask to be killed and wait for it; on a later attempt, go on.

    Every attempt appends this process's pid to ``folder/name.attempts``, so a test can
    check that the work really ran again, elsewhere. The first attempt then publishes
    ``folder/name.kill`` (this pid and this Ray node's id, written atomically) for the
    test's killer, and waits. A killer that never comes makes this attempt return after
    ``seconds``, and the attempts file then shows one attempt only.
    """
    import ray

    folder_path = Path(folder)
    attempts = folder_path / f'{name}.attempts'
    with open(attempts, 'a') as log:
        log.write(f'{os.getpid()}\n')
    if len(attempts.read_text().split()) > 1:
        return
    request = folder_path / f'{name}.kill.tmp'
    request.write_text(f'{os.getpid()} {ray.get_runtime_context().get_node_id()}')
    os.rename(request, folder_path / f'{name}.kill')
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)


def attempts(folder: str, name: str) -> List[int]:
    """The pids of the attempts recorded by :func:`wait_to_be_killed`, in order."""
    path = Path(folder) / f'{name}.attempts'
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def killed_at(folder: str, elements: Iterable[int]):
    """A function for a task step: ``x + 1``, its worker killed the first time it reaches
    one of ``elements``."""
    elements = frozenset(elements)

    def add_one(x):
        if x in elements:
            wait_to_be_killed(folder, f'task-{x}')
        busy(0.00002)
        return x + 1
    return add_one


@towhee.register(name='faults/killed_at')
class KilledAt:
    """``2 * x``; its actor is killed the first time it reaches one of ``elements``.
    Each ``__init__`` appends its pid to ``init_log``."""

    def __init__(self, folder: str, elements: Iterable[int], init_log: str) -> None:
        self.folder = folder
        self.elements = frozenset(elements)
        with open(init_log, 'a') as log:
            log.write(f'{os.getpid()}\n')

    def __call__(self, x):
        if x in self.elements:
            wait_to_be_killed(self.folder, f'actor-{x}')
        busy(0.00002)
        return 2 * x
