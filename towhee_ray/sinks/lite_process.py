"""The Milvus Lite server process of one Lite file (started by :mod:`towhee_ray.sinks.lite_server`).

    python lite_process.py DATA_DIR OWNER_PID

Run by path, not as ``-m towhee_ray...``: it imports only the standard library and
milvus_lite, so it starts in about a second. It serves ``DATA_DIR`` (the ``.db`` path,
which Milvus Lite uses as its folder) on a free loopback port, prints one JSON line
(``{"port": N}``, or ``{"error": ..., "locked": bool}``) and serves until its owner lets
go: the owner closing its end of the stdin pipe (at exit, or when its process dies, however
it dies) or the owner process no longer being its parent. It then stops the gRPC server
and closes the file, which releases Milvus Lite's lock on it. An owner that died before it
read the JSON line leaves nobody to serve: the server closes the file and exits at once,
and removes the log the owner made for it.
"""
import json
import os
import signal
import sys
import threading

#: How often the server looks whether its owner is still its parent (the stdin pipe
#: tells at once; this covers an owner whose pipe end a forked child inherited).
PARENT_POLL_SECONDS = 0.5
#: How long closing may take once the owner let go (Milvus Lite finishing its calls and
#: closing the file); past it the process exits anyway: what was committed is in the
#: write-ahead log, as after a kill. The next owner waits for an orphaned server up to
#: lite_server.ORPHAN_WAIT_SECONDS, which is longer.
CLOSE_TIMEOUT_SECONDS = 30.0
#: gRPC threads serving calls: the sink's writes come one batch at a time, the ann
#: operators' from a Towhee pipe's pool threads.
MAX_WORKERS = 16


def _wait_for_owner(parent: int) -> None:
    released = threading.Event()

    def read_stdin() -> None:
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except OSError:
            pass
        released.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: released.set())
    while not released.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            break


def main() -> int:
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]   # this folder's modules (milvus.py, ...) must not shadow packages
    data_dir = sys.argv[1]
    parent = int(sys.argv[2]) if len(sys.argv) > 2 else os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the owner handles Ctrl-C, then lets go
    try:
        from milvus_lite.adapter.grpc.server import start_server_in_thread
        from milvus_lite.exceptions import DataDirLockedError
        try:
            server, db, port = start_server_in_thread(data_dir, host='127.0.0.1', port=0,
                                                      max_workers=MAX_WORKERS)
        except DataDirLockedError as error:
            _tell_owner({'error': str(error), 'locked': True})
            return 3
    except Exception as error:   # reported to the owner, which raises it with the log
        _tell_owner({'error': f'{type(error).__name__}: {error}', 'locked': False})
        return 2
    try:
        if _tell_owner({'port': port, 'pid': os.getpid()}):   # else nobody is left to serve
            _wait_for_owner(parent)
    finally:
        closer = threading.Thread(target=_close, args=(server, db), daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_SECONDS)
        if closer.is_alive():
            print(f'closing took more than {CLOSE_TIMEOUT_SECONDS:g} s; exiting with what was committed',
                  file=sys.stderr, flush=True)
            os._exit(4)
    _remove_log()
    return 0


def _tell_owner(reply: dict) -> bool:
    """Write the first line, the one the owner waits for; False when the owner is gone (it
    died while this process started, and its end of the pipe with it): then there is no one
    to read the log either, so it is removed."""
    try:
        print(json.dumps(reply), flush=True)
        return True
    except BrokenPipeError:
        # stdout's unwritten line would fail again at exit: send it nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _remove_log()
        return False


def _remove_log() -> None:
    """A clean close leaves nothing to read in the log the owner made for this process
    (named by lite_server.LOG_ENV): remove it, also when the owner died and cannot."""
    log = os.environ.get('TOWHEE_RAY_LITE_LOG')
    if log:
        try:
            os.unlink(log)
        except OSError:
            pass


def _close(server, db) -> None:
    server.stop(grace=5).wait(10)
    db.close()


if __name__ == '__main__':
    sys.exit(main())
