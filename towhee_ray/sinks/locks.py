"""One job at a time writes a sink's file or folder: :class:`WriteLock`.

``to_faiss`` locks its index (and key-value) file, ``to_parquet`` its folder, from a job's
first write to its end. The lock is the OS's (``fcntl.flock``), so it dies with its
process, however the process dies: a killed job never blocks the next one.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import Any


def lock_file_for(path: Path) -> Path:
    """The lock file of a job writing ``path``.

    >>> lock_file_for(Path('data/index.bin')).as_posix()
    'data/index.bin.lock'
    """
    return path.with_name(f'{path.name}.lock')


class WriteLock:
    """One job at a time writes ``path`` (a file or a folder): an OS advisory lock
    (``fcntl.flock``) on ``lock_file``, which says which process holds it. ``call`` names
    the writer in the error (``'to_faiss'``), ``instead`` says what else the user may do.

    The OS lets go of it when the process dies, however it dies: a killed job's lock file
    may stay behind, and the next job takes it over (and removes it when done). A holder
    removes the file while it still holds it; one that opened it meanwhile sees, once it
    holds it, that it is no longer the file at that path, and opens the new one.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'index.bin'
    >>> lock = WriteLock(path, lock_file_for(path), 'to_faiss', 'give findex= another file')
    >>> lock.acquire()
    >>> try:
    ...     WriteLock(path, lock_file_for(path), 'to_faiss', 'give findex= another file').acquire()
    ... except BlockingIOError as error:
    ...     print(str(error).replace(str(path), 'PATH'))  # doctest: +ELLIPSIS
    to_faiss cannot write PATH: another job is writing PATH (this process, pid ...), and one job ...
    >>> lock.release()
    >>> lock_file_for(path).exists()
    False
    """

    def __init__(self, path: Path, lock_file: Path, call: str, instead: str) -> None:
        self.path = path
        self.lock_file = lock_file
        self._call = call
        self._instead = instead
        self._file: Any = None

    def acquire(self) -> None:
        """Hold the lock, or raise a ``BlockingIOError`` naming the process that does."""
        while True:
            # A file object, not a bare descriptor: a sink dropped without its end closes it.
            held = open(self.lock_file, 'a+b')   # pylint: disable=consider-using-with
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(held)
                held.close()
                raise BlockingIOError(f'{self._call} cannot write {self.path}: another job is writing '
                                      f'{self.path} ({holder}), and one job at a time writes it. Wait '
                                      f'for it to end and run this one again (with a key, what it stored '
                                      f'is then skipped), or {self._instead}') from None
            except OSError as error:   # ENOLCK, EOPNOTSUPP: some network and FUSE file systems
                held.close()
                raise OSError(f'{self._call} cannot lock {self.lock_file} ({error}), which keeps a second '
                              f'job from writing {self.path} at once: its file system has no file locks; '
                              f'write on a local disk') from error
            except BaseException:
                held.close()
                raise
            if self._still_at_its_path(held):
                break
            held.close()
        held.truncate(0)
        held.write(f'{os.getpid()} {socket.gethostname()}\n'.encode())
        held.flush()
        self._file = held

    def release(self) -> None:
        """Let go of the lock, removing its file (nothing when not held)."""
        if self._file is None:
            return
        held, self._file = self._file, None
        try:
            self.lock_file.unlink(missing_ok=True)   # while held: see the class's docstring
        finally:
            held.close()

    def _still_at_its_path(self, held: Any) -> bool:
        try:
            there = os.stat(self.lock_file)
        except FileNotFoundError:
            return False
        mine = os.fstat(held.fileno())
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    @staticmethod
    def _holder(held: Any) -> str:
        held.seek(0)
        words = held.read(200).decode('utf-8', 'replace').split()
        if not words or not words[0].isdigit():
            return 'a process that is starting'
        host = f' on {words[1]}' if len(words) > 1 and words[1] != socket.gethostname() else ''
        mine = 'this process, ' if not host and words[0] == str(os.getpid()) else ''
        return f'{mine}pid {words[0]}{host}'
