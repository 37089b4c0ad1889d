"""Sinks written by the workers of a chain's last step, so rows never travel to the driver.

``dc.stream().set_parallel(2, backend='ray').map(embed).to_milvus[...](uri='http://...')``
runs ``embed`` and the write in the same worker, chunk by chunk: each worker opens its own
:class:`~towhee_ray.sinks.Sink` (:class:`SinkRecipe` says how) and writes the rows its chunk
made, in the sink's batches. What comes back to the driver is one small marker per row
(:data:`WRITTEN`, :data:`SKIPPED`), in input order, or the :class:`~towhee_ray.guard.Failure`
of the first element that could not be made or written; the driver counts the markers.

Which sinks: Milvus into a server (each worker its own connection; Milvus Lite has one
writer, the driver's server) and Parquet (each worker its own part files, closed at the
end of each chunk: :meth:`Sink.on_chunk_complete`). Faiss is filled in the driver: one
in-memory index saved to one file has one writer.

A row that fails stops the job as in the driver (the chain raises it with the element's
position); rows of chunks that other workers ran meanwhile may be written too. A sink
that never holds a key twice (Milvus upserts, Parquet with ``key=``, ``skip_existing``
before the model) makes a rerun end with each key once.
"""
from __future__ import annotations

import dataclasses
import threading
import traceback
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from towhee_ray.guard import DROPPED, Failure
from towhee_ray.sinks.base import Batch, Sink, WriteResult, row_fields

#: The marker of a row the worker's sink wrote.
WRITTEN = 1
#: The marker of a row whose key the sink held already and left as it was.
SKIPPED = 0
#: Added to the marker of the first row of each batch a worker's sink wrote (the driver
#: counts them as ``WriteResult.batches``).
BATCH = 2


