"""Checks of the sizes and counts a user passes, with one wording everywhere; and how a
value is shown in an error (:func:`shown`), and which name is given twice
(:func:`first_repeated`).

``num_worker``, ``chunk_size``, ``batch(size)``, ``max_batch_size``, a sink's ``batch``:
each is a positive integer, and each wrong value is refused the same way, naming the
option, what it means and what was given::

    num_worker must be a positive integer (how many workers each step uses), got 0

A ``bool`` is refused although Python counts it as an ``int``: ``batch=True`` is a mistake,
not a batch of one.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence


def positive_int(value: Any, name: str, meaning: Optional[str] = None, *,
                 none: Optional[str] = None) -> Any:
    """``value`` when it is a positive ``int``; else a ``ValueError`` naming the option.

    ``meaning`` says in a few words what the number counts; ``none``, when given, allows
    ``None`` and says what it means.

    >>> positive_int(1000, 'batch', 'rows per write')
    1000
    >>> positive_int(None, 'chunk_size', 'elements per chunk', none='for automatic sizing') is None
    True
    >>> positive_int(0, 'batch', 'rows per write')
    Traceback (most recent call last):
    ...
    ValueError: batch must be a positive integer (rows per write), got 0
    >>> positive_int(2.5, 'chunk_size', 'elements per chunk', none='for automatic sizing')
    Traceback (most recent call last):
    ...
    ValueError: chunk_size must be a positive integer (elements per chunk) or None for automatic sizing, got 2.5
    >>> positive_int(True, 'batch size')
    Traceback (most recent call last):
    ...
    ValueError: batch size must be a positive integer, got True
    """
    if value is None and none is not None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        what = f' ({meaning})' if meaning else ''
        alternative = f' or None {none}' if none is not None else ''
        raise ValueError(f'{name} must be a positive integer{what}{alternative}, got {value!r}')
    return value


def first_repeated(names: Sequence[Any]) -> Optional[Any]:
    """The first name of ``names`` that an earlier one repeats; None where each is once.

    >>> first_repeated(['a', 'b', 'a', 'b']), first_repeated(['a', 'b'])
    ('a', None)
    """
    return next((name for index, name in enumerate(names) if name in names[:index]), None)


def shown(value: Any, width: int = 40, kind: bool = False) -> str:
    """A short ``repr`` for error messages; with ``kind``, its type after it.

    >>> shown('x' * 50, width=10)
    "'xxxxxx..."
    >>> shown(5, kind=True)
    '5 (int)'
    """
    text = repr(value)
    text = text if len(text) <= width else text[:width - 3] + '...'
    return f'{text} ({type(value).__name__})' if kind else text
