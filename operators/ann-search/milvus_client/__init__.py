"""ann-search/milvus-client: the nearest rows of a Milvus collection, as Towhee's hub operator.

Usage: ``ops.ann_search.milvus_client(uri='./vectors.db', collection_name='items', limit=3,
output_fields=['text'])`` in a ``towhee.pipe`` (``.flat_map('vec', 'rows', ...)``) or a
DataCollection chain. A call returns ``[[id, score, *output_fields], ...]``, best first.
"""
from typing import Any, List, Optional

from towhee_ray.sinks.checks import as_vector, dimension_error
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
        self.target = Target(collection_name, uri=server_uri(host, port, uri),
                             token=connect_token(user, password, token))
        if not self.target.exists():
            raise ValueError(f'{self.target} does not exist: insert into it first')
        fields = self.target.fields()
        vectors = [field.name for field in fields if field.dim]
        self.anns_field = anns_field or vectors[0]
        # the searched field's dimension, to name a query of another (Milvus's own error is empty)
        self.dim = next((field.dim for field in fields if field.name == self.anns_field), None)
        self.limit = limit
        self.output_fields = list(output_fields or [])
        names = [field.name for field in fields]
        unknown = [name for name in self.output_fields if name not in names and name != '*']
        if unknown and not self._has_dynamic_fields():
            raise ValueError(f'{self.target} has no field {unknown[0]!r} (output_fields='
                             f'{self.output_fields}); its fields are {names}')
        self.search_params = dict(param or {})
        if metric_type:
            self.search_params['metric_type'] = metric_type

    def _has_dynamic_fields(self) -> bool:
        """Whether the collection keeps fields beyond its schema, which any row may hold."""
        described = self.target.client.describe_collection(self.target.name, timeout=self.target.timeout)
        return bool(described.get('enable_dynamic_field'))

    def __call__(self, query: Any) -> List[List[Any]]:
        """``[[id, score, *output_fields], ...]`` of the rows nearest to ``query``, best first."""
        # bytes are a binary vector's packed bits; a query that is no vector is Target.search's error
        if isinstance(query, (bytes, bytearray)):
            size = len(query) * 8
        else:
            vector = as_vector(query)
            size = len(vector) if vector is not None else 0
        if self.dim and size and size != self.dim:
            raise dimension_error(self.anns_field, size, 'the collection', self.dim, 'the search query')
        hits = self.target.search(query, self.anns_field, self.limit, self.output_fields, self.search_params)
        return [[hit['id'], hit['distance'], *(hit['entity'].get(name) for name in self.output_fields)]
                for hit in hits]


def milvus_client(*args: Any, **kws: Any) -> MilvusClient:
    return MilvusClient(*args, **kws)
