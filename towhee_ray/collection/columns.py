"""Column style: the one path by which a step reads and writes the fields of a row.

Rows are Towhee ``Entity`` objects (``towhee.datacollection.entity.Entity``) or plain dicts.
A subscript such as ``['in', 'out']`` becomes a :class:`Columns`; every step that reads or
writes fields (operators, ``runas_op``, ``filter``, ``select``, ``flatten``, the entity
conversions) goes through :meth:`Columns.read` and :meth:`Columns.write`. A column-style
callable is wrapped in a :class:`ColumnCall` and an operator factory in a
:class:`ColumnOperator`, so the fields are read and written inside the worker (a Ray task
or actor), never in the driver.

The rows themselves (what an entity is, its fields) are :mod:`towhee_ray.rows`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Tuple

from towhee_ray.checks import first_repeated
from towhee_ray.rows import fields_of, with_fields


def _names(part: Any, where: str) -> Tuple[str, ...]:
    names = (part,) if isinstance(part, str) else part
    if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{where} must be a field name or a tuple of field names, got {part!r}; "
                        f"e.g. ['in', 'out'], [('a', 'b'), 'c'] or ['a', ('b', 'c')]")
    return names


def field_names(key: Any) -> Tuple[str, ...]:
    """The names of a subscript that lists fields, as ``select['a', 'b']``; a name given
    twice is refused (its second value would silently replace the first).

    >>> field_names('a'), field_names(('a', 'b'))
    (('a',), ('a', 'b'))
    >>> field_names(('a', 'b', 'a'))
    Traceback (most recent call last):
    ...
    ValueError: the field 'a' is named twice in ('a', 'b', 'a'); give each field once
    """
    names = _names(key, 'the subscript')
    twice = first_repeated(names)
    if twice is not None:
        raise ValueError(f'the field {twice!r} is named twice in {names!r}; give each field once')
    return names


@dataclasses.dataclass(frozen=True)
class Columns:
    """The fields a column-style step reads (``inputs``) and writes (``outputs``).

    ``['in', 'out']``, ``[('a', 'b'), 'c']`` (two inputs), ``['a', ('b', 'c')]`` (a
    result tuple into two fields), ``['in']`` (read only).

    >>> columns = Columns.parse((('a', 'b'), 'c'))
    >>> columns
    Columns['a', 'b' -> 'c']
    >>> columns.read({'a': 1, 'b': 2})
    (1, 2)
    >>> columns.write({'a': 1, 'b': 2}, 3)
    {'a': 1, 'b': 2, 'c': 3}
    """

    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...] = ()
    several_outputs: bool = False

    @classmethod
    def parse(cls, key: Any) -> 'Columns':
        if isinstance(key, Columns):
            return key
        if isinstance(key, tuple) and len(key) == 2:
            return cls(_names(key[0], 'the input'), _names(key[1], 'the output'),
                       several_outputs=not isinstance(key[1], str))
        if isinstance(key, str) or (isinstance(key, tuple) and len(key) == 1):
            return cls(_names(key if isinstance(key, str) else key[0], 'the input'))
        raise TypeError(f"a column subscript is ['in'] or ['in', 'out'], got {key!r}; "
                        f"several inputs or outputs go in a tuple: [('a', 'b'), ('c', 'd')]")

    def read(self, row: Any) -> Tuple[Any, ...]:
        """The input fields' values; a missing field is an error naming it."""
        fields = fields_of(row)
        try:
            return tuple([fields[name] for name in self.inputs])
        except KeyError as missing:
            error = KeyError if isinstance(row, dict) else AttributeError
            raise error(f'the row has no field {missing.args[0]!r} (its fields: '
                        f'{", ".join(map(repr, fields)) or "none"})') from None

    def write(self, row: Any, result: Any) -> Any:
        """A copy of ``row`` with ``result`` in the output fields (``row`` if none)."""
        if not self.outputs:
            return row
        if not self.several_outputs:
            return with_fields(row, {self.outputs[0]: result})
        if not isinstance(result, (tuple, list)) or len(result) != len(self.outputs):
            count = f'{len(result)} values' if isinstance(result, (tuple, list)) else 'one value'
            raise ValueError(f'the function returned {count} for the {len(self.outputs)} output '
                             f'fields {self.outputs}; return a tuple of {len(self.outputs)}')
        return with_fields(row, dict(zip(self.outputs, result)))

    def __str__(self) -> str:
        inputs = ', '.join(map(repr, self.inputs))
        return f'[{inputs} -> {", ".join(map(repr, self.outputs))}]' if self.outputs else f'[{inputs}]'

    def __repr__(self) -> str:
        return f'Columns{self}'


class ColumnCall:
    """A callable applied column style: ``fn(*input fields)`` written into the output
    fields of a copy of the row; with ``result_only`` (a filter) the result itself.

    >>> ColumnCall(lambda x: x + 1, Columns.parse(('a', 'b')))({'a': 1})
    {'a': 1, 'b': 2}
    """

    __slots__ = ('fn', 'columns', 'result_only')

    def __init__(self, fn: Callable[..., Any], columns: Columns, result_only: bool = False) -> None:
        self.fn = fn
        self.columns = columns
        self.result_only = result_only

    def __call__(self, row: Any) -> Any:
        result = self.fn(*self.columns.read(row))
        return result if self.result_only else self.columns.write(row, result)

    def __getstate__(self):
        return self.fn, self.columns, self.result_only

    def __setstate__(self, state) -> None:
        self.fn, self.columns, self.result_only = state


class ColumnOperator:
    """An operator factory applied column style: each worker builds the operator once and
    reads and writes the fields itself (so on Ray the actor does it)."""

    def __init__(self, operator: Any, columns: Columns) -> None:
        self.operator = operator
        self.columns = columns
        self.name = f'{operator.name}{columns}'

    def create(self) -> ColumnCall:
        return ColumnCall(self.operator.create(), self.columns)


class column_method:
    """A method that also takes a column subscript: ``dc.filter(fn)`` and
    ``dc.filter['a'](fn)``. The subscript reaches the method as ``columns=``."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        functools.update_wrapper(self, method)

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self.method
        return _BoundColumnMethod(self.method, instance)


class _BoundColumnMethod:
    __slots__ = ('_method', '_instance')

    def __init__(self, method: Callable[..., Any], instance: Any) -> None:
        self._method = method
        self._instance = instance

    def __call__(self, *args: Any, **kws: Any) -> Any:
        return self._method(self._instance, *args, **kws)

    def __getitem__(self, key: Any) -> Callable[..., Any]:
        return functools.partial(self._method, self._instance, columns=key)

    @property
    def __doc__(self) -> str:
        return self._method.__doc__

    def __repr__(self) -> str:
        return f'<DataCollection.{self._method.__name__}: call it, or subscript it with fields first>'
