"""Converting between entity rows and plain values (Towhee 0.9's DataFrameMixin).

Entity rows are ``towhee.datacollection.entity.Entity`` (``towhee_ray.Entity``); dict rows
are accepted everywhere and stay dicts. Every field read or written goes through
:mod:`towhee_ray.collection.columns`; a changed row is a copy, never the input row. These
steps are cheap and run in the driver; a failing row stops the chain with the step and
the row's position, as any step does (or becomes ``Empty`` in a ``safe()`` chain).
"""
from __future__ import annotations

import functools
import json
import math
from typing import Any, Callable, Collection, Dict, Iterable, Iterator, Optional, Sequence

from towhee_ray.checks import first_repeated, shown
from towhee_ray.collection.columns import Columns, column_method, field_names
from towhee_ray.guard import Guarded
from towhee_ray.rows import fields_of, is_row, make_entity, with_fields


def _as_entity(schema: Optional[Sequence[str]]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if schema is None:
            return make_entity(dict(fields_of(value) if not isinstance(value, dict) else value))
        if len(schema) > 1 and (isinstance(value, (str, bytes)) or is_row(value)):
            raise TypeError(f'{len(schema)} fields {list(schema)} take a tuple of {len(schema)} values, got '
                            f'{shown(value, kind=True)}, which would be split into its '
                            f'{"keys" if is_row(value) else "characters"}')
        values = (value,) if len(schema) == 1 else tuple(value)
        if len(values) != len(schema):
            raise ValueError(f'the value has {len(values)} parts for the {len(schema)} fields '
                             f'of the schema {list(schema)}')
        return make_entity(dict(zip(schema, values)))
    return convert


def _missing(value: Any, na: Collection[Any]) -> bool:
    """Whether ``value`` is one of ``na``, or NaN; a container or an array never is."""
    if isinstance(value, (list, tuple, dict, set)) or hasattr(value, 'shape') and getattr(value, 'ndim', 0):
        return False
    try:
        if value != value:   # NaN: float, numpy or pandas' own
            return True
    except (TypeError, ValueError):   # pandas' NA has no truth value: missing
        return True
    try:
        return value in na
    except (TypeError, ValueError):
        return False


def _as_raw(row: Any) -> Any:
    values = tuple(fields_of(row).values())
    return values[0] if len(values) == 1 else values


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold made JSON: numpy arrays and numbers as lists and
    numbers, NaN and infinities as None, tuples as lists.

    >>> import numpy
    >>> _jsonable({'a': (numpy.float32(0.5), float('inf')), 'b': numpy.array([1, 2])})
    {'a': [0.5, None], 'b': [1, 2]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    tolist = getattr(value, 'tolist', None)   # numpy arrays and scalars
    if tolist is not None and hasattr(value, 'dtype'):
        return _jsonable(tolist())
    return value


def _select(names: Sequence[str]) -> Callable[[Any], Any]:
    columns = Columns(tuple(names))

    def select(row: Any) -> Any:
        fields = dict(zip(names, columns.read(row)))
        return fields if isinstance(row, dict) else make_entity(fields)
    return select


def _combined_rows(collections: Sequence[Iterable[Any]]) -> Iterator[Any]:
    """Rows with the fields of the rows at one position in each collection, as long as the
    shortest (as ``zip``, and as Towhee 0.9's examples use it); an error where two of them
    have a field of the same name, rather than losing one of the values."""
    for position, rows in enumerate(zip(*collections)):
        fields: Dict[str, Any] = {}
        for index, row in enumerate(rows):
            if not is_row(row):
                raise TypeError(f'combine joins the fields of entity rows: row #{position} of collection '
                                f'#{index} is {shown(row, kind=True)}; make entity rows first, e.g. '
                                f"DataCollection['a']([1, 2]) or .as_entity(schema=['a'])")
            own = fields_of(row)
            same = next((name for name in own if name in fields), None)
            if same is not None:
                raise ValueError(f'combine: row #{position} of collection #{index} has a field {same!r}, as '
                                 f'an earlier collection does; rename one of them first (rename({same}=...))')
            fields.update(own)
        yield with_fields(rows[0], fields)


class _ClassOnly:
    """A classmethod that refuses to be called on an instance (whose own rows it would
    leave out): ``DataCollection.combine(a, b)``, not ``a.combine(b)``."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        functools.update_wrapper(self, method)

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is not None:
            name = self.method.__name__
            raise TypeError(f'{name} is called on the class with every collection: '
                            f'DataCollection.{name}(a, b), not a.{name}(b)')
        return functools.partial(self.method, owner)


class EntityMixin:
    """``as_entity``, ``as_raw``, ``as_json``, ``parse_json``, ``as_str``, ``select``,
    ``rename``, ``replace``, ``dropna``, ``fill_entity``, ``select_from``, ``combine``."""

    def _convert(self, step: str, fn: Callable[[Any], Any], keep_if: bool = False) -> 'EntityMixin':
        return self._run(step, Guarded(fn, self._settings.safe, keep_if=keep_if), in_driver=True)

    def as_entity(self, schema: Optional[Sequence[str]] = None) -> 'EntityMixin':
        """Rows from dicts, or from values and the field names in ``schema``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([dict(a=1, b=2)]).as_entity().as_str().to_list()
        ["{'a': 1, 'b': 2}"]
        >>> DataCollection([(1, 2), (2, 3)]).as_entity(schema=['a', 'b']).as_str().to_list()
        ["{'a': 1, 'b': 2}", "{'a': 2, 'b': 3}"]
        >>> DataCollection([1, 2]).as_entity(schema=['a']).as_str().to_list()
        ["{'a': 1}", "{'a': 2}"]
        """
        if isinstance(schema, (set, frozenset)):
            raise TypeError(f'as_entity(schema=...) needs the field names in order (a list or a tuple), got '
                            f'a set: {schema!r}')
        if schema is not None:   # one name is one field, not its characters
            schema = field_names(schema if isinstance(schema, str) else tuple(schema))
        return self._convert('as_entity', _as_entity(schema))

    def as_raw(self) -> 'EntityMixin':
        """Rows back to plain values: a row's one field's value, else a tuple of them.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([(1, 2), (2, 3)]).as_entity(schema=['a', 'b']).as_raw().to_list()
        [(1, 2), (2, 3)]
        """
        return self._convert('as_raw', _as_raw)

    def as_json(self) -> 'EntityMixin':
        """Each row as a JSON object string: numpy vectors and numbers become JSON lists and
        numbers, NaN and infinities ``null`` (as pandas' ``to_json``; JSON has no NaN).

        >>> import numpy
        >>> from towhee_ray import DataCollection, Entity
        >>> DataCollection([Entity(x=1, v=numpy.arange(2.0), y=float('nan'))]).as_json().to_list()
        ['{"x": 1, "v": [0.0, 1.0], "y": null}']
        """
        return self._convert('as_json', lambda row: json.dumps(_jsonable(dict(fields_of(row))),
                                                               allow_nan=False))

    def parse_json(self) -> 'EntityMixin':
        """Entity rows from JSON object strings.

        >>> from towhee_ray import DataCollection
        >>> DataCollection(['{"x": 1}']).parse_json()[0].x
        1
        """
        return self._convert('parse_json', lambda text: make_entity(json.loads(text)))

    def as_str(self) -> 'EntityMixin':
        """Each element as ``str(element)`` (an entity shows its fields).

        >>> from towhee_ray import DataCollection
        >>> DataCollection['a']([1]).as_str()
        ["{'a': 1}"]
        """
        return self._convert('as_str', str)

    @column_method
    def select(self, *names: str, columns: Any = None) -> 'EntityMixin':
        """Rows with only these fields: ``select['a', 'b']()`` or ``select('a', 'b')``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['a', 'b', 'c']([(0, 1, 2)]).select['a', 'b']().as_raw()
        [(0, 1)]
        >>> DataCollection['a', 'b', 'c']([(0, 1, 2)]).select('c').as_raw()
        [2]

        A list of names is the same: ``select(['a', 'b'])``.
        """
        if columns is None and len(names) == 1 and isinstance(names[0], (list, tuple)):
            names = tuple(names[0])   # select(['a', 'b']), as pandas takes it
        names = field_names(columns if columns is not None else names)
        return self._convert(f'select{list(names)}', _select(names))

    def rename(self, column: Optional[Dict[str, str]] = None, **names: str) -> 'EntityMixin':
        """Rename fields: ``rename(column={'a': 'A'})`` or ``rename(a='A')``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['a', 'b']([(0, 1)]).rename(column={'a': 'A', 'b': 'B'})
        [<Entity dict_keys(['A', 'B'])>]
        """
        if column is not None and not isinstance(column, dict):
            raise TypeError(f"rename takes the old and new names as a dict, rename(column={{'old': 'new'}}), "
                            f"or as keywords, rename(old='new'); got {column!r}")
        mapping = {**(column or {}), **names}
        targets = list(mapping.values())
        twice = first_repeated(targets)
        if twice is not None:
            raise ValueError(f'rename({mapping}): two fields would be named {twice!r}; one would be lost')

        def rename(row: Any) -> Any:
            fields = fields_of(row)
            Columns(tuple(mapping)).read(row)   # a missing field is an error naming it
            clash = next((name for name in targets if name in fields and name not in mapping), None)
            if clash is not None:
                raise ValueError(f'the row already has a field {clash!r}, which the rename would replace; '
                                 f'rename or drop that field first (select)')
            renamed = {mapping.get(name, name): value for name, value in fields.items()}
            return with_fields(row, renamed, drop=fields)
        return self._convert(f'rename({mapping})', rename)

    def replace(self, **replacements: Dict[Any, Any]) -> 'EntityMixin':
        """Replace values of fields: ``replace(num={0: 1, 1: 2})``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['num'](range(3)).replace(num={0: 10, 1: 11}).as_raw()
        [10, 11, 2]
        """
        for name, mapping in replacements.items():
            if not isinstance(mapping, dict):
                raise TypeError(f'replace({name}=...) takes a dict from old value to new value, e.g. '
                                f'replace({name}={{0: 10, 1: 11}}); got {shown(mapping, kind=True)}')
        columns = Columns(tuple(replacements)) if replacements else None

        def replace(row: Any) -> Any:
            if columns is None:
                return row
            values = dict(zip(columns.inputs, columns.read(row)))
            return with_fields(row, {name: replacements[name].get(value, value)
                                     for name, value in values.items()})
        return self._convert('replace', replace)

    def dropna(self, na: Collection[Any] = ('', None)) -> 'EntityMixin':
        """Drop the rows with a field whose value is in ``na`` (default: empty string, None),
        or is NaN (as pandas gives for a missing number); ``na`` may be one value. A
        vector, list or dict is never missing.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['a', 'b']([(0, 1), (1, ''), (2, None), (3, float('nan'))]).dropna().as_raw()
        [(0, 1)]
        >>> DataCollection['a']([['x'], 'NA', 'N']).dropna(na='NA').as_raw()
        [['x'], 'N']
        """
        values = (na,) if isinstance(na, str) or not isinstance(na, Collection) else na
        return self._convert('dropna', lambda row: not any(
            _missing(value, values) for value in fields_of(row).values()), keep_if=True)

    def fill_entity(self, _DefaultKVs: Optional[Dict[str, Any]] = None,  # noqa: N803 (0.9's names)
                    _ReplaceNoneValue: bool = False, **defaults: Any) -> 'EntityMixin':
        """Add the fields a row lacks, with default values; as in 0.9, with
        ``_ReplaceNoneValue=True`` a field whose default is None is set to 0.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['num'](range(2)).fill_entity({'foo': 'bar'}).fill_entity(usage='test').to_list()
        [<Entity dict_keys(['num', 'foo', 'usage'])>, <Entity dict_keys(['num', 'foo', 'usage'])>]
        """
        defaults = {**defaults, **(_DefaultKVs or {})}

        def fill(row: Any) -> Any:
            fields = fields_of(row)
            updates = {name: value for name, value in defaults.items() if name not in fields}
            if _ReplaceNoneValue:
                updates.update({name: 0 for name, value in defaults.items() if value is None})
            return with_fields(row, updates)
        return self._convert('fill_entity', fill)

    def select_from(self, other: Any) -> 'EntityMixin':
        """Replace each index (or list of indices) by ``other``'s element(s) there.

        >>> from towhee_ray import DataCollection
        >>> DataCollection([[1, 2, 0], [2, 3, 0]]).select_from(DataCollection([0.8, 0.9, 8.1, 9.2]))
        [[0.9, 8.1, 0.8], [8.1, 9.2, 0.8]]
        """
        if getattr(other, 'is_stream', False):
            raise TypeError('select_from(other) indexes into other, which must be unstreamed: '
                            'call other.unstream() first')

        def pick(index: Any) -> Any:
            if isinstance(index, Iterable):
                return [other[i] for i in index]
            return other[index]
        return self._convert('select_from', pick)

    def to_dc(self) -> 'EntityMixin':
        """Towhee 0.9 turned its entity ``DataFrame`` into a ``DataCollection`` with it;
        towhee_ray has one class, so this is the collection itself.

        >>> from towhee_ray import dc
        >>> rows = dc['a']([1])
        >>> rows.to_dc() is rows
        True
        """
        return self

    @_ClassOnly
    def combine(cls, *collections: Iterable[Any]) -> 'EntityMixin':
        """Rows with the fields of the rows at the same position in each collection, as many
        as the shortest has (as ``zip``); collections with a field in common are an error.

        >>> import towhee_ray
        >>> a, b = towhee_ray.range['a'](1, 4), towhee_ray.range['b'](5, 8)
        >>> towhee_ray.DataCollection.combine(a, b).as_raw().to_list()
        [(1, 5), (2, 6), (3, 7)]
        """
        if not collections:
            raise TypeError('combine() needs at least one collection')
        return cls(_combined_rows(collections))
