"""Turning a step's exceptions into values, so that they cross process boundaries.

Every callable a backend runs is wrapped here first. Backends therefore never handle user
errors; the DataCollection sees, in input order, either an output, an :class:`Empty`
(``safe()`` chains), a :class:`Failure` (to raise), or :data:`DROPPED` (filtered out).
"""
from __future__ import annotations

import inspect
import pickle
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

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


def _round_trips(candidate: Any, exception: BaseException) -> bool:
    """Whether ``candidate`` pickles and unpickles (with pickle, else cloudpickle, for a class
    that travels by value) into an exception of ``exception``'s type saying what it says."""
    try:
        expected = str(exception)
    except Exception:
        return False
    for module in (pickle, None):
        try:
            if module is None:
                from ray import cloudpickle as module
            copy = module.loads(module.dumps(candidate))
        except Exception:
            continue
        try:
            return type(copy).__qualname__ == type(exception).__qualname__ and expected in str(copy)
        except Exception:
            return False
    return False


def _rebuild(cls: type, args: Tuple[Any, ...], state: Optional[Dict[str, Any]]) -> BaseException:
    """An exception of type ``cls`` with ``args`` and attributes ``state``, made without
    calling its ``__init__`` (which may take other arguments than the message)."""
    error = cls.__new__(cls, *args)
    error.args = args
    if state:
        error.__dict__.update(state)
    return error


class _Rebuilt:
    """Pickles as a copy of ``exception`` that is made without its ``__init__``: for an
    exception class whose ``__init__`` takes other arguments than its message
    (``MyError(code, detail)``), which pickle would call with the message alone."""

    __slots__ = ('exception',)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def __reduce__(self):
        error = self.exception
        return _rebuild, (type(error), error.args, dict(getattr(error, '__dict__', None) or {}) or None)


def _picklable(exception: BaseException) -> Any:
    """What to pickle for ``exception`` so that the other process gets it back: itself when
    it round-trips (same type, same message); else a copy of it made without its
    ``__init__``, when that round-trips; else a ``RuntimeError`` naming its type and message.

    >>> class CodedError(Exception):
    ...     def __init__(self, code, detail):
    ...         super().__init__(f'code {code}: {detail}')
    >>> from ray import cloudpickle   # as Ray pickles it (the class is defined in this example)
    >>> copy = cloudpickle.loads(cloudpickle.dumps(_picklable(CodedError(404, 'not found'))))
    >>> type(copy).__name__, str(copy)
    ('CodedError', 'code 404: not found')
    >>> import threading
    >>> class HoldsLock(Exception):
    ...     def __init__(self):
    ...         super().__init__('holds a lock')
    ...         self.lock = threading.Lock()
    >>> _picklable(HoldsLock())
    RuntimeError('HoldsLock: holds a lock (the original exception could not be pickled)')
    """
    if _round_trips(exception, exception):
        return exception
    rebuilt = _Rebuilt(exception)
    if _round_trips(rebuilt, exception):
        return rebuilt
    try:
        said = str(exception)
    except Exception:
        said = repr(exception)
    return RuntimeError(f'{type(exception).__name__}: {said} (the original exception could not be pickled)')


def callable_name(fn: Any) -> str:
    """How a step names the function it runs: its ``__name__``, else its type's.

    >>> import functools
    >>> callable_name(len), callable_name(functools.partial(len))
    ('len', 'partial')
    """
    return getattr(fn, '__name__', None) or type(fn).__name__


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
        return f'{"filter" if self.keep_if else "map"}({callable_name(self.fn)})'

    def __call__(self, value: Any) -> Any:
        if value.__class__ is Empty:
            return value
        try:
            output = self.fn(value)
        except (Exception, SystemExit) as error:   # sys.exit('bad record'): the element's failure,
            return self.fail(value, error)        # as in the driver (it would end a Ray worker's process)
        if self.keep_if:
            return value if output else DROPPED
        if value.__class__ is SortedBatch:   # the outputs keep their input positions
            try:
                return value.carry(output)
            except ValueError as error:   # not one output per element
                return self.fail(value, error)
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


