"""Operators for the tests of the actor pool and of batches across calls, importable by Ray
workers (as a user's package). Each one leaves a trace a test can read: its process, the
tries it made, the size of the lists it was called with."""
import os
import time
from typing import List

import towhee


def _log(path: str, line: str) -> None:
    if path:
        with open(path, 'a') as log:
            log.write(f'{line}\n')


def lines(path) -> List[str]:
    """The lines an operator logged to ``path`` (none if it logged nothing)."""
    return path.read_text().splitlines() if path.exists() else []


@towhee.register(name='pool_tests/exit_on')
class ExitOn:
    """``x * 10``; kills its own process on ``value`` (as a crash in a native library
    would), logging each try to ``tries_log`` first. Each ``__init__`` logs its pid to
    ``init_log``."""

    def __init__(self, value: int, tries_log: str, init_log: str = '') -> None:
        self.value = value
        self.tries_log = tries_log
        _log(init_log, str(os.getpid()))

    def __call__(self, x):
        if x == self.value:
            _log(self.tries_log, str(os.getpid()))
            os._exit(1)
        return x * 10


class Slow:
    """``x * 10`` after ``seconds``, logging ``x`` and its pid to ``log`` as it starts."""

    def __init__(self, log: str, seconds: float) -> None:
        self.log = log
        self.seconds = seconds

    def __call__(self, x):
        _log(self.log, f'{x} {os.getpid()}')
        time.sleep(self.seconds)
        return x * 10


class ExitOnce:
    """Where it runs and which instance it is; kills its own process the first time it sees
    ``value`` (``marker`` records that it did)."""

    def __init__(self, value: int, marker: str) -> None:
        self.value = value
        self.marker = marker
        self.instance = f'{os.getpid()}:{id(self)}'

    def __call__(self, x):
        if x == self.value and not os.path.exists(self.marker):
            open(self.marker, 'w').close()
            os._exit(1)
        return x, os.getpid(), self.instance


def _cannot_load():
    raise ModuleNotFoundError("No module named 'only_on_the_driver'", name='only_on_the_driver')


class Unloadable:
    """An operator factory that pickles, but that no Ray worker can load: unpickling it
    raises what a module missing on the worker's node would."""

    name = 'pool-tests/unloadable'

    def __reduce__(self):
        return _cannot_load, ()

    def create(self):
        return lambda x: x

    def __call__(self):
        return self.create()


class Tagged:
    """Takes a list of numbers, returns for each ``(x, the list's length, pid)``; sleeps
    ``seconds`` per call (a model's forward pass); raises ``ValueError('bad row <x>')`` for a
    list holding a negative number; kills its own process for a list of several rows that
    holds ``die_on`` (as a crash on one row of a batch would), or for ``die_on`` alone."""

    def __init__(self, seconds: float = 0.0, die_on=None) -> None:
        self.seconds = seconds
        self.die_on = die_on

    def __call__(self, xs):
        assert isinstance(xs, list), f'called with {type(xs).__name__}, not a list'
        if self.die_on is not None and self.die_on in xs:
            os._exit(1)
        for x in xs:
            if x < 0:
                raise ValueError(f'bad row {x}')
        time.sleep(self.seconds)
        return [(x, len(xs), os.getpid()) for x in xs]


class Pairs:
    """Takes two lists and a keyword list (one entry per row each): ``a * b + c`` per row."""

    def __call__(self, a, b, c):
        return [x * y + z for x, y, z in zip(a, b, c)]


class NotAList:
    """Claims to take lists but returns one value for the whole list."""

    def __call__(self, xs):
        return sum(xs)
