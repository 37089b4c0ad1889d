"""The one name of a step, used alike in its errors and for its Ray tasks and actors.

A step is named once (``map(parse_row)``, ``operator image/decode``, ``ray_op(image/decode)``);
its errors start with that name, and its tasks and actors carry it with ``towhee_ray `` in
front, so that what an error names is what ``ray list actors``, the dashboard, ``ray
timeline`` and Ray's log prefixes show.
"""
from __future__ import annotations

from typing import Any, Callable

#: What every task and actor name of towhee_ray starts with.
PREFIX = 'towhee_ray'


def function_step(fn: Callable[[Any], Any]) -> str:
    """A ``ray`` step running a function: ``map(parse_row)``, or the name the step gave it.

    >>> def parse_row(x): return x
    >>> function_step(parse_row)
    'map(parse_row)'
    """
    return getattr(fn, 'name', None) or f'map({getattr(fn, "__name__", type(fn).__name__)})'


def operator_step(operator_name: str) -> str:
    """A ``ray`` step running a hub operator on actors.

    >>> operator_step('image/decode')
    'operator image/decode'
    """
    return f'operator {operator_name}'


def ray_op_step(operator_name: str) -> str:
    """A :func:`towhee_ray.ray_op` (an operator inside a Towhee pipeline, on actors).

    >>> ray_op_step('image/decode')
    'ray_op(image/decode)'
    """
    return f'ray_op({operator_name})'


def task_name(step: str) -> str:
    """The name of a step's Ray tasks.

    >>> task_name('map(parse_row)')
    'towhee_ray map(parse_row)'
    """
    return f'{PREFIX} {step}'


def actor_name(step: str, slot: int, generation: int = 0) -> str:
    """The name of a step's actor in worker slot ``slot`` (from 0), shown as its number
    from 1; an actor that replaced a dead one says which replacement it is.

    >>> actor_name('operator image/decode', 0)
    'towhee_ray operator image/decode #1'
    >>> actor_name('ray_op(image/decode)', 1, generation=2)
    'towhee_ray ray_op(image/decode) #2 (replacement 2)'
    """
    name = f'{PREFIX} {step} #{slot + 1}'
    return name + (f' (replacement {generation})' if generation else '')