def is_safe(step: Any) -> bool:
    """Whether ``step`` (a guarded callable or operator factory, or a sink's writer around
    one) turns an element's failure into an :class:`Empty` (a ``safe()`` chain).

    >>> is_safe(Guarded(abs, safe=True)), is_safe(abs)
    (True, False)
    """
    for inner in (step, getattr(step, 'call', None), getattr(step, 'operator', None)):
        if isinstance(inner, (Guarded, GuardedOperator)):
            return inner.safe
    return False


def unsendable(element: Any, error: BaseException, safe: bool) -> Any:
    """The outcome in the place of ``element``, which could not be pickled to send it to a
    worker (``error`` says why): an ``Empty`` passes on as it is (a ``safe()`` chain's
    failed element holds its input, which may be what cannot travel); else an ``Empty``
    (``safe``) or a :class:`Failure` of the step, like an element that raised.

    >>> unsendable(3, TypeError('cannot pickle'), safe=True)
    Empty(value=3, exception=TypeError('cannot pickle'))
    """
    if element.__class__ is Empty:
        return element
    return Empty(element, error) if safe else Failure(element, error)


# What else to do with an output that cannot travel back from a Ray worker: a step's, and a
# ray_op's (whose operator can run in the driver, in a pipeline's own threads, instead).
STEP_INSTEAD = "run the step with backend='thread'"
RAY_OP_INSTEAD = 'use the operator without ray_op, in this process'


def _unsendable_output(output: Any, error: BaseException, instead: str = STEP_INSTEAD) -> TypeError:
    kind = type(output).__name__
    if inspect.isgenerator(output) or inspect.isasyncgen(output) or kind.endswith('iterator'):
        advice = ('Return a list instead (list(...)), and flatten() it to make one element of each '
                  'item')
    else:
        advice = ("Return something picklable (the data itself: numbers, strings, lists, dicts, "
                  f"arrays; not a lock, an open file or a connection), or {instead}")
    return TypeError(f'it returned {"an" if kind[0] in "aeiou" else "a"} {kind}, which cannot travel back '
                     f'from its Ray worker: {type(error).__name__}: {error}. {advice}.')


def _out_of_band(buffer: Any) -> None:   # large buffers (arrays) are not copied
    return None


class SentOutputs:
    """A worker's outputs on their way back, pickled once. To know that they can travel,
    they must be pickled; pickling them to check and again for Ray cost a worker 5.5 ms per
    1,024 vectors of 384 floats (a quarter of the DataCollection form's rate with an
    operator that costs nothing, W8's overhead benchmark). Pickled, this pickles the outputs
    itself (their arrays out of band, as Ray does: not copied) and hands Ray the bytes and
    the buffers; it pickles each output alone only when that fails, and puts the step's
    failure on its input (an ``Empty`` in a ``safe()`` chain) in the place of each that
    cannot travel. Arrays of one shape, as outputs or as an output's list, travel as one
    matrix (:func:`~towhee_ray.backends.stacked.stacked_outputs`). Unpickled, it is the
    list of outputs.

    >>> outputs = pickle.loads(pickle.dumps(SentOutputs(Guarded(abs, safe=True), [1, 2],
    ...                                                 [1, (i for i in range(2))])))
    >>> outputs[0], outputs[1].exception
    (1, TypeError("it returned a generator, which cannot travel back from its Ray worker: TypeError: \
cannot pickle 'generator' object. Return a list instead (list(...)), and flatten() it to make one \
element of each item."))
    """

    __slots__ = ('call', 'inputs', 'outputs', 'instead')

    def __init__(self, call: Any, inputs: List[Any], outputs: List[Any], instead: str = STEP_INSTEAD) -> None:
        self.call = call
        self.inputs = inputs
        self.outputs = outputs
        self.instead = instead   # what else to do with an output that cannot travel

    def __reduce__(self) -> Tuple[Any, ...]:
        from towhee_ray.backends.stacked import stacked_outputs
        try:
            return _received_outputs, _pickled(stacked_outputs(self.outputs))
        except Exception:
            return _received_outputs, _pickled(self._checked())

    def _checked(self) -> List[Any]:
        from ray import cloudpickle
        safe = is_safe(self.call)
        checked = list(self.outputs)
        for index, output in enumerate(checked):
            try:
                cloudpickle.dumps(output, protocol=5, buffer_callback=_out_of_band)
            except Exception as error:
                value = self.inputs[index] if len(self.inputs) == len(checked) else None
                checked[index] = unsendable(value, _unsendable_output(output, error, self.instead), safe)
        return checked


