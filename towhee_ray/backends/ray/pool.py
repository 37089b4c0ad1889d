"""One pool of Ray actors that each hold one operator instance.

A ``ray`` step's operator (``DataCollection(...).set_parallel(2, 'ray').image.decode()``)
and :func:`towhee_ray.ray_op` both run on :class:`ActorPool`; what differs is only what
they send: a step sends chunks of elements (``process``), ``ray_op`` one call
(``call``) or a batch of calls (``call_batch``, see batching.py). So both have:

* one slot choice: a call goes to the actor with the fewest unfinished calls;
* one death and retry policy (:meth:`ActorPool.settle`): when an actor's process dies,
  the call it was running counts a death (only that one: the calls queued behind it did
  not cause it, see faults.py); the dead actor is replaced (the new one, which builds the
  operator again, starts with the next call sent to its slot); then each call that was
  sent to the dead actor runs again on an actor of the pool, except the one whose deaths
  exceed ``max_retries``, which raises :class:`~towhee_ray.WorkerError` naming the step
  and what it was running. The blame is exact: the running call may have finished just
  before the death, its answer lost with the process, while the call behind it crashed;
  so a call is failed only for a death it certainly caused, one where it was its actor's
  only unfinished call. To that end every call that was unfinished on a dead actor runs
  again *alone*: no call is sent to its actor after it until it answers (calls wait in
  the driver, in the order sent, while every actor runs a call alone). A call out of tries
  whose last death was in doubt (other calls were unfinished on its actor) runs once more
  alone: it either answers (it was not the cause) or dies alone and fails. A batch of
  several rows that was running is not counted against: its rows run again one at a time
  (:class:`BatchDied`), so that the next death names the row that causes it and the other
  rows go on;
* one load-failure path: an actor that cannot load the operator (a module it cannot
  import) or build it (its ``__init__`` raised) lives on and answers every call with that
  :class:`~towhee_ray.guard.LoadFailure`; the pool raises it at once, naming the step,
  and raises it again for any later call without asking Ray;
* one watch on placement: actors that wait long for resources other work holds (a
  ``ray_op`` that took every CPU or the GPU) are reported, naming what holds them
  (resources.py's :class:`~towhee_ray.backends.ray.resources.PlacementWatch`);
* one name (names.py): ``operator image/decode`` or ``ray_op(image/decode)`` in every
  error, ``towhee_ray <that name> #1`` for its actors in Ray's dashboard.
"""
from __future__ import annotations

import collections
import contextlib
import inspect
import itertools
import logging
import os
import threading
import traceback
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

import ray

from towhee_ray import cluster
from towhee_ray.backends.chunking import timed_map
from towhee_ray.backends.ray import names, resources
from towhee_ray.backends.ray.faults import (WORKER_DIED, class_not_loaded, died_error, fetch, out_of_tries,
                                            ray_calls, unfinished_on_worker)
from towhee_ray.backends.ray.heap import keep_freed_heap
from towhee_ray.backends.ray.shipping import Payload
from towhee_ray.backends.stacked import stacked
from towhee_ray.checks import shown
from towhee_ray.guard import (RAY_OP_INSTEAD, Failure, LoadFailure, SentOutputs, SentResult, UnpicklableCall,
                              gathered, load_error, worker_note)

logger = logging.getLogger(__name__)

# What each actor asks of Ray by default. 0 CPUs: an actor holds an operator between calls
# and must not hold a CPU while idle, or a chain whose actors outnumber the CPUs (three
# operator steps of two actors on a 2-CPU machine) would wait forever for CPUs held by
# other steps' actors. SPREAD: the actors of one pool go to different nodes where they can.
ACTOR_REMOTE_ARGS: Dict[str, Any] = {'num_cpus': 0, 'scheduling_strategy': 'SPREAD'}

#: What :meth:`ActorPool.settle` returns for a call whose actor died and that was sent again.
RESENT = object()
# How long close() waits, after killing the actors, for the calls they were running to end
# (their actors' processes gone): Ray reports a killed actor's death within a second here;
# a node that no longer answers does not hold the driver longer than this.
CLOSE_WAIT_SECONDS = 10.0

_pool_numbers = itertools.count(1)


class BatchDied(Exception):
    """The actor of a batch of several rows died while running it: which row was to blame
    is unknown, so none counts a death; the batch's rows are to run again one at a time."""


