"""A progress bar over a collection's elements as they are pulled (tqdm, any backend)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional


def with_progress(items: Iterable[Any], total: Optional[int] = None, desc: Optional[str] = None,
                  **tqdm_options: Any) -> Iterator[Any]:
    """Yield ``items`` unchanged, advancing a tqdm bar by one per element.

    Never materializes anything; the bar closes when the elements end, fail or are closed.

    >>> list(with_progress(range(3), desc='demo', disable=True))
    [0, 1, 2]
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, **tqdm_options)
    try:
        for item in items:
            bar.update()
            yield item
    finally:
        bar.close()
