"""The checks every sink shares, each with one error text: keys and vectors (sizes and
counts: :mod:`towhee_ray.checks`).

Milvus, Faiss and Parquet take the same kinds of values from the same rows, so they check
them here. An error names the row (its position and key, :meth:`Batch.where`), the field,
what the row gave and what the sink wanted, and says what to do.

Vectors of a batch are filled into one preallocated matrix (:func:`vector_matrix`), so a
batch is never held twice (a list of converted arrays and their stacked copy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Container, Iterable, Optional, Set, Tuple

import numpy as np

from towhee_ray.checks import shown

if TYPE_CHECKING:   # base.py imports this module
    from towhee_ray.sinks.base import Batch

#: numpy kinds that make a vector: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = 'biuf'


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (keys compare and hash as Python's).

    >>> type(plain(np.int64(3))).__name__, plain('a')
    ('int', 'a')
    """
    return value.item() if isinstance(value, np.generic) else value


# -- keys ------------------------------------------------------------------------------------


def checked_key(value: Any, field: str, kinds: Optional[Tuple[type, ...]], rule: str,
                where: Optional[str] = None) -> Any:
    """The key ``value`` as a plain Python value, or an error saying why it cannot be one.

    A key is never None, never a bool, and hashable; ``kinds`` (None: any) are the types
    this sink keeps, and ``rule`` says so in the error ("to_faiss keys are int ...").
    ``where`` names the row (``'row #3 (id=...)'``); without it the caller prefixes it.

    >>> checked_key(np.int64(7), 'id', (int, str), 'keys are int or str')
    7
    >>> checked_key(1.5, 'id', (int, str), 'to_faiss keys are int or str', 'row #0')
    Traceback (most recent call last):
    TypeError: row #0: the key 'id' is 1.5 (float); to_faiss keys are int or str
    >>> checked_key(None, 'id', None, '', 'row #2')
    Traceback (most recent call last):
    ValueError: row #2: the key 'id' is None; every row needs a key (to find it again, and to resume by)
    >>> checked_key(float('nan'), 'id', None, '', 'row #3')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: row #3: the key 'id' is NaN, which equals no key, itself included: ...
    """
    key = plain(value)
    prefix = f'{where}: ' if where else ''
    if key is None:
        raise ValueError(f'{prefix}the key {field!r} is None; every row needs a key (to find it again, '
                         f'and to resume by)')
    if isinstance(key, float) and key != key:
        raise ValueError(f'{prefix}the key {field!r} is NaN, which equals no key, itself included: it could '
                         f'never be found again, and every re-run would write the row again; give the row '
                         f'a key, or drop such rows first (filter(...))')
    if isinstance(key, bool) or (kinds is not None and not isinstance(key, kinds)):
        raise TypeError(f'{prefix}the key {field!r} is {shown(key)} ({type(key).__name__}); {rule}')
    try:
        hash(key)
    except TypeError:
        raise TypeError(f'{prefix}the key {field!r} is {shown(key)} ({type(key).__name__}), which cannot '
                        f'be a key; keys are str, int or other hashable values') from None
    return key


def plain_keys(keys: Iterable[Any]) -> list:
    """``keys`` as plain Python values, for a lookup (``existing_keys``).

    >>> plain_keys([np.int64(1), 'a'])
    [1, 'a']
    """
    return [plain(key) for key in keys]


def keys_held(keys: Iterable[Any], held: Container) -> Set[Any]:
    """Those of ``keys`` that ``held`` contains, compared as plain Python values; a value
    that cannot be a key (None, a bool, unhashable) is never held.

    >>> keys_held(['a', 2, True, [3]], {'a', 1, 3})
    {'a'}
    """
    found = set()
    for key in keys:
        value = plain(key)
        try:
            if value is not None and not isinstance(value, bool) and value in held:
                found.add(key)
        except TypeError:   # unhashable
            pass
    return found


# -- vectors ---------------------------------------------------------------------------------


def as_vector(value: Any) -> Optional[np.ndarray]:
    """``value`` as a 1-D numeric array (no copy when it is one already), or None when it
    is not a vector: a vector is a non-empty 1-D numpy array or list of numbers.

    >>> as_vector([1, 2])
    array([1, 2])
    >>> as_vector('ab') is None, as_vector([[1], [2, 3]]) is None, as_vector([]) is None
    (True, True, True)
    """
    if value is None or isinstance(value, (str, bytes, bytearray, np.generic)):
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):   # ragged nesting, objects numpy cannot hold
        return None
    if array.ndim != 1 or not array.size or array.dtype.kind not in NUMERIC_KINDS:
        return None
    return array


