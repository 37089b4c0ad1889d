"""Batches that know where their elements came from, and putting elements back in order.

``DataCollection.sorted_batch`` reorders a window of the stream by cost and cuts it into
:class:`SortedBatch` lists, which carry each element's input position. A step given a
sorted batch gives back a sorted batch with the same positions (``guard.Guarded`` does it
in the worker, on every backend), and ``flatten()`` puts the elements back in input order
with :class:`InputOrder`, one window at a time.

This module imports nothing of towhee_ray: the worker-side wrapper (``guard``) and the
collection methods both use it.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple


class SortedBatch(list):
    """A batch cut from a sorted window: a list whose ``positions[i]`` is the input position
    of its ``i``-th element, inside the window of ``window_size`` elements starting at input
    position ``window_start``.

    >>> batch = SortedBatch(['ccc', 'a'], positions=(2, 0), window_start=0, window_size=3)
    >>> batch, batch.positions
    (['ccc', 'a'], (2, 0))
    >>> batch.carry([3, 1]).positions       # one output per element keeps the positions
    (2, 0)
    >>> batch.carry(4)                      # a value that is not a sequence is an output like any other
    4
    >>> batch.carry([3])                    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: it returned 1 result for a sorted batch of 2 elements: a step after sorted_batch must ...
    """

    __slots__ = ('positions', 'window_start', 'window_size')

    def __init__(self, items: Iterable[Any], positions: Tuple[int, ...], window_start: int,
                 window_size: int) -> None:
        super().__init__(items)
        self.positions = positions
        self.window_start = window_start
        self.window_size = window_size

    def carry(self, output: Any) -> Any:
        """``output`` of a step given this batch: with the positions when it holds one output
        per element (a list, a tuple, an array of the same length); unchanged when it is no
        sequence (a string, a dict, a number: one value for the batch as a whole). A sequence
        of another length raises ``ValueError``: its outputs cannot be matched to the
        elements, and flatten() would give them back misplaced."""
        if isinstance(output, (str, bytes, dict)) or not hasattr(output, '__getitem__'):
            return output
        try:
            length = len(output)
        except TypeError:   # a 0-d array, an object without a length
            return output
        if length != len(self):
            results = f'{length} result' + ('' if length == 1 else 's')
            elements = f'{len(self)} element' + ('' if len(self) == 1 else 's')
            raise ValueError(
                f'it returned {results} for a sorted batch of {elements}: a step after sorted_batch must '
                f'return one result per element, in order (a list, a tuple or an array as long as its '
                f'batch), so that flatten() can put them back in input order. Return one result per '
                f'element, or use batch() instead of sorted_batch()')
        return SortedBatch(output, self.positions, self.window_start, self.window_size)

    def __reduce__(self):   # crosses to workers and back with its positions
        return SortedBatch, (list(self), self.positions, self.window_start, self.window_size)


_SKIPPED = object()   # a position whose element will not come (its batch failed as a whole)


class InputOrder:
    """Collects the elements of sorted batches and yields them in input order: each as soon
    as every element before it in its window has come, the rest when the next window begins
    or the stream ends (a batch a filter dropped leaves a gap). Holds at most one window.

    >>> order = InputOrder()
    >>> list(order.add(SortedBatch(['c', 'b'], (2, 1), 0, 3)))
    []
    >>> list(order.add(SortedBatch(['a'], (0,), 0, 3)))
    ['a', 'b', 'c']
    """

    def __init__(self) -> None:
        self._pending: Dict[int, Any] = {}
        self._window_start: Optional[int] = None
        self._next = 0

    def add(self, batch: SortedBatch, values: Optional[Sequence[Any]] = None) -> Iterator[Any]:
        """Take ``batch``'s elements (or ``values``, one per position, when given) and yield
        what is now in order."""
        if batch.window_start != self._window_start:
            yield from self.flush()
            self._window_start = self._next = batch.window_start
        for position, value in zip(batch.positions, batch if values is None else values):
            self._pending[position] = value
        pending = self._pending
        while self._next in pending:
            value = pending.pop(self._next)
            self._next += 1
            if value is not _SKIPPED:
                yield value

    def add_failed(self, batch: SortedBatch, failure: Any) -> Iterator[Any]:
        """A batch whose step failed as a whole (``failure`` is its ``Empty``): one element,
        at the place of the batch's first element in input order."""
        first = min(batch.positions)
        values = [failure if position == first else _SKIPPED for position in batch.positions]
        return self.add(batch, values)

    def flush(self) -> Iterator[Any]:
        """Yield everything held, in input order, and start afresh."""
        pending, self._pending = self._pending, {}
        self._window_start = None
        for position in sorted(pending):
            if pending[position] is not _SKIPPED:
                yield pending[position]
