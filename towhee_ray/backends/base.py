"""The interface every parallel backend implements.

A backend runs one step of a chain (one ``map``, ``filter`` or operator call) on its own
set of workers. The DataCollection creates one backend instance per step, calls exactly
one of :meth:`Backend.map` or :meth:`Backend.map_operator`, and calls :meth:`Backend.close`
once the step's output is exhausted, closed or garbage-collected.

Backends never see user errors: the callables they are given already turn an exception
into a value, so a backend only has to apply them, keep the input order, and release its
workers.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Iterable, Iterator, Protocol


class OperatorFactory(Protocol):
    """What :meth:`Backend.map_operator` receives: a picklable recipe for an operator.

    ``create()`` builds one operator instance (a callable taking one element). A backend
    calls it once per worker, in the worker, and reuses the instance for every element
    that worker serves. ``name`` is for logs and error messages.
    """

    name: str

    def create(self) -> Callable[[Any], Any]:
        ...


class Backend(abc.ABC):
    """Runs one step of a DataCollection chain on ``num_worker`` workers.

    Third-party backends subclass this and declare it in the ``towhee.parallel_backends``
    entry-point group; see "Writing a backend" in README.md. The constructor must be cheap
    and start nothing: ``set_parallel`` builds one to check the settings before any work
    starts. Extra keyword arguments given to ``set_parallel``/``pmap``/``mmap`` arrive
    here as backend options.

    Example, a backend that runs everything in the calling thread:

    >>> class Serial(Backend):
    ...     def map(self, fn, items):
    ...         return (fn(item) for item in items)
    ...     def map_operator(self, operator, items):
    ...         return self.map(operator.create(), items)
    >>> list(Serial(num_worker=1).map(lambda x: x * 2, [1, 2, 3]))
    [2, 4, 6]
    """

    def __init__(self, num_worker: int) -> None:
        self.num_worker = num_worker

    @abc.abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """Yield ``fn(item)`` for every item, in input order, pulling ``items`` lazily.

        ``fn`` is picklable (with cloudpickle) and never raises for an element.
        """

    @abc.abstractmethod
    def map_operator(self, operator: OperatorFactory, items: Iterable[Any]) -> Iterator[Any]:
        """Yield ``op(item)`` for every item, in input order, where each worker builds its
        own ``op = operator.create()`` once and reuses it for all the items it serves."""

    def close(self) -> None:
        """Release every worker this backend started; nothing of it runs afterwards."""


class WorkerError(RuntimeError):
    """A step's workers, not its function, failed: a worker process died on every try of a
    chunk, the workers cannot be placed on the cluster, or Ray went away under the stream.
    The message names the step and what to do; Ray's own error, if any, is the cause."""
