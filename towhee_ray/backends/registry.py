"""Finding backends by name through the ``towhee.parallel_backends`` entry-point group.

The host never lists its backends by hand: ``thread`` and ``ray`` are declared in this
package's setup.cfg and found here exactly like a third-party backend.
"""
from __future__ import annotations

import functools
import importlib.metadata
import logging
import sys
from typing import Dict, List, Tuple, Type

from towhee_ray.backends.base import Backend

ENTRY_POINT_GROUP = 'towhee.parallel_backends'

logger = logging.getLogger(__name__)


def _entry_points() -> Dict[str, importlib.metadata.EntryPoint]:
    return _scan(tuple(sys.path))


# Scanning every installed distribution takes 5-13 ms (a profile of benchmarks/run.py's
# W2 put 61 % of a 10,000-element chain's driver time here), so each sys.path is scanned
# once; a distribution that appears on a new sys.path entry is still found.
@functools.lru_cache(maxsize=16)
def _scan(path: Tuple[str, ...]) -> Dict[str, importlib.metadata.EntryPoint]:
    found: Dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        kept = found.setdefault(entry_point.name, entry_point)
        if kept.value != entry_point.value:
            logger.warning('backend %r is declared twice (%s and %s); using %s',
                           entry_point.name, kept.value, entry_point.value, kept.value)
    return found


def available_backends() -> List[str]:
    """Names of every installed backend, sorted.

    >>> {'thread', 'ray'} <= set(available_backends())
    True
    """
    return sorted(_entry_points())


def get_backend(name: str) -> Type[Backend]:
    """Load the backend class declared under ``name``.

    Raises ``ValueError`` for an unknown name (listing the available ones) and
    ``ImportError`` naming the distribution when the backend's code fails to import;
    the other backends stay usable either way.

    >>> get_backend('thread').__name__
    'ThreadBackend'
    """
    entry_points = _entry_points()
    if name not in entry_points:
        raise ValueError(
            f'unknown parallel backend {name!r}; available backends: '
            f'{", ".join(sorted(entry_points)) or "none"}. Backends are found through the '
            f'{ENTRY_POINT_GROUP!r} entry-point group: install the package that provides '
            f'{name!r}, or pick one of the available names.')
    entry_point = entry_points[name]
    try:
        backend = entry_point.load()
    except Exception as error:
        distribution = _distribution(entry_point)
        raise ImportError(
            f'parallel backend {name!r} from distribution {distribution!r} failed to import '
            f'({entry_point.value}): {type(error).__name__}: {error}. Fix or reinstall '
            f'{distribution!r}; the other backends are unaffected.') from error
    if not (isinstance(backend, type) and issubclass(backend, Backend)):
        distribution = _distribution(entry_point)
        raise ImportError(
            f'parallel backend {name!r} from distribution {distribution!r} points at '
            f'{entry_point.value}, which is not a towhee_ray.Backend subclass.')
    return backend


def _distribution(entry_point: importlib.metadata.EntryPoint) -> str:
    """The name of the distribution that declares ``entry_point``, for errors only: reading it
    parses the distribution's metadata (~2 ms, once per ``set_parallel`` before this was lazy)."""
    return entry_point.dist.name if entry_point.dist else 'an unknown distribution'
