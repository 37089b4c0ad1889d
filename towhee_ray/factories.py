"""Towhee 0.9's top-level names: ``dc``, ``range``, ``glob``, ``read_csv``, ``read_json``
and ``from_df``, so a 0.9 script that calls ``towhee.read_csv(...)`` needs only its import
changed (``import towhee_ray as towhee``).

``dc``, ``range`` and ``glob`` also take a subscript of field names:
``dc['a', 'b'](iterable)`` makes entity rows with those fields. This module sits above the
DataCollection core and only calls it.
"""
from __future__ import annotations

from typing import Any, Callable

from towhee_ray.collection.columns import field_names
from towhee_ray.collection.sources import PathLike
from towhee_ray.datacollection import DataCollection


class RowFactory:
    """``factory(...)`` makes a collection of plain values, ``factory['a', 'b'](...)`` one
    of entity rows with those fields."""

    def __init__(self, make: Callable[..., Any], name: str, doc: str) -> None:
        self._make = make
        self.__name__ = name
        self.__doc__ = doc

    def __call__(self, *args: Any, **kws: Any) -> Any:
        return self._make(*args, **kws)

    def __getitem__(self, key: Any) -> Callable[..., Any]:
        names = field_names(key)
        return lambda *args, **kws: self._make(*args, **kws).as_entity(schema=names)

    def __repr__(self) -> str:
        return f'<towhee_ray.{self.__name__}: call it, or subscript it with field names first>'


dc = RowFactory(DataCollection, 'dc', """A DataCollection of ``iterable``;
``dc['a', 'b'](iterable)`` makes entity rows with those fields.

>>> from towhee_ray import dc
>>> dc([0, 1, 2])
[0, 1, 2]
>>> dc['column']([0, 1, 2])
[<Entity dict_keys(['column'])>, <Entity dict_keys(['column'])>, <Entity dict_keys(['column'])>]
>>> dc['string', 'int']([['a', 1], ['b', 2]]).as_str()
["{'string': 'a', 'int': 1}", "{'string': 'b', 'int': 2}"]
""")

range = RowFactory(DataCollection.range, 'range',  # noqa: A001 (0.9's name)
                   """``DataCollection.range(*args)``; ``range['n'](...)`` makes entity rows.

>>> import towhee_ray
>>> towhee_ray.range['nums'](3).select['nums']().as_raw()
[0, 1, 2]
""")

glob = RowFactory(DataCollection.from_glob, 'glob',
                  """A lazy stream of the paths matching the patterns; ``glob['path'](...)``
makes entity rows with the field ``path``.""")


def read_csv(csv_path: PathLike, encoding: str = 'utf-8-sig') -> DataCollection:
    """``towhee.read_csv`` of Towhee 0.9: a lazy stream of entity rows, one per line of a
    CSV file with a header line (see :meth:`DataCollection.read_csv`).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'molecules.csv'
    >>> _ = path.write_text('id,smiles\\n1,CCO\\n2,C1=CC=CC=C1\\n')
    >>> read_csv(path).runas_op['id', 'id'](func=int).select['id', 'smiles']().as_raw().to_list()
    [(1, 'CCO'), (2, 'C1=CC=CC=C1')]
    """
    return DataCollection.read_csv(csv_path, encoding)


def read_json(json_path: PathLike, encoding: str = 'utf-8') -> DataCollection:
    """``towhee.read_json`` of Towhee 0.9: a lazy stream of entity rows, one per line of a
    JSON-lines file (see :meth:`DataCollection.read_json`)."""
    return DataCollection.read_json(json_path, encoding)


def from_df(dataframe: Any, as_stream: bool = False) -> DataCollection:
    """``towhee.from_df`` of Towhee 0.9: entity rows from a pandas DataFrame's rows (see
    :meth:`DataCollection.from_df`)."""
    return DataCollection.from_df(dataframe, as_stream)
