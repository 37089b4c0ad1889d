"""Ray worker processes that die, Ray going away, and the errors that say so.

Shared by the ``ray`` backend's tasks and by the actor pool (pool.py) that runs a ``ray``
step's operators and ``ray_op``. A Ray worker runs the calls sent to it one at a time, in
the order sent; when its process dies, every call sent to it fails with one of
:data:`WORKER_DIED`, but only the earliest of them was running (and may be the cause): the
others only waited behind it. So only that one counts a death (:func:`running_when_died`).
Even that one may have finished just before, its answer lost with the process; which call
crashed the worker is certain only where it was the worker's one unfinished call
(:func:`unfinished_on_worker`), which is why the actor pool runs a call alone before it
fails it.
"""
from __future__ import annotations

import builtins
import contextlib
import re
from typing import Any, Callable, Iterable, Iterator, List, Optional, Protocol, TypeVar, Union

import ray
from ray import exceptions as ray_errors

from towhee_ray.backends.base import WorkerError
from towhee_ray.guard import LoadFailure, _same_type, load_error

# Ray's errors that mean a call's worker process (or its node) died; a step's own errors
# never arrive as exceptions (guard.py turns them into values).
WORKER_DIED = (ray_errors.WorkerCrashedError, ray_errors.RayActorError, ray_errors.NodeDiedError,
               ray_errors.OutOfMemoryError, ray_errors.ObjectLostError)


class SentCall(Protocol):
    """A call sent to a worker slot: a chunk of a step, a ``ray_op`` call or batch."""

    slot: int          # which worker slot it was sent to
    generation: int    # which actor of that slot (0, then one more per replacement)
    sent: int          # its place in the order calls were sent
    ref: Any           # Ray's reference to its result
    deaths: int        # workers that died while running it


Call = TypeVar('Call', bound=SentCall)


def unfinished_on_worker(noticed: Call, in_flight: Iterable[Call]) -> List[Call]:
    """The calls sent to ``noticed``'s worker (slot and generation) that had not finished
    when it died, ``noticed`` among them, in the order sent. The first was running (or had
    just finished, its answer lost with the worker); the others waited behind it. Calls
    that finished, or failed for another reason, are passed over; one still pending
    counts, since on a dead worker it can no longer finish (the notice of its failure may
    merely come later)."""
    unfinished = [noticed]
    for call in in_flight:
        if call is noticed or call.slot != noticed.slot or call.generation != noticed.generation:
            continue
        try:
            ray.get(call.ref, timeout=0)
        except (ray_errors.GetTimeoutError, *WORKER_DIED):
            unfinished.append(call)
        except Exception:   # failed for another reason
            continue
    return sorted(unfinished, key=lambda call: call.sent)


def running_when_died(noticed: Call, in_flight: Iterable[Call]) -> Call:
    """The call that ``noticed``'s worker was running when it died: the earliest of
    :func:`unfinished_on_worker`."""
    return unfinished_on_worker(noticed, in_flight)[0]


def unloadable_arguments(error: BaseException) -> Optional[BaseException]:
    """The exception a worker raised while unpickling a call's arguments (the elements of a
    chunk, a ``ray_op`` call's arguments), which Ray reports as a ``RayTaskError`` of a
    ``RaySystemError``; None for any other error (Ray's own system errors carry a message,
    not an exception, and a result that this process could not unpickle is a bare
    ``RaySystemError``: see :func:`unloadable_result`)."""
    if not isinstance(error, ray_errors.RaySystemError) or not isinstance(error, ray_errors.RayTaskError):
        return None
    original = getattr(getattr(error, 'cause', None) or error, 'client_exc', None)
    return original if isinstance(original, Exception) else None


def unloadable_result(error: BaseException) -> Optional[BaseException]:
    """The exception this process raised while unpickling the result of a call that ran
    (its worker pickled it, but it cannot be rebuilt here: a class of a module only the
    workers can import, a ``__reduce__`` that fails), which Ray reports as a bare
    ``RaySystemError``; None for any other error."""
    if not isinstance(error, ray_errors.RaySystemError) or isinstance(error, ray_errors.RayTaskError):
        return None
    original = getattr(error, 'client_exc', None)
    return original if isinstance(original, Exception) else None


def out_of_tries(call: SentCall, max_retries: int) -> bool:
    """Whether ``call`` has died more often than ``max_retries`` allows (-1: no limit)."""
    return 0 <= max_retries < call.deaths


#: What Ray says when a worker cannot load an actor's class (``temporary_actor_method`` in its
#: function_manager.py); the worker then exits, as if the call it was given crashed it.
CLASS_NOT_LOADED = 'failed to import on the worker'
_EXCEPTION_LINE = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*(?:Error|Exception)): (.*)')


