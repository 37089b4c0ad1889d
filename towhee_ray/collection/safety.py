"""Exception safety under Towhee 0.9's names: ``exception_safe``, ``fill_empty``,
``drop_empty(callback)``.

A failing element of a ``safe()`` chain is a :class:`towhee_ray.Empty` holding the input
``value`` and the ``exception``; the elements that did not fail stay plain values (0.9
wrapped them in ``Some``). ``fill_empty`` and ``drop_empty`` therefore give 0.9's results.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

from towhee_ray.guard import Empty


def _without_empty(items: Iterable[Any], callback: Optional[Callable[[Empty], Any]]) -> Iterator[Any]:
    for item in items:
        if item.__class__ is not Empty:
            yield item
        elif callback is not None:
            callback(item)


class SafetyMixin:
    """``exception_safe``, ``fill_empty``, ``drop_empty``; ``safe()`` is in the core."""

    def exception_safe(self) -> 'SafetyMixin':
        """Towhee 0.9's name for ``safe()``: from here on a failing element becomes
        :class:`towhee_ray.Empty` and the chain goes on.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(5).exception_safe().map(lambda x: x / (0 if x == 3 else 2)).drop_empty()
        [0.0, 0.5, 1.0, 2.0]
        """
        return self.safe()

    def fill_empty(self, default: Any = None) -> 'SafetyMixin':
        """Replace every :class:`towhee_ray.Empty` by ``default``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(5).safe().map(lambda x: x / (0 if x == 3 else 2)).fill_empty(-1.0).to_list()
        [0.0, 0.5, 1.0, -1.0, 2.0]
        """
        return self._derive(default if item.__class__ is Empty else item for item in self._items)

    def drop_empty(self, callback: Optional[Callable[[Empty], Any]] = None) -> 'SafetyMixin':
        """Remove the :class:`towhee_ray.Empty` elements; ``callback``, if given, is called
        with each of them (``e.value`` is the input that failed, ``e.exception`` the error;
        0.9's ``e.get().value`` works too).

        >>> from towhee_ray import DataCollection
        >>> failed = []
        >>> dc = DataCollection.range(5).safe().map(lambda x: x / (0 if x == 3 else 2))
        >>> dc.drop_empty(lambda e: failed.append(e.get().value)).to_list(), failed
        ([0.0, 0.5, 1.0, 2.0], [3])
        """
        if callback is not None and not callable(callback):
            raise TypeError(f'drop_empty(callback) needs a callable or None, got {callback!r}')
        return self._derive(_without_empty(self._items, callback))
