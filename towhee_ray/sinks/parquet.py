"""Parquet: rows into a folder of part files, a row group per batch.

``to_parquet(path)`` writes into the folder ``path`` (created when missing): one column per
field, numpy vectors as fixed-size lists (floats as float32), the other values as pyarrow
infers them from the first rows. Each part is a ``pyarrow.parquet.ParquetWriter`` opened
once with that schema, ``write_table`` per batch (one row group each), closed in every
case. A part is written as a hidden ``.part-NNNNN.parquet.inprogress`` and renamed to
``part-NNNNN.parquet`` when closed: readers (``read_parquet``, pandas, Ray Data, DuckDB)
never see a file without its footer. Parts close every ``rows_per_file`` rows, at the end,
and when the stream or a write fails, so what was written before a failure is kept; a
killed job loses only the part it had open.

A re-run job adds new parts, numbered after the folder's, with the folder's schema (a
``schema=`` that differs, or parts that disagree, is an error); a value its column would
store changed (a float in an integer column, a dict key its struct lacks) is an error naming
the row. With ``key='id'`` rows whose key the folder already holds are skipped, never written twice
(:meth:`ParquetSink.existing_keys` tells which, for a resumed job). One job writes into a
folder at a time: it holds a lock on the folder (``.towhee-ray.lock``, released when it
ends or its process dies; a second job gets a ``BlockingIOError``), and removes the
unfinished parts it finds, left by a killed one; a job that fails removes those its workers
were writing when they were stopped, before it lets the folder go.

Several workers may write into one folder at once (:mod:`~towhee_ray.sinks.in_workers`):
each then names its parts ``part-NNNNN-<writer>.parquet`` and closes one at the end of
each chunk. Each skips the keys the folder held when it started, but not those another
worker of the same job writes: with ``key=``, the job's own parts are checked for keys
written twice when it ends, and the later rows removed. Each worker types its parts from
its own first rows: parts of a job that type a column differently fail it, and are removed.
While workers write, the folder holds a marker (``.towhee-ray-unchecked``); a job killed
before that check leaves it, and the next job checks the whole folder first. ``read_parquet``
(:mod:`towhee_ray.collection.parquet_reader`) streams rows back.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from towhee_ray.checks import positive_int
from towhee_ray.extras import require
from towhee_ray.sinks.base import Batch, Sink, WriteResult
from towhee_ray.checks import shown
from towhee_ray.sinks.checks import as_vector, checked_key, keys_held, vector_matrix
from towhee_ray.sinks.locks import WriteLock

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: A part's name: ``part-00003.parquet`` from the driver, ``part-00003-<writer>.parquet``
#: from one of several workers writing into the folder at once (each its own parts).
PART_PATTERN = re.compile(r'part-(\d+)(?:-[0-9a-f]+)?\.parquet')
IN_PROGRESS = '.inprogress'
#: The lock file of the job writing into a folder (:class:`~towhee_ray.sinks.locks.WriteLock`).
LOCK_FILE = '.towhee-ray.lock'
#: In a folder whose workers write a keyed job: its parts may hold a key twice until the job
#: ends and checks them (a job killed before has the next one check the whole folder).
UNCHECKED_MARKER = '.towhee-ray-unchecked'

#: Rows per part file: 100,000 vectors of 384 float32 dimensions make a ~150 MB file, in
#: the 100 MB - 1 GB range Parquet readers handle best; a killed job loses at most the open
#: part. Chosen, not measured.
DEFAULT_ROWS_PER_FILE = 100_000

#: Rows per record batch when reading back: one batch of 384-dimension vectors is 1.5 MB,
#: so a reader holds little more than that. Chosen, not measured.
READ_BATCH_ROWS = 1024

#: numpy kinds stored as fixed-size lists of their own type (floats become float32).
_INTEGER_KINDS = 'biu'


def import_pyarrow() -> Any:
    """``pyarrow`` with ``pyarrow.parquet`` loaded, or an ``ImportError`` saying how to install it."""
    needed_by, install = 'to_parquet/read_parquet', "pip install 'towhee-ray[parquet]'"
    require('pyarrow.parquet', needed_by, install)
    return require('pyarrow', needed_by, install)   # imported with it: no second import


def folder_parts(folder: Path) -> List[Path]:
    """A folder's Parquet files in name order, hidden ones (unfinished parts) left out."""
    return sorted(child for child in folder.glob('*.parquet')
                  if child.is_file() and not child.name.startswith(('.', '_')))


