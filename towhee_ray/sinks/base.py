"""What every sink shares: a small lifecycle, and the driver loop that feeds it batches.

A :class:`Sink` is one destination (a Milvus collection, a Faiss index, a Parquet file).
Like Ray Data's ``Datasink`` it does not own the stream: :func:`write_rows` pulls rows,
picks the sink's fields out of each, and hands the sink batches of ``batch_size`` rows:

* ``on_write_start(batch)`` once, with the first batch, to create the destination from
  the rows' schema (a Milvus collection typed from the values, a Parquet schema, ...);
* ``write(batch)`` per batch; a batch is committed when ``write`` returns, so a job that
  dies later never loses it;
* ``on_write_complete(result)`` at the end (flush, close, fill in what the sink adds to
  the result), or ``on_write_failed(error)`` when the stream or a write raised (release
  what the sink holds; what was committed stays).

Driver memory is bounded by one batch, whatever the stream's length.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from towhee_ray.checks import positive_int
from towhee_ray.rows import fields_of, is_entity


@dataclasses.dataclass
class WriteResult:
    """What a sink wrote. ``insert_count`` as pymilvus names it.

    >>> WriteResult(insert_count=3, destination='items')
    WriteResult(insert_count=3, batches=0, destination='items', details={})
    """

    insert_count: int = 0
    batches: int = 0
    destination: str = ''
    details: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Batch:
    """Rows for one ``write`` call: one dict per row, with the sink's fields in order;
    ``first`` is the position of the first row in the stream (for error messages), None
    in a worker, which does not know it (the step's error then names the element)."""

    rows: List[Dict[str, Any]]
    first: Optional[int] = 0
    #: The last row :meth:`where` named: the row that a sink's error is about (a worker
    #: fails that row's element); None when no message named one. Sinks name rows only in
    #: their errors, so that this is the bad row.
    named: Optional[int] = dataclasses.field(default=None, repr=False, compare=False)

    def where(self, index: int, key_field: Optional[str] = None) -> str:
        """Names a row for an error message: its position, and its key when there is one.

        >>> Batch([{'id': 7, 'vec': [0.1]}], first=40).where(0, 'id')
        'row #40 (id=7)'
        >>> Batch([{'id': 7, 'vec': [0.1]}], first=None).where(0, 'id')
        'the row (id=7)'
        """
        self.named = index
        row = self.rows[index]
        key = f' ({key_field}={row[key_field]!r})' if key_field and key_field in row else ''
        return f'{"the row" if self.first is None else f"row #{self.first + index}"}{key}'

    def column(self, name: str) -> List[Any]:
        return [row[name] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


class Sink(abc.ABC):
    """One destination of rows. Subclasses say only what differs: ``write`` always, the
    other hooks when they need them.

    ``fields`` are the names of the subscript (``to_milvus['id', 'vec']``): the fields
    each row gives, in that order; where the sink has a primary key it is ``fields[0]``.
    """

    #: Rows per ``write`` call when the user does not choose.
    default_batch_size = 1000
    #: Whether the sink may be made without fields, and take the first row's
    #: (:meth:`take_fields`); otherwise the fields are required.
    fields_from_first_row = False
    #: The sink's name in messages (``to_parquet``), as the user called it.
    call_name = 'the sink'

    def __init__(self, fields: Sequence[str], batch_size: Optional[int] = None) -> None:
        if not fields and not self.fields_from_first_row:
            raise TypeError(f'{type(self).__name__} needs the fields to write, in a subscript: '
                            f"e.g. to_milvus['id', 'vec'](...)")
        self.fields: Tuple[str, ...] = tuple(fields or ())
        batch_size = self.default_batch_size if batch_size is None else batch_size
        self.batch_size = positive_int(batch_size, 'batch', 'rows per write')

    def take_fields(self, row: Any, where: str) -> None:
        """Write the fields of ``row``, the first one (for a sink made without fields)."""
        _refuse_empty(row, where)
        if not (isinstance(row, dict) or is_entity(row)):
            raise TypeError(f'{self.call_name} writes entity or dict rows, got a {type(row).__name__} '
                            f"({where}); make entity rows first (DataCollection['name'](...)) or name the "
                            f"fields: {self.call_name}['name'](...)")
        self.fields = tuple(fields_of(row))

    @property
    def key_field(self) -> str:
        return self.fields[0]

    #: The positions of the rows of the last batch that ``write`` left out: their key was
    #: held already, or came again later in the batch (a worker reports them as skipped).
    last_skipped_rows: Sequence[int] = ()

    def on_write_start(self, batch: Batch) -> None:
        """Create or open the destination; ``batch`` holds the first rows (none when the
        stream was empty: then create nothing that needs a schema)."""

    @abc.abstractmethod
    def write(self, batch: Batch) -> int:
        """Write one batch; it is committed when this returns. Returns rows written."""

    def on_write_complete(self, result: WriteResult) -> WriteResult:
        """Flush and close; return ``result``, completed with what this sink adds."""
        return result

    def on_write_failed(self, error: BaseException) -> None:
        """Release what the sink holds; committed batches stay."""

    def in_worker(self) -> None:
        """Called once when a worker makes this sink, to write its share of a job's rows
        beside other workers (:mod:`~towhee_ray.sinks.in_workers`): a sink that names files
        makes its names its own."""

    def on_workers_start(self) -> None:
        """In the driver, once its workers are about to write this job's rows (after
        ``on_write_start``); the sink's ``on_write_complete`` or ``on_write_failed`` follows."""

    def on_chunk_complete(self) -> None:
        """In a worker, after each chunk's rows: make them visible and durable without
        the end of the job, which a worker never sees (Parquet closes its open part)."""

    def existing_keys(self, keys: Sequence[Any]) -> Set[Any]:
        """Which of ``keys`` the destination already holds (to resume a job)."""
        raise NotImplementedError(f'{type(self).__name__} cannot tell which keys it already holds')

    def describe(self) -> str:
        """The destination, for messages and ``WriteResult.destination``."""
        return type(self).__name__


def _refuse_empty(row: Any, where: str) -> None:
    if type(row).__name__ == 'Empty' and type(row).__module__ == 'towhee_ray.guard':
        raise ValueError(f'{where} is an Empty (a failed element of a safe() chain: '
                         f'{row.exception!r}); drop them before the sink with drop_empty()')


def row_fields(row: Any, fields: Tuple[str, ...], where: str) -> Dict[str, Any]:
    """The sink's fields of one element: an entity or dict row by name; a plain value when
    the sink writes one field; a tuple or list by position. ``where`` names the row in an
    error (``'row #3'``).

    >>> row_fields({'id': 1, 'vec': [0.5], 'text': 'a'}, ('id', 'vec'), 'row #0')
    {'id': 1, 'vec': [0.5]}
    """
    if isinstance(row, dict) or is_entity(row):
        values = fields_of(row)
        missing = [name for name in fields if name not in values]
        if missing:
            key = f' ({fields[0]}={values[fields[0]]!r})' if fields[0] in values else ''
            raise KeyError(f'{where}{key} has no field {missing[0]!r} (its fields: '
                           f'{", ".join(map(repr, values)) or "none"}); the sink writes {list(fields)}')
        return {name: values[name] for name in fields}
    _refuse_empty(row, where)
    if len(fields) == 1:
        return {fields[0]: row}
    if isinstance(row, (tuple, list)) and len(row) == len(fields):
        return dict(zip(fields, row))
    raise TypeError(f'{where} is a {type(row).__name__}, not an entity or dict row with the '
                    f'fields {list(fields)}; make entity rows first, e.g. '
                    f"DataCollection[{', '.join(map(repr, fields))}](...)")


def write_rows(rows: Iterable[Any], sink: Sink) -> WriteResult:
    """Feed ``rows`` (a stream or a list) to ``sink`` in batches of ``sink.batch_size``.

    Holds at most one batch; closes the stream when done or failed.

    >>> class Collect(Sink):
    ...     got = []
    ...     def write(self, batch):
    ...         self.got.append(batch.column('n'))
    ...         return len(batch)
    >>> sink = Collect(['n'], batch_size=2)
    >>> write_rows(iter([{'n': 1}, {'n': 2}, {'n': 3}]), sink).insert_count, sink.got
    (3, [[1, 2], [3]])
    """
    result = WriteResult(destination=sink.describe())
    iterator = iter(rows)
    started = False
    try:
        pending: List[Dict[str, Any]] = []
        position = 0
        for position, row in enumerate(iterator):
            if not sink.fields:
                sink.take_fields(row, f'row #{position}')
            pending.append(row_fields(row, sink.fields, f'row #{position}'))
            if len(pending) == sink.batch_size:
                started = _flush(sink, Batch(pending, position + 1 - len(pending)), result, started)
                pending = []
        if pending or not started:
            _flush(sink, Batch(pending, position + 1 - len(pending) if pending else 0), result, started)
    except BaseException as error:
        sink.on_write_failed(error)
        raise
    finally:
        close = getattr(iterator, 'close', None)
        if close is not None:
            close()
    return sink.on_write_complete(result)


def _flush(sink: Sink, batch: Batch, result: WriteResult, started: bool) -> bool:
    if not started:
        sink.on_write_start(batch)
    if batch.rows:
        batch.named = None
        try:
            result.insert_count += sink.write(batch)
        except Exception as error:
            if batch.named is None and not hasattr(error, 'row_index') and batch.first is not None:
                last = batch.first + len(batch) - 1   # refused whole (a server's error names no row)
                error.add_note(f'{sink.call_name} refused rows #{batch.first}-#{last} (one batch) as a '
                               f'whole: the bad value may be in any of them; the batches before it were '
                               f'written')
            raise
        result.batches += 1
    return True
