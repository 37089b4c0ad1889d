"""Cancelling the tasks of a step that was closed early, without racing Ray.

Ray 2.60 can abort the driver process (``Check failed: it != submissible_tasks_.end() Tried
to complete task that was not pending``, ray-project/ray#54846) when ``ray.cancel`` meets a
normal task whose reply is arriving at that moment; a test-suite run hit it on closing a
stream of millisecond tasks. So a closed step's tasks are not cancelled at once: they get
:data:`CLOSE_GRACE_SECONDS` to finish (chunks are sized to 0.2-0.5 s of work, so most
have), and only the ones still running then, whose reply is unlikely to be on its way,
are cancelled.

``ray.cancel`` stops a running task as a Ctrl-C would (``_thread.interrupt_main`` in the
worker), which does nothing in a process that ignores SIGINT; Ray's workers ignore it where
the process that started Ray did (a job started in the background by a shell,
``python job.py &``: exec keeps an ignored signal). So a task of towhee_ray's first puts
Python's own handler back (:func:`interruptible`), as any worker of a Ray started from a
terminal has it.

A step whose tasks write (a sink's rows, written in the workers) is different: its tasks
must have ended before the sink completes or fails, or a failed job's tasks write on after
its error, behind the sink's checks (a rerun then finds rows it did not see coming, or has
its rows overwritten by the failed job's). So its close waits, in the thread that closes
it (:func:`cancel_and_wait`): the same grace, then the cancel, then the cancelled tasks' end.

Any other step's wait runs in a thread of its own: a step is often closed by the garbage collector, and a
finalizer that waits would delay a Ctrl-C arriving meanwhile. At interpreter exit the threads
are joined before Ray's own shutdown (which stops the tasks of a driver that leaves anyway),
so no thread is inside Ray while it is torn down.
"""
from __future__ import annotations

import atexit
import logging
import signal
import threading
from typing import List

import ray

logger = logging.getLogger(__name__)

# How long a closed step's tasks may run on before they are cancelled. Chunks are cut to
# 0.2-0.5 s of work (chunking.TARGET_CHUNK_SECONDS, KNOWN_LENGTH_CHUNK_SECONDS), so a second
# lets nearly all finish; longer ones are cancelled well away from their end.
CLOSE_GRACE_SECONDS = 1.0
# How long cancel_and_wait waits for the tasks it cancelled to end: a task ends at its next
# Python instruction, or once its worker is gone; a write into a server that no longer
# answers does not hold the driver longer (ActorPool.close's CLOSE_WAIT_SECONDS).
CANCELLED_WAIT_SECONDS = 10.0

_THREAD_NAME = 'towhee_ray cancel'
_exiting = threading.Event()


def interruptible() -> None:
    """In a Ray worker, at the start of a task: let ``ray.cancel`` reach the task where the
    worker was started ignoring SIGINT (Python's own handler, as without that)."""
    if (signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def cancel_later(refs: List[ray.ObjectRef], step: str) -> None:
    """Cancel the tasks behind ``refs`` that are still running :data:`CLOSE_GRACE_SECONDS`
    from now; returns at once. Does nothing when Ray is not running (a late close must never
    start Ray again) or the interpreter is exiting."""
    if not refs or not ray.is_initialized() or _exiting.is_set():
        return
    threading.Thread(target=_cancel_unfinished, args=(refs,), daemon=True,
                     name=f'{_THREAD_NAME} {step}').start()


def cancel_and_wait(refs: List[ray.ObjectRef], step: str) -> None:
    """For a step whose tasks write: give the tasks behind ``refs``
    :data:`CLOSE_GRACE_SECONDS` to finish, cancel the ones still running, and return once
    they have ended (:data:`CANCELLED_WAIT_SECONDS` at most), so that none writes on."""
    if not refs or not ray.is_initialized() or _exiting.is_set():
        return
    cancelled = _cancel_unfinished(refs)
    try:
        if cancelled:
            _, running = ray.wait(cancelled, num_returns=len(cancelled), timeout=CANCELLED_WAIT_SECONDS,
                                  fetch_local=False)
            if running:
                logger.warning('%s: %d cancelled Ray tasks still run after %.0f s; they may write on',
                               step, len(running), CANCELLED_WAIT_SECONDS)
    except Exception:   # noqa: BLE001 - Ray shut down meanwhile: its tasks are gone with it
        if ray.is_initialized():
            logger.warning('could not wait for %d cancelled Ray tasks', len(cancelled), exc_info=True)


def _cancel_unfinished(refs: List[ray.ObjectRef]) -> List[ray.ObjectRef]:
    """Cancel the tasks behind ``refs`` still running :data:`CLOSE_GRACE_SECONDS` from now;
    returns their references."""
    try:
        _, running = ray.wait(refs, num_returns=len(refs), timeout=CLOSE_GRACE_SECONDS,
                              fetch_local=False)
        if _exiting.is_set():   # the driver leaves: Ray stops its tasks itself
            return []
        for ref in running:
            ray.cancel(ref)
        return running
    except Exception:
        # ray.shutdown() in another thread meanwhile (Ray then says 'No owner found for
        # object'): nothing is left to cancel
        if ray.is_initialized():
            logger.warning('could not cancel %d unfinished Ray tasks', len(refs), exc_info=True)
        return []


@atexit.register   # registered after `import ray`, so it runs before Ray's own shutdown
def _join_at_exit() -> None:
    _exiting.set()   # no new thread from here on: the ones running are all there is to join
    for thread in threading.enumerate():
        if thread.name.startswith(_THREAD_NAME):
            thread.join(CLOSE_GRACE_SECONDS + 1.0)
