"""Where rows go: sinks, fed batch by batch, below the DataCollection core.

:mod:`~towhee_ray.sinks.base` holds the lifecycle every sink shares (:class:`Sink`) and the
driver loop that feeds it (:func:`write_rows`); :mod:`~towhee_ray.sinks.checks` the checks
every sink makes of keys, vectors and sizes; :mod:`~towhee_ray.sinks.in_workers` has the
workers of a chain's last step write instead of the driver. Each destination is a module of
its own: Milvus (``milvus*.py``, Milvus Lite served by ``lite_server.py``), Faiss, Parquet.
Nothing here imports the DataCollection (``collection/``): rows are :mod:`towhee_ray.rows`.
"""
from towhee_ray.sinks.base import Batch, Sink, WriteResult, write_rows

__all__ = ['Batch', 'Sink', 'WriteResult', 'write_rows']
