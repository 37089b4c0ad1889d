"""Operators registered by the tests, in an importable module (as a user's package would)."""
import os
import time

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
    def __init__(self) -> None:
        raise OSError('model file missing: /nowhere/model.bin')

    def __call__(self, x):
        return x


def init_count(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@towhee.register(name='tests_ns/slow_start')
class SlowStart:
    """Records when its ``__init__`` began, then takes ``seconds`` to get ready."""

    def __init__(self, init_log: str, seconds: float) -> None:
        with open(init_log, 'a') as log:
            log.write(f'{time.time()}\n')
        time.sleep(seconds)

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
