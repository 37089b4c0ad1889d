"""Parquet in and out: ``to_parquet`` writes entity rows into a folder of part files,
``read_parquet`` streams them back (see :mod:`towhee_ray.sinks.parquet`)."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Tuple, Union

from towhee_ray.collection.columns import column_method, field_names, fields_of, is_entity

if TYPE_CHECKING:
    from towhee_ray.sinks.base import WriteResult

PathLike = Union[str, os.PathLike]

logger = logging.getLogger(__name__)

_NOTHING = object()


def _first_and_rest(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    # The stream with its first row put back; closing this closes the stream.
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, 'close', None)
        if close is not None:
            close()


def _fields_and_rows(items: Iterator[Any], columns: Any) -> Tuple[Tuple[str, ...], Iterator[Any]]:
    """The fields to write (the subscript's, else the first row's; none for no rows) and the rows."""
    if columns is not None:
        return field_names(columns), items
    first = next(items, _NOTHING)
    if first is _NOTHING:
        return (), items
    if isinstance(first, dict) or is_entity(first):
        return tuple(fields_of(first)), _first_and_rest(first, items)
    raise TypeError(f'to_parquet writes entity or dict rows, got a {type(first).__name__}; make entity rows '
                    f"first (DataCollection['name'](...)) or name the column: to_parquet['name'](path)")


class ParquetMixin:
    """``to_parquet(path)`` and the source ``read_parquet(path_or_glob)``."""

    @column_method
    def to_parquet(self, path: PathLike, *, key: Optional[str] = None, batch: Optional[int] = None,
                   rows_per_file: Optional[int] = None, schema: Any = None,
                   compression: str = 'snappy', columns: Any = None) -> 'WriteResult':
        """Write the rows into the folder ``path`` as Parquet part files; runs the chain to
        its end, holding one batch at a time.

        One column per field: those of the first row, or the subscript's
        (``to_parquet['id', 'vec'](path)``). Numpy vectors become fixed-size lists (floats
        as float32); the other types come from the first rows (or ``schema=``, a pyarrow
        schema). Each ``batch`` of rows (1000) is a row group; a part file closes every
        ``rows_per_file`` rows (100,000). A folder with parts gets new ones beside them. With
        ``key='id'``, rows whose key the folder already holds are skipped. Returns what was
        written: ``insert_count``, and in ``details`` the ``files`` written and the rows
        ``skipped``.

        >>> import tempfile, pathlib, numpy
        >>> from towhee_ray import DataCollection
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / 'vectors'
        >>> rows = [(i, f'passage {i}', numpy.full(3, i / 10)) for i in range(4)]
        >>> DataCollection['id', 'text', 'vec'](rows).to_parquet(folder, key='id').insert_count
        4
        >>> row = DataCollection.read_parquet(folder).to_list()[1]
        >>> row.id, row.text, row.vec
        (1, 'passage 1', array([0.1, 0.1, 0.1], dtype=float32))
        """
        # Imported here: numpy and pyarrow load when a chain ends in a sink, not with towhee_ray.
        from towhee_ray.sinks.base import WriteResult, write_rows
        from towhee_ray.sinks.parquet import ParquetSink
        try:
            fields, items = _fields_and_rows(iter(self._items), columns)
            if not fields:
                logger.warning('to_parquet: no rows reached it, so nothing was written to %s', path)
                return WriteResult(destination=str(path))
            options = {} if rows_per_file is None else {'rows_per_file': rows_per_file}
            sink = ParquetSink(fields, path, key=key, batch_size=batch, schema=schema,
                               compression=compression, **options)
        except BaseException:   # release the chain's workers: nothing will read the rest
            self.close()
            raise
        return write_rows(items, sink)

    @classmethod
    def read_parquet(cls, path_or_glob: PathLike, columns: Optional[Sequence[str]] = None) -> 'ParquetMixin':
        """A lazy stream of entity rows from Parquet files: a file, a folder of
        ``.parquet`` files (what ``to_parquet`` writes) or a glob pattern; read row group
        by row group, fixed-size list columns as numpy vectors. ``columns`` reads only
        those. No file there is a ``FileNotFoundError`` at once.
        """
        from towhee_ray.sinks.parquet import parquet_files, read_rows
        return cls(read_rows(parquet_files(path_or_glob), columns))
