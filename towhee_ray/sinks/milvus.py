"""The Milvus sink: rows streamed into a collection, created from the first rows if needed.

Rows are committed per batch: Milvus Lite writes each insert to its write-ahead log before
it returns (a job SIGKILLed after a batch finds that batch again on restart;
``tests/test_milvus.py`` checks it). The connection helper is
:mod:`~towhee_ray.sinks.milvus_connection`, the collection behind either pymilvus API
:mod:`~towhee_ray.sinks.milvus_collection`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from towhee_ray.sinks.base import Batch, Sink, WriteResult
from towhee_ray.sinks.checks import plain_keys
from towhee_ray.sinks.milvus_collection import FLOAT_METRICS, Field, Target, fields_from_row, value_for
from towhee_ray.sinks.milvus_connection import CONNECT_TIMEOUT_SECONDS, connect, normal_uri

__all__ = ['CONNECT_TIMEOUT_SECONDS', 'DEFAULT_BATCH_SIZE', 'MilvusSink', 'connect']

logger = logging.getLogger(__name__)

#: Rows per insert or upsert. Measured with Milvus Lite 3.2.2 on this 2-vCPU VM while
#: other jobs loaded it (load average 23-41): 10,000 rows of 384 float32 dimensions in
#: batches of 100/300/1,000/3,000, interleaved over 3 rounds, gave upsert medians of
#: 492/561/500/651 rows/s (insert 1,342/427/560/862) with ranges overlapping: no size in
#: that span was reliably faster; a single earlier run (load ~20) gave 3,900 rows/s at 100,
#: 3,300 at 1,000 and 1,700 at 5,000. 1,000 keeps a server's round trips few (~1.5 MB
#: each) while a crash loses at most 1,000 embedded rows and the driver holds no more.
DEFAULT_BATCH_SIZE = 1000


# -- the sink ------------------------------------------------------------------------------


class MilvusSink(Sink):
    """Streams rows into a Milvus collection, creating it from the first rows if needed.

    ``on_existing``: ``'upsert'`` (a key written again replaces the stored row) or
    ``'skip'`` (rows whose key is stored are not written); either way no key is held twice.

    >>> import tempfile, os, numpy as np
    >>> from towhee_ray.sinks import write_rows
    >>> db = os.path.join(tempfile.mkdtemp(), 'doc.db')
    >>> sink = MilvusSink(['id', 'vec'], 'items', uri=db, batch_size=2)
    >>> rows = [{'id': i, 'vec': np.eye(4, dtype='float32')[i]} for i in range(3)]
    >>> write_rows(rows, sink).insert_count
    3
    >>> sorted(MilvusSink(['id', 'vec'], 'items', uri=db).existing_keys([0, 2, 7]))
    [0, 2]
    """

    default_batch_size = DEFAULT_BATCH_SIZE
    call_name = 'to_milvus'

    def __init__(self, fields: Sequence[str], collection: Any, uri: Optional[str] = None, token: str = '',
                 batch_size: Optional[int] = None, on_existing: str = 'upsert', metric_type: str = 'COSINE',
                 index_params: Optional[Dict[str, Any]] = None, client: Any = None) -> None:
        super().__init__(fields, batch_size)
        if on_existing not in ('upsert', 'skip'):
            raise ValueError(f"on_existing is 'upsert' or 'skip', got {on_existing!r}")
        self.on_existing = on_existing
        self.metric_type, self.index_params = _checked_index(metric_type, index_params)
        self._collection, self._uri, self._token, self._client = collection, normal_uri(uri), token, client
        self._target: Optional[Target] = None
        self._schema: Dict[str, Field] = {}
        self.skipped = 0
        #: the keys of the last batch that were stored already (``on_existing='skip'``)
        self.last_skipped_rows: List[int] = []
        self.created = False
        self._written = 0
        self._worker = False

    def in_worker(self) -> None:
        self._worker = True

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = Target(self._collection, self._uri, self._token, self._client)
        return self._target

    def describe(self) -> str:
        if isinstance(self._collection, str):
            return f'Milvus collection {self._collection!r} at {self._uri or "(the given client)"}'
        return f'Milvus collection {getattr(self._collection, "name", "?")!r}'

    def on_write_start(self, batch: Batch) -> None:
        target = self.target
        if not target.exists():
            if not batch.rows:
                return
            fields = fields_from_row(batch.rows[0], self.fields, batch.where(0, self.key_field))
            if target.create(fields, self.metric_type, self.index_params):
                self.created = True
                logger.info('created %s with fields %s', target, list(self.fields))
            else:   # another worker of the same job created it first: write into that one
                logger.info('%s was created by another writer meanwhile', target)
        self._schema = self._check_schema(target.fields())

    def _check_schema(self, fields: List[Field]) -> Dict[str, Field]:
        """The collection's field for each of the row's: by name, or, as Towhee 0.9's
        to_milvus inserted, by position when the names differ and the counts agree, and
        every name the collection has is at its field's position (a field is never written
        into another one of a name the rows also have)."""
        by_name = {field.name: field for field in fields}
        writable = [field for field in fields if not field.auto_id]
        if all(name in by_name for name in self.fields):
            schema = {name: by_name[name] for name in self.fields}
        elif len(self.fields) == len(writable) and all(
                name == field.name for name, field in zip(self.fields, writable) if name in by_name):
            schema = dict(zip(self.fields, writable))
            logger.info('writing %s into the fields %s of %s, by position', list(self.fields),
                        [field.name for field in writable], self.target)
        else:
            unknown = next(name for name in self.fields if name not in by_name)
            raise ValueError(f'{self.target} has no field {unknown!r} (its fields: {list(by_name)}); '
                             f'name its fields in to_milvus[...] (by position only when every name it has '
                             f'is at its place: all {len(writable)} of them, in their order)')
        written = {field.name for field in schema.values()}
        lacking = [field.name for field in fields
                   if field.name not in written and not (field.auto_id or field.optional)]
        if lacking:
            them = 'it' if len(lacking) == 1 else 'them'
            raise ValueError(f'{self.target} needs a value for {lacking} in every row, and to_milvus[...] '
                             f'writes only {list(self.fields)}: name {them} in to_milvus[...] (the rows must '
                             f'have {them}), or write into another collection')
        key = schema[self.key_field]
        if not key.is_primary and any(field.is_primary and not field.auto_id for field in fields):
            raise ValueError(f"the first field of to_milvus[...] is the key, but {self.target}'s primary "
                             f'key is not {key.name!r}; put the primary key first')
        return schema

    def _convert(self, batch: Batch) -> Tuple[List[Dict[str, Any]], Optional[Exception]]:
        """The batch's rows as pymilvus wants them, up to the first bad row (and its error)."""
        rows: List[Dict[str, Any]] = []
        for index, row in enumerate(batch.rows):
            try:
                rows.append({self._schema[name].name: value_for(self._schema[name], value)
                             for name, value in row.items()})
            except (TypeError, ValueError) as error:
                bad = type(error)(f'{batch.where(index, self.key_field)}: {error} (writing {self.target})')
                bad.row_index = index   # which row of the batch: a worker fails that element
                return rows, bad
        return rows, None

    def write(self, batch: Batch) -> int:
        rows, error = self._convert(batch)
        written = self._put(rows) if rows else 0
        self._written += written
        if error is not None:
            if written:
                error.add_note(f'the {written} rows before it in its batch were written, as were all '
                               'earlier batches')
            raise error
        return written

    def _put(self, rows: List[Dict[str, Any]]) -> int:
        key = self._schema[self.key_field]
        if not key.is_primary:   # an auto_id collection: Milvus makes the keys
            return self.target.put(rows, upsert=False)
        # a key twice in a batch: the last wins
        latest = {row[key.name]: index for index, row in enumerate(rows)}
        if self.on_existing == 'skip':
            stored = self.target.existing(key.name, list(latest))
            self.skipped += len(stored)
            latest = {name: index for name, index in latest.items() if name not in stored}
        kept = set(latest.values())
        self.last_skipped_rows = [index for index in range(len(rows)) if index not in kept]
        rows = [rows[index] for index in sorted(kept)]
        if self.on_existing == 'skip':
            return self.target.put(rows, upsert=False) if rows else 0
        return self.target.put(rows, upsert=True)

    def on_write_complete(self, result: WriteResult) -> WriteResult:
        if result.insert_count:
            self.target.flush()
        result.details.update(created=self.created, skipped=self.skipped)
        self.close()
        return result

    def on_write_failed(self, error: BaseException) -> None:
        # a collection this job created and wrote nothing into goes again (a worker never
        # drops one: another worker may be writing into it)
        if self.created and not self._written and not self._worker and self._target is not None:
            try:
                if self._target.drop_if_empty():
                    error.add_note(f'{self.target} was created by this job and held no row: it was '
                                   f'dropped again')
                    self.created = False
            except Exception as drop_error:   # noqa: BLE001 - the job's own error is the one to raise
                error.add_note(f'{self.target} was created by this job; dropping it again failed: '
                               f'{drop_error}')
        self.close()

    def existing_keys(self, keys: Sequence[Any]) -> Set[Any]:
        target = self.target
        if not target.exists():
            return set()
        key_field = next((field.name for field in target.fields() if field.is_primary), self.key_field)
        return target.existing(key_field, plain_keys(keys))

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None


