"""Warnings a user can do nothing about, filtered exactly: Towhee's import's, and
pymilvus's deprecations of the calls towhee_ray makes (:func:`quiet_pymilvus`).

Towhee 1.1.3's operator loader imports ``pkg_resources``, which setuptools deprecates with a
``UserWarning`` at import time. Python prints it once per process: in the driver, and again
in every Ray worker that imports Towhee, where the copies tear through a progress bar.
:func:`quiet_towhee` ignores that warning, raised from that module, and nothing else: every
other warning still reaches the user. towhee_ray calls it before each of its own imports of
Towhee, in the driver and in its workers, and when any code imports Towhee's loader after
``import towhee_ray`` (see :mod:`towhee_ray.hub`).
"""
from __future__ import annotations

import contextlib
import re
import warnings
from typing import Iterator

PKG_RESOURCES_MESSAGE = 'pkg_resources is deprecated as an API'
# The module the warning is attributed to: Towhee's first import of pkg_resources, reached
# by any `import towhee` (its package __init__ imports the runtime, which imports this).
TOWHEE_LOADER_MODULE = 'towhee.runtime.operator_manager.operator_loader'

# What warnings.filterwarnings stores for the filter, to add it only once: adding a filter
# resets Python's record of warnings already shown, which would show them again.
_FILTER = ('ignore', re.compile(re.escape(PKG_RESOURCES_MESSAGE), re.I), UserWarning,
           re.compile(re.escape(TOWHEE_LOADER_MODULE) + r'\Z'), 0)


def quiet_towhee() -> None:
    """Ignore setuptools' ``pkg_resources`` deprecation warning raised by Towhee's import.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter('always')
    ...     quiet_towhee()
    ...     for message in (PKG_RESOURCES_MESSAGE + '. See ...', 'something else'):
    ...         warnings.warn_explicit(message, UserWarning, 'operator_loader.py', 22,
    ...                                module=TOWHEE_LOADER_MODULE)
    >>> [str(warning.message) for warning in caught]
    ['something else']
    """
    if _FILTER not in warnings.filters:
        warnings.filterwarnings(_FILTER[0], message=_FILTER[1].pattern, category=UserWarning,
                                module=_FILTER[3].pattern)


# What pymilvus 2.6 says of every ORM call (a FutureWarning), and of other calls it deprecates.
ORM_MESSAGE = r'.*ORM-style PyMilvus API'


@contextlib.contextmanager
def quiet_pymilvus() -> Iterator[None]:
    """Around the pymilvus calls towhee_ray makes for the user (into the ORM ``Collection``
    a Towhee 0.9 script passed, or a client): pymilvus's deprecation warnings ignored, as
    they are about towhee_ray's calls, not the user's; other warnings still show.

    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter('always')
    ...     with quiet_pymilvus():
    ...         warnings.warn('`Collection.flush` is an ORM-style PyMilvus API', FutureWarning)
    ...         warnings.warn('something else', FutureWarning)
    >>> [str(warning.message) for warning in caught]
    ['something else']
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.filterwarnings('ignore', message=ORM_MESSAGE, category=FutureWarning)
        yield
