"""Milvus Lite out of the user's process: one server process per Lite file, owned by this one.

``MilvusClient('./x.db')`` runs Milvus Lite's gRPC server in threads of the calling
process. In a Ray driver that costs the driver the whole collection's memory (about 10 GB
per million 384-d vectors), puts gRPC server threads in the process that then starts
Ray's (Ray's dashboard failed to start under them), and a pipe's insert once waited
forever on a server whose threads were gone. So towhee_ray serves a Lite file from a
process of its own (``lite_process.py``): started on first use, reused by every later
sink, resume step and operator of this process on that file, and stopped at exit. It
also stops when this process dies in any way (its stdin pipe closes, or its parent is no
longer this process), so a killed job leaves no server behind and the file is free for the
next run: a server whose owner died closes the file within 30 s, and a new owner that
finds one still closing it waits for it (:data:`ORPHAN_WAIT_SECONDS`) instead of failing.

One process owns a file at a time (Milvus Lite locks it): a second process that asks for
the same file gets a ``ConnectionError`` saying another process holds it.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), 'doc.db')
>>> served(path).startswith('http://127.0.0.1:')
True
>>> release(path)
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

logger = logging.getLogger(__name__)

#: How long a Lite server may take to open its file and listen: about 1 s here (the
#: import of milvus_lite), more when it replays a long write-ahead log or the machine is
#: loaded; a server not up by then is an error that shows its log.
STARTUP_TIMEOUT_SECONDS = 120.0
#: How long a server may take to stop at exit (it finishes the calls in flight, up to 5 s,
#: and closes the file) before it is killed; what it committed stays either way.
STOP_TIMEOUT_SECONDS = 15.0
#: How long a new owner waits for the server of a process that died (a killed job) to
#: close the file: the server notices at once and closes within its own 30 s bound
#: (lite_process.CLOSE_TIMEOUT_SECONDS), longer on a loaded machine.
ORPHAN_WAIT_SECONDS = 90.0

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lite_process.py')
#: The environment variable that tells a server where its log is: a server whose owner died
#: removes it when it closed the file cleanly (the owner removes it otherwise), so jobs leave
#: no logs behind in the temporary folder unless something went wrong.
LOG_ENV = 'TOWHEE_RAY_LITE_LOG'


class LiteServer:
    """The server process of one Lite file; :func:`served` makes and keeps them."""

    def __init__(self, path: str) -> None:
        self.path = path
        reply = self._start()
        if reply.get('locked') and _wait_for_orphan(path):
            reply = self._start()   # the killed job's server let go of the file
        if 'port' not in reply:
            raise ConnectionError(self._refusal(reply))
        self.uri = f'http://127.0.0.1:{reply["port"]}'
        logger.info('Milvus Lite for %s serves at %s (pid %d)', path, self.uri, self.process.pid)

    def _start(self) -> Dict[str, object]:
        """Start the server process; its first line (its port, or why not: then it is stopped)."""
        log = tempfile.NamedTemporaryFile(prefix='towhee_ray-milvus-lite-', suffix='.log', delete=False)
        self.log_path = log.name
        # stdin: the owner's hold on it. A session of its own: a Ctrl-C in the terminal
        # reaches the owner only, which then stops the server at exit.
        self.process = subprocess.Popen([sys.executable, _SCRIPT, self.path, str(os.getpid())],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                        start_new_session=True, env={**os.environ, LOG_ENV: log.name})
        log.close()
        try:
            reply = self._first_line()
        except BaseException:
            self.stop()
            raise
        if 'port' not in reply:
            self.stop()
        return reply

    def _first_line(self) -> Dict[str, object]:
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(STARTUP_TIMEOUT_SECONDS):
                raise ConnectionError(f'the Milvus Lite server for {self.path!r} did not start within '
                                      f'{STARTUP_TIMEOUT_SECONDS:g} s{self._log_tail()}')
        line = self.process.stdout.readline()
        try:
            return json.loads(line)
        except ValueError:
            code = self.process.wait(STOP_TIMEOUT_SECONDS)
            raise ConnectionError(f'the Milvus Lite server for {self.path!r} exited with code {code} as it '
                                  f'started{self._log_tail()}') from None

    def _refusal(self, reply: Dict[str, object]) -> str:
        if reply.get('locked'):
            return (f'cannot open the Milvus Lite file {self.path!r}: another process holds it. A Lite file '
                    f'is open in one process at a time, until that process exits: stop the other process '
                    f'(another job, a notebook) or use a Milvus server (uri="http://host:19530")')
        return (f'the Milvus Lite server for {self.path!r} failed to start: {reply.get("error")}'
                f'{self._log_tail()}')

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors='replace') as log:
                tail = log.read().splitlines()[-lines:]
        except OSError:
            return ''
        return ('; its log (' + self.log_path + ') ends:\n' + '\n'.join(tail)) if tail else ''

    def alive(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        """A ``ConnectionError`` when the server process is gone (killed, crashed)."""
        if not self.alive():
            raise ConnectionError(f'the Milvus Lite server for {self.path!r} (pid {self.process.pid}) exited '
                                  f'with code {self.process.returncode}{self._log_tail()}')

    def stop(self) -> None:
        """Let go of the server: it finishes its calls, closes the file and exits."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning('the Milvus Lite server for %s did not stop within %g s; killing it',
                           self.path, STOP_TIMEOUT_SECONDS)
            self.process.kill()
            self.process.wait()
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
        if self.process.returncode == 0 or _empty(self.log_path):
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