# -- schema ----------------------------------------------------------------------------------

def infer_schema(batch: Batch, fields: Sequence[str], key_field: str, pyarrow: Any) -> Any:
    """A pyarrow schema for ``fields``, each typed from its first value that is not None."""
    return pyarrow.schema([(name, _field_type(batch, name, key_field, pyarrow)) for name in fields])


def _field_type(batch: Batch, name: str, key_field: str, pyarrow: Any) -> Any:
    values = batch.column(name)
    for index, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, np.ndarray) and value.ndim > 1:
            raise TypeError(f'{batch.where(index, key_field)}: field {name!r} is an array of shape '
                            f'{value.shape}; to_parquet stores vectors (1-D): flatten it first, e.g. '
                            f"runas_op['{name}', '{name}'](func=lambda a: a.reshape(-1))")
        if isinstance(value, np.ndarray) and value.dtype.kind in 'f' + _INTEGER_KINDS:
            floats = value.dtype.kind == 'f'
            value_type = pyarrow.float32() if floats else pyarrow.from_numpy_dtype(value.dtype)
            return pyarrow.list_(value_type, len(value))
        if isinstance(value, np.integer):   # as Python's ints: a later row may need all 64 bits
            return pyarrow.uint64() if value.dtype == np.uint64 else pyarrow.int64()
        if isinstance(value, np.generic):
            return pyarrow.from_numpy_dtype(value.dtype)
        try:
            return pyarrow.infer_type([v for v in values if v is not None])
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
            raise TypeError(f'field {name!r}: pyarrow cannot store {shown(value)} '
                            f'({type(value).__name__}) of {batch.where(index, key_field)} ({error}); '
                            f'convert it first, or give schema=pyarrow.schema([...])') from error
    raise ValueError(f'field {name!r} is None in all of the first {len(values)} rows, so its Parquet type is '
                     f'unknown; give it with schema=pyarrow.schema([...]) or drop the field')


def batch_table(batch: Batch, schema: Any, key_field: str, origin: str, pyarrow: Any) -> Any:
    """``batch`` as a pyarrow table of ``schema``; a value the schema cannot hold is an
    error naming its row, field and the column's type (``origin`` says where the type came from)."""
    arrays = []
    for field in schema:
        if pyarrow.types.is_fixed_size_list(field.type):
            kind = field.type
            dtype = kind.value_type.to_pandas_dtype()
            if np.dtype(dtype).kind in _INTEGER_KINDS:
                _check_integer_vectors(batch, field, key_field, origin)
            matrix = vector_matrix(batch, field.name, kind.list_size, dtype, key_field,
                                   f'the Parquet column ({origin})')
            values = pyarrow.array(matrix.reshape(-1))
            arrays.append(pyarrow.FixedSizeListArray.from_arrays(values, type=kind))
        else:
            arrays.append(_array(batch, field, key_field, origin, pyarrow))
    return pyarrow.Table.from_arrays(arrays, schema=schema)


_CONVERSION_ERRORS = (TypeError, ValueError, OverflowError)


def _differences(schema: Any, other: Any) -> List[Tuple[str, Any, Any]]:
    """The columns two schemas type differently (or one lacks: type None), each as
    ``(name, its type in schema, its type in other)``."""
    def type_of(source: Any, name: str) -> Any:
        return source.field(name).type if name in source.names else None
    names = list(schema.names) + [name for name in other.names if name not in schema.names]
    return [(name, type_of(schema, name), type_of(other, name)) for name in names
            if type_of(schema, name) != type_of(other, name)]


