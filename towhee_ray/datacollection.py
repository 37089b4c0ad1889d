"""The chainable DataCollection API of Towhee, with pluggable parallel backends.

A DataCollection is unstreamed (a materialized sequence: every step runs at once) or a
stream (a lazy, single-pass iterator: steps run as elements are pulled). Chain settings
(``stream()``, ``safe()``, ``set_parallel()``) carry forward to every derived chain. Steps
talk to backends only through :class:`towhee_ray.Backend`; this module never imports Ray.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import itertools
import logging
import reprlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Type

from towhee_ray.backends import Backend, get_backend
from towhee_ray.backends.options import DEFAULT_NUM_WORKER, check_num_worker, check_option_names
from towhee_ray.checks import shown
from towhee_ray.collection import (DisplayMixin, EntityMixin, FaissMixin, ListMixin, MilvusMixin,
                                   ParquetMixin, ProcessingMixin, ResumeMixin, SafetyMixin, SettingsMixin,
                                   SourcesMixin)
from towhee_ray.collection.columns import ColumnCall, ColumnOperator, Columns, column_method, field_names
from towhee_ray.collection.compat import missing_method_error
from towhee_ray.collection.processing import flatten_values
from towhee_ray.collection.sources import frame_rows, is_frame
from towhee_ray.guard import DROPPED, Failure, Guarded, GuardedOperator, callable_name, step_error
from towhee_ray.operators import OperatorNotFoundError, OperatorSpec, resolve_operator, spec_from_towhee_op
from towhee_ray.pipeline import is_towhee_pipeline, map_pipeline
from towhee_ray.progress import Count, check_count, units, with_progress

DEFAULT_BACKEND = 'thread'

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Parallel:
    """Where a step runs: a backend name, its worker count and its options."""

    backend: str
    num_worker: Optional[int]   # None: actors_per_gpu on each GPU of the cluster, counted when a step starts
    options: Dict[str, Any]
    backend_class: Type[Backend]

    @classmethod
    def checked(cls, backend: str, num_worker: Optional[int], options: Dict[str, Any]) -> 'Parallel':
        """Refuse bad settings now, before any work starts (and without connecting to Ray:
        the GPUs that ``num_worker=None`` fills are counted when a step starts)."""
        if num_worker is None and options.get('actors_per_gpu') is None:
            num_worker = DEFAULT_NUM_WORKER
        if num_worker is not None:
            check_num_worker(num_worker)
        backend_class = get_backend(backend)
        check_option_names(backend, backend_class, options)
        try:
            backend_class(num_worker or DEFAULT_NUM_WORKER, **options)
        except TypeError as error:
            raise ValueError(f'backend {backend!r} does not accept the options '
                             f'{sorted(options)}: {error}') from error
        return cls(backend, num_worker, dict(options), backend_class)

    def make_backend(self) -> Backend:
        return self.backend_class(self.num_worker, **self.options)

    def __str__(self) -> str:
        if self.num_worker is None:
            return f'{self.backend} x{self.options["actors_per_gpu"]} per GPU'
        return f'{self.backend} x{self.num_worker}'


@dataclasses.dataclass(frozen=True)
class _OpenStep:
    """The last step of a stream, while nothing has pulled it: a sink may still join it, so
    that the step's workers write the rows they make (see :meth:`DataCollection._write_in_workers`)."""

    name: str
    fn: Optional[Guarded]
    operator: Optional[GuardedOperator]
    parallel: Parallel
    upstream: 'DataCollection'


@dataclasses.dataclass(frozen=True)
class _Settings:
    safe: bool = False
    parallel: Optional[Parallel] = None


# Towhee 0.9 printed an unstreamed collection with reprlib's defaults: [0, 1, 2, 3, 4, 0, ...]
_SHORT_REPR = reprlib.Repr()


def _sees_local_files(parallel: Parallel) -> bool:
    """Whether every worker of ``parallel`` runs on this machine: threads do; Ray's do on a
    cluster of one host; another backend's may not."""
    if parallel.backend == 'thread':
        return True
    if parallel.backend == 'ray':
        from towhee_ray import cluster
        cluster.connect()
        return cluster.one_host()
    return False


