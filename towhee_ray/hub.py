"""The local operator hub inside Towhee's own loader, so ``towhee.ops`` works offline.

Towhee 1.x loads an operator named in a pipeline (``ops.<namespace>.<name>(...)``) from its
registry, then from its cache (``$TOWHEE_HOME/operators``), and otherwise downloads it from
the Towhee hub, pip-installing the operator's ``requirements.txt``. :func:`use_local_hub`
inserts the local hub folders (``TOWHEE_RAY_HUB``, then this project's ``operators/``)
in place of the download, loaded by towhee_ray (each folder imported once per process, no
pip install: our operators' requirements are the ``models`` extra of this package); a name
found nowhere is :class:`~towhee_ray.operators.OperatorNotFoundError` (only ``.latest()``,
which asks for the hub's newest by name, still goes to Towhee's hub). ``import
towhee_ray`` does this in the driver (when Towhee's loader is first imported, so importing
towhee_ray alone does not import Towhee); every towhee_ray actor does it before it builds
an operator or a pipeline.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from towhee_ray.operators import HubOperator, hub_roots, operator_not_found, split_name
from towhee_ray.quiet import quiet_towhee

logger = logging.getLogger(__name__)
_install_lock = threading.Lock()


def find_local_operator(name: str) -> Optional[HubOperator]:
    """The local hub folder holding operator ``name`` (``'namespace/name'``), if any.

    >>> find_local_operator('towhee/text-split').folder.endswith('text_split')
    True
    >>> find_local_operator('nobody/nothing') is None
    True
    """
    namespace, repo = split_name(name)
    for root in hub_roots():
        for folder in (root / namespace / repo.replace('-', '_'), root / namespace / repo):
            if (folder / '__init__.py').is_file():
                return HubOperator(f'{namespace}/{repo}', str(folder))
    return None


def _with_shared_type(instance: Any) -> Any:
    """Towhee's operator pool reads ``shared_type``; like ``@towhee.register``, default to
    Shareable (one instance serves every concurrent call of a pipeline)."""
    if not hasattr(instance, 'shared_type'):
        from towhee.operator import SharedType
        try:
            instance.shared_type = SharedType.Shareable
        except AttributeError:   # a callable that takes no attributes: wrap it
            function = instance
            instance = functools.partial(function)
            instance.shared_type = SharedType.Shareable
    return instance


def use_local_hub() -> None:
    """Make Towhee's operator loader find the local hub folders, without downloading.

    Idempotent and cheap after the first call.

    >>> use_local_hub()
    >>> from towhee import pipe, ops
    >>> p = pipe.input('text').map('text', 'parts', ops.towhee.text_split(max_words=2)).output('parts')
    >>> p('One. Two three.').get()
    [['One.', 'Two three.']]
    """
    quiet_towhee()
    from towhee.hub.cache_manager import get_local_dir
    from towhee.hub.downloader import repo_tag_path
    from towhee.runtime.operator_manager.operator_loader import OperatorLoader
    with _install_lock:
        original = OperatorLoader._load_operator_from_hub
        if getattr(original, 'towhee_ray_local_hub', False):
            return

        @functools.wraps(original)
        def load_from_hub(loader, function, arg, kws, tag, latest):
            name = function if '/' in function else f'towhee/{function}'
            author, repo = name.split('/', 1)
            cached = repo_tag_path(Path(get_local_dir()) / 'operators' / author / repo, tag or 'main')
            if latest or cached.is_dir():   # Towhee's cache, or the hub's newest asked for by name
                return original(loader, function, arg, kws, tag, latest)
            local = find_local_operator(name)
            if local is None:   # never Towhee's download (and its pip install of requirements.txt)
                raise operator_not_found(name, tag or 'main')
            logger.debug('loading operator %s from the local hub %s', name, local.folder)
            return _with_shared_type(local(*(arg or ()), **(kws or {})))

        load_from_hub.towhee_ray_local_hub = True
        OperatorLoader._load_operator_from_hub = load_from_hub


_LOADER_MODULE = 'towhee.runtime.operator_manager.operator_loader'


class _WhenTowheeLoads(importlib.abc.MetaPathFinder):
    """Calls :func:`use_local_hub` right after Towhee's operator loader is imported, so
    that ``import towhee_ray`` need not import Towhee (~1 s) just to extend its loader."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != _LOADER_MODULE:
            return None
        quiet_towhee()   # whoever imports Towhee (the user too), before its loader warns
        sys.meta_path.remove(self)   # once; and the lookup below must not find this again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def execute_then_use_local_hub(module: Any) -> None:
                execute(module)
                use_local_hub()

            spec.loader.exec_module = execute_then_use_local_hub
        return spec


def use_local_hub_once_towhee_loads() -> None:
    """Extend Towhee's loader now if Towhee is imported, else as soon as it is."""
    if _LOADER_MODULE in sys.modules:
        use_local_hub()
    elif not any(isinstance(finder, _WhenTowheeLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WhenTowheeLoads())


# `import towhee_ray` is what makes `towhee.ops.<namespace>.<name>` find the local hub in
# a user's own pipelines; the actors of towhee_ray call use_local_hub() themselves.
use_local_hub_once_towhee_loads()
