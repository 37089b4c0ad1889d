"""The list methods of an unstreamed collection (Towhee 0.9's ListMixin).

As in 0.9 the changing ones change the collection in place and return it (``pop`` too,
not the element); ``count`` returns a number and ``copy`` a new collection. A stream
has no place to change: they raise a ``TypeError`` saying so.
"""
from __future__ import annotations

from typing import Any, List


class ListMixin:
    """``append``, ``extend``, ``insert``, ``pop``, ``remove``, ``clear``, ``copy``,
    ``count``, ``reverse``, ``sort`` and item assignment, on unstreamed collections."""

    def _as_list(self, method: str) -> List[Any]:
        if self.is_stream:
            raise TypeError(f'{method}() is only supported for unstreamed DataCollections; '
                            f'call unstream() first to materialize the stream')
        if not isinstance(self._items, list):   # a tuple or range becomes a list to change it
            self._items = list(self._items)
        return self._items

    def append(self, item: Any) -> 'ListMixin':
        """Add ``item`` at the end.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([0, 1, 2]).append(3).append(4)
        [0, 1, 2, 3, 4]
        """
        self._as_list('append').append(item)
        return self

    def extend(self, items: Any) -> 'ListMixin':
        """Add ``items`` at the end.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 3]).extend([4, 5])
        [1, 2, 3, 4, 5]
        """
        self._as_list('extend').extend(items)
        return self

    def insert(self, index: int, item: Any) -> 'ListMixin':
        """Insert ``item`` before position ``index``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 3]).insert(0, 0)
        [0, 1, 2, 3]
        """
        self._as_list('insert').insert(index, item)
        return self

    def pop(self, index: int = -1) -> 'ListMixin':
        """Remove the element at ``index`` (the last by default); returns the collection.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 3]).pop()
        [1, 2]
        """
        self._as_list('pop').pop(index)
        return self

    def remove(self, item: Any) -> 'ListMixin':
        """Remove the first element equal to ``item``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 3]).remove(1)
        [2, 3]
        """
        self._as_list('remove').remove(item)
        return self

    def clear(self) -> 'ListMixin':
        """Remove every element.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 3]).clear()
        []
        """
        self._as_list('clear').clear()
        return self

    def copy(self) -> 'ListMixin':
        """A new collection with the same elements and settings.

        >>> from towhee_ray import DataCollection
        >>> dc = DataCollection([1, 2, 3])
        >>> dc.copy().append(4), dc
        ([1, 2, 3, 4], [1, 2, 3])
        """
        return self._derive(list(self._as_list('copy')))

    def count(self, item: Any) -> int:
        """How many elements equal ``item``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 1]).count(1)
        2
        """
        return self._as_list('count').count(item)

    def reverse(self) -> 'ListMixin':
        """Reverse the order in place.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 2, 3]).reverse()
        [3, 2, 1]
        """
        self._as_list('reverse').reverse()
        return self

    def sort(self, *, key: Any = None, reverse: bool = False) -> 'ListMixin':
        """Sort in place, as ``list.sort``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([1, 4, 3]).sort()
        [1, 3, 4]
        """
        self._as_list('sort').sort(key=key, reverse=reverse)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        """``dc[i] = value`` on an unstreamed collection."""
        self._as_list('__setitem__')[index] = value