def _empty(path: str) -> bool:
    """Whether a server's log holds nothing worth keeping (a server refused a locked file
    says why on stdout, not in its log)."""
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _orphans(path: str) -> List[int]:
    """The pids of towhee_ray Lite servers of ``path`` whose owner died (each runs as
    ``lite_process.py PATH OWNER_PID``, and its parent is no longer that owner): they are
    closing the file. Linux only (``/proc``); elsewhere none are found."""
    found = []
    for entry in os.listdir('/proc') if os.path.isdir('/proc') else ():
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as file:
                arguments = [os.fsdecode(part) for part in file.read().split(b'\0')[:-1]]
            with open(f'/proc/{entry}/stat', 'rb') as file:
                parent = int(file.read().rsplit(b')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if (len(arguments) >= 3 and arguments[-3].endswith('lite_process.py') and arguments[-2] == path
                and arguments[-1].isdigit() and int(arguments[-1]) != parent):
            found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: its file is closed)."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as file:
            return file.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except (OSError, IndexError):
        return False


def _wait_for_orphan(path: str) -> bool:
    """Wait, up to :data:`ORPHAN_WAIT_SECONDS`, for the servers of ``path`` whose owner
    died to exit; True if there were some and they did."""
    orphans = _orphans(path)
    if not orphans:
        return False
    logger.info('waiting for the Milvus Lite server of a process that died (pid %s) to close %s',
                ', '.join(map(str, orphans)), path)
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    while time.monotonic() < deadline:
        if not any(map(_running, orphans)):
            return True
        time.sleep(0.2)
    return False


_servers: Dict[str, LiteServer] = {}
_lock = threading.Lock()


def _key(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _check_path(path: str, key: str) -> None:
    """Make the Lite file's parent folder; an error saying what to do when ``path`` cannot
    be one (Milvus Lite 3 keeps a file's collections in a folder of that name)."""
    if os.path.exists(key) and not os.path.isdir(key):
        raise FileExistsError(f'{path!r} is a file, and Milvus Lite keeps its collections in a folder of '
                              f"that name (a file is another program's, or of an older Milvus Lite, which "
                              f'this one cannot read): give another path ending in .db')
    try:
        os.makedirs(os.path.dirname(key), exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f'cannot make the folder of the Milvus Lite file {path!r} '
                                   f'({error.strerror}: {error.filename}); give a path where this '
                                   f'process may write') from error


def server_for(path: str) -> LiteServer:
    """The running server of the Lite file ``path``, started if needed (and started again
    if its process died: what it had committed is on disk)."""
    key = _key(path)
    with _lock:
        server = _servers.get(key)
        if server is not None and not server.alive():
            logger.warning('the Milvus Lite server for %s had exited (code %s); starting it again',
                           path, server.process.returncode)
            server.stop()
            server = None
        if server is None:
            _check_path(path, key)
            if not _servers:
                atexit.register(release_all)
            server = _servers[key] = LiteServer(key)
        return server


def served(path: str) -> str:
    """The address (``http://127.0.0.1:PORT``) at which this process serves the Lite file
    ``path``; the first call starts its server process. A file that this process already
    opened through pymilvus itself (``connections.connect(uri='x.db')``, as Towhee 0.9
    scripts do: Lite then runs in this process) is reached where pymilvus serves it."""
    return _opened_by_pymilvus(path) or server_for(path).uri


def _opened_by_pymilvus(path: str) -> Optional[str]:
    manager = sys.modules.get('milvus_lite.server_manager')
    servers = getattr(getattr(manager, 'server_manager_instance', None), '_servers', None) or {}
    entry = servers.get(os.path.abspath(path))
    return f'http://127.0.0.1:{entry[2]}' if entry else None


def running(path: str) -> Optional[LiteServer]:
    """The server of ``path`` if this process runs one, else None (starts nothing)."""
    return _servers.get(_key(path))


def release(path: str) -> None:
    """Stop serving the Lite file ``path`` (its data stays on disk), so that another
    process can open it; the next use here starts a server again. Clients connected to it
    stop working."""
    with _lock:
        server = _servers.pop(_key(path), None)
    if server is not None:
        server.stop()


def release_all() -> None:
    """Stop every Lite server of this process (registered with ``atexit``)."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for server in servers:   # let go of all at once, then wait for each
        if server.process.stdin is not None:
            try:
                server.process.stdin.close()
            except OSError:
                pass
    for server in servers:
        try:
            server.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        server.stop()
