"""Turning a step's exceptions into values, so that they cross process boundaries.

Every callable a backend runs is wrapped here first. Backends therefore never handle user
errors; the DataCollection sees, in input order, either an output, an :class:`Empty`
(``safe()`` chains), a :class:`Failure` (to raise), or :data:`DROPPED` (filtered out).
"""
from __future__ import annotations

import pickle
import traceback
from typing import Any, Callable, Optional

from towhee_ray.positions import SortedBatch


class Empty:
    """A failed element of a ``safe()`` chain: the input ``value`` and the ``exception``.

    Later steps pass it through untouched; ``drop_empty()`` removes it.

    >>> from towhee_ray import DataCollection
    >>> out = DataCollection([1, 0, 2]).safe().map(lambda x: 10 // x).to_list()
    >>> out[1]
    Empty(value=0, exception=ZeroDivisionError('integer division or modulo by zero'))
    >>> out[1].value, out[0], out[2]
    (0, 10, 5)
    """

    __slots__ = ('value', 'exception')

    def __init__(self, value: Any, exception: BaseException) -> None:
        self.value = value
        self.exception = exception

    def __repr__(self) -> str:
        return f'Empty(value={self.value!r}, exception={self.exception!r})'

    def get(self) -> 'Empty':
        """Itself: Towhee 0.9's ``drop_empty`` callbacks read ``e.get().value``."""
        return self

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Empty) and self.value == other.value
                and repr(self.exception) == repr(other.exception))

    __hash__ = None

    def __reduce__(self):
        return Empty, (self.value, _picklable(self.exception))


class Failure:
    """An element whose step raised, in a chain that is not ``safe()``."""

    __slots__ = ('value', 'exception', 'worker_traceback')

    def __init__(self, value: Any, exception: BaseException,
                 worker_traceback: Optional[str] = None) -> None:
        self.value = value
        self.exception = exception
        self.worker_traceback = worker_traceback

    def __reduce__(self):
        return Failure, (self.value, _picklable(self.exception), self.worker_traceback)


class _Dropped:
    """The marker a guarded filter returns for an element it drops."""

    __slots__ = ()

    def __repr__(self) -> str:
        return 'DROPPED'

    def __reduce__(self) -> str:
        return 'DROPPED'


DROPPED = _Dropped()


def _picklable(exception: BaseException) -> BaseException:
    try:
        pickle.dumps(exception)
        return exception
    except Exception:
        pass
    try:   # an exception class of a user module that travelled by value (see shipping.py)
        from ray import cloudpickle
        cloudpickle.dumps(exception)
        return exception
    except Exception:
        return RuntimeError(f'{type(exception).__name__}: {exception} '
                            f'(the original exception could not be pickled)')


class Guarded:
    """Wraps a step's callable: ``Empty`` inputs pass through, exceptions become values.

    With ``keep_if=True`` the callable is a filter predicate: the element itself comes
    back when it holds, :data:`DROPPED` when it does not. The outputs of a
    :class:`~towhee_ray.positions.SortedBatch` keep its elements' input positions.

    >>> Guarded(lambda x: 1 // x, safe=True)(0)
    Empty(value=0, exception=ZeroDivisionError('integer division or modulo by zero'))
    >>> Guarded(lambda x: x > 1, safe=False, keep_if=True)(1)
    DROPPED
    """

    __slots__ = ('fn', 'safe', 'keep_if')

    def __init__(self, fn: Callable[[Any], Any], safe: bool, keep_if: bool = False) -> None:
        self.fn = fn
        self.safe = safe
        self.keep_if = keep_if

    @property
    def name(self) -> str:
        """The step, for logs and for naming the backend's workers: ``map(parse_row)``."""
        function = getattr(self.fn, '__name__', None) or type(self.fn).__name__
        return f'{"filter" if self.keep_if else "map"}({function})'

    def __call__(self, value: Any) -> Any:
        if value.__class__ is Empty:
            return value
        try:
            output = self.fn(value)
        except Exception as error:
            return self.fail(value, error)
        if self.keep_if:
            return value if output else DROPPED
        if value.__class__ is SortedBatch:   # the outputs keep their input positions
            return value.carry(output)
        return output

    @property
    def __wrapped__(self) -> Callable[[Any], Any]:   # what it wraps (inspect.unwrap)
        return self.fn

    def fail(self, value: Any, error: BaseException) -> Any:
        if self.safe:
            return Empty(value, error)
        return Failure(value, error, traceback.format_exc())

    def __getstate__(self):
        return self.fn, self.safe, self.keep_if

    def __setstate__(self, state) -> None:
        self.fn, self.safe, self.keep_if = state


