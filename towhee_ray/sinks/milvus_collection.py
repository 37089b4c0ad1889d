"""A Milvus collection behind either pymilvus API, and typing values for its fields.

A collection is reached through a ``MilvusClient`` and a name, or through a pymilvus ORM
``Collection`` the caller has connected (Towhee 0.9 scripts pass one; pymilvus 3.1 removes
the ORM, so :class:`Target` supports both, and is the only place that knows the two).
A new collection's schema comes from its first row (:func:`fields_from_row`); every value
is checked and converted for its field (:func:`value_for`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set

from towhee_ray.quiet import quiet_pymilvus
from towhee_ray.checks import shown
from towhee_ray.sinks.checks import (as_vector, checked_key, checked_vector, dimension_error, float_vector,
                                     plain)
from towhee_ray.sinks.milvus_connection import (CALL_TIMEOUT_SECONDS, call_timeout, connect, is_lite_path,
                                                normal_uri)

#: The metrics of the FLOAT_VECTOR field a collection to_milvus creates has.
FLOAT_METRICS = ('COSINE', 'IP', 'L2')

logger = logging.getLogger(__name__)

#: VARCHAR length of string keys and scalars created from the first rows: Milvus's
#: largest, so a later longer value cannot fail a job that started well.
MAX_VARCHAR_LENGTH = 65535


# Escapes in a Milvus filter's string literal: Milvus Lite's parser knows only these, not
# JSON's \uXXXX (so neither `json.dumps` nor `repr` can write its keys); every other
# character, non-ASCII and control characters included, stands as itself (checked against
# Milvus Lite 3.2 and a Milvus 2.3.5 server).
_FILTER_ESCAPES = {'\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t'}


def key_list(keys: Sequence[Any]) -> str:
    r"""``keys`` (ints or strings) as the list of a Milvus filter, ``id in [...]``.

    >>> print(key_list([1, 2]))
    [1, 2]
    >>> print(key_list(['café', 'say "hi"', 'a\\b', 'two\nlines']))
    ["café", "say \"hi\"", "a\\b", "two\nlines"]
    """
    def literal(key: Any) -> str:
        if isinstance(key, str):
            return '"' + ''.join(_FILTER_ESCAPES.get(char, char) for char in key) + '"'
        return str(int(key))
    return '[' + ', '.join(map(literal, keys)) + ']'


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a collection's schema, whichever API described it."""

    name: str
    dtype: Any
    dim: Optional[int] = None
    is_primary: bool = False
    auto_id: bool = False
    #: a row may leave it out or give None (nullable, or with a default value: Milvus 2.4+)
    optional: bool = False
    max_length: Optional[int] = None   # a VARCHAR's, in bytes