def _check_integer_vectors(batch: Batch, field: Any, key_field: str, origin: str) -> None:
    """A vector of floats, or of integers past the range of an integer vector column, is an
    error naming its row: numpy would truncate or wrap them."""
    info = np.iinfo(field.type.value_type.to_pandas_dtype())
    for index, value in enumerate(batch.column(field.name)):
        vector = as_vector(value)
        if vector is None or not len(vector):   # vector_matrix names what it is
            continue
        if vector.dtype.kind == 'f':
            raise TypeError(f'{batch.where(index, key_field)}: field {field.name!r} is a vector of '
                            f'{vector.dtype}, but its Parquet column holds {field.type} ({origin}), '
                            f'which would truncate it; give every row the same type')
        if vector.dtype.kind in 'iu' and (vector.min() < info.min or vector.max() > info.max):
            raise ValueError(f'{batch.where(index, key_field)}: field {field.name!r} holds a value out '
                             f'of {field.type.value_type} range ({info.min}..{info.max}), the type of its '
                             f'Parquet column ({origin}); give every row the same type')


def _problem(value: Any, kind: Any, pyarrow: Any) -> Optional[Tuple[Any, str, str]]:
    """What storing ``value`` as the pyarrow type ``kind`` would lose or change (pyarrow
    truncates a float into an integer, turns a bool into 1.0, drops a dict's unknown keys):
    the value at fault (``value`` or one inside it), what is wrong with it and what to do;
    None where it is stored as it is."""
    types = pyarrow.types
    if value is None:
        return None
    if types.is_integer(kind) or types.is_floating(kind):
        floats = isinstance(value, (float, np.floating))
        if isinstance(value, (bool, np.bool_)) or (types.is_integer(kind) and floats):
            return value, f'{shown(value)} ({type(value).__name__}) where it holds {kind}', SAME_TYPE
        if types.is_integer(kind) and isinstance(value, (int, np.integer)):
            info = np.iinfo(kind.to_pandas_dtype())
            if not info.min <= int(value) <= info.max:
                return value, f'{value}, out of {kind} range ({info.min}..{info.max})', WIDER_TYPE
        return None
    if types.is_struct(kind) and isinstance(value, dict):
        names = [kind.field(index).name for index in range(kind.num_fields)]
        unknown = [key for key in value if key not in names]
        if unknown:
            return value, f'the key {unknown[0]!r}, which its struct has no field for', SAME_KEYS
        for index in range(kind.num_fields):
            found = _problem(value.get(kind.field(index).name), kind.field(index).type, pyarrow)
            if found is not None:
                return found
        return None
    if (types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind)) \
            and isinstance(value, (list, tuple, np.ndarray)):
        if isinstance(value, np.ndarray):   # its dtype says it all
            return _problem(value.flat[0] if value.size and value.dtype.kind in 'bf' else None,
                            kind.value_type, pyarrow)
        for item in value:
            found = _problem(item, kind.value_type, pyarrow)
            if found is not None:
                return found
    return None


SAME_TYPE = 'give every row the same type'
WIDER_TYPE = ('convert such values first (e.g. to str), or give schema=pyarrow.schema([...]) with a type '
              'that holds them')
SAME_KEYS = ('the first batch types the column, so give every key to the first row (None where it has no '
             'value), or give schema=pyarrow.schema([...])')


