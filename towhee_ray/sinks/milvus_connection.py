"""Reaching Milvus: one helper for every Milvus part of towhee_ray (the sink, the resume
step, the hub operators).

``uri`` is a Milvus Lite file path (``'./vectors.db'``) or a server URL
(``'http://host:19530'``, with ``token``). Milvus Lite (pymilvus >= 3.0, milvus-lite >= 3.2)
runs inside the process that opens the file, and only one process may open a file at a
time (a second one gets "Open local milvus failed"); it keeps the file until it exits. So
a Lite file is opened once per process, never in a Ray worker, and a job killed with
SIGKILL releases it with its process.

pymilvus is imported on first use: ``import towhee_ray`` never pays for it.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import Any, Dict, Optional

from towhee_ray.extras import require

#: How long to wait for a Milvus server before ``ConnectionError``. pymilvus alone waits
#: 10 s for a server that accepts connections and never answers (measured against a
#: listening socket that never replies); 15 s leaves room for a server that is starting,
#: within the 30 s the README promises.
CONNECT_TIMEOUT_SECONDS = 15.0

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
    require('pymilvus', 'Milvus', "pip install 'towhee-ray[milvus]' (pymilvus and milvus-lite)")
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
