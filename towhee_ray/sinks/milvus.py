"""Milvus: the connection helper and the sink that streams rows into a collection.

A collection is reached through a ``MilvusClient`` (``uri``: a Milvus Lite file path such
as ``'./vectors.db'``, or a server URL ``'http://host:19530'`` with ``token``) or through
a pymilvus ORM ``Collection`` that the caller has already connected (Towhee 0.9 scripts
pass one; pymilvus 3.1 removes the ORM, so both forms are supported).

Milvus Lite runs inside the process that opens the file, and only one process may open a
file at a time (a second one gets "Open local milvus failed"); it keeps the file until it
exits. So with Lite every write and search happens in the driver, never in a Ray worker,
and a job killed with SIGKILL releases the file with its process. Rows are committed per
batch: Milvus Lite writes each insert to its write-ahead log before it returns (a job
SIGKILLed after a batch finds that batch again on restart; ``tests/test_milvus.py``
checks it).

pymilvus is imported on first use: ``import towhee_ray`` never pays for it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import warnings
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from towhee_ray.sinks.base import Batch, Sink, WriteResult

logger = logging.getLogger(__name__)

#: How long to wait for a Milvus server before ``ConnectionError``. pymilvus alone waits
#: 10 s for a server that accepts connections and never answers (measured against a
#: listening socket that never replies); 15 s leaves room for a server that is starting,
#: within the 30 s the README promises.
CONNECT_TIMEOUT_SECONDS = 15.0

#: Rows per insert or upsert. Measured with Milvus Lite 3.2.2 on this 2-vCPU VM while
#: other jobs loaded it (load average 23-41): 10,000 rows of 384 float32 dimensions in
#: batches of 100/300/1,000/3,000, interleaved over 3 rounds, gave upsert medians of
#: 492/561/500/651 rows/s (insert 1,342/427/560/862) with ranges overlapping: no size in
#: that span was reliably faster; a single earlier run (load ~20) gave 3,900 rows/s at 100,
#: 3,300 at 1,000 and 1,700 at 5,000. 1,000 keeps a server's round trips few (~1.5 MB
#: each) while a crash loses at most 1,000 embedded rows and the driver holds no more.
DEFAULT_BATCH_SIZE = 1000

#: VARCHAR length of string keys and scalars created from the first rows: Milvus's
#: largest, so a later longer value cannot fail a job that started well.
MAX_VARCHAR_LENGTH = 65535


#: Milvus Lite runs in this process: it can be slow (a background index build on a loaded
#: machine kept its gRPC server from answering within 15 s once), never unreachable.
LITE_TIMEOUT_SECONDS = 300.0

#: One client per Lite file in this process, never closed: the process keeps the file
#: until it exits whatever its clients do, and reconnecting only costs time.
_lite_clients: Dict[str, Any] = {}
_lite_lock = threading.Lock()

#: Milvus Lite serves pymilvus from a gRPC server in this process, which refuses the
#: client's keep-alive pings every 10 s ("too_many_pings" on stderr); in-process there is
#: no connection to keep alive.
LITE_GRPC_OPTIONS = {'grpc.keepalive_time_ms': 2 ** 31 - 1}


def is_lite_path(uri: str) -> bool:
    """A Milvus Lite file rather than a server URL.

    >>> is_lite_path('./vectors.db'), is_lite_path('http://localhost:19530')
    (True, False)
    """
    return '://' not in uri


def server_uri(host: Optional[str] = None, port: Optional[Any] = None, uri: Optional[str] = None) -> str:
    """The one address form: ``uri`` if given, else ``http://host:port`` (the hub
    operators' ``host``/``port``).

    >>> server_uri('localhost', 19530), server_uri(uri='./x.db')
    ('http://localhost:19530', './x.db')
    """
    if uri:
        return str(uri)
    return f'http://{host or "localhost"}:{port or 19530}'


def connect_token(user: Optional[str] = None, password: Optional[str] = None,
                  token: Optional[str] = None) -> str:
    """The token of a server with authentication: ``token``, else ``'user:password'``.

    >>> connect_token('root', 'Milvus'), connect_token(token='abc')
    ('root:Milvus', 'abc')
    """
    if token:
        return token
    return f'{user}:{password or ""}' if user else ''


def _in_ray_worker() -> bool:
    ray = sys.modules.get('ray')
    return bool(ray and ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE)


def connect(uri: str, token: str = '', timeout: float = CONNECT_TIMEOUT_SECONDS) -> Any:
    """A ``pymilvus.MilvusClient`` for ``uri`` (a Lite ``.db`` path or a server URL).

    An unreachable server is a ``ConnectionError`` naming the address within ``timeout``
    seconds; a Lite file another process holds is a ``ConnectionError`` saying so.

    >>> import tempfile, os
    >>> client = connect(os.path.join(tempfile.mkdtemp(), 'doc.db'))
    >>> client.list_collections()
    []
    """
    try:
        import pymilvus  # noqa: F401
    except ImportError as error:   # pragma: no cover - the milvus extra is missing
        raise ImportError("Milvus needs pymilvus and milvus-lite: pip install 'towhee-ray[milvus]'") from error
    uri = str(uri)
    if is_lite_path(uri):
        if not uri.endswith('.db'):
            raise ValueError(f'{uri!r} is neither a server URL (http://host:19530) nor a Milvus Lite '
                             f"file: a Lite file's name ends with .db, e.g. './vectors.db'")
        if _in_ray_worker():
            raise RuntimeError(
                f'the Milvus Lite file {uri!r} cannot be opened in a Ray worker: the worker would hold it '
                f'until it exits, and the driver could not open it. Write and search from the driver '
                f'(to_milvus, or the ann operators outside set_parallel/ray_op), or use a Milvus server')
        folder = os.path.dirname(os.path.abspath(uri))
        os.makedirs(folder, exist_ok=True)
        with _lite_lock:
            client = _lite_clients.get(os.path.abspath(uri))
            if client is None:
                if not _lite_clients:
                    logging.getLogger('grpc._server').addFilter(_LiteGapFilter())
                client = _lite_clients[os.path.abspath(uri)] = _client(uri, token, LITE_TIMEOUT_SECONDS)
            return client
    return _client(uri, token, timeout)


class _LiteGapFilter(logging.Filter):
    """Drops the one error Milvus Lite's in-process gRPC server logs for a call it does not
    serve and pymilvus tolerates: ``AllocTimestamp``, asked after every index creation
    (``create_collection`` with an index, ``create_index``) while waiting for the index."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, NotImplementedError) and _last_frame(error) == 'AllocTimestamp')