class SentResult:
    """One call's ``result`` on its way back from a ``ray_op``'s actor, pickled once (as
    :class:`SentOutputs` does for many): where it cannot be pickled, a :class:`Failure`
    with a ``TypeError`` that says so travels in its place, which the pool raises for the
    call, instead of Ray's error about its own task.

    >>> import threading
    >>> pickle.loads(pickle.dumps(SentResult([1, 2])))
    [1, 2]
    >>> print(pickle.loads(pickle.dumps(SentResult(threading.Lock()))).exception)  # doctest: +ELLIPSIS
    it returned a lock, which cannot travel back from its Ray worker: TypeError: cannot pickle \
'_thread.lock' object. Return something picklable (...), or use the operator without ray_op, in this process.
    """

    __slots__ = ('result',)

    def __init__(self, result: Any) -> None:
        self.result = result

    def __reduce__(self) -> Tuple[Any, ...]:
        try:
            return _received_outputs, _pickled(self.result)
        except Exception as error:
            return Failure(None, _unsendable_output(self.result, error, RAY_OP_INSTEAD)).__reduce__()


class Generated:
    """The items a generator gave, gathered in the Ray worker that ran it (a generator cannot
    be pickled); unpickled, a generator over them again, so that a Towhee ``map`` or
    ``flat_map`` node uses a ``ray_op``'s generator as it would the operator's own.

    >>> back = pickle.loads(pickle.dumps(Generated(iter('ab'))))
    >>> inspect.isgenerator(back), list(back)
    (True, ['a', 'b'])
    """

    __slots__ = ('items',)

    def __init__(self, generator: Any) -> None:
        self.items = list(generator)

    def __reduce__(self) -> Tuple[Any, ...]:
        return _generator_over, (self.items,)


def _generator_over(items: List[Any]) -> Any:
    return (item for item in items)


def gathered(result: Any) -> Any:
    """``result``, or where it is a generator, its items as a :class:`Generated` (running it
    to its end, so that an error it raises is the call's)."""
    return Generated(result) if inspect.isgenerator(result) else result


def _pickled(value: Any) -> Tuple[bytes, List[Any]]:
    """``value`` pickled by cloudpickle, its large buffers (arrays) out of band, as Ray does."""
    from ray import cloudpickle
    buffers: List[Any] = []
    return cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append), buffers


def _received_outputs(data: bytes, buffers: List[Any]) -> List[Any]:
    """In the driver: the outputs a :class:`SentOutputs` pickled (its buffers are Ray's,
    in the object store, as Ray's own unpickling would use them)."""
    return pickle.loads(data, buffers=buffers)


class GuardedOperator:
    """An operator factory whose instances are guarded. An operator that cannot be built
    (its ``__init__`` raised: a misspelt argument, a missing model file) fails the step at
    once, naming it, even in a ``safe()`` chain: no element can run without it, and
    turning every element into ``Empty`` would hide the mistake (``drop_empty()`` would
    give nothing).

    >>> class NeedsModel:
    ...     name = 'my/model'
    ...     def create(self):
    ...         raise FileNotFoundError('no such file: model.bin')
    >>> GuardedOperator(NeedsModel(), safe=True).create()
    Traceback (most recent call last):
    ...
    FileNotFoundError: operator my/model: building the operator failed: FileNotFoundError: no such file: \
model.bin. safe() does not apply: it covers elements that fail, and no element can run without the \
operator. Check the arguments it was given (a misspelt keyword, a wrong path) and what its __init__ needs \
(a model file, a package).
    """

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
            raise build_error(f'operator {self.name}', error)
        return Guarded(instance, self.safe)


BUILD_ADVICE = ('safe() does not apply: it covers elements that fail, and no element can run without the '
                'operator. Check the arguments it was given (a misspelt keyword, a wrong path) and what '
                'its __init__ needs (a model file, a package).')
# set on the error of an operator that could not be built, which already says so
_BUILD_ERROR = '_towhee_ray_build_error'


