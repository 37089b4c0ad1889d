"""towhee-ray: Towhee's DataCollection API and hub operators, run on Ray.

>>> from towhee_ray import DataCollection
>>> DataCollection.range(5).set_parallel(num_worker=2).map(lambda x: x + 1).to_list()
[1, 2, 3, 4, 5]

Importing this package does not import Ray; the ``ray`` backend does, when first used.
"""
from towhee_ray.backends import (ENTRY_POINT_GROUP, Backend, OperatorFactory, WorkerError, available_backends,
                                 get_backend)
from towhee_ray.cluster import ClusterInfo, connect, init
from towhee_ray.datacollection import DataCollection
from towhee_ray.factories import (dc, from_df, glob, range,  # noqa: F401 (range, as towhee.range)
                                  read_csv, read_json, read_parquet)
from towhee_ray.guard import Empty
from towhee_ray.hub import use_local_hub
from towhee_ray.operators import OperatorNotFoundError, OperatorSpec, resolve_operator
from towhee_ray.pipeline import RayOp, ray_op, wide

__version__ = '0.1.0'

__all__ = [
    'DataCollection', 'Empty', 'Backend', 'OperatorFactory', 'OperatorSpec', 'OperatorNotFoundError',
    'ENTRY_POINT_GROUP', 'available_backends', 'get_backend', 'resolve_operator', 'connect',
    'init', 'ClusterInfo', 'WorkerError', 'RayOp', 'ray_op', 'wide', 'use_local_hub',
    'Entity', 'dc', 'glob', 'read_csv', 'read_json', 'from_df', 'read_parquet',
    # not 'range': a star import would shadow the builtin
]


def __getattr__(name: str):
    # Entity is Towhee's class; importing Towhee takes seconds, so only when asked for.
    if name == 'Entity':
        from towhee_ray.quiet import quiet_towhee
        quiet_towhee()
        from towhee.datacollection.entity import Entity
        return Entity
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