def checked_vector(value: Any, field: str, where: Optional[str] = None) -> np.ndarray:
    """``value`` as a vector (:func:`as_vector`), or a ``TypeError`` naming what it is; a
    vector with NaN or infinite values is a ``ValueError`` (no sink can search it: Milvus
    refuses it, Faiss and Parquet would keep it).

    >>> checked_vector('ab', 'v', 'row #0')
    Traceback (most recent call last):
    TypeError: row #0: field 'v' is 'ab' (str), not a vector; a vector is a 1-D numpy array or list of numbers
    >>> checked_vector([0.5, float('nan'), 1.0], 'v', 'row #4 (id=4)')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: row #4 (id=4): field 'v' holds 1 value that is not a finite number (nan at index 1); ...
    """
    vector = as_vector(value)
    prefix = f'{where}: ' if where else ''
    if vector is None:
        shape = getattr(value, 'shape', None)
        shape = f', shape {shape}' if shape is not None and len(shape) > 1 else ''
        raise TypeError(f'{prefix}field {field!r} is {shown(value)} ({type(value).__name__}{shape}), not a '
                        f'vector; a vector is a 1-D numpy array or list of numbers')
    if vector.dtype.kind == 'f':
        finite = np.isfinite(vector)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            values = 'value that is' if len(bad) == 1 else 'values that are'
            raise ValueError(f'{prefix}field {field!r} holds {len(bad)} {values} not a finite number '
                             f'({vector[bad[0]]} at index {bad[0]}); a vector must be finite to be stored '
                             f'and searched: fix the step that made it, or drop such rows first '
                             f'(filter(...))')
    return vector


def float_vector(vector: np.ndarray, dtype: Any, field: str, where: Optional[str] = None) -> np.ndarray:
    """``vector`` (finite: :func:`checked_vector`) as ``dtype``; a value beyond that type's
    range, which the cast would make infinite, is :func:`checked_vector`'s error, saying so.

    >>> float_vector(np.array([0.5, 1e39]), 'float32', 'v', 'row #2')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: row #2: field 'v' holds 1 value that is not a finite number (1e+39 at index 1 is out of ...
    """
    with np.errstate(over='ignore', invalid='ignore'):
        cast = vector.astype(dtype, copy=False)
    if cast is not vector and cast.dtype.kind == 'f' and not np.isfinite(cast).all():
        bad = np.flatnonzero(~np.isfinite(cast))
        values = 'value that is' if len(bad) == 1 else 'values that are'
        prefix = f'{where}: ' if where else ''
        raise ValueError(f'{prefix}field {field!r} holds {len(bad)} {values} not a finite number '
                         f'({vector[bad[0]]} at index {bad[0]} is out of {cast.dtype} range, '
                         f'±{np.finfo(cast.dtype).max:.3g}); a vector must be finite to be stored and '
                         f'searched: scale it first, or drop such rows first (filter(...))')
    return cast


def dimension_error(field: str, got: int, holder: str, dimension: int,
                    where: Optional[str] = None) -> ValueError:
    """The error of a vector whose length is not its destination's (``holder``: "the
    collection", "the index (...)", "the Parquet column (...)").

    >>> str(dimension_error('v', 3, 'the index', 2, 'row #1'))
    "row #1: field 'v' has 3 dimensions, the index holds 2; every vector of a sink has the same dimension"
    """
    prefix = f'{where}: ' if where else ''
    return ValueError(f'{prefix}field {field!r} has {got} dimensions, {holder} holds {dimension}; '
                      f'every vector of a sink has the same dimension')


def vector_matrix(batch: 'Batch', field: str, dimension: int, dtype: Any, key_field: Optional[str],
                  holder: str) -> np.ndarray:
    """The vectors of ``field`` in ``batch`` as a ``(len(batch), dimension)`` matrix of
    ``dtype``; a bad row is named by :func:`checked_vector` or :func:`dimension_error`
    (finiteness is checked once on the whole matrix, not row by row).

    >>> from towhee_ray.sinks.base import Batch
    >>> batch = Batch([{'id': 1, 'v': [1, 2]}, {'id': 2, 'v': [3, 4, 5]}], first=10)
    >>> vector_matrix(batch, 'v', 2, 'float32', 'id', 'the index')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: row #11 (id=2): field 'v' has 3 dimensions, the index holds 2; every vector of a sink ...
    >>> batch = Batch([{'id': 1, 'v': [1.0, 2.0]}, {'id': 2, 'v': [3.0, -1e39]}], first=0)
    >>> vector_matrix(batch, 'v', 2, 'float32', 'id', 'the index')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: row #1 (id=2): field 'v' holds 1 value that is not a finite number (-1e+39 at index 1 ...
    """
    matrix = np.empty((len(batch), dimension), dtype=dtype)
    with np.errstate(over='ignore', invalid='ignore'):   # a value past dtype's range: named below
        for index, value in enumerate(batch.column(field)):
            vector = as_vector(value)
            if vector is None or vector.shape[0] != dimension:   # named only here: only a bad row is named
                _check_finite(matrix[:index], field, batch, key_field)   # an earlier bad row comes first
                where = batch.where(index, key_field)
                vector = checked_vector(value, field, where)
                raise dimension_error(field, vector.shape[0], holder, dimension, where)
            matrix[index] = vector
    _check_finite(matrix, field, batch, key_field)
    return matrix


def _check_finite(matrix: np.ndarray, field: str, batch: 'Batch', key_field: Optional[str]) -> None:
    """:func:`checked_vector`'s error for the first row of ``matrix`` that is not finite: the
    row's own value, or (:func:`float_vector`) one that ``matrix``'s type cannot hold."""
    if matrix.dtype.kind == 'f' and not np.isfinite(matrix).all():
        index = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        where = batch.where(index, key_field)
        vector = checked_vector(batch.rows[index][field], field, where)
        float_vector(vector, matrix.dtype, field, where)
        checked_vector(matrix[index], field, where)   # not reached: the cast made it infinite
