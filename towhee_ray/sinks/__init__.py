"""Where rows go: sinks fed batch by batch in the driver, below the DataCollection core.

:mod:`~towhee_ray.sinks.base` holds the lifecycle every sink shares (:class:`Sink`) and the
loop that feeds it (:func:`write_rows`); each destination is a module of its own.
"""
from towhee_ray.sinks.base import Batch, Sink, WriteResult, write_rows

__all__ = ['Batch', 'Sink', 'WriteResult', 'write_rows']
