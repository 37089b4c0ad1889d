"""Rows as every layer sees them: Towhee ``Entity`` objects or plain dicts.

The DataCollection (``collection/``) and the sinks (``sinks/``) both read fields through
these helpers, so they live below both. Towhee is imported only when an ``Entity`` is
made: a worker that never sees one (a plain ``map`` on Ray) does not pay for importing it.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Dict, Iterable

from towhee_ray.quiet import quiet_towhee

ENTITY_MODULE = 'towhee.datacollection.entity'


@functools.lru_cache(maxsize=None)
def entity_class() -> type:
    """Towhee's ``Entity`` class (imported on first use; importing Towhee is slow)."""
    quiet_towhee()
    from towhee.datacollection.entity import Entity
    return Entity


def make_entity(fields: Dict[str, Any]) -> Any:
    """An ``Entity`` with these fields, in this order.

    >>> str(make_entity({'a': 1, 'b': 2}))
    "{'a': 1, 'b': 2}"
    """
    entity = entity_class()()
    entity.__dict__.update(fields)
    return entity


def is_entity(row: Any) -> bool:
    # A row can only be an Entity once Towhee's entity module is loaded (unpickling one
    # loads it), so this never imports Towhee into a worker that does not need it.
    module = sys.modules.get(ENTITY_MODULE)
    return module is not None and isinstance(row, module.Entity)


def is_row(value: Any) -> bool:
    """Whether ``value`` is a row: an entity or a dict."""
    return isinstance(value, dict) or is_entity(value)


def _row_type_error(row: Any, wanted: str) -> TypeError:
    shown = repr(row)
    shown = shown if len(shown) <= 60 else shown[:57] + '...'
    return TypeError(f'column style {wanted} fields of Entity or dict rows, got a row of type '
                     f'{type(row).__name__} ({shown}); make entity rows first, e.g. with '
                     f"DataCollection['name'](...), dc['name'](...) or .as_entity(schema=['name'])")


def fields_of(row: Any) -> Dict[str, Any]:
    """The fields of an entity or dict row, as a dict (not a copy for entities).

    >>> fields_of({'a': 1})
    {'a': 1}
    """
    if isinstance(row, dict):
        return row
    if is_entity(row):
        return row.__dict__
    raise _row_type_error(row, 'reads')


def with_fields(row: Any, updates: Dict[str, Any], drop: Iterable[str] = ()) -> Any:
    """A copy of ``row`` (same type) with ``updates`` applied and ``drop`` removed; the
    input row is never changed, so results are the same on every backend.

    >>> with_fields({'a': 1, 'b': 2}, {'c': 3}, drop=['b'])
    {'a': 1, 'c': 3}
    """
    fields = {**fields_of(row), **updates}
    for name in drop:
        if name not in updates:
            fields.pop(name, None)
    if isinstance(row, dict):
        return fields
    copy = row.__class__.__new__(row.__class__)
    copy.__dict__ = fields
    return copy
