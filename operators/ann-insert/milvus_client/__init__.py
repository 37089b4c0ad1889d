"""ann-insert/milvus-client: insert one row into a Milvus collection, as Towhee's hub operator.

Usage: ``ops.ann_insert.milvus_client(uri='./vectors.db', collection_name='items')`` in a
``towhee.pipe`` (``.map(('id', 'vec'), 'mr', ...)``) or ``dc.ann_insert.milvus_client[...]``.
The collection must exist; the values of a call are its fields, in its field order.
"""
from typing import Any, Optional

from towhee_ray.sinks.base import WriteResult
from towhee_ray.sinks.milvus_collection import Target, value_for
from towhee_ray.sinks.milvus_connection import connect_token, server_uri


class MilvusClient:
    """Towhee's ``ann-insert/milvus-client``: ``host``/``port``/``user``/``password`` (a
    server) or ``uri`` (a Milvus Lite file or a server URL) with ``token``."""

    def __init__(self, host: str = 'localhost', port: int = 19530, collection_name: Optional[str] = None,
                 user: Optional[str] = None, password: Optional[str] = None, uri: Optional[str] = None,
                 token: Optional[str] = None) -> None:
        if not collection_name:
            raise TypeError('ann_insert.milvus_client needs collection_name=')
        self.target = Target(collection_name, uri=server_uri(host, port, uri),
                             token=connect_token(user, password, token))
        if not self.target.exists():
            raise ValueError(f'{self.target} does not exist: create it first (to_milvus creates one from its '
                             f'first rows, or MilvusClient.create_collection)')
        self.fields = [field for field in self.target.fields() if not field.auto_id]

    def __call__(self, *data: Any) -> WriteResult:
        if len(data) != len(self.fields):
            raise ValueError(f'{self.target} takes {len(self.fields)} values per row, in its field order '
                             f'{[field.name for field in self.fields]}; got {len(data)}')
        row = {field.name: value_for(field, value) for field, value in zip(self.fields, data)}
        return WriteResult(insert_count=self.target.put([row], upsert=False), batches=1,
                           destination=str(self.target))


def milvus_client(*args: Any, **kws: Any) -> MilvusClient:
    return MilvusClient(*args, **kws)
