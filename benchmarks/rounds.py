"""What every benchmark shares: contenders run interleaved in rounds, medians with min-max,
the machine's load average before and after, and how much of its CPU other processes used
during the run, with a warning when it was not idle.

A machine's speed drifts (other processes, thermal limits, a noisy VM): running A B C,
A B C, ... exposes every contender to the same drift, and the median of the rounds with its
range says how much the drift moved each figure.
"""
from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from typing import Callable, Dict, List, Sequence, Tuple, TypeVar

import psutil

T = TypeVar('T')
# Rounds when not told otherwise: the fewest that give a median and a range.
DEFAULT_ROUNDS = 3


def load_average() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def interleaved(contenders: Dict[str, Callable[[], T]], rounds: int,
                log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)
                ) -> Dict[str, List[T]]:
    """Every contender once per round, in the same order each round: A B C, A B C, ..."""
    results: Dict[str, List[T]] = {name: [] for name in contenders}
    for number in range(rounds):
        for name, run in contenders.items():
            log(f'  round {number + 1}/{rounds}: {name} (load average {load_average():.1f})')
            results[name].append(run())
    return results


def spread(values: Sequence[float]) -> Tuple[float, float, float]:
    """Median, min and max.

    >>> spread([3.0, 1.0, 2.0])
    (2.0, 1.0, 3.0)
    """
    return statistics.median(values), min(values), max(values)


def format_spread(values: Sequence[float], digits: int = 2) -> str:
    """``median (min-max)``, or the value alone for one round.

    >>> format_spread([3.0, 1.0, 2.0], digits=1)
    '2.0 (1.0-3.0)'
    """
    median, low, high = spread(values)
    if len(values) == 1:
        return f'{median:,.{digits}f}'
    return f'{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})'


class _OwnCpu(threading.Thread):
    """CPU seconds used by this process and its descendants, sampled every half second: Ray's
    raylet and workers, and the fresh processes of W4/W6, each with the Ray it starts, whose
    processes outlive their parent for a moment (they stay ours once orphaned). A process's
    time after its last sample (under half a second of its life) counts as other processes':
    the error errs towards calling the machine busy."""

    INTERVAL_SECONDS = 0.5

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self._me = psutil.Process()
        self._seen: Dict[Tuple[int, float], float] = {}   # (pid, start time) -> CPU seconds
        self._processes: Dict[int, psutil.Process] = {}   # alive at the last sample
        self._baseline = self._sample()
        self._done = threading.Event()
        self.start()

    def _sample(self) -> float:
        # this tree now, and every process once in it (an orphan leaves the tree, still ours)
        for process in {self._me, *self._me.children(recursive=True), *self._processes.values()}:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    key = process.pid, process.create_time()
            except psutil.Error:   # exited since listed
                self._processes.pop(process.pid, None)
                continue
            self._seen[key] = times.user + times.system
            self._processes[process.pid] = process
        return sum(self._seen.values())

    def run(self) -> None:
        while not self._done.wait(self.INTERVAL_SECONDS):
            self._sample()

    def stop(self) -> float:
        """CPU seconds used since the start."""
        self._done.set()
        self.join()
        return self._sample() - self._baseline


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    times = psutil.cpu_times()._asdict()
    idle = ('idle', 'iowait', 'guest', 'guest_nice')   # (a guest's time is in user's already)
    return sum(seconds for kind, seconds in times.items() if kind not in idle)


class LoadWatch:
    """The load average before and after a run, the share of the machine's CPU that other
    processes used during it, and whether the machine was idle.

    The load average counts the benchmark's own processes too (2 workers and a driver on 2
    cores make it ~3), so it alone cannot tell an idle machine: *others' CPU* is the busy CPU
    time of the whole machine less this process tree's, as a share of all cores over the
    run. The machine was idle when others used under 10 % of it.
    """

    #: others' CPU share above which a run's figures are indicative only
    MAX_OTHERS_SHARE = 0.10

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self.before = load_average()
        self.after = self.before
        self._started = time.monotonic()
        self._busy = _busy_cpu_seconds()
        self._own = _OwnCpu()
        self.others_share = 0.0

    def stop(self) -> 'LoadWatch':
        if self._own.is_alive():
            own = self._own.stop()
            wall = time.monotonic() - self._started
            others = _busy_cpu_seconds() - self._busy - own
            self.others_share = round(max(others, 0.0) / (wall * self.cores), 3)
            self.after = load_average()
        return self

    @property
    def idle(self) -> bool:
        return self.others_share <= self.MAX_OTHERS_SHARE

    def as_dict(self) -> Dict[str, object]:
        return {'load_average_before': self.before, 'load_average_after': self.after,
                'others_cpu_share': self.others_share, 'cores': self.cores, 'idle': self.idle}

    def summary(self) -> str:
        line = (f'load average {self.before:.2f} before, {self.after:.2f} after ({self.cores} cores, '
                f'this benchmark\'s own processes included); other processes used '
                f'{self.others_share:.0%} of the CPU during the run')
        if not self.idle:
            line += (f'\nWARNING: other processes used more than {self.MAX_OTHERS_SHARE:.0%} of the '
                     'CPU: these figures are indicative only. Figures for the README come from a run '
                     'on an idle machine.')
        return line