def _checked_index(metric_type: Any, index_params: Any) -> Tuple[str, Optional[Dict[str, Any]]]:
    """``metric_type`` (upper case) and ``index_params`` of a collection to_milvus creates,
    or an error saying what they may be, before anything runs (Milvus says it only once
    the collection exists).

    >>> _checked_index('l2', None)
    ('L2', None)
    >>> _checked_index('BAD', None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: metric_type is 'COSINE', 'IP' or 'L2' (a FLOAT_VECTOR field's metrics), got 'BAD'; ...
    """
    if index_params is not None and not isinstance(index_params, dict):
        raise TypeError(f"index_params is a dict (e.g. {{'index_type': 'HNSW', 'params': {{'M': 16}}}}), "
                        f'got {type(index_params).__name__}')
    options = dict(index_params or {})
    given = options.get('metric_type')
    for name, value in (('metric_type', metric_type), ("index_params['metric_type']", given)):
        if (value is not None or name == 'metric_type') and \
                (not isinstance(value, str) or value.upper() not in FLOAT_METRICS):
            raise ValueError(f"{name} is 'COSINE', 'IP' or 'L2' (a FLOAT_VECTOR field's metrics), got "
                             f'{value!r}; to_milvus creates a FLOAT_VECTOR field (for another field or '
                             f'metric, create the collection yourself first)')
    if 'metric_type' in options:
        options['metric_type'] = options['metric_type'].upper()
    index_type = options.get('index_type', 'AUTOINDEX')
    if not isinstance(index_type, str) or not index_type:
        raise ValueError(f"index_params['index_type'] is the name of a Milvus index (e.g. 'AUTOINDEX', "
                         f"'HNSW', 'IVF_FLAT'), got {index_type!r}")
    return metric_type.upper(), (options if index_params is not None else None)
