"""Operators and functions for the fault tests, importable by Ray workers (as a user's package)."""
import os
import time

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
