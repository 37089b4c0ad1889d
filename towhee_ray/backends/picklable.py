"""Refusing, before any work starts, a step whose function cannot travel to other processes.

cloudpickle's own error names only a type (``cannot pickle '_thread.lock' object``); a user
needs to know which function and which of the things it captures is the problem.
"""
from __future__ import annotations

import inspect
import types
from typing import Any, Iterator, List, Optional, Tuple


def _dumps(obj: Any) -> None:
    try:
        from ray import cloudpickle
    except ImportError:   # a backend used without Ray
        import cloudpickle
    cloudpickle.dumps(obj)


def _fails(obj: Any) -> Optional[BaseException]:
    try:
        _dumps(obj)
    except Exception as error:
        return error
    return None


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _global_names(constant)


def _parts(obj: Any) -> List[Tuple[str, Any]]:
    """What pickling ``obj`` by value also pickles, each with a name for the user."""
    if isinstance(obj, types.FunctionType):
        parts = list(zip(obj.__code__.co_freevars, (cell.cell_contents for cell in obj.__closure__ or ())))
        parts += [(name, obj.__globals__[name]) for name in dict.fromkeys(_global_names(obj.__code__))
                  if name in obj.__globals__]
        parts += [(f'default {index}', value) for index, value in enumerate(obj.__defaults__ or ())]
        parts += list((obj.__kwdefaults__ or {}).items())
        return parts
    if isinstance(obj, types.MethodType):
        return [('self', obj.__self__)]
    if isinstance(obj, (list, tuple)):
        return [(f'[{index}]', value) for index, value in enumerate(obj)]
    if isinstance(obj, dict):
        return [(f'[{key!r}]', value) for key, value in obj.items()]
    parts = list(vars(obj).items()) if isinstance(getattr(obj, '__dict__', None), dict) else []
    slots = [name for kind in type(obj).__mro__ for name in getattr(kind, '__slots__', ())]
    return parts + [(name, getattr(obj, name)) for name in slots if hasattr(obj, name)]


def find_unpicklable(obj: Any, path: str = '', depth: int = 4) -> Tuple[str, Any]:
    """The innermost part of ``obj`` that cannot be pickled, as (its path, the object).

    >>> import threading
    >>> lock = threading.Lock()
    >>> def count(x):
    ...     with lock:
    ...         return x
    >>> find_unpicklable(count)
    ('lock', <unlocked _thread.lock object at ...>)
    """
    obj = inspect.unwrap(obj)   # look through towhee_ray's wrappers (Guarded, ...)
    if depth:
        for name, part in _parts(obj):
            if _fails(part) is not None:
                inner = f'{path}.{name}' if path and not name.startswith('[') else path + name
                return find_unpicklable(part, inner, depth - 1)
    return path, obj


def _describe(obj: Any) -> str:
    name = getattr(obj, '__qualname__', None) or getattr(obj, '__name__', None)
    return f'{name!r}' if name else f'a {type(obj).__module__}.{type(obj).__qualname__} object'


DEFAULT_ADVICE = ('Create such an object inside the function, or use an operator (a class '
                  'registered with @towhee.register) whose __init__ builds it once per worker.')


def check_picklable(obj: Any, what: str, advice: str = DEFAULT_ADVICE) -> None:
    """Raise ``TypeError`` naming ``what`` and the captured object that cannot be pickled,
    unless ``obj`` pickles with cloudpickle (as Ray sends functions to its workers).

    >>> import threading
    >>> lock = threading.Lock()
    >>> check_picklable(lambda x: lock and x, 'map(<lambda>)')
    Traceback (most recent call last):
    ...
    TypeError: map(<lambda>) cannot be sent to Ray workers: it captures 'lock' (a _thread.lock object), ...
    """
    error = _fails(obj)
    if error is None:
        return
    path, culprit = find_unpicklable(obj)
    shown = path if "'" in path else f"'{path}'"
    captured = (f'it captures {shown} ({_describe(culprit)})' if path
                else f'{_describe(culprit)} itself cannot be pickled')
    raise TypeError(
        f'{what} cannot be sent to Ray workers: {captured}, which cannot be pickled '
        f'({type(error).__name__}: {error}). {advice}') from error
