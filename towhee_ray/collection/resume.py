"""Jobs that resume: drop the rows whose key a sink already holds, before the work.

``dc.skip_existing['id'](target)`` asks the sink, in batches as the rows stream past, which
keys it holds, and lets only the others through. Put it before the expensive steps (the
model), and end the chain with a sink that never holds a key twice: a job killed at 90 %
and run again then embeds only the missing 10 %, and ends with the same rows as a job
that was never interrupted.

Any :class:`~towhee_ray.sinks.Sink` with ``existing_keys`` is a target (Milvus, Faiss,
Parquet); a pymilvus ``Collection`` or a collection name with ``uri=`` means Milvus.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional

from towhee_ray.checks import positive_int
from towhee_ray.collection.columns import column_method, field_names
from towhee_ray.rows import fields_of

#: Keys per lookup: one Milvus query of 1,000 keys costs about as much as a 1,000-row
#: insert (see towhee_ray.sinks.milvus.DEFAULT_BATCH_SIZE), and a stream holds at most
#: this many rows here.
DEFAULT_LOOKUP_BATCH = 1000


def _key_source(target: Any, key_field: str, uri: Optional[str], token: str) -> Any:
    if hasattr(target, 'existing_keys'):
        return target
    from towhee_ray.sinks.milvus import MilvusSink
    return MilvusSink([key_field], target, uri=uri, token=token)


def _key_of(row: Any, key_field: str, position: int) -> Any:
    fields = fields_of(row)
    if key_field not in fields:
        raise KeyError(f'row #{position} has no key field {key_field!r} (its fields: '
                       f'{", ".join(map(repr, fields)) or "none"}); skip_existing[{key_field!r}] reads it')
    return fields[key_field]


def _skip_existing(rows: Iterable[Any], source: Any, key_field: str, batch: int,
                   callback: Optional[Callable[[Any], Any]]) -> Iterator[Any]:
    iterator = iter(rows)
    try:
        pending: List[Any] = []
        position = 0
        for position, row in enumerate(iterator):
            pending.append(row)
            if len(pending) == batch:
                yield from _new_rows(pending, source, key_field, position + 1 - len(pending), callback)
                pending = []
        if pending:
            yield from _new_rows(pending, source, key_field, position + 1 - len(pending), callback)
    finally:
        close = getattr(iterator, 'close', None)
        if close is not None:
            close()
        getattr(source, 'close', lambda: None)()


def _new_rows(rows: List[Any], source: Any, key_field: str, first: int,
              callback: Optional[Callable[[Any], Any]]) -> List[Any]:
    keys = [_key_of(row, key_field, first + index) for index, row in enumerate(rows)]
    stored = source.existing_keys(keys)
    kept = []
    for key, row in zip(keys, rows):
        if key in stored:
            if callback is not None:
                callback(row)
        else:
            kept.append(row)
    return kept


class ResumeMixin:
    """``skip_existing['key'](target, ...)``: the step that makes a job resumable."""

    @column_method
    def skip_existing(self, target: Any, uri: Optional[str] = None, token: str = '', *,
                      batch: int = DEFAULT_LOOKUP_BATCH, callback: Optional[Callable[[Any], Any]] = None,
                      columns: Any = None) -> Any:
        """The rows whose key (the subscript's field) ``target`` does not hold yet.

        ``target`` is a sink (anything with ``existing_keys``), a pymilvus ``Collection``,
        or a Milvus collection name with ``uri``/``token`` as for ``to_milvus``. Keys are
        looked up ``batch`` at a time, in the driver, as rows stream past; ``callback`` is
        called with every row skipped (as ``drop_empty``'s). A stream stays a stream.

        >>> import tempfile, os, numpy as np
        >>> from towhee_ray import DataCollection
        >>> db = os.path.join(tempfile.mkdtemp(), 'doc.db')
        >>> rows = DataCollection['id', 'vec']([(i, np.eye(4, dtype='float32')[i]) for i in range(4)])
        >>> rows[:2].to_milvus['id', 'vec'](collection='items', uri=db).insert_count
        2
        >>> [row.id for row in rows.skip_existing['id']('items', uri=db)]
        [2, 3]
        """
        if columns is None:
            raise TypeError("skip_existing needs the key field in a subscript: skip_existing['id'](target)")
        key_field = field_names(columns)[0]
        positive_int(batch, 'batch', 'keys per lookup')
        source = _key_source(target, key_field, uri, token)
        return self._derive(_skip_existing(self._items, source, key_field, batch, callback))
