"""What a step sends to its Ray workers, and how a worker loads it.

cloudpickle sends a function or a class *by reference* (its module and name, imported
again in the worker) when its module is imported in the driver, and *by value* (its code)
otherwise. A Ray worker imports only what is installed on its node and what lies on its
``sys.path`` (the driver's working and script directories), so a module that pytest's
rootdir insertion, ``sys.path.insert`` or a notebook's helper folder made importable in
the driver is not importable there. Hence, while a step's function or operator is pickled,
every module it refers to is looked at once, by where its file lives: an installed
distribution (under ``site-packages`` or ``dist-packages``), the standard library,
towhee_ray itself and the ``local_packages`` that ``towhee_ray.init`` shipped stay by
reference; any other module travels by value (``cloudpickle.register_pickle_by_value``).

The worker unpickles the step itself (:meth:`Payload.load`): an exception while loading it
(a module the worker still cannot import, a name missing from it) comes back as a
:class:`~towhee_ray.guard.LoadFailure`, so the step fails at once with the original
exception, instead of Ray reporting a crashed task or a dead actor to be replaced.
"""
from __future__ import annotations

import io
import logging
import pickle
import sys
import sysconfig
import threading
import traceback
import types
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ray import cloudpickle

from towhee_ray import cluster
from towhee_ray.backends.picklable import DEFAULT_ADVICE, check_picklable
from towhee_ray.guard import LoadFailure
from towhee_ray.quiet import quiet_towhee

logger = logging.getLogger(__name__)

# Folders whose modules every node has: installed distributions ...
INSTALLED_FOLDER_NAMES = ('site-packages', 'dist-packages')
# ... the standard library, and towhee_ray (shipped by towhee_ray.init to a remote cluster).
_EVERYWHERE = [Path(sysconfig.get_paths()[name]).resolve() for name in ('stdlib', 'platstdlib')]
_EVERYWHERE.append(Path(__file__).resolve().parents[2])   # towhee_ray/, from backends/ray/

_decided: Dict[str, bool] = {}   # module name -> travels by value
_lock = threading.Lock()


def _everywhere(path: Path) -> bool:
    path = path.resolve()
    if any(part in INSTALLED_FOLDER_NAMES for part in path.parts):
        return True
    roots = _EVERYWHERE + [Path(shipped).resolve() for shipped in cluster.shipped_local_packages()]
    return any(path == root or path.is_relative_to(root) for root in roots)


def travels_by_value(module: types.ModuleType) -> bool:
    """Whether ``module`` must travel by value: its file is not where every worker can
    import it from (an installed distribution, the standard library, towhee_ray, a
    ``local_packages`` entry of ``towhee_ray.init``). Modules without a file (built in,
    frozen, made in memory) are left to cloudpickle, and so is ``__main__``, which it
    always sends by value.

    >>> import json, towhee_ray.guard
    >>> travels_by_value(json), travels_by_value(towhee_ray.guard)
    (False, False)
    >>> import importlib.util, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'my_helpers.py'
    >>> _ = path.write_text('def double(x):\\n    return 2 * x\\n')
    >>> spec = importlib.util.spec_from_file_location('my_helpers', path)
    >>> travels_by_value(importlib.util.module_from_spec(spec))
    True
    """
    if module.__name__ == '__main__':
        return False
    file = getattr(module, '__file__', None)
    paths = [file] if file else list(getattr(module, '__path__', None) or [])
    return bool(paths) and not all(_everywhere(Path(path)) for path in paths)


class _UserCodePickler(cloudpickle.Pickler):
    """cloudpickle, registering for pickling by value each module it meets (through a
    function, a class or the module itself) that :func:`travels_by_value`, before pickling
    what refers to it. The modules it registered are in ``registered``."""

    def __init__(self, file: io.BytesIO, buffers: List[pickle.PickleBuffer]) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self.registered: List[types.ModuleType] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            self._consider(obj)
        elif isinstance(obj, (types.FunctionType, type)):
            module = sys.modules.get(getattr(obj, '__module__', None) or '')
            if module is not None:
                self._consider(module)
        return super().reducer_override(obj)

    def _consider(self, module: types.ModuleType) -> None:
        name = module.__name__
        by_value = _decided.get(name)
        if by_value is None:
            by_value = _decided[name] = travels_by_value(module)
        if (by_value and sys.modules.get(name) is module
                and name not in cloudpickle.list_registry_pickle_by_value()):
            logger.debug('module %s (%s) travels to Ray workers by value', name,
                         getattr(module, '__file__', None))
            cloudpickle.register_pickle_by_value(module)
            self.registered.append(module)


def dumps(obj: Any) -> Tuple[bytes, List[pickle.PickleBuffer]]:
    """Pickle ``obj`` as cloudpickle does, with the modules Ray workers may not be able to
    import travelling by value; large buffers (numpy arrays) stay out of band, so that Ray
    stores them once and the workers map them without a copy, as for any object Ray
    sends. Raises what pickling raised, registering nothing then."""
    buffers: List[pickle.PickleBuffer] = []
    with _lock, io.BytesIO() as file:
        pickler = _UserCodePickler(file, buffers)
        try:
            pickler.dump(obj)
        except Exception:
            for module in pickler.registered:
                cloudpickle.unregister_pickle_by_value(module)
                _decided.pop(module.__name__, None)
            raise
        return file.getvalue(), buffers


class Payload:
    """A step's function or operator, pickled here (see :func:`dumps`) and loaded by the
    worker itself, which reports a failure to load it instead of crashing.

    >>> payload = Payload(lambda x: x + 1, 'map(<lambda>)')
    >>> fn, failure = payload.load()
    >>> fn(1), failure
    (2, None)
    """

    __slots__ = ('what', 'data', 'buffers')

    def __init__(self, obj: Any, what: str, advice: str = DEFAULT_ADVICE) -> None:
        self.what = what
        try:
            self.data, self.buffers = dumps(obj)
        except Exception:
            # Raises a TypeError naming what cannot be pickled at all ...
            check_picklable(obj, what, advice)
            # ... else only a module's by-value form failed (it holds a lock, say): send it
            # by reference, for workers that can import it (a load failure says so if not).
            logger.info('%s refers to a module that cannot travel by value; sending it by '
                        'reference', what, exc_info=True)
            self.buffers = []
            self.data = cloudpickle.dumps(obj, protocol=5, buffer_callback=self.buffers.append)

    def load(self) -> Tuple[Optional[Any], Optional[LoadFailure]]:
        """In the worker: ``(the object, None)``, or ``(None, a LoadFailure)`` carrying the
        exception that unpickling it raised."""
        quiet_towhee()   # unpickling a registered operator class imports Towhee
        try:
            return cloudpickle.loads(self.data, buffers=self.buffers), None
        except Exception as error:
            return None, LoadFailure(error, traceback.format_exc())

    def __repr__(self) -> str:
        return f'<{self.what}: {len(self.data)} bytes>'
