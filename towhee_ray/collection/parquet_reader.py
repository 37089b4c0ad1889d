"""Rows out of Parquet files, for ``read_parquet``: a file, a folder of part files (what
``to_parquet`` writes, unfinished parts left out) or a glob pattern, streamed one record
batch at a time, fixed-size list columns back as numpy vectors.
"""
from __future__ import annotations

import glob as globbing
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from towhee_ray.collection.columns import field_names
from towhee_ray.rows import make_entity
from towhee_ray.sinks.parquet import READ_BATCH_ROWS, PathLike, folder_parts, import_pyarrow


def parquet_files(path_or_glob: PathLike) -> List[Path]:
    """The Parquet files a path names: the file itself, a folder's ``*.parquet`` files
    (not hidden ones: unfinished parts), or the matches of a glob pattern; sorted.

    >>> parquet_files('/nonexistent/*.parquet')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: no Parquet file at '/nonexistent/*.parquet' (a file, a folder of .parquet files or ...)
    """
    path = Path(path_or_glob)
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = [path]
    else:
        candidates = [Path(match) for match in sorted(globbing.glob(str(path_or_glob), recursive=True))]
    files: List[Path] = []
    for candidate in candidates:
        if candidate.is_dir():
            files.extend(folder_parts(candidate))
        elif candidate.is_file():
            files.append(candidate)
    if not files:
        raise FileNotFoundError(f'no Parquet file at {str(path_or_glob)!r} (a file, a folder of .parquet '
                                f'files or a glob pattern)')
    return files


def read_columns(columns: Union[None, str, Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """The column names ``read_parquet(columns=...)`` reads: None for all, a name for one.

    >>> read_columns('text'), read_columns(['id', 'text']), read_columns(None)
    (('text',), ('id', 'text'), None)
    >>> read_columns([])
    Traceback (most recent call last):
    ...
    ValueError: read_parquet(columns=[]) reads no column: name at least one, or leave columns out to read all
    """
    if columns is None:
        return None
    if not isinstance(columns, str) and not len(columns):
        raise ValueError('read_parquet(columns=[]) reads no column: name at least one, or leave columns out '
                         'to read all')
    return field_names(columns if isinstance(columns, str) else tuple(columns))


def check_files(files: Sequence[Path], columns: Optional[Sequence[str]]) -> None:
    """Refuse, before a row is read, a file that is not Parquet or lacks one of ``columns``
    (reading a footer each: rows of the files before it would otherwise have gone on)."""
    pyarrow = import_pyarrow()
    for path in files:
        try:
            names = pyarrow.parquet.read_schema(path).names
        except pyarrow.ArrowInvalid as error:
            raise ValueError(f'{path} is not a Parquet file ({error}); read_parquet reads Parquet files: '
                             f"give a pattern that matches only them, e.g. 'folder/*.parquet'") from error
        missing = [name for name in columns or () if name not in names]
        if missing:
            raise KeyError(f'{path} has no column {missing[0]!r} (its columns: '
                           f'{", ".join(map(repr, names))})')


def read_rows(files: Sequence[Path], columns: Optional[Sequence[str]] = None) -> Iterator[Any]:
    """Entity rows of ``files``, one record batch (within a row group) at a time; a
    fixed-size list column of numbers comes back as one numpy vector per row (None where
    the row has none)."""
    pyarrow = import_pyarrow()
    for path in files:
        # pre_buffer=False: with it, pyarrow 26 read a whole 146 MB file into memory at the
        # first batch (tests/test_sink_memory.py found it).
        with pyarrow.parquet.ParquetFile(path, pre_buffer=False) as parquet:
            for row_group in range(parquet.num_row_groups):
                for record_batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=[row_group],
                                                         columns=list(columns) if columns else None):
                    yield from _batch_rows(record_batch, pyarrow)


def _batch_rows(record_batch: Any, pyarrow: Any) -> Iterator[Any]:
    names = record_batch.schema.names
    values = [_column_values(column, pyarrow) for column in record_batch.columns]
    for row in zip(*values):
        yield make_entity(dict(zip(names, row)))


def _column_values(column: Any, pyarrow: Any) -> List[Any]:
    kind = column.type
    if (pyarrow.types.is_fixed_size_list(kind)
            and (pyarrow.types.is_floating(kind.value_type) or pyarrow.types.is_integer(kind.value_type))):
        # One writable copy per batch (arrow's buffers are read-only); rows are views of it.
        # flatten() leaves null rows out.
        flat = column.flatten().to_numpy(zero_copy_only=False)
        vectors = list(np.array(flat).reshape(-1, kind.list_size))
        if not column.null_count:
            return vectors
        present = iter(vectors)
        return [next(present) if valid else None for valid in column.is_valid().to_pylist()]
    return column.to_pylist()