class Target:
    """A collection behind either API: ``MilvusClient`` + name, or an ORM ``Collection``.

    The sink, the resume step and the hub operators talk to this, never to pymilvus
    directly, so the ORM's removal in pymilvus 3.1 touches this class only.
    """

    def __init__(self, collection: Any, uri: Optional[str] = None, token: str = '',
                 client: Any = None) -> None:
        uri = normal_uri(uri)
        if isinstance(collection, str):
            if client is None and not uri:
                raise TypeError(f'collection {collection!r} is a name: say where it is with uri= '
                                f"(a Milvus Lite file such as './vectors.db', or 'http://host:19530'), "
                                f'or pass a pymilvus Collection')
            self.name, self.orm = collection, None
            self.uri = uri or '(the given client)'
            self.client = client if client is not None else connect(uri, token)
            self._owns_client = client is None and not is_lite_path(uri)
            self.timeout = call_timeout(uri) if uri else CALL_TIMEOUT_SECONDS
        elif hasattr(collection, 'schema') and hasattr(collection, 'insert') and hasattr(collection, 'name'):
            self.name, self.orm, self.client, self._owns_client = collection.name, collection, None, False
            self.uri = f'connection {getattr(collection, "_using", "default")!r}'
            self.timeout = CALL_TIMEOUT_SECONDS
        else:
            raise TypeError(f'collection must be a collection name (with uri=) or a pymilvus Collection, '
                            f'got {type(collection).__name__}')
        self._loaded = False

    def __str__(self) -> str:
        return f'Milvus collection {self.name!r} at {self.uri}'

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        """Around the calls a job makes: the ORM's deprecation warnings silenced, and a call
        that failed because this process's Milvus Lite server died said to be that."""
        try:
            with quiet_pymilvus():
                yield
        except Exception as error:
            from towhee_ray.sinks import lite_server
            server = lite_server.running(self.uri) if self.orm is None and is_lite_path(self.uri) else None
            if server is not None and not server.alive():
                process = server.process
                raise ConnectionError(
                    f'the Milvus Lite server of {self.uri!r} (pid {process.pid}) exited during the job, with '
                    f'code {process.returncode} (killed, or out of memory?); what it had committed is in the '
                    f'file: run the job again (with skip_existing, or upserts, each key is stored once)'
                ) from error
            raise

    def exists(self) -> bool:
        if self.orm is not None:
            return True
        return self.client.has_collection(self.name, timeout=self.timeout)

    def fields(self) -> List[Field]:
        if self.orm is not None:
            with quiet_pymilvus():   # the ORM warns on every call
                return [Field(f.name, f.dtype, _dim(f.params), f.is_primary, bool(f.auto_id),
                              bool(getattr(f, 'nullable', False)
                                   or getattr(f, 'default_value', None) is not None),
                              _max_length(f.params))
                        for f in self.orm.schema.fields]
        described = self.client.describe_collection(self.name, timeout=self.timeout)
        return [Field(f['name'], f['type'], _dim(f.get('params', {})), bool(f.get('is_primary')),
                      bool(f.get('auto_id', described.get('auto_id', False)) and f.get('is_primary')),
                      bool(f.get('nullable') or f.get('default_value') is not None),
                      _max_length(f.get('params', {})))
                for f in described['fields']]

    def create(self, fields: Sequence[Field], metric_type: str,
               index_params: Optional[Dict[str, Any]]) -> bool:
        """Create the collection with these fields and an index on its vector field; False
        when another writer created it meanwhile. A collection created here whose index
        cannot be made is dropped again (nothing was written into it), and the error says
        why; an index-less collection would take rows that no search can find."""
        from pymilvus import DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        vector = None
        for field in fields:
            kws: Dict[str, Any] = {'is_primary': True} if field.is_primary else {}
            if field.dim is not None:
                kws['dim'] = field.dim
                vector = vector or field.name
            if field.dtype == DataType.VARCHAR:
                kws['max_length'] = MAX_VARCHAR_LENGTH
            schema.add_field(field.name, field.dtype, **kws)
        params = self.client.prepare_index_params()
        # AUTOINDEX is Milvus's own choice for the collection's size and hardware (on a
        # server); Milvus Lite builds HNSW (faiss) per flushed segment and searches the
        # rows not yet flushed exactly.
        options = dict(index_params or {'index_type': 'AUTOINDEX'})
        options.setdefault('metric_type', metric_type)
        params.add_index(vector, **options)
        try:
            with self._calls():
                self.client.create_collection(self.name, schema=schema, timeout=self.timeout)
        except Exception:
            if self.exists():   # another writer of the same job created it first: use that one
                return False
            raise
        try:
            with quiet_pymilvus():
                # sync=False: waiting for the index asks Milvus Lite for a timestamp it does
                # not serve (an error logged by its gRPC server); an index on an empty
                # collection is ready at once anyway.
                self.client.create_index(self.name, params, sync=False, timeout=self.timeout)
                self.client.load_collection(self.name, timeout=self.timeout)
        except Exception as error:
            if self.client.list_indexes(self.name, timeout=self.timeout):
                logger.info('%s was indexed by another writer meanwhile (%s)', self, error)
                return False
            self.client.drop_collection(self.name, timeout=self.timeout)
            raise ValueError(f'cannot index the vector field {vector!r} of {self} with {options}: '
                             f'{getattr(error, "message", error)}; nothing was written, and the collection '
                             f'this job created was dropped again: fix metric_type= or index_params= and '
                             f'run the job again') from error
        self._loaded = True
        return True

    def drop_if_empty(self) -> bool:
        """Drop the collection if it holds no row (one this job created and then wrote
        nothing into); whether it was dropped."""
        self.load()
        with self._calls():
            count = self.client.query(self.name, filter='', output_fields=['count(*)'], timeout=self.timeout,
                                      consistency_level='Strong')
        if count and count[0].get('count(*)'):
            return False
        self.client.drop_collection(self.name, timeout=self.timeout)
        return True

    def load(self) -> None:
        if not self._loaded:
            with quiet_pymilvus():
                self.orm.load(timeout=self.timeout) if self.orm is not None else \
                    self.client.load_collection(self.name, timeout=self.timeout)
            self._loaded = True

    def put(self, rows: List[Dict[str, Any]], upsert: bool) -> int:
        with self._calls():
            if self.orm is not None:
                result = (self.orm.upsert if upsert else self.orm.insert)(rows, timeout=self.timeout)
                return int(result.upsert_count if upsert else result.insert_count)
            result = (self.client.upsert if upsert else self.client.insert)(self.name, rows,
                                                                            timeout=self.timeout)
            return int(result['upsert_count' if upsert else 'insert_count'])

    def existing(self, key_field: str, keys: Sequence[Any]) -> Set[Any]:
        """Which of ``keys`` the collection holds (one query; strongly consistent, so a
        server answers with every row written before it, as a job resuming must know)."""
        if not keys:
            return set()
        self.load()
        expression = f'{key_field} in {key_list(keys)}'
        with self._calls():
            if self.orm is not None:
                found = self.orm.query(expression, output_fields=[key_field], timeout=self.timeout,
                                       consistency_level='Strong')
            else:
                found = self.client.query(self.name, filter=expression, output_fields=[key_field],
                                          timeout=self.timeout, consistency_level='Strong')
        return {row[key_field] for row in found}

    def search(self, query: Any, anns_field: str, limit: int, output_fields: List[str],
               search_params: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The ``limit`` nearest rows to ``query``: dicts with ``id``, ``distance``, ``entity``."""
        vector = _as_vector(query)
        if vector is None:
            raise TypeError(f'a search query is a vector (a 1-D numeric array or list), '
                            f'got {type(query).__name__}')
        self.load()
        with quiet_pymilvus():
            if self.orm is not None:
                hits = self.orm.search([vector], anns_field, search_params, limit=limit,
                                       output_fields=output_fields, timeout=self.timeout)
                return [{'id': hit.id, 'distance': hit.distance,
                         'entity': {name: hit.entity.get(name) for name in output_fields}} for hit in hits[0]]
            hits = self.client.search(self.name, data=[vector], anns_field=anns_field, limit=limit,
                                      output_fields=output_fields, search_params=search_params,
                                      timeout=self.timeout)
        return list(hits[0])

    def flush(self) -> None:
        with self._calls():
            self.orm.flush(timeout=self.timeout) if self.orm is not None else \
                self.client.flush(self.name, timeout=self.timeout)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _dim(params: Dict[str, Any]) -> Optional[int]:
    dim = (params or {}).get('dim')
    return int(dim) if dim is not None else None


def _max_length(params: Dict[str, Any]) -> Optional[int]:
    length = (params or {}).get('max_length')
    return int(length) if length is not None else None


# -- typing the first rows -----------------------------------------------------------------


def _as_vector(value: Any) -> Optional[Any]:
    """``value`` as a float32 vector (:func:`~towhee_ray.sinks.checks.as_vector`), or None
    when it is not one; Milvus also takes ``bytes`` as packed bits (a binary fingerprint),
    unpacked here to 0/1."""
    import numpy as np
    if isinstance(value, (bytes, bytearray)):
        return np.unpackbits(np.frombuffer(bytes(value), dtype=np.uint8)).astype(np.float32)
    vector = as_vector(value)
    if vector is None:
        return None
    with np.errstate(over='ignore', invalid='ignore'):   # out of float32's range: value_for says so
        return vector.astype(np.float32, copy=False)


def _scalar_type(value: Any) -> Any:
    import numpy as np
    from pymilvus import DataType
    if isinstance(value, (bool, np.bool_)):
        return DataType.BOOL
    if isinstance(value, (int, np.integer)):
        return DataType.INT64
    if isinstance(value, (float, np.floating)):
        return DataType.DOUBLE
    if isinstance(value, str):
        return DataType.VARCHAR
    return DataType.JSON


def fields_from_row(row: Dict[str, Any], names: Sequence[str], where: str) -> List[Field]:
    """The schema of a new collection, from its first row: the first field the primary
    key (int64 or string), vectors typed and sized from the values, scalars likewise."""
    from pymilvus import DataType
    key = checked_key(row[names[0]], names[0], (int, str), 'a Milvus primary key is an int or a str, and the '
                      'first field of to_milvus[...] is the key', where)
    fields = [Field(names[0], _scalar_type(key), is_primary=True)]
    for name in names[1:]:
        vector = _as_vector(row[name])
        if vector is not None:
            first = next((field.name for field in fields if field.dim), None)
            if first is not None:
                raise TypeError(
                    f'{where}: fields {first!r} and {name!r} are both vectors (1-D numeric arrays or lists), '
                    f'and a collection to_milvus creates has one vector field: leave {name!r} out of '
                    f'to_milvus[...], or make it JSON first, e.g. '
                    f"runas_op[{name!r}, {name!r}](func=lambda v: {{'values': list(v)}}); or create the "
                    f'collection yourself first')
            fields.append(Field(name, DataType.FLOAT_VECTOR, dim=len(vector)))
        elif row[name] is None:
            raise ValueError(f'{where}: field {name!r} is None, so its Milvus type is unknown, and a field '
                             f'to_milvus creates holds no nulls; give it a value in every row (or leave it '
                             f'out of to_milvus[...]), or create the collection with a nullable field first')
        else:
            fields.append(Field(name, _scalar_type(row[name]), max_length=MAX_VARCHAR_LENGTH))
    if not any(field.dim for field in fields):
        raise TypeError(f'{where}: none of the fields {list(names[1:])} is a vector (a 1-D numeric array or '
                        f'list); a Milvus collection needs one')
    return fields


def value_for(field: Field, value: Any) -> Any:
    """``value`` converted for ``field``, or a TypeError/ValueError saying what was expected."""
    import numpy as np
    from pymilvus import DataType
    if field.dtype == DataType.FLOAT_VECTOR:
        if isinstance(value, (bytes, bytearray)):   # a binary fingerprint, as 0/1 floats
            value = _as_vector(value)
        vector = float_vector(checked_vector(value, field.name), np.float32, field.name)
        if len(vector) != field.dim:
            raise dimension_error(field.name, len(vector), 'the collection', field.dim)
        return vector
    if field.dtype == DataType.BINARY_VECTOR:
        if not isinstance(value, (bytes, bytearray)):
            value = np.packbits(checked_vector(value, field.name).astype(bool)).tobytes()
        if len(value) * 8 != field.dim:
            raise dimension_error(field.name, len(value) * 8, 'the collection', field.dim)
        return bytes(value)
    if field.is_primary and field.dtype in (DataType.INT64, DataType.VARCHAR):
        kind, name, convert = (int, 'an int (int64)', 'int') if field.dtype == DataType.INT64 else \
            (str, 'a string (varchar)', 'str')
        rule = (f"the collection's key is {name}: convert it first, e.g. "
                f'runas_op[{field.name!r}, {field.name!r}](func={convert})')
        key = checked_key(value, field.name, (kind,), rule)
        return _scalar_value(field, key)
    return _scalar_value(field, plain(value))


# Milvus's integer fields: their ranges.
_INT_BITS = {'INT8': 8, 'INT16': 16, 'INT32': 32, 'INT64': 64}


def _scalar_value(field: Field, value: Any) -> Any:
    """``value`` (a plain Python value) when ``field`` can hold it; else a TypeError or
    ValueError saying what the field holds and what to do (pymilvus's own errors name
    neither the row nor the fix).

    >>> from pymilvus import DataType
    >>> _scalar_value(Field('n', DataType.INT32), 2**40)
    Traceback (most recent call last):
    ValueError: field 'n' is 1099511627776, out of its range: the collection's field is INT32, from -2147483648 to 2147483647
    >>> _scalar_value(Field('t', DataType.VARCHAR), 3)
    Traceback (most recent call last):
    TypeError: field 't' is 3 (int), but the collection's field is VARCHAR, which holds str; give every row the same type (convert it first, e.g. runas_op['t', 't'](func=str))
    >>> _scalar_value(Field('t', DataType.VARCHAR), None)
    Traceback (most recent call last):
    ValueError: field 't' is None, and the collection's field VARCHAR holds no nulls; give every row a value, or drop such rows first (filter(...))
    >>> _scalar_value(Field('m', DataType.JSON), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: field 'm' is None, and the collection's field JSON holds no nulls; ...
    """
    dtype = getattr(field.dtype, 'name', str(field.dtype))
    if value is None:
        if field.optional:
            return value
        raise ValueError(f"field {field.name!r} is None, and the collection's field {dtype} holds no nulls; "
                         f'give every row a value, or drop such rows first (filter(...))')
    if dtype == 'BOOL':
        holds, convert = isinstance(value, bool), 'bool'
    elif dtype in _INT_BITS:
        holds, convert = isinstance(value, int) and not isinstance(value, bool), 'int'
        bound = 1 << (_INT_BITS[dtype] - 1)
        if holds and not -bound <= value < bound:
            raise ValueError(f"field {field.name!r} is {value}, out of its range: the collection's field is "
                             f'{dtype}, from {-bound} to {bound - 1}')
    elif dtype in ('FLOAT', 'DOUBLE'):
        holds, convert = isinstance(value, (int, float)) and not isinstance(value, bool), 'float'
    elif dtype == 'VARCHAR':
        holds, convert = isinstance(value, str), 'str'
        if holds and field.max_length is not None and len(value) * 4 > field.max_length \
                and len(value.encode()) > field.max_length:
            raise ValueError(f'field {field.name!r} is {len(value.encode())} bytes long (UTF-8), and the '
                             f"collection's field holds at most {field.max_length}; shorten it first")
    else:   # JSON, arrays, ...: pymilvus checks them
        return value
    if not holds:
        raise TypeError(f'field {field.name!r} is {shown(value)} ({type(value).__name__}), but the '
                        f"collection's field is {dtype}, which holds {convert}; give every row the same type "
                        f'(convert it first, e.g. runas_op[{field.name!r}, {field.name!r}](func={convert}))')
    return value
