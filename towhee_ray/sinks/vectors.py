"""Vectors of a batch as one matrix, each row checked: the error names the row and both sizes.

Sinks that store vectors (a Faiss index, a Parquet column of fixed-size lists) fill one
preallocated matrix per batch, so a batch is never held twice (a list of converted
arrays and their stacked copy).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from towhee_ray.sinks.base import Batch

#: numpy kinds that make a vector: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = 'biuf'


def shown(value: Any, width: int = 40) -> str:
    """A short ``repr`` for error messages.

    >>> shown('x' * 50, width=10)
    "'xxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (keys compare and hash as Python's).

    >>> type(plain(np.int64(3))).__name__, plain('a')
    ('int', 'a')
    """
    return value.item() if isinstance(value, np.generic) else value


def as_vector(value: Any, batch: Batch, index: int, field: str, key_field: Optional[str]) -> np.ndarray:
    """``value`` as a 1-D numeric array (no copy when it is one already).

    >>> as_vector([1, 2], Batch([{'v': [1, 2]}]), 0, 'v', None)
    array([1, 2])
    >>> as_vector('ab', Batch([{'v': 'ab'}]), 0, 'v', None)
    Traceback (most recent call last):
    TypeError: row #0: field 'v' is 'ab' (str), not a vector; a vector is a 1-D numpy array or list of numbers
    """
    array = None if value is None else np.asarray(value)
    if array is None or array.ndim != 1 or array.dtype.kind not in NUMERIC_KINDS:
        shape = f', shape {array.shape}' if array is not None and array.ndim > 1 else ''
        raise TypeError(f'{batch.where(index, key_field)}: field {field!r} is {shown(value)} '
                        f'({type(value).__name__}{shape}), not a vector; a vector is a 1-D numpy '
                        f'array or list of numbers')
    return array


def vector_matrix(batch: Batch, field: str, dimension: int, dtype: Any, key_field: Optional[str],
                  holder: str) -> np.ndarray:
    """The vectors of ``field`` in ``batch`` as a ``(len(batch), dimension)`` matrix of
    ``dtype``; a vector of another length is a ``ValueError`` naming the row and both sizes
    (``holder`` says whose size ``dimension`` is: "the index", "the Parquet column").

    >>> batch = Batch([{'id': 1, 'v': [1, 2]}, {'id': 2, 'v': [3, 4, 5]}], first=10)
    >>> vector_matrix(batch, 'v', 2, 'float32', 'id', 'the index')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: row #11 (id=2): field 'v' has 3 dimensions, the index has 2; every vector of a sink ...
    """
    matrix = np.empty((len(batch), dimension), dtype=dtype)
    for index, value in enumerate(batch.column(field)):
        vector = as_vector(value, batch, index, field, key_field)
        if vector.shape[0] != dimension:
            raise ValueError(f'{batch.where(index, key_field)}: field {field!r} has {vector.shape[0]} '
                             f'dimensions, {holder} has {dimension}; every vector of a sink has the '
                             f'same dimension')
        matrix[index] = vector
    return matrix
