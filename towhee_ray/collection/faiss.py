"""``to_faiss``, as Towhee 0.9's: the rows' key and vector into a Faiss index file.

The chain's steps run where they were set to run (Ray workers with ``set_parallel``); the
index is filled in the driver, batch by batch (see :mod:`towhee_ray.sinks.faiss`).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Union

from towhee_ray.collection.columns import column_method, field_names

if TYPE_CHECKING:
    from towhee_ray.sinks.base import WriteResult


class FaissMixin:
    """``to_faiss['key', 'vector'](findex, string, metric)``."""

    @column_method
    def to_faiss(self, findex: Any = './index.bin', string: str = 'IDMap,Flat',
                 metric: Union[None, int, str] = None, *, kv_file: Union[None, str, os.PathLike] = None,
                 batch: Optional[int] = None, save_every: Optional[int] = None,
                 columns: Any = None) -> 'WriteResult':
        """Add each row's vector to the Faiss index ``findex`` (a file path, made when
        missing, or a ``faiss`` index object) under its key; runs the chain to its end.

        ``to_faiss['id', 'vec']``: the key field, then the vector field. An ``int`` key
        is the Faiss id; ``str`` keys get ids 0, 1, 2, ... and are kept in a key-value file
        beside the index (``index_kv.bin`` for ``index.bin``, or ``kv_file=``: a JSON
        object ``{"<id>": "<key>"}``, as in Towhee 0.9). ``string`` is the
        ``faiss.index_factory`` string (an ``IDMap,`` is put in front when missing);
        ``metric`` a ``faiss.METRIC_*`` constant or ``'L2'``/``'IP'`` (L2 when not given).
        Vectors are added ``batch`` rows at a time (1000).

        An index file that exists is loaded and appended to; rows whose key it already
        holds are skipped. It is saved at the end, when the chain fails, and as it grows
        (or every ``save_every`` rows). Returns what was written: ``insert_count``, and in
        ``details`` the index, its ``ntotal``, the ``kv_file`` and the rows ``skipped``.

        >>> import tempfile, pathlib, numpy, faiss
        >>> from towhee_ray import DataCollection
        >>> findex = pathlib.Path(tempfile.mkdtemp()) / 'index.bin'
        >>> rows = [('a', numpy.array([0.0, 1.0])), ('b', numpy.array([1.0, 0.0]))]
        >>> DataCollection['id', 'vec'](rows).to_faiss['id', 'vec'](findex=findex).insert_count
        2
        >>> scores, ids = faiss.read_index(str(findex)).search(numpy.array([[0.9, 0.1]], 'float32'), 1)
        >>> import json; json.loads(findex.with_name('index_kv.bin').read_text())[str(ids[0][0])]
        'b'
        """
        if columns is None:
            self.close()
            raise TypeError("to_faiss needs two fields, the key and the vector, in a subscript: "
                            "to_faiss['id', 'vec'](findex='./index.bin')")
        # Imported here: numpy and Faiss load when a chain ends in a sink, not with towhee_ray.
        from towhee_ray.sinks.faiss import FaissSink
        # The driver fills the index: one in-memory index, one file, one writer.
        return self._write('to_faiss', lambda: FaissSink(field_names(columns), findex, string, metric,
                                                         kv_file=kv_file, batch_size=batch,
                                                         save_every=save_every))
