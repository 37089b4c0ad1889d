"""Operators registered by the tests, in an importable module (as a user's package would)."""
import os
import time
from pathlib import Path

import numpy as np
import towhee


@towhee.register(name='tests_ns/add_one')
class AddOne:
    """Counts its constructions by appending a line to ``init_log``."""

    def __init__(self, init_log: str = '') -> None:
        if init_log:
            with open(init_log, 'a') as log:
                log.write(f'{os.getpid()}\n')

    def __call__(self, x):
        return x + 1


@towhee.register(name='tests_ns/vectors')
class Vectors:
    """A float32 vector of ``dim`` filled with its number; for a list of numbers, the list of
    their vectors (as an embedding operator on a batch); a negative number's has ``dim + 1``."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim

    def __call__(self, x):
        if isinstance(x, list):
            return [self(item) for item in x]
        return np.full(self.dim + (x < 0), x, dtype=np.float32)


@towhee.register(name='tests_ns/where')
class Where:
    """Tags each element with the pid and instance of the operator that served it."""

    def __init__(self) -> None:
        self.instance = f'{os.getpid()}:{id(self)}'

    def __call__(self, x):
        return x, os.getpid(), self.instance


@towhee.register(name='tests_ns/sleepy')
class Sleepy:
    def __init__(self, seconds: float = 0.001) -> None:
        self.seconds = seconds

    def __call__(self, x):
        time.sleep(self.seconds)
        return x


@towhee.register(name='tests_ns/broken_init')
class BrokenInit:
    """Fails in ``__init__``; each attempt appends a line to ``init_log``."""

    def __init__(self, init_log: str = '') -> None:
        if init_log:
            with open(init_log, 'a') as log:
                log.write(f'{os.getpid()}\n')
        raise OSError('model file missing: /nowhere/model.bin')

    def __call__(self, x):
        return x


def init_count(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def meet(folder: str, name: str, parties: int, timeout: float = 240.0) -> bool:
    """A barrier between processes: announce ``name`` in ``folder``, then wait until
    ``parties`` names are announced. Whether they were within ``timeout`` seconds is
    recorded as ``name.met`` (or ``name.alone``) and returned."""
    root = Path(folder)
    (root / f'{name}.arrived').touch()
    deadline = time.monotonic() + timeout
    while len(list(root.glob('*.arrived'))) < parties:
        if time.monotonic() > deadline:
            (root / f'{name}.alone').touch()
            return False
        time.sleep(0.05)
    (root / f'{name}.met').touch()
    return True


@towhee.register(name='tests_ns/meet')
class Meet:
    """Its ``__init__`` is a barrier (:func:`meet`) with the other steps' operators."""

    def __init__(self, folder: str, name: str, parties: int) -> None:
        meet(folder, name, parties)

    def __call__(self, x):
        return x


@towhee.register(name='tests_ns/exit_on')
class ExitOn:
    """Kills its own process on one element, as a crashing native library would."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self, x):
        if x == self.value:
            os._exit(1)
        return x


@towhee.register(name='tests_ns/meet_per_call')
class MeetPerCall:
    """Each call is a barrier (:func:`meet`) with ``parties - 1`` other calls; it returns
    the element, this instance and whether the others came."""

    def __init__(self, folder: str, parties: int) -> None:
        self.folder, self.parties = folder, parties
        self.instance = f'{os.getpid()}:{id(self)}'

    def __call__(self, x):
        return x, self.instance, meet(self.folder, f'call{x}', self.parties, timeout=120)
