"""Parallel backends: the interface, discovery by entry point, and the built-in ones.

Only the package :mod:`towhee_ray.backends.ray` imports Ray, and only when one of its
modules is loaded.
"""
from towhee_ray.backends.base import Backend, OperatorFactory, WorkerError
from towhee_ray.backends.registry import ENTRY_POINT_GROUP, available_backends, get_backend

__all__ = ['Backend', 'OperatorFactory', 'WorkerError', 'ENTRY_POINT_GROUP', 'available_backends',
           'get_backend']