@dataclasses.dataclass(frozen=True)
class SinkRecipe:
    """How a worker makes its sink: ``sink_class(fields, *args, **kws)``; picklable.

    >>> from towhee_ray.sinks.milvus import MilvusSink
    >>> SinkRecipe(MilvusSink, ('id', 'vec'), ('items',), {'uri': 'http://localhost:19530'}).describe()
    "Milvus collection 'items' at http://localhost:19530"
    """

    sink_class: type
    fields: Tuple[str, ...]
    args: Tuple[Any, ...] = ()
    kws: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: one per sink call: a worker opens its sink afresh for each job (the collection may
    #: have been dropped and made again in between)
    job: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def make(self) -> Sink:
        return self.sink_class(self.fields, *self.args, **self.kws)

    def describe(self) -> str:
        return self.make().describe()   # a sink opens nothing until its first write

    @property
    def key(self) -> Tuple[Any, ...]:
        return (self.job, self.sink_class, self.fields)


# The open sink of the job a thread of a worker process writes for: a Ray actor keeps it
# between chunks, a task's worker process between tasks, a thread of the thread backend its
# own; a new job's first chunk closes the previous job's.
_open = threading.local()


def _sink_for(recipe: SinkRecipe) -> Sink:
    current = getattr(_open, 'sink', None)
    if current is not None and _open.key == recipe.key:
        return current
    if current is not None:
        _close(current)
    _open.sink, _open.key = None, recipe.key
    sink = _open.sink = recipe.make()
    sink.in_worker()
    sink.worker_started = False
    return sink


def _close(sink: Sink) -> None:
    close = getattr(sink, 'close', None)
    if close is not None:
        try:
            close()
        except Exception:   # noqa: BLE001 - a connection already gone: nothing to release
            pass


def _failure(value: Any, error: BaseException) -> Failure:
    return Failure(value, error, ''.join(traceback.format_exception(error)))


def write_outputs(outputs: List[Any], inputs: List[Any], recipe: SinkRecipe) -> List[Any]:
    """Write the rows among ``outputs`` with this worker's sink; return one marker per
    element, in order, up to and including the first failure (nothing after it is written).

    ``inputs`` are the elements the outputs were made from (a failure names its element).
    """
    sink = _sink_for(recipe)
    rows: List[Dict[str, Any]] = []
    row_inputs: List[Any] = []
    slots: List[Any] = []    # per element: DROPPED, or the index of its row in ``rows``
    failure: Optional[Failure] = None
    for item, output in zip(inputs, outputs):
        if output is DROPPED:
            slots.append(DROPPED)
            continue
        if output.__class__ is Failure:
            failure = output
            break
        try:
            if not sink.fields:
                sink.take_fields(output, 'the row')
            rows.append(row_fields(output, sink.fields, 'the row'))
        except (KeyError, TypeError, ValueError) as error:
            failure = _failure(item, error)
            break
        row_inputs.append(item)
        slots.append(len(rows) - 1)
    try:
        outcome, write_failure = _write(sink, rows, row_inputs)
    finally:
        sink.on_chunk_complete()
    markers: List[Any] = []
    for slot in slots:
        if slot is DROPPED:
            markers.append(DROPPED)
        elif slot < len(outcome):
            markers.append(outcome[slot])
        else:   # the row that could not be written: nothing after it was
            return markers + [write_failure]
    return markers + ([failure] if failure is not None else [])


def _write(sink: Sink, rows: List[Dict[str, Any]],
           row_inputs: List[Any]) -> Tuple[List[int], Optional[Failure]]:
    """Write ``rows`` in the sink's batches: WRITTEN or SKIPPED for each row written, up to
    the first that could not be, and that row's Failure."""
    outcome: List[int] = []
    for start in range(0, len(rows), sink.batch_size):
        batch = Batch(rows[start:start + sink.batch_size], first=None)
        writing = False
        try:
            if not sink.worker_started:
                sink.on_write_start(batch)
                sink.worker_started = True
            batch.named, writing = None, True
            sink.write(batch)
        except Exception as error:   # noqa: BLE001 - the element's failure, raised in the driver
            row = getattr(error, 'row_index', batch.named)
            if row is None and writing and len(batch) > 1:   # refused whole (a server's error names no row)
                error.add_note(f'{sink.call_name} refused the batch of {len(batch)} rows this element '
                               f'starts, as a whole: the bad value may be in any of them (this element '
                               f'and the {len(batch) - 1} after it); the rows before it were written')
            index = start + (row or 0)
            outcome.extend([WRITTEN] * (index - start))
            return outcome, _failure(row_inputs[index], error)
        skipped = set(sink.last_skipped_rows)
        outcome.extend((SKIPPED if index in skipped else WRITTEN) + (BATCH if index == 0 else 0)
                       for index in range(len(batch.rows)))
    return outcome, None


class WriteAfter:
    """A step's (guarded) callable followed by a write, chunk by chunk, in the worker;
    ``map_chunk`` is what the chunked backends call (see ``timed_map``). ``writes`` tells
    a backend that its calls have effects outside: closing the step waits for them to end
    (a failed job's calls must not write on behind the sink's checks)."""

    writes = True

    def __init__(self, call: Callable[[Any], Any], recipe: SinkRecipe) -> None:
        self.call = call
        self.recipe = recipe

    @property
    def name(self) -> str:
        inner = getattr(self.call, 'name', None) or getattr(self.call, '__name__', type(self.call).__name__)
        return f'{inner} + {self.recipe.sink_class.__name__}'

    def map_chunk(self, chunk: List[Any]) -> List[Any]:
        return write_outputs([self.call(item) for item in chunk], chunk, self.recipe)

    def __call__(self, item: Any) -> Any:
        return self.map_chunk([item])[0]


class WriteAfterOperator:
    """An operator factory whose instances write what they make (see :class:`WriteAfter`)."""

    def __init__(self, operator: Any, recipe: SinkRecipe) -> None:
        self.operator = operator
        self.recipe = recipe
        self.name = f'{operator.name} + {recipe.sink_class.__name__}'

    def create(self) -> WriteAfter:
        return WriteAfter(self.operator.create(), self.recipe)


def collect(markers: Iterable[Any], sink: Sink) -> WriteResult:
    """Run a chain whose last step writes in its workers to its end, in the driver: count
    its markers, then complete ``sink`` (a Milvus flush) as the driver's own writes would.
    ``details['writers']`` says who wrote: ``'workers'``; ``batches`` counts the batches
    the workers wrote."""
    result = WriteResult(destination=sink.describe(), details={'writers': 'workers'})
    existed = _exists(sink)
    skipped = 0
    iterator = iter(markers)
    try:
        try:
            sink.on_write_start(Batch([]))   # open what exists, before any worker runs
            sink.on_workers_start()
            for marker in iterator:
                marker = marker if isinstance(marker, int) else SKIPPED
                if marker & WRITTEN:
                    result.insert_count += 1
                else:
                    skipped += 1
                if marker & BATCH:
                    result.batches += 1
        finally:   # the chain's workers end first: none writes on while the sink completes
            getattr(iterator, 'close', lambda: None)()
    except BaseException as error:
        # a collection the workers made for this job (none existed) is the job's own: the
        # sink drops it again where it holds no row, as it does one it made itself
        sink.created = not existed
        sink.on_write_failed(error)
        raise
    sink.skipped, sink.created = skipped, not existed and result.insert_count > 0
    return sink.on_write_complete(result)


def _exists(sink: Sink) -> bool:
    target = getattr(sink, 'target', None)
    return target.exists() if target is not None else True