def class_not_loaded(error: BaseException) -> Optional[LoadFailure]:
    """The :class:`~towhee_ray.guard.LoadFailure` of an actor whose worker could not load its
    class, from Ray's error for its death (``None`` for any other death): no call can run on
    any actor of its kind, so no call is to blame, and none should run again. For
    towhee_ray's own actors this means the Python where the workers run has no towhee_ray,
    another version of it, or lacks a package it imports.

    >>> died = RuntimeError("The actor died ... RuntimeError: The actor with name _OperatorActor "
    ...                     "failed to import on the worker. This may be ...:\\n\\nTraceback (most recent "
    ...                     "call last):\\n  File function_manager.py, line 696\\n"
    ...                     "ModuleNotFoundError: No module named 'towhee_ray.backends.stacked'\\n")
    >>> failure = class_not_loaded(died)
    >>> type(failure.exception).__name__, failure.exception.name
    ('ModuleNotFoundError', 'towhee_ray.backends.stacked')
    >>> class_not_loaded(RuntimeError('The actor died unexpectedly before finishing this task.')) is None
    True
    """
    text = str(error)
    start = text.find(CLASS_NOT_LOADED)
    if start < 0:
        return None
    lines = text[start:].splitlines()[1:]
    cause = next((match for match in map(_EXCEPTION_LINE.fullmatch, (line.strip() for line in lines))
                  if match), None)
    kind, message = cause.groups() if cause else ('ImportError', text[start:].splitlines()[0])
    built_in = getattr(builtins, kind, None)
    if isinstance(built_in, type) and issubclass(built_in, Exception):
        exception = built_in(message)
    else:   # an exception class of a package: its name and message say it
        exception = ImportError(f'{kind}: {message}')
    if isinstance(exception, ModuleNotFoundError):
        missing = re.fullmatch(r"No module named '([^']+)'", message)
        exception.name = missing.group(1) if missing else None
    return LoadFailure(exception, '\n'.join(lines).strip(), stage='actor')


def died_error(what: str, running: str, max_retries: int, error: BaseException,
               runs: Optional[int] = None) -> WorkerError:
    """The error once the worker running ``running`` (e.g. ``element #3``) died on every
    try; Ray's own error is quoted and should be given as the cause. ``runs``: how often it
    ran and died, where that is more than ``max_retries + 1`` (it ran once more alone, to
    tell it from the calls that were waiting behind it on its worker)."""
    tries = f'each of its {max_retries + 1} tries' if max_retries else 'its only try'
    tries += f' (max_retries={max_retries})'
    if runs is not None and runs > max_retries + 1:
        tries += ' and again when run alone, to tell it from the other calls on its worker'
    reason = (str(error).strip().splitlines() or [''])[0]
    return WorkerError(
        f'{what}: the Ray worker process running {running} died on {tries}: a crash in native '
        f"code, os._exit(), a signal, or running out of memory. Find the cause in the worker's "
        f'log (the dashboard, or `ray logs`), or allow more tries with max_retries=. Ray said: '
        f'{type(error).__name__}: {reason}')


def session_gone(error: BaseException) -> bool:
    """Whether ``error`` from a Ray call means that this process's Ray session is gone or
    going: Ray no longer initialized, or objects this driver made whose owner it no longer
    knows (``ray.shutdown()`` in another thread clears them while Ray still says it is
    initialized; seen once in a full test run)."""
    return (isinstance(error, SystemExit) or not ray.is_initialized()
            or (isinstance(error, ValueError) and 'owner is unknown' in str(error)))


@contextlib.contextmanager
def ray_calls(step: str) -> Iterator[None]:
    """Ray shut down under a running stream (``ray.shutdown()`` in another thread, the
    cluster gone) surfaces in Ray's calls as a bare ``SystemExit``, as errors about an
    uninitialized Ray or about objects whose owner is unknown; each becomes a
    :class:`WorkerError` that says so."""
    try:
        yield
    except (Exception, SystemExit) as error:
        if session_gone(error):
            raise WorkerError(f'Ray was shut down while {step} was running (ray.shutdown(), or the '
                              f'cluster went away); the rest of the stream was not processed.') from error
        raise


def fetch(ref: Any, step: str, what: Union[str, Callable[[], str]]) -> Any:
    """The value behind ``ref``, the result of a call of ``step`` that ran ``what`` (e.g.
    ``elements #10-#19``, or a function saying it). Arguments the worker could not
    unpickle (a module it cannot import) raise the original error at once, naming the
    step, ``what`` and what to do; so does a result that this process cannot unpickle.
    A :class:`~towhee_ray.guard.LoadFailure` (the worker could not load the step itself)
    comes back as a value, and one of :data:`WORKER_DIED` is raised as it is: the caller
    knows whether to remember the one and to run the call again after the other."""
    try:
        with ray_calls(step):
            return ray.get(ref)
    except ray_errors.RaySystemError as error:
        original = unloadable_arguments(error)
        if original is not None:
            what = what() if callable(what) else what
            raise load_error(LoadFailure(original, ''), step, f'{step}: {what}')
        original = unloadable_result(error)
        if original is None:
            raise
        what = what() if callable(what) else what
        raise result_error(original, step, what) from error


def result_error(original: BaseException, step: str, what: str) -> BaseException:
    """The error for the result of ``what`` that its worker pickled but this process could
    not unpickle (``original``): its type, naming the step and what to do.

    >>> error = result_error(ModuleNotFoundError("No module named 'lib'"), 'map(f)', 'elements #0-#9')
    >>> type(error).__name__, str(error).split(' came back')[0]
    ('ModuleNotFoundError', 'map(f): the results of elements #0-#9')
    """
    message = (f'{step}: the results of {what} came back from their Ray worker but cannot be unpickled '
               f'in this process: {type(original).__name__}: {original}. Return what this process can '
               f'rebuild: plain data (numbers, strings, lists, dicts, arrays), or objects of classes '
               f'that it can import.')
    return _same_type(original, message)