class PoolCall:
    """A call sent to the pool: ``method`` of the actor, its ``args``, ``what`` it runs
    (for errors: ``elements #10-#19``, ``a call with arguments (5,)``; or a function that
    says it, called only when needed: describing arguments can cost more than the call)
    and how many ``rows`` (a batch of rows of a ``ray_op`` has more than one)."""

    __slots__ = ('method', 'args', '_what', 'rows', 'sent', 'slot', 'generation', 'ref', 'deaths',
                 'doubtful', 'suspect', 'alone', 'outcome', 'unsent')

    def __init__(self, method: str, args: Tuple[Any, ...], what: Union[str, Callable[[], str]],
                 rows: int = 1) -> None:
        self.method = method
        self.args: Optional[Tuple[Any, ...]] = args
        self._what = what
        self.rows = rows
        self.sent = 0           # its place in the order of sends (set at each send)
        self.slot = 0
        self.generation = 0     # of the actor it was sent to
        self.ref: Any = None    # None while it waits in the driver for an actor (see _send)
        self.deaths = 0         # actors that died while running it
        self.doubtful = False   # at its last death other calls were unfinished on its actor
        self.suspect = False    # it was unfinished on an actor that died: it runs alone
        self.alone = False      # sent to an actor that takes no other call until it answers
        self.outcome: Any = None   # for the pool's user: the result, once settled
        self.unsent: Optional[Exception] = None   # why it could not be sent (see _release)

    @property
    def what(self) -> str:
        if callable(self._what):
            self._what = self._what()
        return self._what


def _wrong_batch_output(step: str, rows: int, outputs: Any) -> TypeError:
    length = f'{len(outputs)} results' if hasattr(outputs, '__len__') else type(outputs).__name__
    return TypeError(
        f'{step}: with max_batch_size= the operator is called with a list of rows ({rows} here) '
        f'and must return a list of as many results, in order; it returned {length}. Give '
        f'max_batch_size= only to operators that take lists (and leave it out for the others).')


