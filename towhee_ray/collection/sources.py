"""Where rows come from and go to: files (glob, CSV, JSON lines) and pandas.

File sources are lazy streams: a file is opened when the first row is pulled and closed
after the last one.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import glob as globbing
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

from towhee_ray.checks import first_repeated, shown
from towhee_ray.collection.columns import field_names
from towhee_ray.rows import fields_of, is_row, make_entity
from towhee_ray.extras import require

PathLike = Union[str, Path]


def is_frame(data: Any) -> bool:
    """True for a pandas DataFrame (checked without importing pandas)."""
    pandas = sys.modules.get('pandas')
    return pandas is not None and isinstance(data, pandas.DataFrame)


def frame_rows(dataframe: Any) -> Iterator[Any]:
    """Entity rows of a pandas DataFrame, its columns as fields."""
    return (make_entity({str(name): value for name, value in record.items()})
            for record in dataframe.to_dict('records'))


def _glob_paths(patterns: tuple) -> Iterator[str]:
    for pattern in patterns:
        yield from sorted(globbing.iglob(str(pattern), recursive=True))


@contextlib.contextmanager
def _decoding(method: str, path: Path, encoding: str) -> Iterator[None]:
    """A file that is not in ``encoding`` is named, with what to do."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise ValueError(f'{method}: {path} is not {encoding} text ({error}); give its encoding, e.g. '
                         f"{method}(path, encoding='latin-1')") from error


def _csv_rows(path: Path, encoding: str) -> Iterator[Any]:
    with open(path, newline='', encoding=encoding) as file, _decoding('read_csv', path, encoding):
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return
        twice = first_repeated(header)
        if twice is not None:
            raise ValueError(f'read_csv: {path} names the column {twice!r} twice in its header line; '
                             f'each column needs its own name')
        for values in reader:
            if len(values) != len(header):
                if not values:   # a blank line
                    continue
                raise ValueError(f'read_csv: {path}, line {reader.line_num}: {len(values)} values for the '
                                 f'{len(header)} columns of the header; check the line (a missing comma, '
                                 f'or an unclosed quote before it)')
            yield make_entity(dict(zip(header, values)))


def _json_rows(path: Path, encoding: str) -> Iterator[Any]:
    with open(path, encoding=encoding) as file, _decoding('read_json', path, encoding):
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f'{path}, line {number}: not a JSON object ({error}); '
                                     f'read_json reads JSON lines, one object per line') from error
                if not isinstance(value, dict):
                    raise ValueError(f'{path}, line {number}: a JSON {type(value).__name__}, not an object; '
                                     f'read_json reads JSON lines, one object per line')
                yield make_entity(value)


def _write_csv(file: Any, rows: Iterable[Any]) -> None:
    """CSV lines of ``rows`` into ``file``: entity rows under a header line of the first
    row's fields, or plain values; a row of the other kind, or with other fields, is an error."""
    writer: Any = None
    fields: Any = None
    for position, row in enumerate(rows):
        if writer is None:
            fields = list(fields_of(row)) if is_row(row) else None
            writer = csv.writer(file) if fields is None else csv.DictWriter(file, fieldnames=fields)
            if fields is not None:
                writer.writeheader()
        if is_row(row) != (fields is not None):
            raise TypeError(f'to_csv: row #{position} is {shown(row, kind=True)} and row #0 '
                            f'{"an entity row" if fields is not None else "a plain value"}: a CSV file holds '
                            f'entity rows (under a header line of their fields) or plain values, not both; '
                            f'make them one kind first (as_entity(schema=[...]) or as_raw())')
        if fields is None:
            writer.writerow(row if isinstance(row, (list, tuple)) else [row])
            continue
        own = fields_of(row)
        if set(own) != set(fields):
            raise ValueError(f'to_csv: row #{position} has the fields {list(own)}, row #0 {fields}: the file '
                             f'has one header line, so every row needs the same fields; give them the same '
                             f'fields first (select, fill_entity)')
        writer.writerow(own)


def _new_file(method: str, path: PathLike, encoding: str) -> Path:
    """Where ``method`` writes ``path``; an error, before anything is written, where it is
    a folder, its folder does not exist or ``encoding`` is unknown."""
    resolved = Path(path).expanduser().absolute()
    if resolved.is_dir():
        raise IsADirectoryError(f'{method}: {str(path)!r} is a folder; give a file path, e.g. '
                                f'{str(resolved / "rows.csv")!r}')
    if not resolved.parent.is_dir():
        raise FileNotFoundError(f'{method}: the folder {str(resolved.parent)!r} does not exist; create it '
                                f'first, or give a path in a folder that exists')
    _known_encoding(method, encoding)
    return resolved


