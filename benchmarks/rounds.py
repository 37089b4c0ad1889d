"""What every benchmark shares: contenders run interleaved in rounds, medians with min-max,
and the machine's load average before and after, with a warning when it was not idle.

A machine's speed drifts (other processes, thermal limits, a noisy VM): running A B C,
A B C, ... exposes every contender to the same drift, and the median of the rounds with its
range says how much the drift moved each figure.
"""
from __future__ import annotations

import os
import statistics
import sys
from typing import Callable, Dict, List, Sequence, Tuple, TypeVar

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


class LoadWatch:
    """The load average before and after a run, and whether the machine was idle: the load
    average never above the number of cores."""

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self.before = load_average()
        self.after = self.before

    def stop(self) -> 'LoadWatch':
        self.after = load_average()
        return self

    @property
    def idle(self) -> bool:
        return max(self.before, self.after) <= self.cores

    def as_dict(self) -> Dict[str, object]:
        return {'load_average_before': self.before, 'load_average_after': self.after,
                'cores': self.cores, 'idle': self.idle}

    def summary(self) -> str:
        line = f'load average {self.before:.2f} before, {self.after:.2f} after ({self.cores} cores)'
        if not self.idle:
            line += ('\nWARNING: the load average was above the number of cores: other processes '
                     'were running, so these figures are indicative only. Figures for the README '
                     'come from a run on an idle machine.')
        return line