def _plainly_stored(values: List[Any], kind: Any, pyarrow: Any) -> bool:
    """Whether pyarrow stores every one of ``values`` as it is in a column of ``kind``,
    judged in bulk for the common columns (text, Python ints within range, floats), so that
    :func:`_problem` looks at each value only where one may be changed."""
    types = pyarrow.types
    if types.is_string(kind) or types.is_large_string(kind) or types.is_binary(kind):
        return True
    present = [value for value in values if value is not None]
    kinds = set(map(type, present))
    if types.is_floating(kind):
        return kinds <= {float, int}
    if types.is_integer(kind) and all(issubclass(each, (int, np.integer)) and each is not bool
                                      for each in kinds):
        info = np.iinfo(kind.to_pandas_dtype())
        return not present or (info.min <= int(min(present)) and int(max(present)) <= info.max)
    return False


def _array(batch: Batch, field: Any, key_field: str, origin: str, pyarrow: Any) -> Any:
    values = batch.column(field.name)
    if not _plainly_stored(values, field.type, pyarrow):
        for index, value in enumerate(values):   # values pyarrow would change without a word
            found = _problem(value, field.type, pyarrow)
            if found is None:
                continue
            at_fault, what, advice = found
            column = f'its Parquet column holds {field.type} ({origin})'
            error_class = TypeError if advice == SAME_TYPE else ValueError
            if at_fault is value and advice == SAME_TYPE:   # the documented error of a value of another type
                message = f'is {shown(value)} ({type(value).__name__}), but {column}'
            elif at_fault is value and advice == WIDER_TYPE:
                message = f'is {what}, and {column}'
            else:
                message = f'is {shown(value)}, with {what}; {column}'
            raise error_class(f'{batch.where(index, key_field)}: field {field.name!r} {message}; {advice}')
    try:
        return pyarrow.array(values, type=field.type)
    except _CONVERSION_ERRORS + (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
        for index, value in enumerate(values):
            try:
                pyarrow.array([value], type=field.type)
            except _CONVERSION_ERRORS + (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError):
                raise TypeError(f'{batch.where(index, key_field)}: field {field.name!r} is {shown(value)} '
                                f'({type(value).__name__}), but its Parquet column holds {field.type} '
                                f'({origin}); give every row the same type') from error
        raise


# -- the sink ----------------------------------------------------------------------------------

class ParquetSink(Sink):
    """Rows into the folder ``path`` of Parquet part files, one column per field.

    >>> import tempfile, pathlib, numpy
    >>> from towhee_ray.sinks import write_rows
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / 'vectors'
    >>> rows = [{'id': i, 'vec': numpy.full(4, i, dtype='float64')} for i in range(3)]
    >>> write_rows(rows, ParquetSink(['id', 'vec'], folder, key='id')).insert_count
    3
    >>> [path.name for path in folder_parts(folder)]
    ['part-00000.parquet']
    >>> from towhee_ray.collection.parquet_reader import read_rows
    >>> row = list(read_rows(folder_parts(folder)))[2]
    >>> row.id, row.vec
    (2, array([2., 2., 2., 2.], dtype=float32))
    >>> sorted(ParquetSink(['id', 'vec'], folder, key='id').existing_keys([1, 7]))
    [1]
    """

    default_batch_size = 1000
    call_name = 'to_parquet'

    def __init__(self, fields: Sequence[str], path: PathLike, *, key: Optional[str] = None,
                 batch_size: Optional[int] = None, rows_per_file: int = DEFAULT_ROWS_PER_FILE,
                 schema: Any = None, compression: str = 'snappy') -> None:
        super().__init__(fields, batch_size)
        self._pyarrow = import_pyarrow()
        self.path = Path(os.fspath(path)).expanduser()   # '~/out' is the user's, not a folder named ~
        self.key = key
        self.rows_per_file = positive_int(rows_per_file, 'rows_per_file', 'rows per part file')
        if schema is not None and not isinstance(schema, self._pyarrow.Schema):
            raise TypeError(f'schema= is a pyarrow schema, e.g. pyarrow.schema([("id", pyarrow.int64()), '
                            f'("vec", pyarrow.list_(pyarrow.float32(), 384))]); got {shown(schema)} '
                            f'({type(schema).__name__})')
        self.schema = schema
        if self.fields:
            self._check_fields()
        self.compression = self._checked_compression(compression)
        self.files: List[Path] = []      # the parts this job closed
        self.skipped = 0
        self._origin = 'given with schema=' if schema is not None else ''
        self._opened = False
        self._keys: Optional[Set[Any]] = None   # the folder's keys, read when first needed
        self._known_parts: Set[Path] = set()
        self._writer_id = ''                     # set in a worker: its parts get their own names
        self._lock: Optional[WriteLock] = None   # the driver's, while it writes
        self._made_folder = False                # whether this job made the folder
        self._next_part = 0
        self._writer: Any = None
        self._part: Optional[Path] = None
        self._rows_in_part = 0

    #: Without a subscript the fields are those of the first row.
    fields_from_first_row = True

    def _checked_compression(self, compression: Any) -> Any:
        """``compression`` where a Parquet writer takes it (tried on an empty one in memory),
        else a ``ValueError`` before anything runs."""
        pyarrow = self._pyarrow
        try:
            empty, memory = pyarrow.schema([('x', pyarrow.int64())]), pyarrow.BufferOutputStream()
            pyarrow.parquet.ParquetWriter(memory, empty, compression=compression).close()
        except (pyarrow.ArrowException, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"compression={compression!r} is not one a Parquet writer takes ({error}); give "
                             f"'snappy' (the default), 'gzip', 'brotli', 'lz4', 'zstd' or 'none'") from error
        return compression

    def _check_fields(self) -> None:
        if self.key is not None and self.key not in self.fields:
            raise ValueError(f'key={self.key!r} is not one of the fields written, {list(self.fields)}')
        if self.schema is not None and sorted(self.schema.names) != sorted(self.fields):
            raise ValueError(f'schema= has the fields {self.schema.names}, the rows written have '
                             f'{list(self.fields)}')

    def take_fields(self, row: Any, where: str) -> None:
        super().take_fields(row, where)
        self._check_fields()

    @property
    def key_field(self) -> str:
        """The key (``key=``); rows are named by the first field when there is none."""
        return self.key or self.fields[0]

    def in_worker(self) -> None:
        """Name this sink's parts ``part-NNNNN-<writer>.parquet``, so that several workers
        write into the folder at once; leave unfinished parts alone (other workers' own)."""
        self._writer_id = uuid.uuid4().hex[:8]

    def describe(self) -> str:
        return str(self.path)

    # -- opening what exists ---------------------------------------------------------------

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        self._check_folder()
        if not self.path.is_dir():
            return
        names = os.listdir(self.path)
        numbers = [int(match.group(1)) for match in map(PART_PATTERN.fullmatch, names) if match]
        self._next_part = max(numbers, default=-1) + 1
        existing = folder_parts(self.path)
        self._known_parts = set(existing)
        if not existing:
            return
        schemas = {part: self._read(part, self._pyarrow.parquet.read_schema).remove_metadata()
                   for part in existing}
        if self.key is not None:   # a file without the key is named as such
            for part, schema in schemas.items():
                self._check_key_column(part, schema)
        self._check_one_schema(schemas, 'move the parts of one of them out of it (or rewrite them with the '
                                        'same types), or write into another folder')
        first = existing[0]
        found = schemas[first]
        if self.fields and sorted(found.names) != sorted(self.fields):
            raise ValueError(f'{self.path} holds parts with the fields {found.names}; these rows have '
                             f'{list(self.fields)}: write them to another folder')
        if self.schema is not None:   # given with schema=: it must be the folder's
            differs = _differences(self.schema, found)
            if differs:
                name, given, held = differs[0]
                raise ValueError(f'schema= gives {name!r} the type {given}, and the parts of {self.path} '
                                 f'hold {held} (as in {first.name}); a folder\'s parts '
                                 f'share one schema: give schema= the folder\'s types (or leave it out), or '
                                 f'write into another folder')
        self.schema, self._origin = found, f'as in {first.name}'

    def _check_one_schema(self, schemas: Dict[Path, Any], advice: str) -> None:
        """A ``ValueError`` naming a column and two parts of ``schemas`` that type it
        differently (pandas and other readers cannot read such a folder as one dataset)."""
        parts = sorted(schemas)
        for part in parts[1:]:
            differs = _differences(schemas[parts[0]], schemas[part])
            if differs:
                name, first, other = differs[0]
                first, other = (kind or 'no such column' for kind in (first, other))
                raise ValueError(f'the parts of {self.path} type the column {name!r} differently: {first} in '
                                 f'{parts[0].name}, {other} in {part.name}, so readers cannot read them as '
                                 f'one dataset; {advice}')

    def _held_keys(self) -> Set[Any]:
        # The folder's keys, read once (one column, a record batch at a time): a set of
        # the keys in memory, about 70 bytes a key (70 MB for a million int keys).
        if self._keys is None:
            self._keys = set()
            for path in sorted(self._known_parts):
                with self._read(path, self._pyarrow.parquet.ParquetFile, pre_buffer=False) as parquet:
                    self._check_key_column(path, parquet.schema_arrow)
                    for keys in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=[self.key]):
                        self._keys.update(keys.column(0).to_pylist())
        return self._keys

    def _check_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f'to_parquet writes a folder of part files, and {self.path} is a file; '
                                  f'give a folder path (read_parquet reads a file, a folder or a glob '
                                  f'pattern)')

    def _read(self, path: Path, reader: Callable[..., Any], **options: Any) -> Any:
        """``reader(path)``, or an error naming the file when it is not a Parquet file."""
        try:
            return reader(path, **options)
        except (self._pyarrow.ArrowInvalid, OSError) as error:
            raise ValueError(f'{path} is in the folder to_parquet writes into, and it is not a Parquet file '
                             f'pyarrow can read ({error}); move it out of {self.path}, or write into another '
                             f'folder') from error

    def _check_key_column(self, path: Path, schema: Any) -> None:
        if self.key not in schema.names:
            raise ValueError(f'{path} has no column {self.key!r} (its columns: {schema.names}), so its rows '
                             f'have no key to resume by; move it out of {self.path}, or write into another '
                             f'folder')

    # -- one job at a time ----------------------------------------------------------------------

    def _take_folder(self) -> None:
        """Lock the folder for this job (an error when another job holds it), remove the
        parts a killed job left unfinished, and finish a killed job's check for keys
        written twice."""
        self._check_folder()
        self._made_folder = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(error.errno, f'to_parquet cannot make the folder {self.path} ({error.strerror}: '
                                       f'{error.filename}); give a folder path where this process may '
                                       f'write') from error
        lock = WriteLock(self.path, self.path / LOCK_FILE, 'to_parquet', 'write into another folder')
        lock.acquire()
        self._lock = lock
        self._remove_unfinished_parts('a killed job')
        if (self.path / UNCHECKED_MARKER).exists() and self.key is not None:
            removed = self._drop_repeated_keys(folder_parts(self.path))
            logger.warning('to_parquet: a job killed in %s left its parts unchecked for keys written twice '
                           'by its workers; %d such rows removed', self.path, removed)
            (self.path / UNCHECKED_MARKER).unlink()

    def _remove_unfinished_parts(self, who: str) -> None:
        """Remove the hidden parts ``who`` left being written (under this job's lock)."""
        for unfinished in self.path.glob(f'.part-*.parquet{IN_PROGRESS}'):
            logger.warning('removing %s, a part %s left unfinished', unfinished, who)
            unfinished.unlink(missing_ok=True)

    def _let_go(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        lock.release()   # removes the lock file
        if self._made_folder and not os.listdir(self.path):   # nothing written: no folder
            with contextlib.suppress(OSError):   # unless another job has begun to write into it
                self.path.rmdir()

    def on_workers_start(self) -> None:
        """The workers write this job: with a key, mark the folder unchecked until it ends."""
        if self.key is not None:
            (self.path / UNCHECKED_MARKER).write_text(f'pid {os.getpid()}\n')

    def _check_workers_schemas(self) -> None:
        """Each worker types its parts from its own first rows: where this job's parts
        disagree, remove them all (the folder is as before the job) and say so."""
        made = sorted(set(folder_parts(self.path)) - self._known_parts)
        if len(made) < 2:
            return
        schemas = {part: self._read(part, self._pyarrow.parquet.read_schema).remove_metadata()
                   for part in made}
        rows = sum(self._pyarrow.parquet.read_metadata(part).num_rows for part in made)
        advice = (f'the workers typed them from their own first rows. The {len(made)} parts this job wrote '
                  f'({rows} rows) are removed, so the folder is as it was before it: give '
                  f'schema=pyarrow.schema([...]) with the types of every column, and run it again')
        try:
            self._check_one_schema(schemas, advice)
        except ValueError:
            for part in made:
                part.unlink(missing_ok=True)
            (self.path / UNCHECKED_MARKER).unlink(missing_ok=True)
            raise

    def _check_workers_parts(self, result: Optional[WriteResult]) -> None:
        """Remove the rows of this job's parts whose key another of its workers wrote too."""
        marker = self.path / UNCHECKED_MARKER
        if not marker.exists():
            return
        made = sorted(set(folder_parts(self.path)) - self._known_parts)
        removed = self._drop_repeated_keys(made)
        if removed:
            logger.info('to_parquet: %d rows of %s repeated a key another worker wrote; removed',
                        removed, self.path)
        self.skipped += removed
        if result is not None:
            result.insert_count -= removed
        marker.unlink()

    def _drop_repeated_keys(self, parts: List[Path]) -> int:
        """Remove from ``parts`` (in this order) every row whose key an earlier row of them
        holds; return how many. Reads their key columns (and only rewrites a part that
        holds such a row, atomically: a hidden copy renamed over it)."""
        pyarrow = self._pyarrow
        columns = []
        for part in parts:
            self._check_key_column(part, self._read(part, pyarrow.parquet.read_schema))
            columns.append(pyarrow.parquet.read_table(part, columns=[self.key]).column(0))
        total = sum(len(column) for column in columns)
        if not total or len(pyarrow.compute.unique(pyarrow.chunked_array(
                [chunk for column in columns for chunk in column.chunks], type=columns[0].type))) == total:
            return 0
        seen: Set[Any] = set()
        removed = 0
        for part, column in zip(parts, columns):
            keep = [index for index, key in enumerate(column.to_pylist())
                    if not (key in seen or seen.add(key))]
            if len(keep) < len(column):
                table = pyarrow.parquet.read_table(part).take(pyarrow.array(keep, type=pyarrow.int64()))
                hidden = part.with_name(f'.{part.name}{IN_PROGRESS}')
                writer = self._part_writer(hidden, table.schema)
                writer.write_table(table)
                writer.close()
                os.replace(hidden, part)
                removed += len(column) - len(keep)
        return removed

    # -- the lifecycle ------------------------------------------------------------------------

    def on_write_start(self, batch: Batch) -> None:
        if not self._writer_id and self._lock is None:   # the job's driver: no worker of it runs yet
            self._take_folder()
        self._open()
        if self.schema is None and batch.rows:
            self.schema = infer_schema(batch, self.fields, self.key_field, self._pyarrow)
            self._origin = 'typed from the first row'

    def existing_keys(self, keys: Sequence[Any]) -> Set[Any]:
        """Which of ``keys`` the folder already holds (reading its key column once)."""
        if self.key is None:
            raise ValueError(f"to_parquet into {self.path} has no key to resume by: name it, "
                             f"e.g. to_parquet(path, key='id')")
        self._open()
        return keys_held(keys, self._held_keys())

    def write(self, batch: Batch) -> int:
        table = batch_table(batch, self.schema, self.key_field, self._origin, self._pyarrow)
        if self.key is not None:
            table = self._without_held_keys(batch, table)
        written = 0
        while written < table.num_rows:   # a batch longer than a part's room goes on in the next part
            if self._writer is None:
                self._open_part()
            piece = table.slice(written, self.rows_per_file - self._rows_in_part)
            self._writer.write_table(piece)
            self._rows_in_part += piece.num_rows
            written += piece.num_rows
            if self._rows_in_part >= self.rows_per_file:
                self._close_part()
        return written

    def on_chunk_complete(self) -> None:
        self._close_part()

    def on_write_complete(self, result: WriteResult) -> WriteResult:
        self._close_part()
        try:
            if self._lock is not None:
                self._check_workers_schemas()
                self._check_workers_parts(result)
        finally:
            self._let_go()
        # The parts this job made: its own, or its workers' (each closed its own).
        made = set(folder_parts(self.path)) - self._known_parts if self.path.is_dir() else set()
        if not made and not result.insert_count and not self.skipped:
            logger.warning('to_parquet: no rows reached it, so nothing was written to %s', self.path)
        result.destination = str(self.path)
        result.details.update(path=str(self.path), files=[str(path) for path in sorted(made)],
                              skipped=self.skipped)
        return result

    def on_write_failed(self, error: BaseException) -> None:
        try:
            self._close_part()
            if self._lock is not None:
                # an actor killed as its step ended wrote its rows in vain: they are not counted
                self._remove_unfinished_parts("a worker of this job, stopped as the job failed,")
                self._check_workers_schemas()
                self._check_workers_parts(None)
        except Exception:   # the original error is the one to report
            logger.exception('to_parquet failed, and closing the open part of %s (or checking its parts for '
                             'keys written twice or types that differ: the next job does) then failed too',
                             self.path)
        finally:
            self._let_go()

    # -- parts and keys -----------------------------------------------------------------------

    def _without_held_keys(self, batch: Batch, table: Any) -> Any:
        keep = []
        held = self._held_keys()
        self.last_skipped_rows = []
        for index, row in enumerate(batch.rows):
            try:
                key = checked_key(row[self.key], self.key, None, '')
            except (TypeError, ValueError):   # the same error, now naming the row (only a bad row is named)
                checked_key(row[self.key], self.key, None, '', batch.where(index, self.key))
                raise
            if key in held:
                self.last_skipped_rows.append(index)
            else:
                held.add(key)
                keep.append(index)
        self.skipped += len(batch) - len(keep)
        if len(keep) == len(batch):
            return table
        return table.take(self._pyarrow.array(keep, type=self._pyarrow.int64()))

    def _open_part(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        writer = f'-{self._writer_id}' if self._writer_id else ''
        name = f'part-{self._next_part:05d}{writer}.parquet'
        self._next_part += 1
        self._part = self.path / name
        # Vectors skip dictionary encoding: they never repeat, and trying it made writing 40,000
        # random 384-float vectors in 1,000-row groups about 5 times slower (4.8 s against 1.0 s,
        # 83 MB against 59 MB; benchmarks/parquet_writes.py, median of 3 interleaved rounds on
        # a machine at load average 33-36).
        self._writer = self._part_writer(self.path / f'.{name}{IN_PROGRESS}', self.schema)
        self._rows_in_part = 0

    def _part_writer(self, path: Path, schema: Any) -> Any:
        is_vector = self._pyarrow.types.is_fixed_size_list
        scalars = [field.name for field in schema if not is_vector(field.type)]
        return self._pyarrow.parquet.ParquetWriter(path, schema, compression=self.compression,
                                                   use_dictionary=scalars or False)

    def _close_part(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        os.replace(self.path / f'.{self._part.name}{IN_PROGRESS}', self._part)
        self.files.append(self._part)
