"""ann-search/milvus-client: the nearest rows of a Milvus collection, as Towhee's hub operator.

Usage: ``ops.ann_search.milvus_client(uri='./vectors.db', collection_name='items', limit=3,
output_fields=['text'])`` in a ``towhee.pipe`` (``.flat_map('vec', 'rows', ...)``) or a
DataCollection chain. A call returns ``[[id, score, *output_fields], ...]``, best first.
"""
from typing import Any, List, Optional

from towhee_ray.sinks.milvus_collection import Target
from towhee_ray.sinks.milvus_connection import connect_token, server_uri


class MilvusClient:
    """Towhee's ``ann-search/milvus-client``. Keywords as the hub's: ``limit`` (10),
    ``output_fields``, ``metric_type`` (default: the index's), ``param`` (search params,
    e.g. ``{'params': {'ef': 64}}``), ``anns_field`` (default: the vector field)."""

    def __init__(self, host: str = 'localhost', port: int = 19530, collection_name: Optional[str] = None,
                 user: Optional[str] = None, password: Optional[str] = None, uri: Optional[str] = None,
                 token: Optional[str] = None, limit: int = 10, output_fields: Optional[List[str]] = None,
                 metric_type: Optional[str] = None, param: Optional[dict] = None,
                 anns_field: Optional[str] = None) -> None:
        if not collection_name:
            raise TypeError('ann_search.milvus_client needs collection_name=')
        self.target = Target(collection_name, uri=server_uri(host, port, uri), token=connect_token(user, password, token))
        if not self.target.exists():
            raise ValueError(f'{self.target} does not exist: insert into it first')
        vectors = [field.name for field in self.target.fields() if field.dim]
        self.anns_field = anns_field or vectors[0]
        self.limit = limit
        self.output_fields = list(output_fields or [])
        self.search_params = dict(param or {})
        if metric_type:
            self.search_params['metric_type'] = metric_type

    def __call__(self, query: Any) -> List[List[Any]]:
        hits = self.target.search(query, self.anns_field, self.limit, self.output_fields, self.search_params)
        return [[hit['id'], hit['distance'], *(hit['entity'].get(name) for name in self.output_fields)]
                for hit in hits]


def milvus_client(*args: Any, **kws: Any) -> MilvusClient:
    return MilvusClient(*args, **kws)
