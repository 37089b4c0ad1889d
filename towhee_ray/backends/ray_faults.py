"""Ray worker processes that die: which call a dead worker was running, replacing a dead
actor, and the error once a call's tries are spent.

Shared by the ``ray`` backend's steps (chunks on tasks and actors) and by ``ray_op`` (calls
on a pool of actors). A Ray worker runs the calls sent to it one at a time, in the order
sent; when its process dies, every call sent to it fails with one of :data:`WORKER_DIED`,
but only the earliest of them was running (and may be the cause): the others only waited
behind it. So only that one counts a death, and only the first report of a death replaces
the actor (each slot counts its actors' generations to tell the first report from later
ones).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterable, List, Optional, Protocol, TypeVar

import ray
from ray import exceptions as ray_errors

from towhee_ray.backends.base import WorkerError

logger = logging.getLogger(__name__)

# Ray's errors that mean a call's worker process (or its node) died; a step's own errors
# never arrive as exceptions (guard.py turns them into values).
WORKER_DIED = (ray_errors.WorkerCrashedError, ray_errors.RayActorError, ray_errors.NodeDiedError,
               ray_errors.OutOfMemoryError, ray_errors.ObjectLostError)


class SentCall(Protocol):
    """A call sent to a worker slot: a chunk of a step, or one call of a ``ray_op``."""

    slot: int          # which worker slot it was sent to
    generation: int    # which actor of that slot (0, then one more per replacement)
    first: int         # its place in the order calls were sent
    ref: Any           # Ray's reference to its result
    deaths: int        # workers that died while running it


Call = TypeVar('Call', bound=SentCall)


def running_when_died(noticed: Call, in_flight: Iterable[Call]) -> Call:
    """The call that ``noticed``'s worker was running when it died: the earliest call sent
    to the same worker (slot and generation) that did not finish. Calls that finished, or
    failed for another reason, are passed over; one still pending counts, since on a dead
    worker it can no longer finish (the notice of its failure may merely come later)."""
    for earlier in sorted(in_flight, key=lambda call: call.first):
        if (earlier.slot == noticed.slot and earlier.generation == noticed.generation
                and earlier.first < noticed.first):
            try:
                ray.get(earlier.ref, timeout=0)
            except (ray_errors.GetTimeoutError, *WORKER_DIED):
                return earlier
            except Exception:   # failed for another reason
                continue
    return noticed


def unloadable_arguments(error: BaseException) -> Optional[BaseException]:
    """The exception a worker raised while unpickling a call's arguments (the elements of a
    chunk, a ``ray_op`` call's arguments), which Ray reports as a ``RaySystemError``; None
    for any other error (Ray's own system errors carry a message, not an exception)."""
    if not isinstance(error, ray_errors.RaySystemError):
        return None
    original = getattr(getattr(error, 'cause', None) or error, 'client_exc', None)
    return original if isinstance(original, Exception) else None


def out_of_tries(call: SentCall, max_retries: int) -> bool:
    """Whether ``call`` has died more often than ``max_retries`` allows (-1: no limit)."""
    return 0 <= max_retries < call.deaths


def died_error(what: str, running: str, max_retries: int, error: BaseException) -> WorkerError:
    """The error once the worker running ``running`` (e.g. ``element #3``) died on every
    try; Ray's own error is quoted and should be given as the cause."""
    tries = f'each of its {max_retries + 1} tries' if max_retries else 'its only try'
    tries += f' (max_retries={max_retries})'
    reason = (str(error).strip().splitlines() or [''])[0]
    return WorkerError(
        f'{what}: the Ray worker process running {running} died on {tries}: a crash in native '
        f"code, os._exit(), a signal, or running out of memory. Find the cause in the worker's "
        f'log (the dashboard, or `ray logs`), or allow more tries with max_retries=. Ray said: '
        f'{type(error).__name__}: {reason}')


class ActorSlots:
    """``count`` actors, one per slot, each replaced (its operator built again) when it dies.

    ``new_actor(slot, generation)`` starts the actor of a slot; ``generation`` is 0 for the
    first one and counts the replacements.
    """

    def __init__(self, what: str, count: int, new_actor: Callable[[int, int], Any]) -> None:
        self.what = what
        self.generations = [0] * count
        self.actors: List[Any] = []
        self._new_actor = new_actor

    def start(self) -> None:
        """Start every slot's first actor (Ray starts them in the background)."""
        self.actors = [self._new_actor(slot, 0) for slot in range(len(self.generations))]

    def replace(self, slot: int, running: str, error: BaseException, rerun: str) -> None:
        """Replace the dead actor of ``slot``, which was running ``running``."""
        logger.warning('%s: actor #%d died running %s (%s); replacing it and re-running its %s',
                       self.what, slot + 1, running, type(error).__name__, rerun)
        with contextlib.suppress(Exception):
            ray.kill(self.actors[slot])
        self.generations[slot] += 1
        self.actors[slot] = self._new_actor(slot, self.generations[slot])

    def close(self) -> None:
        """Kill every actor (not when Ray is gone: a late close must not start Ray again)."""
        actors, self.actors = self.actors, []
        if ray.is_initialized():
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