class _FailedInit:
    """Stands in for an operator whose ``__init__`` raised: every element fails with it."""

    def __init__(self, guard: Guarded, error: BaseException, worker_traceback: str) -> None:
        self._guard = guard
        self._error = error
        self._traceback = worker_traceback

    def __call__(self, value: Any) -> Any:
        if value.__class__ is Empty:
            return value
        if self._guard.safe:
            return Empty(value, self._error)
        return Failure(value, self._error, self._traceback)


class GuardedOperator:
    """An operator factory whose instances are guarded; a failing ``__init__`` makes every
    element fail with that error (the step stops, or its elements become ``Empty``)."""

    def __init__(self, operator: Any, safe: bool) -> None:
        self.operator = operator
        self.name = operator.name
        self.safe = safe

    @property
    def __wrapped__(self) -> Any:   # what it wraps (inspect.unwrap)
        return self.operator

    def create(self) -> Callable[[Any], Any]:
        try:
            instance = self.operator.create()
        except Exception as error:
            return _FailedInit(Guarded(None, self.safe), error, traceback.format_exc())
        return Guarded(instance, self.safe)


def _same_type(error: BaseException, message: str) -> BaseException:
    """An exception of ``error``'s type saying ``message``, caused by ``error``; ``error``
    itself, with the message as a note, when its type cannot be built from a message."""
    try:
        raised = type(error)(message)
    except Exception:
        raised = None
    if raised is None or message not in str(raised):
        error.add_note(message)
        return error
    if isinstance(error, ImportError):   # `name` says which module was missing
        raised.name, raised.path = error.name, error.path
    raised.__cause__ = error
    return raised


def step_error(failure: Failure, step: str, position: int) -> BaseException:
    """The exception to raise for ``failure``: the original type, with the step and the
    element's position in the message, chained to the original (and its worker traceback)."""
    error = failure.exception
    value = repr(failure.value)
    if len(value) > 80:
        value = value[:77] + '...'
    message = (f'{step} failed on element #{position} ({value}): '
               f'{type(error).__name__}: {error}')
    if failure.worker_traceback:
        error.add_note(f'Traceback in the worker:\n{failure.worker_traceback.rstrip()}')
    return _same_type(error, message)


class LoadFailure:
    """A Ray worker could not load a step's function or operator (``stage='load'``: an
    exception while unpickling it, such as a module the worker cannot import), or could
    not build a ``ray_op`` operator (``stage='build'``: its ``__init__`` raised). Not a
    crash: the step fails at once, with :func:`load_error`."""

    __slots__ = ('exception', 'worker_traceback', 'stage')

    def __init__(self, exception: BaseException, worker_traceback: str, stage: str = 'load') -> None:
        self.exception = exception
        self.worker_traceback = worker_traceback
        self.stage = stage

    def __reduce__(self):
        return LoadFailure, (_picklable(self.exception), self.worker_traceback, self.stage)


LOAD_ADVICE = ('Every Ray worker must be able to import what the step refers to: install it '
               'on every node, or ship it with towhee_ray.init(local_packages=[...]) (your own '
               'modules and folders) or towhee_ray.init(pip_packages=[...]) (packages from PyPI).')


def load_error(failure: LoadFailure, step: str, what: Optional[str] = None) -> BaseException:
    """The exception to raise for ``failure``: the original type, naming the step (or
    ``what`` of it could not be loaded) and what to do, chained to the original (and its
    worker traceback).

    >>> error = load_error(LoadFailure(ModuleNotFoundError("No module named 'lib'", name='lib'), ''),
    ...                    'operator my/op')
    >>> type(error).__name__, error.name
    ('ModuleNotFoundError', 'lib')
    >>> print(str(error).split(' Every')[0])
    operator my/op cannot be loaded in a Ray worker: ModuleNotFoundError: No module named 'lib'.
    """
    error = failure.exception
    note = f'Traceback in the worker:\n{failure.worker_traceback.rstrip()}'
    if failure.worker_traceback and note not in getattr(error, '__notes__', ()):   # raised again
        error.add_note(note)
    if failure.stage == 'build':
        message = f'{step}: building the operator in its Ray actor failed: {type(error).__name__}: {error}'
    else:
        message = (f'{what or step} cannot be loaded in a Ray worker: {type(error).__name__}: '
                   f'{error}. {LOAD_ADVICE}')
    return _same_type(error, message)
