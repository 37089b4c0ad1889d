"""Rows out of Parquet files, for ``read_parquet``: a file, a folder of part files (what
``to_parquet`` writes, unfinished parts left out) or a glob pattern, streamed one record
batch at a time, fixed-size list columns back as numpy vectors.
"""
from __future__ import annotations

import glob as globbing
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np

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




def read_rows(files: Sequence[Path], columns: Optional[Sequence[str]] = None) -> Iterator[Any]:
    """Entity rows of ``files``, one record batch (within a row group) at a time; a
    fixed-size list column of numbers comes back as one numpy vector per row."""
    pyarrow = import_pyarrow()
    for path in files:
        # pre_buffer=False: with it, pyarrow 26 read a whole 146 MB file into memory at the
        # first batch (tests/test_sink_memory.py found it).
        with pyarrow.parquet.ParquetFile(path, pre_buffer=False) as parquet:
            missing = [name for name in columns or () if name not in parquet.schema_arrow.names]
            if missing:
                raise KeyError(f'{path} has no column {missing[0]!r} (its columns: '
                               f'{", ".join(map(repr, parquet.schema_arrow.names))})')
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
    if (pyarrow.types.is_fixed_size_list(kind) and column.null_count == 0
            and (pyarrow.types.is_floating(kind.value_type) or pyarrow.types.is_integer(kind.value_type))):
        # One writable copy per batch (arrow's buffers are read-only); rows are views of it.
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return list(np.array(flat).reshape(len(column), kind.list_size))
    return column.to_pylist()
