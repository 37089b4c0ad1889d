"""Reading and adjusting a chain's parallel settings, under Towhee 0.9's names."""
from __future__ import annotations

import dataclasses
from typing import Optional


class SettingsMixin:
    """``get_backend``, ``get_num_worker``, ``set_chunksize``, ``get_chunksize``."""

    def get_backend(self) -> Optional[str]:
        """The backend following steps run on, or None when they run serially (0.9's answer).

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(3).get_backend() is None
        True
        >>> DataCollection.range(3).set_parallel(2).get_backend()
        'thread'
        """
        parallel = self._settings.parallel
        return parallel.backend if parallel else None

    def get_num_worker(self) -> Optional[int]:
        """How many workers each following step uses, or None when they run serially.
        With ``actors_per_gpu`` and no ``num_worker``, this counts the cluster's GPUs now
        (connecting to Ray), as each step does when it starts.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(3).set_parallel(3).get_num_worker()
        3
        """
        parallel = self._settings.parallel
        if parallel is None:
            return None
        return parallel.num_worker if parallel.num_worker is not None else parallel.make_backend().num_worker

    def set_chunksize(self, chunk_size: int) -> 'SettingsMixin':
        """Fix how many elements a worker takes at once in the following parallel steps
        (the ``chunk_size`` backend option; automatic by default). Changes this collection
        and returns it, like ``set_parallel``.

        >>> from towhee_ray import DataCollection
        >>> dc = DataCollection.range(20).set_parallel(2).set_chunksize(10)
        >>> dc.get_chunksize(), dc.map(lambda x: x * 2).to_list()[-1]
        (10, 38)
        """
        if self._settings.parallel is None:
            raise ValueError('set_chunksize() sets how many elements a worker of a parallel step '
                             'takes at once, and this chain has no parallel steps: call '
                             'set_parallel(...) first (or pass chunk_size= to it)')
        parallel = self._parallel_for(None, None, {'chunk_size': chunk_size})
        self._settings = dataclasses.replace(self._settings, parallel=parallel)
        return self

    def get_chunksize(self) -> Optional[int]:
        """The chunk size set for the following parallel steps; None means automatic.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(3).set_parallel(2).get_chunksize() is None
        True
        """
        parallel = self._settings.parallel
        return parallel.options.get('chunk_size') if parallel else None
