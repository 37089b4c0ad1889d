"""Resolving Towhee hub operators by name and shipping them to workers.

A name resolves the way ``towhee.ops.<namespace>.<name>(...)`` does: Towhee's operator
registry first (``@towhee.register``, including classes defined in the user's script),
then the local hubs: Towhee's cache (``$TOWHEE_HOME/operators``, ``~/.towhee`` by
default), the folders in ``TOWHEE_RAY_HUB`` and this project's ``operators/``. Nothing is
ever downloaded.

What travels to a worker is an :class:`OperatorSpec`: the registered class itself (so a
class that exists only in the user's script works), or the folder of a hub operator,
which each worker process imports once.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from towhee_ray.quiet import quiet_towhee

HUB_PATH_VARIABLE = 'TOWHEE_RAY_HUB'
#: the namespace of an operator named without one (``ops.text_split`` is ``towhee/text-split``)
DEFAULT_NAMESPACE = 'towhee'
# Set by towhee_ray.init in the workers' environment: the hub folders it shipped.
SHIPPED_HUBS_VARIABLE = 'TOWHEE_RAY_SHIPPED_HUBS'
# This repository's own hub, present when towhee_ray runs from a source checkout.
PROJECT_HUB = Path(__file__).resolve().parent.parent / 'operators'


class OperatorNotFoundError(LookupError):
    """No registered operator and no local hub folder has this name."""


def towhee_name(name: str) -> str:
    """Normalize a name as ``towhee.ops`` does.

    >>> towhee_name('my_ns.add_one')
    'my-ns/add-one'
    """
    return name.replace('.', '/').replace('_', '-')


class OperatorSpec:
    """A picklable recipe for an operator: the class (or hub loader) and its init args.

    >>> spec = OperatorSpec('demo/upper', lambda suffix: (lambda text: text.upper() + suffix), ('!',))
    >>> spec.create()('hi')
    'HI!'
    """

    def __init__(self, name: str, factory: Callable[..., Any], args: Sequence[Any] = (),
                 kws: Optional[Dict[str, Any]] = None) -> None:
        self.name = name
        self.factory = factory
        self.args = tuple(args)
        self.kws = dict(kws or {})

    def create(self) -> Callable[[Any], Any]:
        """Build one operator instance; backends call this once per worker."""
        return self.factory(*self.args, **self.kws)

    def __repr__(self) -> str:
        return f'OperatorSpec({self.name!r})'


_loaded_hub_modules: Dict[str, Any] = {}
_load_lock = threading.Lock()


class HubOperator:
    """Loads the operator in a hub folder (Towhee's layout) in the process that builds it.

    The folder's ``__init__.py`` defines the operator under the name's module form
    (``text-split`` -> ``text_split``), a function or class returning a callable. Each
    process imports a folder once.
    """

    def __init__(self, name: str, folder: str) -> None:
        self.name = name
        self.folder = folder

    @property
    def attribute(self) -> str:
        return self.name.split('/')[-1].replace('-', '_')

    def __call__(self, *args: Any, **kws: Any) -> Any:
        return getattr(self._module(), self.attribute)(*args, **kws)

    def _module(self) -> Any:
        with _load_lock:
            module = _loaded_hub_modules.get(self.folder)
            if module is None:
                folder = shipped_copy(self.folder) or self.folder
                module_name = 'towhee_ray_hub.' + self.name.replace('/', '.').replace('-', '_')
                spec = importlib.util.spec_from_file_location(
                    module_name, Path(folder) / '__init__.py',
                    submodule_search_locations=[folder])
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
                _loaded_hub_modules[self.folder] = module
        return module


def shipped_copy(folder: str) -> Optional[str]:
    """In a Ray worker, the copy of the driver's hub ``folder`` that ``towhee_ray.init``
    shipped with the runtime environment (Ray puts each shipped folder, under its own
    name, in a directory on ``sys.path``); None when the folder was not shipped."""
    for root in os.environ.get(SHIPPED_HUBS_VARIABLE, '').split(os.pathsep):
        if root and Path(folder).is_relative_to(root):
            relative = Path(Path(root).name) / Path(folder).relative_to(root)
            for entry in sys.path:
                copy = Path(entry or '.') / relative
                if str(copy) != folder and (copy / '__init__.py').is_file():
                    return str(copy)
    return None


_added_hubs: List[Path] = []


def add_hub(folder: Any) -> None:
    """Search ``folder`` (laid out as ``<namespace>/<name>/__init__.py``) for operators
    from now on, before the ``TOWHEE_RAY_HUB`` folders (``towhee_ray.init(operators_dir=...)``)."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f'operators_dir {str(folder)!r} is not a folder; it should hold operators '
                         f'laid out as <namespace>/<name>/__init__.py')
    if path not in _added_hubs:
        _added_hubs.append(path)


