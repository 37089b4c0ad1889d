"""What a Towhee 0.9 DataCollection offers besides map/filter, one module per concern.

``DataCollection`` (in :mod:`towhee_ray.datacollection`) is the chainable core; it mixes in:

- :mod:`~towhee_ray.collection.columns`: column style (``['in', 'out']``), the one path
  by which steps read and write row fields;
- :mod:`~towhee_ray.collection.entities`: entity conversions (``as_entity``, ``select``, ...);
- :mod:`~towhee_ray.collection.safety`: ``exception_safe``, ``fill_empty``, ``drop_empty``;
- :mod:`~towhee_ray.collection.processing`: ``head``, ``batch``, ``rolling``, ``group_by``, ...;
- :mod:`~towhee_ray.collection.lists`: the list methods of unstreamed collections;
- :mod:`~towhee_ray.collection.sources`: files and pandas in and out, ``dc``/``range``/``glob``;
- :mod:`~towhee_ray.collection.parquet`: ``to_parquet`` and ``read_parquet``;
- :mod:`~towhee_ray.collection.faiss`: ``to_faiss``;
- :mod:`~towhee_ray.collection.milvus`: ``to_milvus`` (sinks live in :mod:`towhee_ray.sinks`);
- :mod:`~towhee_ray.collection.resume`: ``skip_existing``, what makes a job resumable;
- :mod:`~towhee_ray.collection.display`: ``show`` and the notebook table;
- :mod:`~towhee_ray.collection.settings`: ``get_backend``, ``set_chunksize``, ...;
- :mod:`~towhee_ray.collection.compat`: Towhee 0.9 names that towhee_ray does not provide.
"""
from towhee_ray.collection.display import DisplayMixin
from towhee_ray.collection.entities import EntityMixin
from towhee_ray.collection.faiss import FaissMixin
from towhee_ray.collection.lists import ListMixin
from towhee_ray.collection.milvus import MilvusMixin
from towhee_ray.collection.parquet import ParquetMixin
from towhee_ray.collection.processing import ProcessingMixin
from towhee_ray.collection.resume import ResumeMixin
from towhee_ray.collection.safety import SafetyMixin
from towhee_ray.collection.settings import SettingsMixin
from towhee_ray.collection.sources import SourcesMixin

__all__ = ['DisplayMixin', 'EntityMixin', 'FaissMixin', 'ListMixin', 'MilvusMixin', 'ParquetMixin',
           'ProcessingMixin', 'ResumeMixin', 'SafetyMixin', 'SettingsMixin', 'SourcesMixin']
