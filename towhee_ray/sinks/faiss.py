"""Faiss: vectors into an index file, as Towhee 0.9's ``to_faiss``; string keys in a
key-value file beside it.

The key (``fields[0]``) is an ``int``, used as the Faiss id itself, or a ``str``: then
the ids are 0, 1, 2, ... and the key-value file (``index_kv.bin`` beside ``index.bin``,
0.9's name and format: a JSON object ``{"<id>": "<key>"}``) maps them back. The first row
decides which; an index file that exists decides for it.

The index is held in the driver's memory, as any in-memory Faiss index; each batch is
added to it as one ``(rows, dimension)`` float32 matrix, so the vectors are never held
twice. The file is saved atomically: at the end, when the stream or a write fails, and
during the run as the index grows (see :data:`SAVE_GROWTH`), so a killed job leaves the
rows of the last save. A save writes the index to a temporary file beside it, replaces the
key-value file, then puts the index in place: a job killed between the two leaves the
key-value file ahead of its index and the new index whole in its temporary file, which the
next run puts in place (:meth:`FaissSink._finish_killed_save`).

One job writes an index at a time: from its first batch to its end, a job holds an OS lock
(:class:`~towhee_ray.sinks.locks.WriteLock`) on ``index.bin.lock`` and
``index_kv.bin.lock``; a second job is refused at once, saying which process writes. The
OS lets go of the lock when its process dies, however it dies, so a killed job never
blocks the next one.

A re-run job loads the index file and appends to it: rows whose key it already holds are
skipped, never added twice (:meth:`FaissSink.existing_keys` tells which, for a resumed
job). What ``to_faiss`` did not write is never overwritten: a file in the place of the
key-value file that is not one, or the key-value file of another index, is refused.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Union

import numpy as np

from towhee_ray.checks import positive_int
from towhee_ray.extras import require
from towhee_ray.sinks.base import Batch, Sink, WriteResult
from towhee_ray.checks import shown
from towhee_ray.sinks.checks import checked_key, checked_vector, keys_held, vector_matrix
from towhee_ray.sinks.locks import WriteLock, lock_file_for

logger = logging.getLogger(__name__)

#: Save the index when the rows added since the last save reach this fraction of the rows
#: saved. ``faiss.write_index`` rewrites the whole file, so this geometric schedule keeps the
#: bytes written under 1 + 1 / 0.25 = 5 times the final index, while a killed job loses at
#: most a fifth of its rows (a resumed job redoes them). Chosen by that bound, not measured;
#: ``save_every=N`` saves every N rows instead.
SAVE_GROWTH = 0.25

#: Faiss ids are int64, and -1 means "no result" in a search.
MAX_ID = 2 ** 63 - 1

PathLike = Union[str, os.PathLike]


def import_faiss() -> Any:
    """The ``faiss`` module, or an ``ImportError`` saying how to install it."""
    return require('faiss', 'to_faiss', "pip install 'towhee-ray[faiss]' (faiss-cpu)")


def kv_file_for(findex: Path) -> Path:
    """Where the string keys of ``findex`` go (Towhee 0.9's name for it).

    >>> kv_file_for(Path('data/index.bin')).as_posix()
    'data/index_kv.bin'
    """
    return findex.with_name(f'{findex.stem}_kv{findex.suffix}')


def metric_code(metric: Union[None, int, str], faiss: Any) -> int:
    """A Faiss metric constant from ``faiss.METRIC_*`` or a name ('L2', 'IP')."""
    if metric is None:
        return faiss.METRIC_L2
    if isinstance(metric, str):
        names = {'l2': faiss.METRIC_L2, 'ip': faiss.METRIC_INNER_PRODUCT,
                 'inner_product': faiss.METRIC_INNER_PRODUCT, 'l1': faiss.METRIC_L1}
        if metric.lower() not in names:
            raise ValueError(f"metric must be a faiss.METRIC_* constant or one of 'L2', 'IP', 'L1', "
                             f'got {metric!r}')
        return names[metric.lower()]
    if isinstance(metric, bool) or not isinstance(metric, int):
        raise TypeError(f'metric must be a faiss.METRIC_* constant or a name like \'IP\', got {metric!r}')
    return metric


def metric_name(code: int, faiss: Any) -> str:
    """The name of a Faiss metric constant, for messages ('L2', 'IP'; else its number)."""
    names = {faiss.METRIC_L2: "'L2'", faiss.METRIC_INNER_PRODUCT: "'IP'", faiss.METRIC_L1: "'L1'"}
    return names.get(code, f'{code}')


def _temporary_name(path: Path) -> Path:
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp')


def _temporaries_of(path: Path) -> List[Path]:
    """The temporary files of ``path`` (:func:`_temporary_name`) that jobs left, newest first."""
    name = re.compile(rf'\.{re.escape(path.name)}\.\d+\.tmp')
    try:
        found = [entry for entry in path.parent.iterdir() if name.fullmatch(entry.name)]
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda entry: entry.stat().st_mtime_ns, reverse=True)


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    # Beside it, so that a rename puts it in place; gone afterwards, unless renamed. A
    # killed job leaves it: the next writer removes it (it holds the lock, so none is live).
    temporary = _temporary_name(path)
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _replace_atomically(path: Path, write: Any) -> None:
    # A kill during a save leaves the previous file whole. No fsync: a killed process's
    # writes survive in the page cache; only a power cut could lose them.
    with _temporary_beside(path) as temporary:
        write(str(temporary))
        os.replace(temporary, path)


def _not_json(path: Path, error: ValueError) -> str:
    """What a file that is not JSON is, for an error."""
    with open(path, 'rb') as file:
        start = file.read(4)
    # Faiss files begin with a four-letter code: 'IxMp' (IDMap), 'IxF2' (Flat), 'IwFl' (IVF), ...
    if len(start) == 4 and start[:1] == b'I' and start.isalnum():
        return f'it looks like a Faiss index (it begins with {start.decode()!r})'
    return f'it is not JSON ({error})'


class _NotKeyValue(Exception):
    """The key-value file is not one: ``what`` it is instead (chained to the reason)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class FaissSink(Sink):
    """Rows of two fields, a key and a vector, into a Faiss index (file or object).

    >>> import tempfile, pathlib, numpy
    >>> from towhee_ray.sinks import write_rows
    >>> findex = pathlib.Path(tempfile.mkdtemp()) / 'index.bin'
    >>> rows = [{'id': 'a', 'vec': numpy.array([0.0, 1.0])}, {'id': 'b', 'vec': numpy.array([1.0, 0.0])}]
    >>> result = write_rows(rows, FaissSink(['id', 'vec'], findex))
    >>> result.insert_count, result.details['ntotal'], pathlib.Path(result.details['kv_file']).name
    (2, 2, 'index_kv.bin')
    >>> sorted(FaissSink(['id', 'vec'], findex).existing_keys(['a', 'c']))
    ['a']
    >>> sorted(path.name for path in findex.parent.iterdir())   # no lock file, no temporary file
    ['index.bin', 'index_kv.bin']
    """

    call_name = 'to_faiss'

    def __init__(self, fields: Sequence[str], findex: Any = './index.bin', string: str = 'IDMap,Flat',
                 metric: Union[None, int, str] = None, *, kv_file: Optional[PathLike] = None,
                 batch_size: Optional[int] = None, save_every: Optional[int] = None) -> None:
        if len(fields) != 2:
            raise TypeError(f"to_faiss writes two fields, the key and the vector, e.g. "
                            f"to_faiss['id', 'vec'](...); got {list(fields)}")
        super().__init__(fields, batch_size)
        self._faiss = import_faiss()
        if not isinstance(string, str) or not string:
            raise TypeError(f"string must be a Faiss index factory string such as 'IDMap,Flat', "
                            f'got {string!r}')
        # Ids are kept in an IDMap (the keys a re-run job finds there), whatever the user's string.
        self.string = string if string.startswith('IDMap') else f'IDMap,{string}'
        self.metric = metric
        metric_code(metric, self._faiss)
        if isinstance(findex, (str, os.PathLike)):
            self.path: Optional[Path] = Path(os.fspath(findex)).expanduser()   # '~/i.bin': the user's
            if not self.path.name:   # '.': a folder (any other is found reading it, see _read)
                raise IsADirectoryError(f'findex {self.path} is a folder: give findex= a file path, e.g. '
                                        f'{self.path / "index.bin"}')
            self.index: Any = None
        elif hasattr(findex, 'add_with_ids') and hasattr(findex, 'ntotal'):
            self.path, self.index = None, findex
        else:
            raise TypeError(f'findex must be a file path or a faiss index, got {type(findex).__name__}')
        if kv_file is None:
            kv_file = kv_file_for(self.path) if self.path else None
        self.kv_file = Path(os.fspath(kv_file)).expanduser() if kv_file is not None else None
        if self.path is not None and self.kv_file is not None and \
                os.path.abspath(self.kv_file) == os.path.abspath(self.path):
            raise ValueError(f'kv_file= is findex= ({self.path}): the str keys go in a JSON file beside '
                             f'the index; give it a path of its own, or leave kv_file out '
                             f'({kv_file_for(self.path)})')
        self.save_every = None if save_every is None else positive_int(save_every, 'save_every',
                                                                       'rows between saves')
        self.skipped = 0
        # The files this job writes, each locked from its first batch to its end.
        self._locks = [WriteLock(path, lock_file_for(path), 'to_faiss', f'give {option}= another file')
                       for path, option in ((self.path, 'findex'), (self.kv_file, 'kv_file')) if path]
        self._opened = ''   # '', 'to read' (existing_keys) or 'to write' (under the locks)
        self._forget()

    def _forget(self) -> None:
        """What a job learns from the files it opens; forgotten to open them again."""
        if self.path is not None:
            self.index = None
        self._key_type: Optional[type] = None
        self._key_origin = ''
        self._keys: Dict[Any, int] = {}   # key -> Faiss id (an int key is its own id)
        self._next_id = 0
        self._saved_rows = 0
        self._unsaved_rows = 0
        #: Why the key-value file must not be written (it is another file, or another
        #: index's): raised when the first str key comes; int keys never write it.
        self._kv_refusal: Optional[FileExistsError] = None

    @property
    def vector_field(self) -> str:
        return self.fields[1]

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f'the given {type(self.index).__name__}'

    # -- opening what exists ---------------------------------------------------------------

    def _open(self, to_write: bool = False) -> None:
        """Load the index file and the keys. ``to_write``: under the locks, so that a job
        killed while saving can be repaired; a job that read them before (existing_keys)
        reads them again, as another job may have written since."""
        if self._opened == 'to write' or (self._opened and not to_write):
            return
        if self._opened:
            self._forget()
        self._opened = 'to write' if to_write else 'to read'
        if self.index is None and self.path is not None and self.path.exists():
            self.index = self._read_index(self.path)
        try:
            stored = self._read_kv()
            problem = None
        except _NotKeyValue as error:
            stored, problem = None, error
        # A save a killed job left unfinished is what explains a key-value file ahead of its index.
        unfinished_save = self.path is not None and bool(_temporaries_of(self.path))
        if to_write:
            self._finish_killed_save(stored)
            for made in (self.path, self.kv_file):
                for temporary in _temporaries_of(made) if made else ():
                    temporary.unlink(missing_ok=True)   # of killed jobs: this job holds the lock
        self._load_keys(stored, problem, unfinished_save)

    def _load_keys(self, stored: Optional[Dict[int, str]], problem: Optional[_NotKeyValue],
                   unfinished_save: bool = False) -> None:
        """The keys the index holds, from its ids and the key-value file (``stored``, or the
        ``problem`` that makes it no key-value file); or why the key-value file must not be
        written, should str keys come."""
        if self.index is None:
            if problem is not None:
                self._kv_refusal = self._not_a_kv_file(problem)
            elif stored:
                self._kv_refusal = self._kv_of_another_index(len(stored), 'does not exist')
            return
        self._check_metric()
        ids = self._index_ids()
        self._saved_rows = int(self.index.ntotal)
        if problem is not None:
            if len(ids):
                raise ValueError(self._damaged_kv(problem.what)) from problem.__cause__
            self._kv_refusal = self._not_a_kv_file(problem)
            return
        if stored and not len(ids) and self.path is not None:
            # Never a state to_faiss leaves: it saves no empty index, and a job killed while
            # saving leaves the index that _finish_killed_save puts in place.
            self._kv_refusal = self._kv_of_another_index(len(stored), 'holds no vectors')
            return
        if stored is None:
            self._keys = {faiss_id: faiss_id for faiss_id in ids.tolist()}
            if len(ids):
                self._key_type, self._key_origin = int, f'{self.describe()} holds int keys'
            return
        self._load_string_keys(ids, stored, unfinished_save)

    def _read_index(self, path: Path) -> Any:
        try:
            return self._faiss.read_index(str(path))
        except RuntimeError as error:
            if path.is_dir():
                raise IsADirectoryError(f'findex {path} is a folder: give findex= a file path, e.g. '
                                        f'{path / "index.bin"}') from error
            raise ValueError(f'{path} is not a Faiss index Faiss can read ({_last_line(error)}): it is '
                             f'another kind of file, or a damaged index. It is left as it is: give findex= a '
                             f'new file path, or move it away (or restore it from a backup) and run '
                             f'again') from error

    def _check_metric(self) -> None:
        if self.metric is not None and metric_code(self.metric, self._faiss) != self.index.metric_type:
            raise ValueError(f'{self.describe()} measures with Faiss metric '
                             f'{metric_name(self.index.metric_type, self._faiss)}, not {self.metric!r}; '
                             f'leave metric out to append to it, or write to a new index file')

    def _index_ids(self, index: Any = None) -> np.ndarray:
        index = self.index if index is None else index
        id_map = getattr(index, 'id_map', None)
        if id_map is None:
            raise TypeError(f'{self.describe()} is a {type(index).__name__}, which keeps no ids: '
                            f"to_faiss needs an IDMap index, e.g. faiss.index_factory(d, 'IDMap,Flat') or "
                            f'faiss.IndexIDMap(faiss.IndexFlatL2(d))')
        return self._faiss.vector_to_array(id_map)   # a copy: it outlives index

    def _read_kv(self) -> Optional[Dict[int, str]]:
        """The key-value file's ids and keys; None when there is none; a :class:`_NotKeyValue`
        saying what the file is when it is not one."""
        if self.kv_file is None or not self.kv_file.exists():
            return None
        try:
            with open(self.kv_file, encoding='utf-8') as file:
                stored = json.load(file)
        except IsADirectoryError as error:
            raise _NotKeyValue('it is a folder') from error
        except ValueError as error:   # not JSON, or not text (JSONDecodeError, UnicodeDecodeError)
            raise _NotKeyValue(_not_json(self.kv_file, error)) from error
        if not isinstance(stored, dict):
            raise _NotKeyValue(f'it is JSON, but a {type(stored).__name__}, not an object '
                               f'{{"<id>": "<key>"}}')
        try:
            return {int(faiss_id): key for faiss_id, key in stored.items()}
        except ValueError as error:
            raise _NotKeyValue(f'it is a JSON object, but not {{"<id>": "<key>"}} ({error})') from error

    def _damaged_kv(self, what: str) -> str:
        return (f'{self.kv_file}, the key-value file of {self.describe()}, cannot be read: {what}. If the '
                f'index holds str keys, their names are damaged: restore {self.kv_file} from a backup, or '
                f'delete both files and run the job again; if it holds int keys, {self.kv_file} is another '
                f'file in the place of its key-value file: move it away, or give kv_file= another path')

    def _not_a_kv_file(self, problem: _NotKeyValue) -> FileExistsError:
        refusal = FileExistsError(f'to_faiss keeps the str keys of {self.describe()} in {self.kv_file}, and '
                                  f'{self.kv_file} is not a key-value file: {problem.what}. It is not '
                                  f'overwritten: move it away, or give kv_file= another path')
        refusal.__cause__ = problem.__cause__
        return refusal

    def _kv_of_another_index(self, keys: int, index_state: str) -> FileExistsError:
        return FileExistsError(
            f'{self.kv_file} holds the keys of {keys} ids, but {self.describe()} {index_state}: it is the '
            f'key-value file of another index (kv_file= given to two indexes?) or of an index since '
            f'removed, and it is not overwritten. Give this index a key-value file of its own (kv_file= '
            f'another path), or delete {self.kv_file} if its index is gone')

    def _finish_killed_save(self, stored: Optional[Dict[int, str]]) -> None:
        """Put in place the index a job killed between the two renames of a save left in
        its temporary file: the one whose ids are those of the key-value file, ahead."""
        if self.path is None or not stored:
            return
        if self.index is not None and self.index.ntotal >= len(stored):
            return
        temporaries = _temporaries_of(self.path)
        if not temporaries:
            return
        self.index = None   # not held twice: read again if no save is there
        for temporary in temporaries:
            try:
                saved = self._faiss.read_index(str(temporary))
                ids = self._index_ids(saved)
            except (RuntimeError, TypeError):   # cut short by the kill, or not an IDMap
                continue
            if len(ids) == len(stored) and set(ids.tolist()) == set(stored):
                os.replace(temporary, self.path)
                logger.warning('%s: a job killed while saving it left its last save in %s; it is put in '
                               'place (%d rows)', self.path, temporary.name, len(ids))
                self.index = saved
                return
            del saved
        if self.path.exists():
            self.index = self._read_index(self.path)

    def _load_string_keys(self, ids: np.ndarray, stored: Dict[int, str], unfinished_save: bool) -> None:
        present = set(ids.tolist())
        unnamed = len(present) - sum(1 for faiss_id in stored if faiss_id in present)
        if unnamed:
            raise ValueError(f'{self.describe()} holds {unnamed} ids that {self.kv_file} has no key '
                             f'for: the two files do not belong together; give kv_file= the key-value '
                             f'file of this index, or write to a new index file')
        ahead = len(stored) - len(present)
        if ahead and not unfinished_save:
            raise ValueError(f'{self.kv_file} names {ahead} ids more than {self.describe()} holds, and no '
                             f'save of the index was left unfinished (a job killed between its two saves '
                             f'leaves one beside it): the two files do not belong together. Give kv_file= '
                             f'the key-value file of this index, or write to a new index file')
        if ahead:
            logger.warning('%s names %d ids its index lacks (a job killed between the two saves); '
                           'those rows will be written again', self.kv_file, ahead)
        self._keys = {key: faiss_id for faiss_id, key in stored.items() if faiss_id in present}
        self._key_type, self._key_origin = str, f'{self.describe()} holds str keys'
        self._next_id = max(present, default=-1) + 1

    # -- the lifecycle ------------------------------------------------------------------------

    def on_write_start(self, batch: Batch) -> None:
        if not batch.rows:   # an empty stream: nothing will be written
            self._open()
            return
        for written, option in ((self.path, 'findex'), (self.kv_file, 'kv_file')):
            if written is not None:
                try:
                    written.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:   # a file where a folder must be, no permission
                    raise OSError(error.errno, f'to_faiss cannot make the folder of {option}={written} '
                                               f'({error.strerror}: {error.filename}); give {option}= a path '
                                               f'in a folder where this process may write') from error
        for lock in self._locks:   # released by on_write_complete or on_write_failed
            lock.acquire()
        self._open(to_write=True)
        if self.index is not None:
            return
        first = checked_vector(batch.rows[0][self.vector_field], self.vector_field,
                               batch.where(0, self.key_field))
        try:
            metric = metric_code(self.metric, self._faiss)
            self.index = self._faiss.index_factory(len(first), self.string, metric)
        except RuntimeError as error:
            raise ValueError(f'Faiss cannot make an index from string={self.string!r} for {len(first)} '
                             f'dimensions: {_last_line(error)}; see the Faiss wiki, '
                             f'"The index factory"') from error

    def existing_keys(self, keys: Sequence[Any]) -> Set[Any]:
        """Which of ``keys`` the index already holds (loading its file if not yet done)."""
        self._open()
        return keys_held(keys, self._keys)

    def write(self, batch: Batch) -> int:
        keys = [self._checked_key(batch, index) for index in range(len(batch))]
        vectors = vector_matrix(batch, self.vector_field, self.index.d, np.float32, self.key_field,
                                f'the index ({self.describe()})')
        new = []
        for position, key in enumerate(keys):
            if key not in self._keys:
                new.append(position)
                self._remember(key)
        self.skipped += len(keys) - len(new)
        if len(new) < len(keys):
            vectors = vectors[new]
        if not new:
            return 0
        ids = np.array([self._keys[keys[position]] for position in new], dtype=np.int64)
        if not self.index.is_trained:
            self._train(vectors)
        self.index.add_with_ids(vectors, ids)
        self._unsaved_rows += len(new)
        if self._save_due():
            self._save()
        return len(new)

    def on_write_complete(self, result: WriteResult) -> WriteResult:
        try:
            if self._unsaved_rows:
                self._save()
        finally:
            self._release()
        if self.index is None:
            logger.warning('to_faiss: no rows reached it, so no index was made at %s', self.describe())
        result.destination = self.describe()
        result.details.update(index=self.describe(), ntotal=int(self.index.ntotal) if self.index else 0,
                              kv_file=str(self.kv_file) if self._key_type is str else None,
                              skipped=self.skipped)
        return result

    def on_write_failed(self, error: BaseException) -> None:
        try:
            if self._unsaved_rows:
                self._save()
                logger.info('to_faiss failed (%s); the %d rows written before it are saved in %s',
                            type(error).__name__, self.index.ntotal, self.describe())
        except Exception:   # the original error is the one to report
            logger.exception('to_faiss failed, and saving %s then failed too', self.describe())
        finally:
            self._release()

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()

    # -- rows ---------------------------------------------------------------------------------

    def _checked_key(self, batch: Batch, index: int) -> Any:
        where = batch.where(index, self.key_field)
        key = checked_key(batch.rows[index][self.key_field], self.key_field, (int, str),
                          'to_faiss keys are int (the Faiss ids) or str (kept in a key-value file)', where)
        kind = int if isinstance(key, int) else str
        if self._key_type is None:   # the first row decides, as in Towhee 0.9
            if kind is str and self._kv_refusal is not None:
                raise self._kv_refusal
            self._key_type, self._key_origin = kind, f'the first row\'s key is {kind.__name__}'
        elif kind is not self._key_type:
            raise TypeError(f'{where}: the key {self.key_field!r} is {shown(key)} ({kind.__name__}), but '
                            f'{self._key_origin}; the keys of one index are all int or all str')
        if kind is int and not 0 <= key < MAX_ID:
            raise ValueError(f'{where}: the key {self.key_field!r} is {key}; int keys are Faiss ids, '
                             f'0 <= id < 2**63 - 1 (give str keys to keep other values)')
        if kind is str and self.kv_file is None:
            raise TypeError(f"{where}: str keys need a key-value file; give kv_file='keys.json' "
                            f'with findex=<a faiss index>')
        return key

    def _remember(self, key: Any) -> None:
        if self._key_type is int:
            self._keys[key] = key
        else:
            self._keys[key] = self._next_id
            self._next_id += 1

    def _train(self, vectors: np.ndarray) -> None:
        try:
            self.index.train(vectors)
        except RuntimeError as error:
            raise ValueError(f'the index {self.string!r} needs training, done on the first batch '
                             f'({len(vectors)} rows), and Faiss refused: {_last_line(error)}; give a '
                             f"larger batch= (e.g. 40 times the IVF list count) or a string that needs no "
                             f"training, such as 'IDMap,Flat'") from error

    # -- saving -------------------------------------------------------------------------------

    def _save_due(self) -> bool:
        if self.save_every is not None:
            return self._unsaved_rows >= self.save_every
        return self._unsaved_rows >= max(1.0, SAVE_GROWTH * self._saved_rows)

    def _save(self) -> None:
        # The key-value file is replaced first: a kill between the two replacements leaves it
        # ahead of the index (the other order would leave nameless vectors), and the new index
        # whole in its temporary file, which the next run puts in place.
        with contextlib.ExitStack() as stack:
            if self.path is not None:
                index_file = stack.enter_context(_temporary_beside(self.path))
                self._faiss.write_index(self.index, str(index_file))
            if self._key_type is str:
                text = json.dumps({str(faiss_id): key for key, faiss_id in self._keys.items()})
                _replace_atomically(self.kv_file, lambda path: Path(path).write_text(text, encoding='utf-8'))
            if self.path is not None:
                os.replace(index_file, self.path)
        self._saved_rows = int(self.index.ntotal)
        self._unsaved_rows = 0


def _last_line(error: BaseException) -> str:
    """What went wrong, from a Faiss C++ error: its last line (some carry a trace), without
    the C++ function and source line it names.

    >>> _last_line(RuntimeError("Error in void f(int) at /faiss/a.cpp:66: Error: 'n >= k' failed: "
    ...                         "Number of training points (10) should be at least 64"))
    'Number of training points (10) should be at least 64'
    """
    line = str(error).strip().splitlines()[-1]
    line = re.sub(r'^Error in .*? at \S+:\d+: ', '', line)
    return re.sub(r"^Error: '.*?' failed: ", '', line)