def hub_roots() -> List[Path]:
    """The local hub folders searched after Towhee's cache, in order."""
    roots = list(_added_hubs)
    roots += [Path(p) for p in os.environ.get(HUB_PATH_VARIABLE, '').split(os.pathsep) if p]
    if PROJECT_HUB.is_dir():
        roots.append(PROJECT_HUB)
    return roots


def split_name(name: str) -> Tuple[str, str]:
    """``(namespace, name)`` of an operator name; Towhee's namespace when it has none.

    >>> split_name('image-decode/cv2'), split_name('text-split')
    (('image-decode', 'cv2'), ('towhee', 'text-split'))
    """
    return tuple(name.split('/', 1)) if '/' in name else (DEFAULT_NAMESPACE, name)


def _candidate_folders(name: str, tag: str) -> List[Path]:
    namespace, repo = split_name(name)
    module = repo.replace('-', '_')
    quiet_towhee()
    from towhee.hub.cache_manager import get_local_dir
    from towhee.hub.downloader import repo_tag_path
    folders = [repo_tag_path(Path(get_local_dir()) / 'operators' / namespace / repo, tag)]
    for root in hub_roots():
        folders += [root / namespace / module, root / namespace / repo]
    return list(dict.fromkeys(folders))   # one folder where the name has no '-'


def _registered(name: str) -> Optional[type]:
    quiet_towhee()
    from towhee.runtime.operator_manager import OperatorRegistry
    return OperatorRegistry.resolve(name)


def resolve_operator(name: str, args: Sequence[Any] = (), kws: Optional[Dict[str, Any]] = None,
                     tag: str = 'main') -> OperatorSpec:
    """Find the operator ``name`` (``'namespace.name'`` or ``'namespace/name'``).

    Raises :class:`OperatorNotFoundError` listing every place looked at.

    >>> resolve_operator('towhee.text_split', (), {'max_words': 2})
    OperatorSpec('towhee/text-split')
    """
    name = towhee_name(name)
    registered = _registered(name)
    if registered is None and '/' not in name:   # `dc.x()` finds `@register(name='towhee/x')`
        in_default = '/'.join(split_name(name))
        registered = _registered(in_default)
        if registered is not None:
            name = in_default
    if registered is not None:
        return OperatorSpec(name, registered, args, kws)
    folders = _candidate_folders(name, tag)
    for folder in folders:
        if (folder / '__init__.py').is_file():
            return OperatorSpec(name, HubOperator(name, str(folder)), args, kws)
    raise operator_not_found(name, tag)


def operator_not_found(name: str, tag: str = 'main') -> OperatorNotFoundError:
    """The error for an operator found nowhere, listing every folder looked at.

    >>> print(operator_not_found('nobody/nothing'))  # doctest: +ELLIPSIS
    operator 'nobody/nothing' not found: it is not registered with @towhee.register and no ...
    """
    looked_at = '\n  '.join(str(folder) for folder in _candidate_folders(name, tag))
    near = difflib.get_close_matches(name, known_operators(), n=3, cutoff=0.8)
    hint = f' Did you mean {" or ".join(repr(other) for other in near)}?' if near else ''
    return OperatorNotFoundError(
        f'operator {name!r} not found: it is not registered with @towhee.register and no '
        f'local hub folder holds it.{hint} Looked at:\n  {looked_at}\ntowhee_ray never downloads '
        f'operators: register the operator in your code, or put it (a folder with an '
        f'__init__.py defining {name.split("/")[-1].replace("-", "_")!r}) in one of those '
        f'folders or in a folder listed in ${HUB_PATH_VARIABLE}.')


def known_operators() -> List[str]:
    """The names of the operators registered in this process and in the local hub folders
    (``namespace/name``), for a hint when a name is misspelt.

    >>> 'sentence-embedding/minilm' in known_operators()
    True
    """
    quiet_towhee()
    from towhee.runtime.operator_manager import OperatorRegistry
    names = {name for name in OperatorRegistry.REGISTRY if not name.endswith('_func')}
    for root in hub_roots():
        for init in root.glob('*/*/__init__.py'):
            names.add(towhee_name(f'{init.parent.parent.name}/{init.parent.name}'))
    return sorted(names)


def spec_from_towhee_op(op: Any) -> Optional[OperatorSpec]:
    """The spec of a ``towhee.ops.<ns>.<name>(...)`` object, or None for anything else.

    So ``dc.map(towhee.ops.ns.name())`` runs as an operator step (actors on Ray), not as
    a plain callable that would load the operator again for every chunk.
    """
    kind = type(op)
    if kind.__name__ != '_OperatorWrapper' or kind.__module__ != 'towhee.runtime.factory':
        return None
    return resolve_operator(op.name, op.init_args or (), op.init_kws or {}, tag=op.tag)
