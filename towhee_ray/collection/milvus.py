"""``to_milvus``, as in Towhee 0.9: the rows of a chain, streamed into a Milvus collection.

Rows are written from the driver, batch by batch, by :class:`towhee_ray.sinks.milvus.MilvusSink`
(a Milvus Lite file can only be opened by one process, and the driver is the one that
opens it); a stream of any length holds at most one batch here.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from towhee_ray.collection.columns import column_method, field_names


class MilvusMixin:
    """``to_milvus['key', 'vector', ...](collection, batch=..., uri=..., token=...)``."""

    @column_method
    def to_milvus(self, collection: Any, batch: Optional[int] = None, uri: Optional[str] = None,
                  token: str = '', *, on_existing: str = 'upsert', metric_type: str = 'COSINE',
                  index_params: Optional[Dict[str, Any]] = None, columns: Any = None) -> Any:
        """Write the subscript's fields of every row into a Milvus collection; returns a
        :class:`~towhee_ray.sinks.WriteResult` (``insert_count``: rows written).

        ``collection`` is a pymilvus ``Collection`` (Towhee 0.9's form) or a name with
        ``uri`` (a Milvus Lite file path, or ``'http://host:19530'`` with ``token``). A
        collection that does not exist is created from the first row: the first field is
        the primary key (int or str), vectors are typed and sized from their values, with
        an ``AUTOINDEX`` index (``index_params`` to choose) of ``metric_type``. ``batch``
        rows go per call (default 1,000, measured). A key already stored is replaced
        (``on_existing='upsert'``) or left as it is (``'skip'``): no key is held twice.

        >>> import tempfile, os, numpy as np
        >>> from towhee_ray import DataCollection
        >>> db = os.path.join(tempfile.mkdtemp(), 'doc.db')
        >>> rows = DataCollection['id', 'vec']([(i, np.eye(4, dtype='float32')[i]) for i in range(4)])
        >>> rows.to_milvus['id', 'vec'](collection='items', uri=db).insert_count
        4
        """
        from towhee_ray.sinks.base import write_rows
        from towhee_ray.sinks.milvus import MilvusSink
        if columns is None:
            raise TypeError("to_milvus needs the fields to write in a subscript, the key first: "
                            "to_milvus['id', 'vec'](collection=..., uri=...)")
        sink = MilvusSink(field_names(columns), collection, uri=uri, token=token, batch_size=batch,
                          on_existing=on_existing, metric_type=metric_type, index_params=index_params)
        return write_rows(self._items, sink)
