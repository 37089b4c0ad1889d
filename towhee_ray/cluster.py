"""Connecting to Ray: an existing connection, ``RAY_ADDRESS``, or a fresh local instance."""
from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)
_connect_lock = threading.Lock()


def connect() -> None:
    """Make sure this process is connected to Ray, starting a local instance if needed.

    In order: keep a connection the user already made with ``ray.init(...)`` (for a
    cluster); else connect to ``RAY_ADDRESS`` when it is set; else start a fresh local Ray
    (``address='local'``, never attaching to a stale instance left by another process)
    with Ray's defaults, token authentication included, and without Ray's start-up
    messages. Workers' own output (``print`` in a mapped function) still reaches the
    terminal.

    >>> connect()
    >>> import ray; ray.is_initialized()
    True
    """
    import ray

    if ray.is_initialized():
        return
    with _connect_lock:
        if ray.is_initialized():
            return
        address = os.environ.get('RAY_ADDRESS') or 'local'
        logger.info('connecting to Ray at %s', address)
        ray.init(address=address, logging_level=logging.ERROR)
