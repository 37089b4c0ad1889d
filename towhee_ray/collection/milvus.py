"""``to_milvus``, as in Towhee 0.9: the rows of a chain, streamed into a Milvus collection.

Where the rows are written:

* into a Milvus **server** (``uri='http://host:19530'``), from a stream whose last step
  runs on a parallel backend: by that step's workers, each writing the rows it makes
  (:mod:`towhee_ray.sinks.in_workers`); the driver sees one marker per row;
* otherwise from the driver, batch by batch (:class:`towhee_ray.sinks.milvus.MilvusSink`),
  holding at most one batch: into a Milvus Lite file (served by a process of its own,
  which only this process may open) or a server.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from towhee_ray.collection.columns import column_method, field_names


class MilvusMixin:
    """``to_milvus['key', 'vector', ...](collection, batch=..., uri=..., token=...)``."""

    @column_method
    def to_milvus(self, collection: Any, batch: Optional[int] = None, uri: Optional[str] = None,
                  token: str = '', *, on_existing: str = 'upsert', metric_type: str = 'COSINE',
                  index_params: Optional[Dict[str, Any]] = None, writers: str = 'auto',
                  columns: Any = None) -> Any:
        """Write the subscript's fields of every row into a Milvus collection; returns a
        :class:`~towhee_ray.sinks.WriteResult` (``insert_count``: rows written; a key that
        comes again in a later batch is written, and counted, again).

        ``collection`` is a pymilvus ``Collection`` (Towhee 0.9's form) or a name with
        ``uri`` (a Milvus Lite file path, or ``'http://host:19530'`` with ``token``). A
        collection that does not exist is created from the first row: the first field is
        the primary key (int or str), vectors are typed and sized from their values, with
        an ``AUTOINDEX`` index (``index_params`` to choose) of ``metric_type``. ``batch``
        rows go per call (default 1,000, measured). A key already stored is replaced
        (``on_existing='upsert'``) or left as it is (``'skip'``): no key is held twice.

        Who writes (``writers``): with ``'auto'``, into a server, the workers of the chain's
        last step when it is parallel (each writes the rows it makes; the driver counts
        markers: ``details['writers'] == 'workers'``), else the driver; ``'workers'``
        insists (an error when they cannot), ``'driver'`` writes from the driver always.
        With ``on_existing='skip'`` the driver writes: workers cannot look a key up and
        insert it in one step, so two given the same key would both store it.

        >>> import tempfile, os, numpy as np
        >>> from towhee_ray import DataCollection
        >>> db = os.path.join(tempfile.mkdtemp(), 'doc.db')
        >>> rows = DataCollection['id', 'vec']([(i, np.eye(4, dtype='float32')[i]) for i in range(4)])
        >>> rows.to_milvus['id', 'vec'](collection='items', uri=db).insert_count
        4
        """
        from towhee_ray.sinks.in_workers import SinkRecipe
        from towhee_ray.sinks.milvus import MilvusSink
        from towhee_ray.sinks.milvus_connection import is_lite_path
        if columns is None:
            self.close()
            raise TypeError("to_milvus needs the fields to write in a subscript, the key first: "
                            "to_milvus['id', 'vec'](collection=..., uri=...)")
        fields = field_names(columns)
        options = dict(uri=uri, token=token, batch_size=batch, on_existing=on_existing,
                       metric_type=metric_type, index_params=index_params)
        # Workers write into a server; Milvus Lite has one writer, the driver's own server.
        # With on_existing='skip' the driver writes: workers cannot look a key up and insert
        # it as one step, so two of them given the same key would both store it.
        to_server = isinstance(collection, str) and uri and not is_lite_path(uri)
        no_workers = ('workers write into a Milvus server given by name and uri= '
                      "('http://host:19530'); a Milvus Lite file has one writer, the "
                      "driver's, and a pymilvus Collection object stays in the driver")
        if on_existing == 'skip':
            to_server = False
            no_workers = ("with on_existing='skip' the driver writes (workers cannot look a key up and "
                          'insert it in one step: two would store the same key twice); use '
                          "on_existing='upsert' for workers to write")
        return self._write('to_milvus', lambda: MilvusSink(fields, collection, **options),
                           ((lambda: SinkRecipe(MilvusSink, fields, (collection,), options))
                            if to_server else None),
                           writers, no_workers=no_workers)
