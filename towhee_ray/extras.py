"""Optional dependencies: imported where first needed, with an error that says what to install.

``import towhee_ray`` needs none of them; ``to_milvus`` needs pymilvus, ``to_faiss`` Faiss,
``to_parquet`` pyarrow, ``to_df`` pandas. Each is imported through :func:`require`.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, needed_by: str, install: str) -> ModuleType:
    """Import ``module``; if it cannot be imported, raise an ``ImportError`` of the same type
    saying which feature needs it and the command that installs it.

    >>> require('json', 'this example', 'pip install json').__name__
    'json'
    >>> require('no_such_module', 'to_nothing()', "pip install 'towhee-ray[nothing]'")
    Traceback (most recent call last):
      ...
    ModuleNotFoundError: to_nothing() needs no_such_module, which cannot be imported: pip install 'towhee-ray[nothing]' (No module named 'no_such_module')
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise type(error)(f'{needed_by} needs {module}, which cannot be imported: {install} ({error})',
                          name=error.name, path=error.path) from error