@ray.remote
class _OperatorActor:
    """Builds one operator and serves the pool's calls with it until the pool is closed.
    An operator it cannot load or build makes every call return that failure: the actor
    lives (it did not crash), and the pool raises the failure at once."""

    def __init__(self, operator: Payload, step: str, name: str, batches: bool) -> None:
        keep_freed_heap()
        self._name = name
        self._step = step
        self._pid = os.getpid()
        self._calls = 0
        self._rows = 0
        self._batch_sizes: Optional[collections.Counter] = collections.Counter() if batches else None
        self._operator = None
        factory, self._failure = operator.load()
        if factory is not None:
            try:
                self._operator = factory.create()
            except Exception as error:
                self._failure = LoadFailure(error, traceback.format_exc(), stage='build')
            else:
                if not callable(self._operator):   # ray_op(lambda x=1: ...): not a factory
                    built = shown(self._operator, kind=True)
                    self._failure = LoadFailure(TypeError(
                        f'the factory returned {built}, which cannot be called. Give an operator '
                        f'(towhee.ops.<namespace>.<name>(...)) or a zero-argument factory that returns '
                        f'one (a class, functools.partial(MyOperator, k=3), lambda: my_function)'), '',
                        stage='build')

    def process(self, chunk: List[Any]) -> Any:
        """A ``ray`` step's chunk: its outputs, their timing and size (see timed_map); an
        output that cannot be pickled becomes its element's failure (guard.SentOutputs)."""
        if self._failure is not None:
            return self._failure
        self._calls += len(chunk)
        outputs, seconds, nbytes = timed_map(self._operator, chunk, measure_outputs=True)
        return SentOutputs(self._operator, chunk, outputs), seconds, nbytes

    def call(self, args: Tuple[Any, ...], kws: Dict[str, Any]) -> Any:
        """One ``ray_op`` call; the operator's own error comes back as a
        :class:`~towhee_ray.guard.Failure`, which the pool raises as the operator's own
        exception type, naming the ``ray_op`` and the call (not as Ray's ``RayTaskError``),
        and so does a result that cannot be pickled (:class:`~towhee_ray.guard.SentResult`).
        A generator's items are gathered here and make a generator again in the driver
        (:class:`~towhee_ray.guard.Generated`). A result that is a list of vectors of one
        shape (an operator given a batch) travels as one matrix (stacked.py)."""
        if self._failure is not None:
            return self._failure
        self._calls += 1
        try:
            return SentResult(stacked(gathered(self._operator(*args, **kws))))
        except Exception as error:
            return Failure(None, error, traceback.format_exc())

    def call_batch(self, rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> Any:
        """Rows of ``ray_op`` calls (each its arguments), in one operator call that takes
        each argument as a list, as Ray Serve's ``@serve.batch`` does; one outcome per row:
        its result, or a :class:`~towhee_ray.guard.Failure` with its own error. When the
        call on all of them raises, each row is run again alone, so that only a bad row
        fails; so does a row whose result cannot be pickled (guard.SentOutputs). Results
        that are vectors of one shape travel as one matrix (stacked.py)."""
        if self._failure is not None:
            return self._failure
        self._rows += len(rows)
        return SentOutputs(None, [], self._answer(rows), instead=RAY_OP_INSTEAD)

    def _answer(self, rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> List[Any]:
        try:
            return self._call_on_lists(rows)
        except Exception as error:
            if len(rows) == 1:
                return [Failure(None, error, traceback.format_exc())]
        return [self._answer([row])[0] for row in rows]

    def _call_on_lists(self, rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> List[Any]:
        args, kws = rows[0]
        columns = [[row_args[index] for row_args, _ in rows] for index in range(len(args))]
        keywords = {name: [row_kws[name] for _, row_kws in rows] for name in kws}
        self._calls += 1
        self._batch_sizes[len(rows)] += 1
        outputs = self._operator(*columns, **keywords)
        if inspect.isgenerator(outputs):   # one result a row, as it yielded them
            outputs = list(outputs)
        if not hasattr(outputs, '__len__') or len(outputs) != len(rows):
            raise _wrong_batch_output(self._step, len(rows), outputs)
        return [gathered(output) for output in outputs]

    def stats(self) -> Dict[str, Any]:
        stats: Dict[str, Any] = {'pid': self._pid, 'instance': id(self._operator), 'calls': self._calls}
        if self._batch_sizes is not None:
            stats['rows'] = self._rows
            stats['batch_sizes'] = dict(sorted(self._batch_sizes.items()))
        return stats

    def __repr__(self) -> str:   # Ray prefixes the actor's log lines with it
        return self._name


class _Slots:
    """The pool's worker slots: each one's actor, which generation of actor that is (one
    more each time an actor dies and is replaced), its unfinished calls, and whether it
    runs a call alone (it takes no other until that one answers)."""

    def __init__(self, count: int) -> None:
        self.actors: List[Any] = [None] * count
        self.generations = [0] * count
        self.unfinished = [0] * count
        self.reserved = [False] * count

    def least_busy(self) -> Optional[int]:
        """The slot with the fewest unfinished calls among those not running a call alone;
        None where every one is.

        >>> slots = _Slots(3)
        >>> slots.unfinished, slots.reserved = [0, 1, 2], [True, False, False]
        >>> slots.least_busy()
        1
        >>> slots.reserved = [True, True, True]
        >>> slots.least_busy() is None
        True
        """
        free = [slot for slot, reserved in enumerate(self.reserved) if not reserved]
        return min(free, key=self.unfinished.__getitem__) if free else None


class ActorPool:
    """``num_worker`` actors, each building the operator that ``operator`` (a
    :class:`~towhee_ray.backends.ray.shipping.Payload` of an object with ``create()``)
    makes, once; thread-safe. ``step`` names the pool in errors and in Ray (names.py).
    ``remote_args`` are the actors' ``.options()`` (over :data:`ACTOR_REMOTE_ARGS`);
    ``max_retries`` is how often a call whose actor died runs again (-1: no limit).
    ``unit`` is what a call is called in the log (``calls``, ``chunks``); with ``batches``
    the actors count the sizes of the batches they serve (``stats()``).

    >>> from towhee_ray.operators import OperatorSpec
    >>> spec = OperatorSpec('upper', lambda: str.upper)   # a recipe: create() builds the operator
    >>> pool = ActorPool(Payload(spec, 'ray_op(upper)'), 'ray_op(upper)', num_worker=2)
    >>> pool.call('call', (('abc',), {}), what="a call with arguments ('abc',)")
    'ABC'
    >>> [stat['calls'] for stat in pool.stats()]   # one actor served it, the other is idle
    [1, 0]
    >>> pool.close()
    """

    def __init__(self, operator: Payload, step: str, num_worker: int,
                 remote_args: Optional[Dict[str, Any]] = None,
                 max_retries: int = resources.DEFAULT_MAX_RETRIES, unit: str = 'calls',
                 batches: bool = False) -> None:
        self.step = step
        self.num_worker = num_worker
        self.max_retries = max_retries
        self.remote_args = {**ACTOR_REMOTE_ARGS, **(remote_args or {})}
        self._operator = operator
        self._operator_ref: Optional[ray.ObjectRef] = None
        self._unit = unit
        self._batches = batches
        self._slots: Optional[_Slots] = None
        self._in_flight: Set[PoolCall] = set()
        self._held: Deque[PoolCall] = collections.deque()   # waiting for an actor (see _send)
        self._sends = itertools.count()
        self._failure: Optional[LoadFailure] = None
        self._closed = False
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)   # held calls were sent, or the pool closed
        # Ray's actor names are unique: this process and pool, after the name users see
        self._suffix = f'[{os.getpid()}.{next(_pool_numbers)}]'
        self._watch = resources.PlacementWatch(step, self.remote_args,
                                               lambda: resources.unplaced_actors(f' {self._suffix}'))

    # -- starting and sending ------------------------------------------------------------

    def start(self) -> None:
        """Start every actor now, without waiting for them to be built (a step starts its
        pool before its first chunk, so the actors of consecutive steps start together);
        otherwise the first call starts them."""
        with self._lock:
            self._check_usable()
            self._start()

    def _start(self) -> None:
        if self._slots is not None:
            return
        cluster.connect()
        resources.wait_until_placeable(self.step, self.remote_args, self.num_worker, all_at_once=True)
        self._operator_ref = ray.put(self._operator)
        slots = _Slots(self.num_worker)
        slots.actors = [self._new_actor(slot, 0) for slot in range(self.num_worker)]
        self._slots = slots
        self._watch.arm()   # warns if they wait long for resources that other work holds

    def _new_actor(self, slot: int, generation: int) -> Any:
        name = names.actor_name(self.step, slot, generation)
        options = {**self.remote_args, 'name': f'{name} {self._suffix}'}
        return _OperatorActor.options(**options).remote(self._operator_ref, self.step, name, self._batches)

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f'{self.step} was closed; create a new one to call it again')
        if self._failure is not None:
            raise load_error(self._failure, self.step)

    def submit(self, call: PoolCall) -> None:
        """Send ``call`` to the actor with the fewest unfinished calls; returns at once
        (``call.ref`` is Ray's reference to its outcome, for :meth:`settle`). Raises a
        ``TypeError`` naming the call where its arguments cannot be pickled."""
        with self._lock:
            self._check_usable()
            self._start()
            self._send(call)
            if call.unsent is not None:
                raise call.unsent

    def _send(self, call: PoolCall) -> None:   # under the lock
        """Queue ``call`` behind the calls held in the driver, and send what the actors
        take (:meth:`_release`)."""
        call.ref = None
        self._held.append(call)
        self._release()

    def _release(self) -> None:   # under the lock
        """Send the calls held in the driver, oldest first, each to the least busy actor
        that runs no call alone, while there is one (``call.ref`` stays None until then)."""
        sent = False
        while self._held and self._slots is not None and self._failure is None:
            slot = self._slots.least_busy()
            if slot is None:
                break
            call = self._held.popleft()
            try:
                self._dispatch(call, slot)
            except Exception as error:   # its arguments cannot be pickled: raised to its caller
                call.unsent = self._unsent_error(call, error)
            sent = True
        if sent:
            self._released.notify_all()

    def _unsent_error(self, call: PoolCall, error: Exception) -> Exception:
        """The error for ``call``, whose sending raised ``error``: a ``TypeError`` naming it
        and what to do where its arguments cannot be pickled, else ``error`` itself."""
        if not isinstance(error, TypeError) or 'serialize' not in str(error):
            return error
        reason = (str(error.__cause__ or '').strip().splitlines() or [''])[-1] or str(error).splitlines()[0]
        unsent = UnpicklableCall(
            f'{self.step}: {call.what} cannot be pickled, so it cannot be sent to a Ray actor: {reason}. '
            f'Pass data that pickles (the data itself, a path or a URL; not a lock, an open file or a '
            f'connection, which the operator must open itself).')
        unsent.__cause__ = error
        return unsent

    def _dispatch(self, call: PoolCall, slot: int) -> None:   # under the lock
        slots = self._slots
        call.slot, call.generation, call.sent = slot, slots.generations[slot], next(self._sends)
        with ray_calls(self.step):
            call.ref = getattr(slots.actors[slot], call.method).remote(*call.args)
        slots.unfinished[slot] += 1
        # alone: a death while it runs is certainly its own
        call.alone = slots.reserved[slot] = call.suspect
        self._in_flight.add(call)

    # -- outcomes ------------------------------------------------------------------------

    def settle(self, call: PoolCall) -> Any:
        """``call``'s outcome (waiting for it), or :data:`RESENT` when its actor died and it
        was sent again. Raises at once what the actors cannot load (the operator, or the
        call's arguments), the :class:`~towhee_ray.WorkerError` of a call whose actor died
        on every try, and :class:`BatchDied` for a batch of rows that was running when its
        actor died."""
        with self._lock:
            while call.ref is None:   # held in the driver until an actor takes it
                if call.unsent is not None:
                    raise call.unsent
                if self._failure is not None:   # its actors cannot load the operator or their class
                    raise load_error(self._failure, self.step)
                if self._closed:
                    raise RuntimeError(f'{self.step} was closed while {call.what} was waiting for an actor')
                with ray_calls(self.step):   # Ray gone: a WorkerError that says so
                    if not ray.is_initialized():
                        raise RuntimeError('Ray is not initialized')
                self._released.wait(1.0)
            ref = call.ref
        try:
            outcome = fetch(ref, self.step, lambda: call.what)
        except WORKER_DIED as error:
            with self._lock:
                try:
                    self._died(call, error)
                finally:
                    self._release()
            return RESENT
        if outcome.__class__ is LoadFailure:
            self._failure = outcome
            raise load_error(outcome, self.step)
        if outcome.__class__ is Failure:   # an error of a call that Ray could not carry as it is
            error = outcome.exception
            error.add_note(worker_note(self.step, call.what, outcome.worker_traceback))
            raise error
        return outcome

    def _died(self, call: PoolCall, error: BaseException) -> None:   # under the lock
        """``call``'s actor died: count the death against the call it was running and
        replace it (if no other call noticed first), then send ``call`` again, or raise."""
        if self._closed:
            raise RuntimeError(f'{self.step} was closed while {call.what} was running') from error
        self._forget(call)
        failure = class_not_loaded(error)
        if failure is not None:   # no actor of this pool can run a call: none is to blame or runs again
            self._failure = failure
            raise load_error(failure, self.step) from error
        slots = self._slots
        if call.generation == slots.generations[call.slot]:   # the first call to notice
            unfinished = unfinished_on_worker(call, self._in_flight)
            running = unfinished[0]
            running.deaths += 1
            running.doubtful = len(unfinished) > 1   # it may have answered, and one behind it crashed
            for suspect in unfinished:   # each runs again alone: the next death says which crashes
                suspect.suspect = True
            logger.warning('%s: actor #%d died running %s (%s); replacing it and re-running its %s',
                           self.step, call.slot + 1, running.what, type(error).__name__, self._unit)
            with contextlib.suppress(Exception):
                ray.kill(slots.actors[call.slot])
            # replaced now, not at the slot's next call: the pool keeps num_worker actors
            # (stats() shows them) even when every call left was sent to the others
            slots.generations[call.slot] += 1
            slots.actors[call.slot] = self._new_actor(call.slot, slots.generations[call.slot])
            self._watch.arm()
        if call.deaths and call.rows > 1:
            raise BatchDied(f'{self.step}: the actor running {call.what} died') from error
        if out_of_tries(call, self.max_retries) and not call.doubtful:
            raise died_error(self.step, call.what, self.max_retries, error, runs=call.deaths) from error
        self._send(call)   # alone: a death while it runs is certainly its own

    def finish(self, call: PoolCall) -> None:
        """``call`` is done with (settled, or given up): it no longer counts against its
        actor, and the pool lets go of its arguments."""
        with self._lock:
            self._forget(call)
            self._release()
        call.args = None

    def _forget(self, call: PoolCall) -> None:   # under the lock
        if call.ref is None and call in self._held:   # given up while it waited in the driver
            self._held.remove(call)
        if call in self._in_flight:
            self._in_flight.discard(call)
            self._slots.unfinished[call.slot] -= 1
            if call.alone:
                self._slots.reserved[call.slot] = call.alone = False

    def result(self, call: PoolCall) -> Any:
        """Wait for a submitted ``call``'s outcome, running it again where its actor dies
        (see :meth:`settle` for what raises)."""
        try:
            while True:
                outcome = self.settle(call)
                if outcome is not RESENT:
                    return outcome
        finally:
            self.finish(call)

    def call(self, method: str, args: Tuple[Any, ...], what: Union[str, Callable[[], str]],
             rows: int = 1) -> Any:
        """``method(*args)`` on an actor of the pool, waiting for its outcome."""
        call = PoolCall(method, args, what, rows)
        self.submit(call)
        return self.result(call)

    def in_order(self, calls: Iterable[PoolCall], in_flight: int) -> Iterator[Tuple[bool, Any]]:
        """Each of ``calls``, sent from this thread as it is drawn, ``in_flight`` of them
        sent and unfinished at most, and its outcome in order: ``(True, its result)``, or
        ``(False, the error)`` that :meth:`submit` or :meth:`result` raised for it (a bad
        call fails alone; a closed pool or an operator that cannot be loaded fails every
        one). No thread waits per call. Closed early, it waits for the calls it sent.

        >>> from towhee_ray.operators import OperatorSpec
        >>> pool = ActorPool(Payload(OperatorSpec('inverse', lambda: lambda x: 1 / x), 'ray_op(inverse)'),
        ...                  'ray_op(inverse)', num_worker=2)
        >>> calls = (PoolCall('call', ((x,), {}), f'a call with arguments ({x},)') for x in (1, 0, 4))
        >>> [(called, type(value).__name__) for called, value in pool.in_order(calls, in_flight=2)]
        [(True, 'float'), (False, 'ZeroDivisionError'), (True, 'float')]
        >>> pool.close()
        """
        sent: Deque[Union[PoolCall, BaseException]] = collections.deque()   # a call, or why it was not sent

        def oldest() -> Tuple[bool, Any]:
            call = sent.popleft()
            if isinstance(call, BaseException):
                return False, call
            try:
                return True, self.result(call)
            except Exception as error:
                return False, error

        try:
            for call in calls:
                try:
                    self.submit(call)
                except Exception as error:
                    sent.append(error)
                else:
                    sent.append(call)
                if len(sent) >= in_flight:
                    yield oldest()
            while sent:
                yield oldest()
        finally:   # closed early (the consumer raised or stopped): the calls sent finish
            while sent:
                call = sent.popleft()
                if isinstance(call, PoolCall):
                    with contextlib.suppress(Exception):   # nobody is left to be told
                        self.result(call)

    # -- the pool as a whole -------------------------------------------------------------

    def stats(self) -> List[Dict[str, Any]]:
        """One dict per actor: ``pid``, ``instance`` (the operator's id), ``calls``
        (operator calls; a ``ray`` step's actors count elements) and, with ``batches``,
        ``rows`` and ``batch_sizes`` (rows per operator call -> how many calls had that
        many). A replacement for a dead actor answers once its operator is built; an actor
        that died and was not noticed yet is left out. Empty before the actors start;
        starts nothing."""
        with self._lock:
            actors = list(self._slots.actors) if self._slots else []
        stats = []
        with ray_calls(self.step):
            for ref in [actor.stats.remote() for actor in actors]:
                with contextlib.suppress(*WORKER_DIED):
                    stats.append(ray.get(ref))
        return stats

    def close(self) -> None:
        """Kill every actor (not when Ray is gone: a late close must not start Ray again)
        and return once the calls they were running have ended (:data:`CLOSE_WAIT_SECONDS`
        at most), so that none of the step's operator code runs on after it: a sink writing
        in the workers leaves no part being written behind a job that failed. Calls still
        waiting raise, and later ones too."""
        self._watch.disarm()
        with self._lock:
            slots, self._slots = self._slots, None
            self._closed = True
            running = [call.ref for call in self._in_flight]
            self._in_flight.clear()
            self._held.clear()
            self._released.notify_all()
            self._operator_ref = None
        if slots is None or not ray.is_initialized():
            return
        for actor in slots.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if running:   # each ends with its actor's death (or its answer, sent meanwhile)
            with contextlib.suppress(Exception):
                ray.wait(running, num_returns=len(running), timeout=CLOSE_WAIT_SECONDS, fetch_local=False)
