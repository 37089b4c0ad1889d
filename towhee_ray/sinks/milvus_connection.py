"""Reaching Milvus: one helper for every Milvus part of towhee_ray (the sink, the resume
step, the hub operators).

``uri`` is a Milvus Lite file path (``'./vectors.db'``) or a server URL
(``'http://host:19530'``, with ``token``). A Lite file is served by a process of its own
that this process owns (:mod:`~towhee_ray.sinks.lite_server`): nothing of Milvus runs in
the user's process, only the pymilvus client. Only one process may own a file at a time,
so a Lite file is never opened in a Ray worker; a server is reached from anywhere.

pymilvus is imported on first use: ``import towhee_ray`` never pays for it.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, Optional, Tuple

from towhee_ray.extras import require
from towhee_ray.quiet import quiet_pymilvus

#: How long to wait for a Milvus server before ``ConnectionError``. pymilvus alone waits
#: 10 s for a server that accepts connections and never answers (measured against a
#: listening socket that never replies); 15 s leaves room for a server that is starting,
#: within the 30 s the README promises.
CONNECT_TIMEOUT_SECONDS = 15.0

#: The deadline of every call to Milvus (an insert, a query, a flush): a server that stops
#: answering is an error within this time, never a wait forever. A flush of a large
#: collection on a loaded 2-vCPU machine took up to ~40 s here.
CALL_TIMEOUT_SECONDS = 120.0

#: Milvus Lite is this process's own server on the loopback: it can be slow (a background
#: index build on a loaded machine kept it from answering within 15 s once).
LITE_TIMEOUT_SECONDS = 300.0

#: One client per served Lite file, reused by every sink and operator of this process
#: (keyed by the server's address too: a server started again is a new client).
_lite_clients: Dict[Tuple[str, str], Any] = {}
_lite_lock = threading.Lock()

#: Milvus Lite's gRPC server refuses the client's keep-alive pings every 10 s
#: ("too_many_pings"); on the loopback there is no connection to keep alive.
LITE_GRPC_OPTIONS = {'grpc.keepalive_time_ms': 2 ** 31 - 1}


def is_lite_path(uri: Any) -> bool:
    """A Milvus Lite file (a path, ``str`` or ``os.PathLike``) rather than a server URL.

    >>> import pathlib
    >>> is_lite_path('./vectors.db'), is_lite_path(pathlib.Path('v.db')), is_lite_path('http://host:19530')
    (True, True, False)
    """
    return '://' not in os.fspath(uri)


def normal_uri(uri: Any) -> Any:
    """``uri`` as the one form every Milvus part uses: a server URL as given, a Lite path
    (``str`` or ``os.PathLike``) as a ``str`` with ``~`` expanded; None stays None.

    >>> import pathlib
    >>> normal_uri(pathlib.Path('v.db')), normal_uri('http://localhost:19530'), normal_uri(None)
    ('v.db', 'http://localhost:19530', None)
    >>> normal_uri('~/v.db') == os.path.join(os.path.expanduser('~'), 'v.db')
    True
    """
    if uri is None or not isinstance(uri, (str, os.PathLike)):
        return uri
    uri = os.fspath(uri)
    return os.path.expanduser(uri) if isinstance(uri, str) and is_lite_path(uri) else uri


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


def connect(uri: Any, token: str = '', timeout: float = CONNECT_TIMEOUT_SECONDS) -> Any:
    """A ``pymilvus.MilvusClient`` for ``uri`` (a Lite ``.db`` path or a server URL).

    A Lite path is served by a process of this one's, started on first use (see
    :mod:`~towhee_ray.sinks.lite_server`). An unreachable server is a ``ConnectionError``
    naming the address within ``timeout`` seconds; a Lite file another process holds is a
    ``ConnectionError`` saying so.

    >>> import tempfile, os
    >>> client = connect(os.path.join(tempfile.mkdtemp(), 'doc.db'))
    >>> client.list_collections()
    []
    """
    require('pymilvus', 'Milvus', "pip install 'towhee-ray[milvus]' (pymilvus and milvus-lite)")
    uri = str(normal_uri(uri))
    if not is_lite_path(uri):
        return _client(uri, token, timeout)
    if not uri.endswith('.db'):
        raise ValueError(f'{uri!r} is neither a server URL (http://host:19530) nor a Milvus Lite '
                         f"file: a Lite file's name ends with .db, e.g. './vectors.db'")
    if _in_ray_worker():
        raise RuntimeError(
            f'the Milvus Lite file {uri!r} cannot be opened in a Ray worker: the worker would own it '
            f'until it exits, and the driver could not open it. Write and search from the driver '
            f'(to_milvus, or the ann operators outside set_parallel/ray_op), or use a Milvus server')
    from towhee_ray.sinks import lite_server
    address = lite_server.served(uri)
    key = (os.path.realpath(os.path.abspath(uri)), address)
    with _lite_lock:
        client = _lite_clients.get(key)
        if client is None:
            client = _lite_clients[key] = _client(address, token, LITE_TIMEOUT_SECONDS, lite=uri)
        return client


def call_timeout(uri: str) -> float:
    """The deadline of one call to the Milvus at ``uri``.

    >>> call_timeout('./x.db') > call_timeout('http://localhost:19530')
    True
    """
    return LITE_TIMEOUT_SECONDS if is_lite_path(normal_uri(uri)) else CALL_TIMEOUT_SECONDS


def _client(uri: str, token: str, timeout: float, lite: Optional[str] = None) -> Any:
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException
    try:
        with quiet_pymilvus():
            return MilvusClient(uri=uri, token=token or '', timeout=timeout,
                                grpc_options=LITE_GRPC_OPTIONS if lite else {})
    except MilvusException as error:
        where = f'the Milvus Lite server of {lite!r} ({uri})' if lite else f'Milvus at {uri}'
        raise ConnectionError(f'cannot reach {where} within {timeout:g} s: {error.message}; '
                              f'check the address and that the server is running') from error