def _close(iterator: Any) -> None:
    close = getattr(iterator, 'close', None)
    if close is not None:
        close()


# set on an exception by the step it happened in, so the steps after it let it pass unchanged
_FAILED_STEP = '_towhee_ray_failed_step'


def _settle(outputs: Iterator[Any], step: str, backend: Optional[Backend],
            source: Iterable[Any]) -> Iterator[Any]:
    """Outputs of a guarded step: raise failures (with step and position), skip dropped
    elements, and release the step's workers and its upstream once done."""
    failure = None
    try:
        try:
            for position, output in enumerate(outputs):
                if output.__class__ is Failure:
                    failure = output
                    break
                if output is not DROPPED:
                    yield output
        except Exception as error:   # from the backend (a worker died, ...) or an earlier step
            if not hasattr(error, _FAILED_STEP):   # an earlier step's error passes unchanged
                where = f'the {type(backend).__name__}' if backend else 'the driver'
                error.add_note(f'while running {step} on {where}')
                setattr(error, _FAILED_STEP, step)
            raise
        if failure is not None:
            error = step_error(failure, step, position)
            setattr(error, _FAILED_STEP, step)
            raise error
    finally:
        _close(outputs)
        if backend is not None:
            backend.close()
        _close(source)


def _serial_operator(operator: GuardedOperator, items: Iterable[Any]) -> Iterator[Any]:
    call = operator.create()   # built when the first element is pulled, not before
    for item in items:
        yield call(item)


# Methods of other APIs (Towhee pipelines, Spark, Ray Data) that people reach for, and what
# a DataCollection does instead.
_OTHER_NAMES = {
    name: 'map a function that returns a list, then flatten(): dc.map(f).flatten()'
    for name in ('flat_map', 'flatmap', 'flat_map_batches')
}


class _OperatorPath:
    """``dc.<namespace>.<name>``: collects the dotted name until it is called."""

    def __init__(self, collection: 'DataCollection', name: str,
                 columns: Optional[Columns] = None) -> None:
        self._collection = collection
        self._name = name
        self._columns = columns

    def __getattr__(self, name: str) -> '_OperatorPath':
        if name.startswith('__') or self._columns is not None:
            raise AttributeError(name)
        return _OperatorPath(self._collection, f'{self._name}.{name}')

    def __getitem__(self, key: Any) -> '_OperatorPath':
        """``dc.ns.name['in', 'out']``: read field ``in``, write field ``out``."""
        return _OperatorPath(self._collection, self._name, Columns.parse(key))

    def __call__(self, *init_args: Any, **init_kws: Any) -> 'DataCollection':
        if self._name == 'runas_op':   # Towhee 0.9's way to apply a plain function column style
            return self._collection._apply('runas_op', _runas_function(init_args, init_kws),
                                           columns=self._columns)
        try:
            spec = resolve_operator(self._name, init_args, init_kws)
        except OperatorNotFoundError as error:
            methods = [name for name in dir(DataCollection) if not name.startswith('_')]
            close = difflib.get_close_matches(self._name, methods, n=1)
            if self._name in _OTHER_NAMES:
                error.add_note(f'DataCollection has no method {self._name!r}: {_OTHER_NAMES[self._name]}')
            elif close and '.' not in self._name:
                error.add_note(f'DataCollection has no method {self._name!r}; did you mean {close[0]!r}?')
            raise
        return self._collection._apply_operator(spec, columns=self._columns)

    def __repr__(self) -> str:
        return f'<operator path {self._name!r}: call it to apply the operator>'


def _runas_function(args: Sequence[Any], kws: Dict[str, Any]) -> Callable[..., Any]:
    if len(args) + len(kws) != 1 or (kws and 'func' not in kws):
        raise TypeError('runas_op takes one function: runas_op[\'in\', \'out\'](func=f) or (f)')
    return args[0] if args else kws['func']