def build_error(step: str, error: BaseException) -> BaseException:
    """The error of a step whose operator could not be built (its ``__init__`` raised
    ``error``): the original type, naming the step and what to do."""
    raised = _same_type(error, f'{step}: building the operator failed: {type(error).__name__}: '
                               f'{error}. {BUILD_ADVICE}')
    setattr(raised, _BUILD_ERROR, True)
    return raised


def _same_type(error: BaseException, message: str) -> BaseException:
    """An exception of ``error``'s type saying ``message``, caused by ``error``; ``error``
    itself, with the message as a note, when its type cannot be built faithfully from a
    message alone (its ``__init__`` takes other arguments, as ``UnicodeDecodeError`` or
    pymilvus's ``MilvusException(code, message)`` do).

    >>> class CodedError(Exception):
    ...     def __init__(self, code=1, message=''):
    ...         super().__init__()
    ...         self.code, self.message = code, message
    ...     def __str__(self):
    ...         return f'(code={self.code}, message={self.message})'
    >>> raised = _same_type(CodedError(5, 'no such collection'), 'map(f) failed on element #1')
    >>> str(raised), raised.__notes__
    ('(code=5, message=no such collection)', ['map(f) failed on element #1'])
    >>> str(_same_type(KeyError('a'), 'map(f) failed on element #0'))
    "'map(f) failed on element #0'"
    """
    try:
        raised = type(error)(message)
        faithful = raised.args == (message,) and message in str(raised)
    except Exception:
        faithful = False
    if not faithful:
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
    # a KeyError shows its argument as a repr: a sentence is shown as it is (else it would be
    # quoted twice in this message), a missing key quoted
    said = error
    if type(error) is KeyError and len(error.args) == 1 and ' ' in str(error.args[0]):
        said = error.args[0]
    message = (f'{step} failed on element #{position} ({value}): '
               f'{type(error).__name__}: {said}')
    if failure.worker_traceback:
        error.add_note(f'Traceback in the worker:\n{failure.worker_traceback.rstrip()}')
    if isinstance(error, SystemExit) and not isinstance(error.code, str):   # sys.exit(3): keep the status
        error.add_note(message)
        return error
    return _same_type(error, message)


def worker_note(step: str, what: str, worker_traceback: Optional[str]) -> str:
    """The note on an error that ``step``'s Ray actor sent back for ``what`` it ran: where
    it was raised, with the worker's traceback where there is one (an output that could not
    be pickled has none: its ``TypeError`` says what happened).

    >>> worker_note('ray_op(f)', 'a call with arguments (1,)', None)
    'ray_op(f) sent this back from its Ray actor for a call with arguments (1,).'
    """
    if not worker_traceback:
        return f'{step} sent this back from its Ray actor for {what}.'
    return (f'{step} raised this in its Ray actor on {what}.\nTraceback in the worker:\n'
            f'{worker_traceback.rstrip()}')


class UnpicklableCall(TypeError):
    """A call's arguments cannot be pickled, so it was not sent to a Ray actor; the
    message names the call and what to do. A ``TypeError``, as pickling raises."""


class LoadFailure:
    """A Ray worker could not load a step's function or operator (``stage='load'``: an
    exception while unpickling it, such as a module the worker cannot import), could not
    build a ``ray_op`` operator (``stage='build'``: its ``__init__`` raised), or could not
    load towhee_ray's own actor class (``stage='actor'``: its Python lacks a module that
    towhee_ray imports). Not a crash: the step fails at once, with :func:`load_error`."""

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
    if failure.stage == 'build' and getattr(error, _BUILD_ERROR, False):   # says so already
        return error
    if failure.stage == 'build':
        message = f'{step}: building the operator in its Ray actor failed: {type(error).__name__}: {error}'
    elif failure.stage == 'actor':
        from towhee_ray import __version__
        message = (f"{step}: the Ray workers cannot load towhee_ray's actor: {type(error).__name__}: "
                   f'{error}. Where they run, Python lacks what towhee_ray {__version__} imports (one '
                   f'of its requirements, such as towhee, or towhee_ray itself in this version): install '
                   f'towhee_ray with its requirements on every node, or ship what is missing with '
                   f'towhee_ray.init(pip_packages=[...]).')
    else:
        message = (f'{what or step} cannot be loaded in a Ray worker: {type(error).__name__}: '
                   f'{error}. {LOAD_ADVICE}')
    return _same_type(error, message)