def _known_encoding(method: str, encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise LookupError(f'{method}: unknown encoding {encoding!r}; e.g. utf-8, latin-1') from None


def _file(method: str, path: PathLike, encoding: str) -> Path:
    """``path`` made absolute now (a stream reads it later, maybe from another working
    directory); an error where it is no file, or ``encoding`` is unknown."""
    resolved = Path(path).expanduser().absolute()
    if resolved.is_dir():
        raise IsADirectoryError(f'{method}: {str(path)!r} is a folder; give a file')
    if not resolved.is_file():
        raise FileNotFoundError(f'{method}: no file {str(path)!r}')
    _known_encoding(method, encoding)
    return resolved


class SourcesMixin:
    """``from_glob``, ``read_csv``, ``read_json``, ``from_df``, ``to_csv``, ``to_df`` and
    ``DataCollection['a', 'b'](iterable)``."""

    def __class_getitem__(cls, key: Any) -> Callable[[Iterable[Any]], 'SourcesMixin']:
        """``DataCollection['a', 'b'](iterable)``: entity rows with those fields.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['a', 'b']([(1, 2)]).to_list()[0].b
        2
        """
        names = field_names(key)
        return lambda iterable: cls(iterable).as_entity(schema=names)

    @classmethod
    def from_glob(cls, *patterns: PathLike) -> 'SourcesMixin':
        """A lazy stream of the paths matching the patterns (sorted per pattern; ``**``
        matches directories recursively; ``~`` is the home folder; a list of patterns is the
        same as the patterns). No match at all is a ``FileNotFoundError``.

        >>> import tempfile, pathlib
        >>> from towhee_ray import DataCollection
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for name in 'ba': _ = (folder / f'{name}.txt').write_text(name)
        >>> [pathlib.Path(p).name for p in DataCollection.from_glob(folder / '*.txt')]
        ['a.txt', 'b.txt']
        """
        # A list of patterns is the same as the patterns; ~ is the home folder.
        patterns = tuple(os.path.expanduser(str(pattern)) for given in patterns
                         for pattern in (given if isinstance(given, (list, tuple)) else (given,)))
        if not patterns:
            raise TypeError("from_glob() needs at least one pattern, e.g. from_glob('images/*.jpg')")
        if not any(next(globbing.iglob(p, recursive=True), None) for p in patterns):
            raise FileNotFoundError(f'no file matches {list(patterns)}')
        return cls(_glob_paths(patterns))

    @classmethod
    def read_csv(cls, csv_path: PathLike, encoding: str = 'utf-8-sig') -> 'SourcesMixin':
        """A lazy stream of entity rows, one per line of a CSV file with a header line
        (values are strings).
        """
        return cls(_csv_rows(_file('read_csv', csv_path, encoding), encoding))

    @classmethod
    def read_json(cls, json_path: PathLike, encoding: str = 'utf-8') -> 'SourcesMixin':
        """A lazy stream of entity rows, one per line of a JSON-lines file."""
        return cls(_json_rows(_file('read_json', json_path, encoding), encoding))

    @classmethod
    def from_df(cls, dataframe: Any, as_stream: bool = False) -> 'SourcesMixin':
        """Entity rows from the rows of a pandas DataFrame (its columns become fields);
        ``DataCollection(df)`` is the same.

        >>> import pandas
        >>> from towhee_ray import DataCollection
        >>> DataCollection.from_df(pandas.DataFrame({'a': [1, 2], 'b': ['x', 'y']})).as_raw()
        [(1, 'x'), (2, 'y')]
        """
        pandas = require('pandas', 'to_df()/from_df()', 'pip install pandas')
        if not isinstance(dataframe, pandas.DataFrame):
            raise TypeError(f'from_df() needs a pandas DataFrame, got {type(dataframe).__name__}')
        rows = frame_rows(dataframe)
        return cls(rows if as_stream else list(rows))

    def to_csv(self, csv_path: PathLike, encoding: str = 'utf-8-sig') -> None:
        """Write the rows to a CSV file: entity or dict rows with a header line of their
        fields, other elements (tuples, lists, values) as lines of values.

        The file is in place when every row is written. A row that does not fit (a plain
        value among entity rows, a row with other fields) is an error naming it, and leaves
        an earlier file at ``csv_path`` as it was.

        >>> import pathlib, tempfile
        >>> from towhee_ray import DataCollection
        >>> path = pathlib.Path(tempfile.mkdtemp()) / 'rows.csv'
        >>> DataCollection['a', 'b']([(1, 'x'), (2, 'y')]).to_csv(path)
        >>> DataCollection.read_csv(path).as_raw().to_list()
        [('1', 'x'), ('2', 'y')]
        """
        target = _new_file('to_csv', csv_path, encoding)
        temporary = target.with_name(f'.{target.name}.{os.getpid()}.part')
        try:
            with open(temporary, 'w', newline='', encoding=encoding) as file:
                _write_csv(file, self._items)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def to_df(self) -> Any:
        """The rows as a pandas DataFrame, fields as columns (runs a stream to its end).

        >>> from towhee_ray import DataCollection
        >>> DataCollection['a', 'b']([(1, 'x'), (2, 'y')]).to_df()
           a  b
        0  1  x
        1  2  y
        """
        pandas = require('pandas', 'to_df()/from_df()', 'pip install pandas')
        rows = list(self._items)
        if rows and all(is_row(row) for row in rows):
            return pandas.DataFrame([dict(fields_of(row)) for row in rows])
        return pandas.DataFrame(rows)