def _elements_of(iterable: Any) -> Iterator[Any]:
    """``iter(iterable)``, or an error saying what DataCollection takes."""
    try:
        return iter(iterable)
    except TypeError:
        raise TypeError(f'DataCollection takes the elements as an iterable (a list, a generator, a range, '
                        f'a pandas DataFrame), got {shown(iterable, kind=True)}; for one element, '
                        f'DataCollection([element])') from None


class DataCollection(SettingsMixin, EntityMixin, SafetyMixin, ProcessingMixin, ListMixin,
                     SourcesMixin, ResumeMixin, MilvusMixin, ParquetMixin, FaissMixin, DisplayMixin):
    """A chain of steps over a sequence or a stream, run serially or on a backend.

    >>> DataCollection([1, 2, 3]).map(lambda x: x * 10).to_list()
    [10, 20, 30]
    >>> dc = DataCollection.range(1000).stream().set_parallel(num_worker=2, backend='thread')
    >>> dc.map(lambda x: x + 1).map(lambda x: x * 2).to_list()[:3]
    [2, 4, 6]

    Hub operators are reached by attribute, as with ``towhee.ops``:

    >>> DataCollection(['One. Two three.']).towhee.text_split(max_words=2).to_list()
    [['One.', 'Two three.']]

    In column style (Towhee 0.9's), rows are entities and steps name their fields:

    >>> dc = DataCollection['text'](['One. Two three.']).towhee.text_split['text', 'parts'](max_words=2)
    >>> dc.select['parts']().as_raw().to_list()
    [['One.', 'Two three.']]

    Everything else a Towhee 0.9 DataCollection offers comes from the modules of
    :mod:`towhee_ray.collection`, one per concern.
    """

    def __init__(self, iterable: Iterable[Any] = (), *, _settings: Optional[_Settings] = None):
        if isinstance(iterable, collections.abc.Iterator):
            self._items: Iterable[Any] = iterable
        elif isinstance(iterable, (list, tuple, range)):
            self._items = iterable
        elif is_frame(iterable):   # its rows (as entities), not its column names; unstreamed, as from_df
            self._items = list(frame_rows(iterable))
        else:
            self._items = list(_elements_of(iterable))
        self._settings = _settings or _Settings()
        self._open_step: Optional[_OpenStep] = None
        # The backends of the steps this stream runs through (close() from another thread stops them).
        self._backends: Tuple[Backend, ...] = ()

    # -- construction and shape ---------------------------------------------------------

    @classmethod
    def range(cls, *args: int) -> 'DataCollection':
        """An unstreamed collection of ``range(*args)``.

        >>> DataCollection.range(3).to_list()
        [0, 1, 2]
        """
        return cls(range(*args))

    @property
    def is_stream(self) -> bool:
        """True for a lazy, single-pass stream."""
        return isinstance(self._items, collections.abc.Iterator)

    def _derive(self, items: Iterable[Any], settings: Optional[_Settings] = None,
                stream: Optional[bool] = None) -> 'DataCollection':
        stream = self.is_stream if stream is None else stream
        if stream:
            items = iter(items)
        elif isinstance(items, collections.abc.Iterator):
            items = list(items)
        derived = DataCollection(items, _settings=settings or self._settings)
        if stream:
            derived._backends = self._backends
        return derived

    def stream(self) -> 'DataCollection':
        """A lazy, single-pass view: following steps run as elements are pulled.

        >>> DataCollection([1, 2]).stream().is_stream
        True
        """
        return self if self.is_stream else self._derive(self._items, stream=True)

    def unstream(self) -> 'DataCollection':
        """A materialized copy: following steps run at once, and it can be read many times.

        >>> len(DataCollection(iter([1, 2])).unstream())
        2
        """
        return self._derive(self._items, stream=False) if self.is_stream else self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        if self.is_stream:
            raise TypeError('a stream has no length; call unstream() first to materialize it')
        return len(self._items)

    def to_list(self) -> List[Any]:
        """All elements as a list (runs a stream to its end)."""
        return list(self._items)

    def close(self) -> None:
        """Stop a stream early and release the workers of its steps.

        From another thread than the one reading the stream (a watchdog, a cancel button),
        the parallel steps are asked to stop: the reading thread's stream then ends at their
        next chunk, within about a second, and they release their workers.
        """
        try:
            _close(self._items)
        except ValueError as error:   # "generator already executing": another thread reads it
            if not self._backends:
                raise RuntimeError('close() from another thread stops the parallel steps of a stream, '
                                   'and this one has none: stop reading it in the thread that reads it '
                                   '(break out of the loop), or run its steps with '
                                   'set_parallel(...)') from error
            for backend in self._backends:
                stop = getattr(backend, 'stop', None)
                if stop is not None:
                    stop()

    def __repr__(self) -> str:
        """An unstreamed collection shows its elements, as Towhee 0.9 did; a stream says
        it is one (showing it would consume it).

        >>> DataCollection.range(10)
        [0, 1, 2, 3, 4, 5, ...]
        >>> DataCollection.range(3).stream().set_parallel(2)
        <DataCollection stream, parallel=thread x2>
        """
        if self.is_stream:
            settings = [f'parallel={self._settings.parallel}'] if self._settings.parallel else []
            settings += ['safe'] if self._settings.safe else []
            return f'<DataCollection stream{", " if settings else ""}{", ".join(settings)}>'
        return _SHORT_REPR.repr(list(self._items[:_SHORT_REPR.maxlist + 1]))

    # -- chain settings -------------------------------------------------------------------

    def set_parallel(self, num_worker: Optional[int] = None, backend: str = DEFAULT_BACKEND,
                     **backend_options: Any) -> 'DataCollection':
        """Run every following map, filter and operator step on ``backend`` with
        ``num_worker`` workers (2 by default); extra keywords are backend options (e.g.
        ``chunk_size``). On ``ray``, ``actors_per_gpu=k`` without ``num_worker`` starts k
        actors on each GPU of the cluster, however many it has.

        As in Towhee 0.9 it changes this collection and returns it; chains already derived
        from it keep their settings.

        >>> DataCollection([1, 2]).set_parallel(2, 'thread').map(str).to_list()
        ['1', '2']
        >>> dc = DataCollection.range(3)
        >>> _ = dc.set_parallel(4)
        >>> dc.get_num_worker()
        4
        """
        parallel = Parallel.checked(backend, num_worker, backend_options)
        self._settings = dataclasses.replace(self._settings, parallel=parallel)
        return self

    def safe(self) -> 'DataCollection':
        """From here on a failing element becomes :class:`Empty` and the chain goes on.

        >>> DataCollection([1, 0]).safe().map(lambda x: 1 // x).drop_empty().to_list()
        [1]
        """
        return self._derive(self._items, dataclasses.replace(self._settings, safe=True))

    def _parallel_for(self, num_worker: Optional[int], backend: Optional[str],
                      options: Dict[str, Any]) -> Parallel:
        chain = self._settings.parallel
        if num_worker is None:
            num_worker = chain.num_worker if chain else DEFAULT_NUM_WORKER
        if backend is None:   # the chain's backend, with its options
            backend = chain.backend if chain else DEFAULT_BACKEND
            options = {**(chain.options if chain else {}), **options}
        return Parallel.checked(backend, num_worker, options)

    # -- running steps -------------------------------------------------------------------

    def _run(self, step: str, fn: Optional[Guarded] = None,
             operator: Optional[GuardedOperator] = None,
             parallel: Optional[Parallel] = None, in_driver: bool = False) -> 'DataCollection':
        parallel = None if in_driver else parallel or self._settings.parallel
        backend = parallel.make_backend() if parallel else None
        if backend is None:
            outputs = map(fn, self._items) if operator is None else _serial_operator(operator, self._items)
        elif operator is None:
            outputs = backend.map(fn, self._items)
        else:
            outputs = backend.map_operator(operator, self._items)
        result = self._derive(_settle(iter(outputs), step, backend, self._items))
        if backend is not None and result.is_stream:
            result._open_step = _OpenStep(step, fn, operator, parallel, self)
            result._backends += (backend,)
        return result

    def _write(self, sink_step: str, make_sink: Callable[[], Any], recipe: Optional[Callable[[], Any]] = None,
               writers: str = 'auto', local_files: bool = False, no_workers: str = '') -> Any:
        """Run the chain into a sink: the one path of ``to_milvus``, ``to_faiss`` and
        ``to_parquet``; returns the :class:`~towhee_ray.sinks.WriteResult`.

        ``make_sink()`` builds the driver's sink; a bad call (an option, a path) raises
        before anything runs, and releases the chain's workers. ``recipe()`` says how
        workers make theirs (a :class:`~towhee_ray.sinks.in_workers.SinkRecipe`), None when
        they cannot (``no_workers`` says why). ``writers``: ``'workers'`` (the workers of
        the chain's last step write the rows they make: it must be a parallel step nothing
        has pulled yet), ``'driver'`` (the driver writes, one batch at a time) or
        ``'auto'`` (workers where they can, and with ``local_files`` only where every worker
        sees this machine's files; else the driver).
        """
        from towhee_ray.sinks.base import write_rows
        from towhee_ray.sinks.in_workers import collect
        try:
            if writers not in ('auto', 'workers', 'driver'):
                raise ValueError(f"writers is 'auto', 'workers' or 'driver', got {writers!r}")
            sink = make_sink()
            in_workers = recipe() if recipe is not None and writers != 'driver' else None
            if writers == 'workers' and in_workers is None:
                raise ValueError(f"{sink_step}(writers='workers'): {no_workers}; leave writers='auto'")
        except BaseException:   # release the chain's workers: nothing will read the rest
            self.close()
            raise
        if in_workers is not None:
            markers = self._write_in_workers(in_workers, sink_step, local_files and writers == 'auto')
            if markers is not None:
                return collect(markers, sink)
            if writers == 'workers':
                self.close()
                raise ValueError(f"{sink_step}(writers='workers') needs a chain whose last step runs on a "
                                 f'parallel backend and has not started (e.g. '
                                 f".set_parallel(2, backend='ray').map(embed).{sink_step}(...)); leave "
                                 f"writers='auto' to write from the driver")
        return write_rows(self._items, sink)

    def _write_in_workers(self, recipe: Any, sink_step: str,
                          local_files: bool = False) -> Optional['DataCollection']:
        """This chain with its last step also writing the rows it makes into ``recipe``'s
        sink, in its own workers (a :class:`~towhee_ray.sinks.in_workers.SinkRecipe`); its
        elements are then one small marker per row. None when the last step is not a
        parallel step of a stream that nothing has pulled yet, or (``local_files``) runs
        where a worker may not see this machine's files: the driver writes then."""
        from towhee_ray.sinks.in_workers import WriteAfter, WriteAfterOperator
        step = getattr(self, '_open_step', None)
        if step is None or inspect.getgeneratorstate(self._items) != inspect.GEN_CREATED:
            return None
        if local_files and not _sees_local_files(step.parallel):
            logger.info('%s: the driver writes, as %s workers may run on other machines', sink_step,
                        step.parallel.backend)
            return None
        self._items.close()   # never started: none of its workers ran
        self._open_step = None
        name = f'{step.name} + {sink_step}'
        upstream = step.upstream
        if step.operator is not None:
            return upstream._run(name, operator=WriteAfterOperator(step.operator, recipe),
                                 parallel=step.parallel)
        return upstream._run(name, WriteAfter(step.fn, recipe), parallel=step.parallel)

    def _apply_operator(self, spec: OperatorSpec, parallel: Optional[Parallel] = None,
                        columns: Optional[Columns] = None) -> 'DataCollection':
        operator = spec if columns is None else ColumnOperator(spec, columns)
        return self._run(f'operator {operator.name}', operator=GuardedOperator(operator, self._settings.safe),
                         parallel=parallel)

    def _apply(self, step: str, fn: Callable[[Any], Any], parallel: Optional[Parallel] = None,
               columns: Optional[Columns] = None) -> 'DataCollection':
        if not callable(fn):
            raise TypeError(f'{step} needs a callable, got {fn!r}')
        if is_towhee_pipeline(fn):
            return map_pipeline(self, fn, parallel)
        spec = spec_from_towhee_op(fn)
        if spec is not None:
            return self._apply_operator(spec, parallel, columns)
        if columns is not None:   # the fields are read and written in the worker
            step, fn = f'{step}{columns}', ColumnCall(fn, columns)
        return self._run(f'{step}({callable_name(getattr(fn, "fn", fn))})', Guarded(fn, self._settings.safe),
                         parallel=parallel)

    @column_method
    def map(self, *fns: Callable[[Any], Any], columns: Any = None) -> Any:
        """Apply ``fn`` to every element; with several functions, the same as ``mmap``.

        A ``towhee.ops.<ns>.<name>(...)`` object runs as an operator step; a Towhee
        pipeline (``pipe...output(...)``) gives each element's ``p(element).to_list()``,
        built once per worker. On rows, ``map['a', 'b'](fn)`` writes ``fn(row's a)`` into
        field ``b`` (as Towhee 1.x's ``pipe.map('a', 'b', fn)`` and Towhee 0.9's
        ``runas_op['a', 'b'](func=fn)`` do); ``map[('a', 'b'), 'c'](fn)`` calls ``fn(a, b)``.

        >>> DataCollection([1, 2]).map(lambda x: -x).to_list()
        [-1, -2]
        >>> [b.to_list() for b in DataCollection([1, 2]).map(str, float)]
        [['1', '2'], [1.0, 2.0]]
        >>> DataCollection['a']([1, 2]).map['a', 'b'](lambda a: -a).as_raw().to_list()
        [(1, -1), (2, -2)]
        """
        if columns is not None:
            if len(fns) != 1:
                fields = list(columns) if isinstance(columns, tuple) else [columns]
                raise TypeError(f'map{fields}(fn) takes one function, got {len(fns)}')
            if is_towhee_pipeline(fns[0]):
                raise TypeError("map['a', 'b'] does not take a Towhee pipeline: its inputs are the element. "
                                "Make the pipeline's input the row, or map a function of the field")
            return self._apply('map', fns[0], columns=Columns.parse(columns))
        if len(fns) == 1:
            return self._apply('map', fns[0])
        if not fns:
            raise TypeError('map() needs at least one function')
        return self.mmap(list(fns))

    @column_method
    def filter(self, fn: Callable[..., bool], drop_empty: bool = False, *,
               columns: Any = None) -> 'DataCollection':
        """Keep the elements for which ``fn`` is true; ``filter['a', ...](fn)`` calls
        ``fn`` with those fields of each row. The :class:`Empty` elements of a ``safe()``
        chain are kept, unless ``drop_empty=True``.

        >>> DataCollection.range(6).filter(lambda x: x % 2).to_list()
        [1, 3, 5]
        >>> DataCollection['a', 'b']([(1, 2), (3, 3)]).filter['a', 'b'](lambda a, b: a < b).as_raw()
        [(1, 2)]
        """
        if not callable(fn):
            raise TypeError(f'filter needs a callable, got {fn!r}')
        step = f'filter({callable_name(fn)})'
        if columns is not None:
            names = (columns,) if isinstance(columns, str) else columns
            columns = Columns(field_names(sum(((n,) if isinstance(n, str) else tuple(n) for n in names), ())))
            step, fn = f'filter{columns}({callable_name(fn)})', ColumnCall(fn, columns, result_only=True)
        kept = self._run(step, Guarded(fn, self._settings.safe, keep_if=True))
        return kept.drop_empty() if drop_empty else kept

    def pmap(self, fn: Callable[[Any], Any], num_worker: Optional[int] = None,
             backend: Optional[str] = None, **backend_options: Any) -> 'DataCollection':
        """``map`` on a backend; unset arguments come from the chain's ``set_parallel``
        (else the ``thread`` backend with 2 workers).

        >>> DataCollection.range(4).pmap(lambda x: x * x, num_worker=2).to_list()
        [0, 1, 4, 9]
        """
        parallel = self._parallel_for(num_worker, backend, backend_options)
        return self._apply('pmap', fn, parallel)

    def mmap(self, fns: Sequence[Callable[[Any], Any]], num_worker: Optional[int] = None,
             backend: Optional[str] = None, **backend_options: Any) -> List['DataCollection']:
        """One collection per function, all fed from a single pass over this one.

        The branches can be read in any order; elements one branch has read and another
        has not yet are held in the driver until that one reads them.

        >>> a, b = DataCollection.range(3).stream().mmap([str, lambda x: x * 2])
        >>> list(zip(a, b))
        [('0', 0), ('1', 2), ('2', 4)]
        """
        fns = list(fns)
        if not fns:
            raise TypeError('mmap() needs at least one function')
        parallel = self._parallel_for(num_worker, backend, backend_options)
        sources = itertools.tee(self._items, len(fns)) if self.is_stream else [self._items] * len(fns)
        return [self._derive(source)._apply('mmap', fn, parallel) for source, fn in zip(sources, fns)]

    # -- driver-side reshaping -------------------------------------------------------------

    def flatten(self, *fields: str) -> 'DataCollection':
        """Replace every element by the elements it holds; with field names, one row per
        element of those (list) fields, the other fields repeated.

        >>> DataCollection([[1, 2], [3]]).flatten().to_list()
        [1, 2, 3]
        >>> DataCollection['a', 'b']([('x', [1, 2])]).flatten('b').as_str().to_list()
        ["{'a': 'x', 'b': 1}", "{'a': 'x', 'b': 2}"]
        """
        if fields:
            return self._flatten_fields(fields)
        return self._derive(flatten_values(self._items))

    def zip(self, *others: 'DataCollection') -> 'DataCollection':
        """Tuples of this collection's elements with the others'; a stream if any is one.

        >>> DataCollection([1, 2]).zip(DataCollection('ab')).to_list()
        [(1, 'a'), (2, 'b')]
        """
        stream = self.is_stream or any(getattr(other, 'is_stream', False) for other in others)
        return self._derive(zip(self._items, *others), stream=stream)

    def progress(self, total: Optional[int] = None, desc: Optional[str] = None,
                 count: Optional[Count] = None, **tqdm_options: Any) -> 'DataCollection':
        """Show a tqdm progress bar advancing as elements pass this point: by one per element,
        or by ``count(element)`` (``count=len`` counts the elements of batches). ``total``
        defaults to what the elements count for when the collection is not a stream; other
        keywords go to ``tqdm`` (``unit='passage'``). A stream stays a stream.

        Put a bar over batches right after the batched step, before ``flatten()``: after
        ``sorted_batch`` the flattened elements wait for their window's earlier ones, so a bar
        after ``flatten()`` moves in jumps.

        >>> DataCollection.range(3).progress(desc='squares').map(lambda x: x * x).to_list()
        [0, 1, 4]
        >>> (DataCollection.range(5).stream().batch(2).map(lambda b: [x * x for x in b])
        ...  .progress(total=5, unit='square', count=len).flatten().to_list())
        [0, 1, 4, 9, 16]
        """
        check_count(count)
        if total is None and not self.is_stream:
            total = sum(units(item, count) for item in self._items) if count else len(self._items)
        return self._derive(with_progress(self._items, total, desc, count, **tqdm_options))

    def __getattr__(self, name: str) -> _OperatorPath:
        if name.startswith('_'):
            raise AttributeError(name)
        error = missing_method_error(name)
        if error is not None:
            raise error
        return _OperatorPath(self, name)