def _last_frame(error: BaseException) -> str:
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_name if traceback is not None else ''


def _client(uri: str, token: str, timeout: float) -> Any:
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            return MilvusClient(uri=uri, token=token or '', timeout=timeout,
                                grpc_options=LITE_GRPC_OPTIONS if is_lite_path(uri) else {})
    except MilvusException as error:
        if is_lite_path(uri) and 'Open local milvus failed' in error.message:
            raise ConnectionError(
                f'cannot open the Milvus Lite file {uri!r}: {error.message}. A Lite file is open in one '
                f'process at a time, until that process exits: stop the other process (another job, a '
                f'notebook, a Ray worker) or use a Milvus server') from error
        raise ConnectionError(f'cannot reach Milvus at {uri} within {timeout:g} s: {error.message}; '
                              f'check the address and that the server is running') from error


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a collection's schema, whichever API described it."""

    name: str
    dtype: Any
    dim: Optional[int] = None
    is_primary: bool = False
    auto_id: bool = False


class Target:
    """A collection behind either API: ``MilvusClient`` + name, or an ORM ``Collection``.

    The sink, the resume step and the hub operators talk to this, never to pymilvus
    directly, so the ORM's removal in pymilvus 3.1 touches this class only.
    """

    def __init__(self, collection: Any, uri: Optional[str] = None, token: str = '',
                 client: Any = None) -> None:
        if isinstance(collection, str):
            if client is None and not uri:
                raise TypeError(f'collection {collection!r} is a name: say where it is with uri= '
                                f"(a Milvus Lite file such as './vectors.db', or 'http://host:19530'), "
                                f'or pass a pymilvus Collection')
            self.name, self.orm = collection, None
            self.uri = uri or '(the given client)'
            self.client = client if client is not None else connect(uri, token)
            self._owns_client = client is None and not is_lite_path(uri)
        elif hasattr(collection, 'schema') and hasattr(collection, 'insert') and hasattr(collection, 'name'):
            self.name, self.orm, self.client, self._owns_client = collection.name, collection, None, False
            self.uri = f'connection {getattr(collection, "_using", "default")!r}'
        else:
            raise TypeError(f'collection must be a collection name (with uri=) or a pymilvus Collection, '
                            f'got {type(collection).__name__}')
        self._loaded = False

    def __str__(self) -> str:
        return f'Milvus collection {self.name!r} at {self.uri}'

    def exists(self) -> bool:
        if self.orm is not None:
            return True
        return self.client.has_collection(self.name)

    def fields(self) -> List[Field]:
        if self.orm is not None:
            with warnings.catch_warnings():   # the ORM warns on every call
                warnings.simplefilter('ignore', DeprecationWarning)
                return [Field(f.name, f.dtype, _dim(f.params), f.is_primary, bool(f.auto_id))
                        for f in self.orm.schema.fields]
        described = self.client.describe_collection(self.name)
        return [Field(f['name'], f['type'], _dim(f.get('params', {})), bool(f.get('is_primary')),
                      bool(f.get('auto_id', described.get('auto_id', False)) and f.get('is_primary')))
                for f in described['fields']]

    def create(self, fields: Sequence[Field], metric_type: str, index_params: Optional[Dict[str, Any]]) -> None:
        """Create the collection with these fields and an index on its vector field."""
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
        self.client.create_collection(self.name, schema=schema)
        # sync=False: waiting for the index asks Milvus Lite for a timestamp it does not
        # serve (an error logged by its gRPC server); an index on an empty collection is
        # ready at once anyway.
        self.client.create_index(self.name, params, sync=False)
        self.client.load_collection(self.name)
        self._loaded = True

    def load(self) -> None:
        if not self._loaded:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', DeprecationWarning)
                self.orm.load() if self.orm is not None else self.client.load_collection(self.name)
            self._loaded = True

    def put(self, rows: List[Dict[str, Any]], upsert: bool) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            if self.orm is not None:
                result = self.orm.upsert(rows) if upsert else self.orm.insert(rows)
                return int(result.upsert_count if upsert else result.insert_count)
            result = (self.client.upsert if upsert else self.client.insert)(self.name, rows)
            return int(result['upsert_count' if upsert else 'insert_count'])

    def existing(self, key_field: str, keys: Sequence[Any]) -> Set[Any]:
        """Which of ``keys`` the collection holds (one query)."""
        if not keys:
            return set()
        self.load()
        expression = f'{key_field} in {json.dumps(list(keys))}'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            if self.orm is not None:
                found = self.orm.query(expression, output_fields=[key_field])
            else:
                found = self.client.query(self.name, filter=expression, output_fields=[key_field])
        return {row[key_field] for row in found}

    def search(self, query: Any, anns_field: str, limit: int, output_fields: List[str],
               search_params: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The ``limit`` nearest rows to ``query``: dicts with ``id``, ``distance``, ``entity``."""
        vector = _as_vector(query)
        if vector is None:
            raise TypeError(f'a search query is a vector (a 1-D numeric array or list), got {type(query).__name__}')
        self.load()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            if self.orm is not None:
                hits = self.orm.search([vector], anns_field, search_params, limit=limit, output_fields=output_fields)
                return [{'id': hit.id, 'distance': hit.distance,
                         'entity': {name: hit.entity.get(name) for name in output_fields}} for hit in hits[0]]
            hits = self.client.search(self.name, data=[vector], anns_field=anns_field, limit=limit,
                                      output_fields=output_fields, search_params=search_params)
        return list(hits[0])

    def flush(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            self.orm.flush() if self.orm is not None else self.client.flush(self.name)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _dim(params: Dict[str, Any]) -> Optional[int]:
    dim = (params or {}).get('dim')
    return int(dim) if dim is not None else None


# -- typing the first rows -----------------------------------------------------------------


def _as_vector(value: Any) -> Optional[Any]:
    """``value`` as a float32 vector, or None when it is not one: 1-D numeric arrays and
    lists of numbers; ``bytes`` are packed bits (a binary fingerprint), unpacked to 0/1."""
    import numpy as np
    if isinstance(value, (bytes, bytearray)):
        return np.unpackbits(np.frombuffer(bytes(value), dtype=np.uint8)).astype(np.float32)
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(x, (int, float, np.number)) for x in value):
            return None
        return np.asarray(value, dtype=np.float32)
    if hasattr(value, '__array__') and not isinstance(value, (str, np.generic)):
        array = np.asarray(value)
        if array.ndim == 1 and array.size and array.dtype.kind in 'biuf':
            return array.astype(np.float32, copy=False)
    return None


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
    key = row[names[0]]
    key_type = _scalar_type(key)
    if key_type not in (DataType.INT64, DataType.VARCHAR):
        raise TypeError(f'{where}: the key field {names[0]!r} is a {type(key).__name__} ({key!r}); a Milvus '
                        f'primary key is an int or a str, and the first field of to_milvus[...] is the key')
    fields = [Field(names[0], key_type, is_primary=True)]
    for name in names[1:]:
        vector = _as_vector(row[name])
        if vector is not None:
            fields.append(Field(name, DataType.FLOAT_VECTOR, dim=len(vector)))
        else:
            fields.append(Field(name, _scalar_type(row[name])))
    if not any(field.dim for field in fields):
        raise TypeError(f'{where}: none of the fields {list(names[1:])} is a vector (a 1-D numeric array or '
                        f'list); a Milvus collection needs one')
    return fields


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

    def __init__(self, fields: Sequence[str], collection: Any, uri: Optional[str] = None, token: str = '',
                 batch_size: Optional[int] = None, on_existing: str = 'upsert', metric_type: str = 'COSINE',
                 index_params: Optional[Dict[str, Any]] = None, client: Any = None) -> None:
        super().__init__(fields, batch_size)
        if on_existing not in ('upsert', 'skip'):
            raise ValueError(f"on_existing is 'upsert' or 'skip', got {on_existing!r}")
        self.on_existing = on_existing
        self.metric_type = metric_type
        self.index_params = index_params
        self._collection, self._uri, self._token, self._client = collection, uri, token, client
        self._target: Optional[Target] = None
        self._schema: Dict[str, Field] = {}
        self.skipped = 0
        self.created = False

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = Target(self._collection, self._uri, self._token, self._client)
        return self._target

    def describe(self) -> str:
        name = self._collection if isinstance(self._collection, str) else getattr(self._collection, 'name', '?')
        return f'Milvus collection {name!r}'

    def on_write_start(self, batch: Batch) -> None:
        target = self.target
        if not target.exists():
            if not batch.rows:
                return
            target.create(fields_from_row(batch.rows[0], self.fields, batch.where(0, self.key_field)),
                          self.metric_type, self.index_params)
            self.created = True
            logger.info('created %s with fields %s', target, list(self.fields))
        self._schema = self._check_schema(target.fields())

    def _check_schema(self, fields: List[Field]) -> Dict[str, Field]:
        """The collection's field for each of the row's: by name, or, as Towhee 0.9's
        to_milvus inserted, by position when the names differ and the counts agree."""
        by_name = {field.name: field for field in fields}
        writable = [field for field in fields if not field.auto_id]
        if all(name in by_name for name in self.fields):
            schema = {name: by_name[name] for name in self.fields}
        elif len(self.fields) == len(writable):
            schema = dict(zip(self.fields, writable))
            logger.info('writing %s into the fields %s of %s, by position', list(self.fields),
                        [field.name for field in writable], self.target)
        else:
            unknown = next(name for name in self.fields if name not in by_name)
            raise ValueError(f'{self.target} has no field {unknown!r} (its fields: {list(by_name)}); name its '
                             f'fields in to_milvus[...], or all {len(writable)} of them in their order')
        key = schema[self.key_field]
        if not key.is_primary and any(field.is_primary and not field.auto_id for field in fields):
            raise ValueError(f"the first field of to_milvus[...] is the key, but {self.target}'s primary key is "
                             f'not {key.name!r}; put the primary key first')
        return schema

    def _convert(self, batch: Batch) -> Tuple[List[Dict[str, Any]], Optional[Exception]]:
        """The batch's rows as pymilvus wants them, up to the first bad row (and its error)."""
        rows: List[Dict[str, Any]] = []
        for index, row in enumerate(batch.rows):
            try:
                rows.append({self._schema[name].name: value_for(self._schema[name], value)
                             for name, value in row.items()})
            except (TypeError, ValueError) as error:
                return rows, type(error)(f'{batch.where(index, self.key_field)}: {error} (writing {self.target})')
        return rows, None

    def write(self, batch: Batch) -> int:
        rows, error = self._convert(batch)
        written = self._put(rows) if rows else 0
        if error is not None:
            if written:
                error.add_note(f'the {written} rows before it in its batch were written, as were all earlier batches')
            raise error
        return written

    def _put(self, rows: List[Dict[str, Any]]) -> int:
        key = self._schema[self.key_field]
        if not key.is_primary:   # an auto_id collection: Milvus makes the keys
            return self.target.put(rows, upsert=False)
        latest = {row[key.name]: row for row in rows}   # a key twice in a batch: the last wins
        rows = list(latest.values())
        if self.on_existing == 'skip':
            stored = self.target.existing(key.name, list(latest))
            self.skipped += len(stored)
            rows = [row for row in rows if row[key.name] not in stored]
            return self.target.put(rows, upsert=False) if rows else 0
        return self.target.put(rows, upsert=True)

    def on_write_complete(self, result: WriteResult) -> WriteResult:
        if result.insert_count:
            self.target.flush()
        result.details.update(created=self.created, skipped=self.skipped)
        self.close()
        return result

    def on_write_failed(self, error: BaseException) -> None:
        self.close()

    def existing_keys(self, keys: Sequence[Any]) -> Set[Any]:
        target = self.target
        if not target.exists():
            return set()
        key_field = next((field.name for field in target.fields() if field.is_primary), self.key_field)
        return target.existing(key_field, [_plain_key(key) for key in keys])

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None


def _plain_key(key: Any) -> Any:
    import numpy as np
    return key.item() if isinstance(key, np.generic) else key


def value_for(field: Field, value: Any) -> Any:
    """``value`` converted for ``field``, or a TypeError/ValueError saying what was expected."""
    import numpy as np
    from pymilvus import DataType
    if field.dtype == DataType.FLOAT_VECTOR:
        vector = _as_vector(value)
        if vector is None:
            raise TypeError(f'field {field.name!r} is a {type(value).__name__}, not a vector of {field.dim} numbers')
        if len(vector) != field.dim:
            raise ValueError(f'field {field.name!r} has {len(vector)} dimensions, the collection holds {field.dim}')
        return vector
    if field.dtype == DataType.BINARY_VECTOR:
        if not isinstance(value, (bytes, bytearray)):
            vector = _as_vector(value)
            if vector is None:
                raise TypeError(f'field {field.name!r} is a {type(value).__name__}, not a binary vector')
            value = np.packbits(vector.astype(bool)).tobytes()
        if len(value) * 8 != field.dim:
            raise ValueError(f'field {field.name!r} has {len(value) * 8} bits, the collection holds {field.dim}')
        return bytes(value)
    if field.dtype == DataType.INT64 and field.is_primary:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f'key {field.name!r} is a {type(value).__name__} ({value!r}); the collection\'s '
                            f'key is an int (int64): convert it first, e.g. runas_op[{field.name!r}, '
                            f'{field.name!r}](func=int)')
        return int(value)
    if field.dtype == DataType.VARCHAR and field.is_primary and not isinstance(value, str):
        raise TypeError(f'key {field.name!r} is a {type(value).__name__} ({value!r}); the collection\'s key '
                        f'is a string (varchar): convert it first, e.g. runas_op[{field.name!r}, '
                        f'{field.name!r}](func=str)')
    return value.item() if isinstance(value, np.generic) else value
