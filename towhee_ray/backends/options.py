"""Checking the settings given to ``set_parallel``/``pmap``/``mmap``/``ray_op``: the worker
count, and the option names against the backend.

A misspelt option (``num_gpu``) or one the backend does not have (``num_gpus`` on
``thread``) must fail at the call that sets it, naming it, never be silently ignored.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict, List, Optional, Type

from towhee_ray.checks import positive_int

# Workers per step when num_worker is not given (Towhee 0.9's set_parallel default), except
# that a ray step or ray_op given actors_per_gpu alone fills the cluster's GPUs instead.
DEFAULT_NUM_WORKER = 2

# The ray backend's own options (see ray.backend.RayBackend); named here, without
# importing Ray, to tell a user of another backend where an option belongs.
RAY_ONLY_OPTIONS = ('num_cpus', 'num_gpus', 'actors_per_gpu', 'resources', 'memory', 'max_retries',
                    'ray_remote_args', 'chunk_bytes', 'max_bytes_in_flight')


def check_num_worker(num_worker: Any) -> int:
    """``num_worker`` means one thing everywhere: how many workers one step uses.

    >>> check_num_worker(0)
    Traceback (most recent call last):
    ...
    ValueError: num_worker must be a positive integer (how many workers each step uses), got 0
    """
    return positive_int(num_worker, 'num_worker', 'how many workers each step uses')


def accepted_options(backend_class: Type[Any]) -> Optional[List[str]]:
    """The option names ``backend_class`` takes besides ``num_worker``; None if it takes any.

    >>> from towhee_ray.backends.thread_backend import ThreadBackend
    >>> accepted_options(ThreadBackend)
    ['chunk_size']
    """
    parameters = list(inspect.signature(backend_class).parameters.values())
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return [parameter.name for parameter in parameters[1:]
            if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def check_option_names(backend: str, backend_class: Type[Any], options: Dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every option ``backend`` does not take, with a hint.

    >>> from towhee_ray.backends.thread_backend import ThreadBackend
    >>> check_option_names('thread', ThreadBackend, {'chunk_size': 10, 'num_gpus': 1})
    Traceback (most recent call last):
    ...
    ValueError: backend 'thread' does not take the option 'num_gpus' (an option of the 'ray' backend only)...
    """
    accepted = accepted_options(backend_class)
    if accepted is None:
        return
    unknown = [name for name in options if name not in accepted]
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, accepted, n=1)
        if close:
            problems.append(f'{name!r} (did you mean {close[0]!r}?)')
        elif name in RAY_ONLY_OPTIONS:
            problems.append(f"{name!r} (an option of the 'ray' backend only)")
        else:
            problems.append(repr(name))
    plural = 's' if len(problems) > 1 else ''
    raise ValueError(f'backend {backend!r} does not take the option{plural} {", ".join(problems)}; '
                     f'it takes: {", ".join(accepted) or "no options"}')
