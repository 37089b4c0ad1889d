"""Gathering concurrent calls of a ``ray_op`` into one operator call on a list.

A Towhee ``pipe`` calls an operator once per row, from the threads of its graphs; a model
on a GPU wants a batch. With ``ray_op(op, max_batch_size=N)``, :class:`Batcher` does what
Ray Serve's ``@serve.batch`` does: each call puts its row on a queue and waits; a batch
goes out as soon as ``max_batch_size`` rows wait, or ``batch_wait_timeout_s`` after its
first row came (a partial batch); the operator is called once with the list (each
argument as a list: ``op(texts)`` for ``op(text)`` calls), must return a list of as many
results, and each caller gets its own row's result, or its own row's error.

The gathering happens here, in the process that calls the ``ray_op``, not in the actor as
Serve does in its replica: a whole batch then travels to the actor as one Ray call, so
the driver pays Ray's per-call cost once per batch instead of once per row, and the actor
runs one batch at a time (its operator is never called from two threads at once). There
is no thread of its own: the oldest waiting row's caller gathers its batch, sends it and
hands out the results; meanwhile the next oldest gathers the next batch.

Latency and a fed GPU: at most :data:`BATCHES_IN_FLIGHT_PER_ACTOR` batches per actor are
sent and unfinished (one running, one waiting in the actor, so the operator starts the
next batch the moment one ends). While that many are out, rows keep gathering in the
driver, so under load batches grow to ``max_batch_size`` by themselves; with
``batch_wait_timeout_s=0`` a batch takes whatever waits when an actor can take it (the
dynamic batching of Triton's default), and a lone row is never held back.

Errors, row by row: when the operator raises on a batch, the actor runs each of its rows
alone (a list of one), so a bad row fails with its own error and the others get their
results. An actor that dies running a batch of several rows counts no death against any
of them: they run again one at a time (pool.py), so that the next death names its row.

Importing this module does not import Ray (``ray_op`` checks its settings with it).
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Counter, Deque, Dict, Iterable, Iterator, List, Tuple

from towhee_ray.checks import positive_int
from towhee_ray.guard import Failure, UnpicklableCall, worker_note

if TYPE_CHECKING:
    from towhee_ray.backends.ray.pool import ActorPool, PoolCall

# Batches each actor may have sent and unfinished: the one it runs and one queued behind
# it, so that an operator that is the bottleneck (a model on a GPU) starts its next batch
# without waiting a round trip to the driver (the reasoning of the ray backend's
# QUEUED_CHUNKS_PER_WORKER); its batches are full either way. More would only wait in
# Ray's queue, while rows held in the driver still join a batch that is not yet full.
# Where the driver is the bottleneck, fewer batches out make larger ones: an A/B on the
# 2-vCPU VM (2,000 rows through p.batch with 520 threads, one actor, an operator sleeping
# 20 ms per batch, the machine loaded by other jobs, 2 rounds) gave 1,129/1,114 rows/s
# (mean batch 55) with 1, 1,119/970 (35) with 2, 957/797 (28) with 4. The GPU case, for
# which 2 is kept, is not measured here.
BATCHES_IN_FLIGHT_PER_ACTOR = 2
# How long a batch waits for more rows after its first: Ray Serve's default for
# @serve.batch (ray/serve/batching.py), not measured here. A lone row is held this long;
# a GPU forward pass over a batch of sentences takes about as long, so under load the
# wait overlaps with the running batch.
DEFAULT_BATCH_WAIT_TIMEOUT_S = 0.01
# The longest wait accepted: a day. A partial batch must go out some time (a lone row would
# wait for ever with float('inf')), and the driver's condition variable takes no wait
# longer than threading.TIMEOUT_MAX (OverflowError at the first call otherwise).
MAX_BATCH_WAIT_TIMEOUT_S = 86_400.0


def check_batching(max_batch_size: Any, batch_wait_timeout_s: Any) -> None:
    """Refuse bad batching settings now, naming the option.

    >>> check_batching(0, 0.01)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: max_batch_size must be a positive integer (the most rows one operator call takes) ..., got 0
    >>> check_batching(8, float('inf'))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: batch_wait_timeout_s must be a number of seconds from 0 to 86400 (...), got inf
    >>> check_batching(None, 0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: batch_wait_timeout_s applies to batches: give max_batch_size= too (...)
    """
    positive_int(max_batch_size, 'max_batch_size', 'the most rows one operator call takes',
                 none='for one call per row')
    if (isinstance(batch_wait_timeout_s, bool) or not isinstance(batch_wait_timeout_s, (int, float))
            or not 0 <= batch_wait_timeout_s <= MAX_BATCH_WAIT_TIMEOUT_S):
        raise ValueError(f'batch_wait_timeout_s must be a number of seconds from 0 to '
                         f'{MAX_BATCH_WAIT_TIMEOUT_S:g} (how long a batch waits for more rows; a partial '
                         f'batch goes out when it ends), got {batch_wait_timeout_s!r}')
    if max_batch_size is None and batch_wait_timeout_s != DEFAULT_BATCH_WAIT_TIMEOUT_S:
        raise ValueError('batch_wait_timeout_s applies to batches: give max_batch_size= too (the '
                         'most rows one operator call takes)')


def describe_call(args: Tuple[Any, ...]) -> str:
    """A call, for errors: its arguments, shortened.

    >>> describe_call(('a' * 100,))
    "a call with arguments ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..."
    """
    shown = repr(args)
    return 'a call with arguments ' + (shown if len(shown) <= 60 else shown[:57] + '...')


class _Raised:
    """A row whose own call raised in the driver (its actor died on every try)."""

    __slots__ = ('error',)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Row:
    """One call waiting for its batch: its arguments, and once done its outcome."""

    __slots__ = ('args', 'kws', 'shape', 'arrived', 'leads', 'done', 'outcome', 'woken')

    def __init__(self, args: Tuple[Any, ...], kws: Dict[str, Any]) -> None:
        self.args = args
        self.kws = kws
        # rows batch together when they pass the same arguments (one list per argument)
        self.shape = (len(args), tuple(sorted(kws)))
        self.arrived = time.monotonic()
        self.leads = False      # its caller gathers and sends the next batch
        self.done = False
        self.outcome: Any = None
        self.woken = threading.Event()   # set when it leads, or is done


class Batcher:
    """Gathers concurrent calls into batches for ``pool``'s ``call_batch``; thread-safe.

    ``batcher(args, kws)`` returns that call's own result, or raises its own error.

    Each waiting call sleeps on its own event, woken once: when its batch is done, or when
    it becomes the leader. Only the leader waits on the shared condition (for rows enough,
    for its wait to end, for an actor to take a batch). A single condition for all, woken
    for every arrival and every answer, cost the driver 0.6 ms a row with a thousand rows
    in flight: each wake-up woke every waiting thread.
    """

    def __init__(self, pool: 'ActorPool', max_batch_size: int,
                 batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_TIMEOUT_S) -> None:
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self._pool = pool
        self._limit = pool.num_worker * BATCHES_IN_FLIGHT_PER_ACTOR
        self._lock = threading.Lock()
        self._pending: Deque[_Row] = collections.deque()
        self._like: Counter = collections.Counter()   # pending rows by shape
        self._gathering = False   # whether a leader is gathering (then it is pending[0])
        self._in_flight = 0       # batches sent and unfinished
        self._leader_wakes = threading.Condition(self._lock)

    def __call__(self, args: Tuple[Any, ...], kws: Dict[str, Any]) -> Any:
        row = _Row(args, kws)
        with self._lock:
            self._pending.append(row)
            self._like[row.shape] += 1
            if not self._gathering:
                self._gathering = row.leads = True
            elif (self._in_flight < self._limit
                  and self._like[self._pending[0].shape] >= self.max_batch_size):
                self._leader_wakes.notify()   # the leader's batch is full, and can go
        if not row.leads:
            try:
                row.woken.wait()
            except BaseException:   # interrupted (Ctrl-C) while its row waits: the row leaves
                with self._lock:
                    self._leave(row)
                raise
        if not row.done:   # it leads: it gathers a batch (its own row first) and sends it
            with self._lock:
                try:
                    batch = self._gather(row)
                except BaseException:   # interrupted while waiting: the next row leads
                    self._give_up(row)
                    raise
            self._run(batch)
        return self._result(row)

    def _give_up(self, leader: _Row) -> None:
        """(Under the lock.) Take the leader's row out, and hand the gathering on."""
        self._pending.remove(leader)
        self._like[leader.shape] -= 1
        self._gathering = bool(self._pending)
        if self._pending:
            self._pending[0].leads = True
            self._pending[0].woken.set()

    def _leave(self, row: _Row) -> None:
        """(Under the lock.) ``row``'s caller stopped waiting (interrupted): take the row out
        if it still waits, handing the gathering on if it was made the leader meanwhile; a
        row already in a batch runs, its result unclaimed."""
        if row.done or row not in self._pending:
            return
        if row.leads:
            self._give_up(row)
            return
        self._pending.remove(row)
        self._like[row.shape] -= 1

    def _gather(self, leader: _Row) -> List[_Row]:
        """(Under the lock.) Wait until a batch may go: ``max_batch_size`` rows like the
        leader's wait, or its wait has ended, and an actor can take a batch; take it out
        of the queue and hand the gathering on to the next oldest row."""
        deadline = leader.arrived + self.batch_wait_timeout_s
        while True:
            full = self._like[leader.shape] >= self.max_batch_size
            left = deadline - time.monotonic()
            if self._in_flight < self._limit and (full or left <= 0):
                break
            self._leader_wakes.wait(None if self._in_flight >= self._limit else left)
        batch, kept = [], collections.deque()
        for row in self._pending:
            if row.shape == leader.shape and len(batch) < self.max_batch_size:
                batch.append(row)
            else:
                kept.append(row)
        self._pending = kept
        self._like[leader.shape] -= len(batch)
        self._in_flight += 1
        self._gathering = bool(kept)
        if kept:
            kept[0].leads = True
            kept[0].woken.set()
        return batch

    def _run(self, batch: List[_Row]) -> None:
        """Send ``batch`` and give each of its rows its outcome, whatever happens."""
        outcomes: List[Any] = []
        try:
            outcomes = self._send([(row.args, row.kws) for row in batch])
        except Exception as error:   # every row fails alike: the pool was closed, ...
            outcomes = [_Raised(error)] * len(batch)
        except BaseException as error:   # KeyboardInterrupt in this thread: it stops here
            interrupted = RuntimeError(f'{self._pool.step}: the thread sending this call in a batch was '
                                       f'interrupted ({type(error).__name__}); call again')
            outcomes = [_Raised(interrupted)] * len(batch)
            raise
        finally:
            for row, outcome in zip(batch, outcomes):
                row.outcome = outcome
            with self._lock:
                self._in_flight -= 1
                self._leader_wakes.notify()   # an actor can take the next batch
            for row in batch:
                row.done = True
                row.woken.set()

    def _send(self, rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> List[Any]:
        """Send ``rows`` (each a call's arguments) as one batch and wait for their outcomes."""
        try:
            call = self._submit(rows)
        except UnpicklableCall:
            if len(rows) == 1:
                raise
            return self._each_alone(rows)   # the row that cannot be pickled fails alone
        return self._settle(call, rows)

    def _submit(self, rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> 'PoolCall':
        from towhee_ray.backends.ray.pool import PoolCall

        what = (functools.partial(describe_call, rows[0][0]) if len(rows) == 1
                else f'a batch of {len(rows)} calls')
        call = PoolCall('call_batch', (rows,), what, rows=len(rows))
        self._pool.submit(call)
        return call

    def _settle(self, call: 'PoolCall', rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> List[Any]:
        """The outcomes of the batch ``call`` of ``rows``: if its actor died running it,
        each row's alone, all sent at once."""
        from towhee_ray.backends.ray.pool import BatchDied

        try:
            return self._pool.result(call)
        except BatchDied:
            return self._each_alone(rows)
        except UnpicklableCall:   # it waited for an actor, and then could not be sent
            if len(rows) == 1:
                raise
            return self._each_alone(rows)

    def _each_alone(self, rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> List[Any]:
        """The outcomes of ``rows`` each sent as a batch of one, all at once: a row that
        cannot be pickled, or whose actor dies on every try, fails with its own error."""
        from towhee_ray.backends.ray.pool import PoolCall

        calls: List[Any] = []
        for row in rows:
            call = PoolCall('call_batch', ([row],), functools.partial(describe_call, row[0]))
            try:
                self._pool.submit(call)
            except Exception as error:   # its arguments cannot be pickled, the pool was closed, ...
                call = _Raised(error)
            calls.append(call)
        outcomes: List[Any] = []
        for call in calls:
            if call.__class__ is _Raised:
                outcomes.append(call)
                continue
            try:
                outcomes.extend(self._pool.result(call))
            except Exception as error:   # this row's own actor died on every try, ...
                outcomes.append(_Raised(error))
        return outcomes

    def outcomes(self, calls: Iterable[Tuple[Any, ...]], in_flight: int) -> Iterator[Tuple[bool, Any]]:
        """Each of ``calls`` (a call's arguments, all of one shape) run, in order, as
        ``(True, its result)`` or ``(False, the error)`` that calling the batcher would raise.

        The calls are cut into batches of ``max_batch_size`` as they are drawn from
        ``calls``, and as many batches as hold ``in_flight`` rows (one at least) are sent
        and unfinished at once, from this thread: nothing gathers or waits for a timeout,
        and no thread waits per row. This is how :meth:`~towhee_ray.pipeline.RayOp.outcomes`
        runs many rows through a ``ray_op`` (a partial batch goes out only at the end of
        ``calls``). When the generator is closed early, it waits for the batches it sent.
        """
        batches = max(1, -(-in_flight // self.max_batch_size))
        ordered: Deque[List[Any]] = collections.deque()   # per call, [its outcome] once known
        sent: Deque[Tuple[Any, List[Tuple[Tuple[Any, ...], Dict[str, Any]]], List[List[Any]]]] = (
            collections.deque())
        rows: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = []
        slots: List[List[Any]] = []

        def send() -> None:
            try:
                call = self._submit(rows)
            except UnpicklableCall as error:   # the row that cannot be pickled fails alone
                alone = self._each_alone(rows) if len(rows) > 1 else [_Raised(error)]
                for slot, (args, _), outcome in zip(slots, rows, alone):
                    slot.append(self._called(outcome, args))
            except Exception as error:   # every row fails alike: the pool was closed, ...
                for slot in slots:
                    slot.append((False, error))
            else:
                sent.append((call, rows, slots))

        def settle_oldest() -> None:
            call, its_rows, its_slots = sent.popleft()
            try:
                settled = self._settle(call, its_rows)
            except Exception as error:
                settled = [_Raised(error)] * len(its_rows)
            for slot, (args, _), outcome in zip(its_slots, its_rows, settled):
                slot.append(self._called(outcome, args))

        try:
            for args in calls:
                slot: List[Any] = []
                ordered.append(slot)
                rows.append((args, {}))
                slots.append(slot)
                if len(rows) >= self.max_batch_size:
                    send()
                    rows, slots = [], []
                while len(sent) >= batches:
                    settle_oldest()
                while ordered and ordered[0]:
                    yield ordered.popleft()[0]
            if rows:
                send()
            while ordered:   # a batch that could not be sent has its rows' errors already
                if not ordered[0]:
                    settle_oldest()
                while ordered and ordered[0]:
                    yield ordered.popleft()[0]
        finally:   # closed early (the consumer raised or stopped): the batches sent finish
            while sent:
                call = sent.popleft()[0]
                try:
                    self._pool.result(call)
                except Exception:   # noqa: S110 - nobody is left to be told
                    pass

    def _called(self, outcome: Any, args: Tuple[Any, ...]) -> Tuple[bool, Any]:
        """``(True, the result)`` of a call of arguments ``args``, or ``(False, its error)``."""
        try:
            return True, self.result(outcome, args)
        except Exception as error:
            return False, error

    def result(self, outcome: Any, args: Tuple[Any, ...]) -> Any:
        """The result of a call of arguments ``args`` from its outcome, or its own error."""
        if outcome.__class__ is _Raised:
            raise outcome.error
        if outcome.__class__ is Failure:
            error = outcome.exception
            what = (f'{describe_call(args)}, called as one row of a list (max_batch_size='
                    f'{self.max_batch_size}); the other rows of its batch are not affected')
            error.add_note(worker_note(self._pool.step, what, outcome.worker_traceback))
            raise error
        return outcome

    def _result(self, row: _Row) -> Any:
        return self.result(row.outcome, row.args)
