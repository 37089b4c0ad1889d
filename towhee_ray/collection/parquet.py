"""Parquet in and out: ``to_parquet`` writes entity rows into a folder of part files (the
sink is :mod:`towhee_ray.sinks.parquet`), ``read_parquet`` streams rows back from any
Parquet files (:mod:`towhee_ray.collection.parquet_reader`).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from towhee_ray.collection.columns import column_method, field_names

if TYPE_CHECKING:
    from towhee_ray.sinks.base import WriteResult

PathLike = Union[str, os.PathLike]


class ParquetMixin:
    """``to_parquet(path)`` and the source ``read_parquet(path_or_glob)``."""

    @column_method
    def to_parquet(self, path: PathLike, *, key: Optional[str] = None, batch: Optional[int] = None,
                   rows_per_file: Optional[int] = None, schema: Any = None,
                   compression: str = 'snappy', writers: str = 'auto', columns: Any = None) -> 'WriteResult':
        """Write the rows into the folder ``path`` as Parquet part files; runs the chain to
        its end, holding one batch at a time.

        One column per field: those of the first row, or the subscript's
        (``to_parquet['id', 'vec'](path)``). Numpy vectors become fixed-size lists (floats
        as float32; a Python list is stored as a list, unchecked); the other types come from the
        first batch (or ``schema=``, a pyarrow schema), and a value its column would store
        changed (a float in an integer column) is an error naming the row. ``path`` may start
        with ``~``. Each ``batch`` of rows (1000) is a row group; a part file closes every
        ``rows_per_file`` rows (100,000). A folder with parts gets new ones beside them. With
        ``key='id'``, rows whose key the folder already holds are skipped. Returns what was
        written: ``insert_count``, and in ``details`` the ``files`` written and the rows
        ``skipped``.

        Who writes: when the chain's last step runs on a parallel backend whose workers all
        run on this machine (threads; Ray on one host), those workers write the rows they
        make, each into parts of its own (``part-00004-<writer>.parquet``, closed at the end
        of each chunk), and the rows never travel to the driver (``details['writers']`` is
        ``'workers'``); parts are then in no particular order, but each row is whole.
        Otherwise the driver writes them, one batch at a time, in the chain's order.
        ``writers='driver'`` asks for that always, ``writers='workers'`` for workers even
        on a cluster of several machines (the folder must then be one that all of them
        share).

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
        from towhee_ray.sinks.in_workers import SinkRecipe
        from towhee_ray.sinks.parquet import ParquetSink
        fields = field_names(columns) if columns is not None else ()
        options = dict(key=key, batch_size=batch, schema=schema, compression=compression)
        if rows_per_file is not None:
            options['rows_per_file'] = rows_per_file
        return self._write('to_parquet', lambda: ParquetSink(fields, path, **options),
                           lambda: SinkRecipe(ParquetSink, fields, (path,), options), writers,
                           local_files=True)

    @classmethod
    def read_parquet(cls, path_or_glob: PathLike, columns: Optional[Sequence[str]] = None) -> 'ParquetMixin':
        """A lazy stream of entity rows from Parquet files: a file, a folder of
        ``.parquet`` files (what ``to_parquet`` writes) or a glob pattern; read row group
        by row group, fixed-size list columns as numpy vectors. ``columns`` reads only
        those (a name, or a list of names). No file there is a ``FileNotFoundError``, a file
        that is not Parquet a ``ValueError`` and a missing column a ``KeyError``, at once.
        """
        # Imported here: numpy and pyarrow load when a chain reads Parquet, not with towhee_ray.
        from towhee_ray.collection.parquet_reader import check_files, parquet_files, read_columns, read_rows
        names, files = read_columns(columns), parquet_files(path_or_glob)
        check_files(files, names)
        return cls(read_rows(files, names))
