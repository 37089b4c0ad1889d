"""A progress bar over a collection's elements as they are pulled (tqdm, any backend)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

from towhee_ray.checks import shown
from towhee_ray.guard import Empty

#: What an element counts for on a bar: a number of units (``len`` for a batch).
Count = Callable[[Any], int]


def check_count(count: Optional[Count]) -> None:
    if count is not None and not callable(count):
        raise TypeError(f'progress(count=...) takes a function giving how many units an element counts '
                        f'for (len, for batches), or None for one per element; got {shown(count, kind=True)}')


def units(item: Any, count: Optional[Count]) -> int:
    """How far ``item`` moves the bar: 1, or ``count(item)``; a failed element (``Empty``)
    counts as its input did.

    >>> units([1, 2, 3], len), units(Empty([1, 2], ValueError()), len), units('abc', None)
    (3, 2, 1)
    """
    if count is None:
        return 1
    element = item.value if item.__class__ is Empty else item
    try:
        return count(element)
    except Exception as error:
        raise TypeError(f'progress(count={getattr(count, "__name__", count)!r}) could not count '
                        f'{shown(element, kind=True)}: {error}. count must take every element that passes '
                        f'the bar (len, for the lists of batch() or sorted_batch())') from error


def with_progress(items: Iterable[Any], total: Optional[int] = None, desc: Optional[str] = None,
                  count: Optional[Count] = None, **tqdm_options: Any) -> Iterator[Any]:
    """Yield ``items`` unchanged, advancing a tqdm bar by one per element, or by
    ``count(element)`` when given (``len``: a batch advances it by its length).

    Never materializes anything; the bar closes when the elements end, fail or are closed.

    >>> list(with_progress(range(3), desc='demo', disable=True))
    [0, 1, 2]
    >>> list(with_progress([[0, 1], [2]], total=3, count=len, disable=True))
    [[0, 1], [2]]
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, **tqdm_options)
    try:
        for item in items:
            bar.update(units(item, count))
            yield item
    finally:
        bar.close()
