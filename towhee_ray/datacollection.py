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
import itertools
import reprlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Type

from towhee_ray.backends import Backend, get_backend
from towhee_ray.guard import DROPPED, Empty, Failure, Guarded, GuardedOperator, step_error
from towhee_ray.operators import OperatorNotFoundError, OperatorSpec, resolve_operator, spec_from_towhee_op
from towhee_ray.pipeline import is_towhee_pipeline, map_pipeline
from towhee_ray.progress import with_progress

DEFAULT_BACKEND = 'thread'
DEFAULT_NUM_WORKER = 2


def check_num_worker(num_worker: Any) -> int:
    """``num_worker`` means one thing everywhere: how many workers one step uses."""
    if not isinstance(num_worker, int) or isinstance(num_worker, bool) or num_worker < 1:
        raise ValueError(f'num_worker must be a positive integer (how many workers each step '
                         f'uses), got {num_worker!r}')
    return num_worker


@dataclasses.dataclass(frozen=True)
class Parallel:
    """Where a step runs: a backend name, its worker count and its options."""

    backend: str
    num_worker: int
    options: Dict[str, Any]
    backend_class: Type[Backend]

    @classmethod
    def checked(cls, backend: str, num_worker: int, options: Dict[str, Any]) -> 'Parallel':
        """Refuse bad settings now, before any work starts."""
        check_num_worker(num_worker)
        backend_class = get_backend(backend)
        try:
            backend_class(num_worker, **options)
        except TypeError as error:
            raise ValueError(f'backend {backend!r} does not accept the options '
                             f'{sorted(options)}: {error}') from error
        return cls(backend, num_worker, dict(options), backend_class)

    def make_backend(self) -> Backend:
        return self.backend_class(self.num_worker, **self.options)

    def __str__(self) -> str:
        return f'{self.backend} x{self.num_worker}'


@dataclasses.dataclass(frozen=True)
class _Settings:
    safe: bool = False
    parallel: Optional[Parallel] = None


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlist = 8


def _callable_name(fn: Any) -> str:
    return getattr(fn, '__name__', None) or type(fn).__name__


def _close(iterator: Any) -> None:
    close = getattr(iterator, 'close', None)
    if close is not None:
        close()


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
        except Exception as error:   # from the backend itself (a worker died, ...)
            where = f'the {type(backend).__name__}' if backend else 'the driver'
            error.add_note(f'while running {step} on {where}')
            raise
        if failure is not None:
            raise step_error(failure, step, position)
    finally:
        _close(outputs)
        if backend is not None:
            backend.close()
        _close(source)


def _serial_operator(operator: GuardedOperator, items: Iterable[Any]) -> Iterator[Any]:
    call = operator.create()   # built when the first element is pulled, not before
    for item in items:
        yield call(item)


class _OperatorPath:
    """``dc.<namespace>.<name>``: collects the dotted name until it is called."""

    def __init__(self, collection: 'DataCollection', name: str) -> None:
        self._collection = collection
        self._name = name

    def __getattr__(self, name: str) -> '_OperatorPath':
        if name.startswith('__'):
            raise AttributeError(name)
        return _OperatorPath(self._collection, f'{self._name}.{name}')

    def __call__(self, *init_args: Any, **init_kws: Any) -> 'DataCollection':
        try:
            spec = resolve_operator(self._name, init_args, init_kws)
        except OperatorNotFoundError as error:
            methods = [name for name in dir(DataCollection) if not name.startswith('_')]
            close = difflib.get_close_matches(self._name, methods, n=1)
            if close and '.' not in self._name:
                error.add_note(f'DataCollection has no method {self._name!r}; did you mean {close[0]!r}?')
            raise
        return self._collection._apply_operator(spec)

    def __repr__(self) -> str:
        return f'<operator path {self._name!r}: call it to apply the operator>'


class DataCollection:
    """A chain of steps over a sequence or a stream, run serially or on a backend.

    >>> DataCollection([1, 2, 3]).map(lambda x: x * 10).to_list()
    [10, 20, 30]
    >>> dc = DataCollection.range(1000).stream().set_parallel(num_worker=2, backend='thread')
    >>> dc.map(lambda x: x + 1).map(lambda x: x * 2).to_list()[:3]
    [2, 4, 6]

    Hub operators are reached by attribute, as with ``towhee.ops``:

    >>> DataCollection(['One. Two three.']).towhee.text_split(max_words=2).to_list()
    [['One.', 'Two three.']]
    """

    def __init__(self, iterable: Iterable[Any] = (), *, _settings: Optional[_Settings] = None):
        if isinstance(iterable, collections.abc.Iterator):
            self._items: Iterable[Any] = iterable
        elif isinstance(iterable, (list, tuple, range)):
            self._items = iterable
        else:
            self._items = list(iterable)
        self._settings = _settings or _Settings()

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
        return DataCollection(items, _settings=settings or self._settings)

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
        """Stop a stream early and release the workers of its steps."""
        _close(self._items)

    def __repr__(self) -> str:
        settings = [f'parallel={self._settings.parallel}'] if self._settings.parallel else []
        settings += ['safe'] if self._settings.safe else []
        if self.is_stream:
            return f'<DataCollection stream{", " if settings else ""}{", ".join(settings)}>'
        shown = _SHORT_REPR.repr(list(self._items[:_SHORT_REPR.maxlist + 1]))
        return f'DataCollection({shown}{", " if settings else ""}{", ".join(settings)})'

    # -- chain settings -------------------------------------------------------------------

    def set_parallel(self, num_worker: int = DEFAULT_NUM_WORKER, backend: str = DEFAULT_BACKEND,
                     **backend_options: Any) -> 'DataCollection':
        """Run every following map, filter and operator step on ``backend`` with
        ``num_worker`` workers; extra keywords are backend options (e.g. ``chunk_size``).

        >>> DataCollection([1, 2]).set_parallel(2, 'thread').map(str).to_list()
        ['1', '2']
        """
        parallel = Parallel.checked(backend, num_worker, backend_options)
        return self._derive(self._items, dataclasses.replace(self._settings, parallel=parallel))

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
             parallel: Optional[Parallel] = None) -> 'DataCollection':
        parallel = parallel or self._settings.parallel
        backend = parallel.make_backend() if parallel else None
        if backend is None:
            outputs = map(fn, self._items) if operator is None else _serial_operator(operator, self._items)
        elif operator is None:
            outputs = backend.map(fn, self._items)
        else:
            outputs = backend.map_operator(operator, self._items)
        return self._derive(_settle(iter(outputs), step, backend, self._items))

    def _apply_operator(self, spec: OperatorSpec,
                        parallel: Optional[Parallel] = None) -> 'DataCollection':
        return self._run(f'operator {spec.name}', operator=GuardedOperator(spec, self._settings.safe),
                         parallel=parallel)

    def _apply(self, step: str, fn: Callable[[Any], Any],
               parallel: Optional[Parallel] = None) -> 'DataCollection':
        if not callable(fn):
            raise TypeError(f'{step} needs a callable, got {fn!r}')
        if is_towhee_pipeline(fn):
            return map_pipeline(self, fn, parallel)
        spec = spec_from_towhee_op(fn)
        if spec is not None:
            return self._apply_operator(spec, parallel)
        return self._run(f'{step}({_callable_name(fn)})', Guarded(fn, self._settings.safe), parallel=parallel)

    def map(self, *fns: Callable[[Any], Any]) -> Any:
        """Apply ``fn`` to every element; with several functions, the same as ``mmap``.

        A ``towhee.ops.<ns>.<name>(...)`` object runs as an operator step; a Towhee
        pipeline (``pipe...output(...)``) gives each element's ``p(element).to_list()``,
        built once per worker.

        >>> DataCollection([1, 2]).map(lambda x: -x).to_list()
        [-1, -2]
        >>> [b.to_list() for b in DataCollection([1, 2]).map(str, float)]
        [['1', '2'], [1.0, 2.0]]
        """
        if len(fns) == 1:
            return self._apply('map', fns[0])
        if not fns:
            raise TypeError('map() needs at least one function')
        return self.mmap(list(fns))

    def filter(self, fn: Callable[[Any], bool]) -> 'DataCollection':
        """Keep the elements for which ``fn`` is true.

        >>> DataCollection.range(6).filter(lambda x: x % 2).to_list()
        [1, 3, 5]
        """
        if not callable(fn):
            raise TypeError(f'filter needs a callable, got {fn!r}')
        return self._run(f'filter({_callable_name(fn)})', Guarded(fn, self._settings.safe, keep_if=True))

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

    def flatten(self) -> 'DataCollection':
        """Replace every element by the elements it holds.

        >>> DataCollection([[1, 2], [3]]).flatten().to_list()
        [1, 2, 3]
        """
        return self._derive(itertools.chain.from_iterable(self._items))

    def zip(self, *others: 'DataCollection') -> 'DataCollection':
        """Tuples of this collection's elements with the others'; a stream if any is one.

        >>> DataCollection([1, 2]).zip(DataCollection('ab')).to_list()
        [(1, 'a'), (2, 'b')]
        """
        stream = self.is_stream or any(getattr(other, 'is_stream', False) for other in others)
        return self._derive(zip(self._items, *others), stream=stream)

    def batch(self, size: int) -> 'DataCollection':
        """Lists of ``size`` consecutive elements; the last one may be shorter.

        >>> DataCollection.range(5).batch(2).to_list()
        [[0, 1], [2, 3], [4]]
        """
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f'batch size must be a positive integer, got {size!r}')
        iterator = iter(self._items)
        batches = iter(lambda: list(itertools.islice(iterator, size)), [])
        return self._derive(batches)

    def progress(self, total: Optional[int] = None, desc: Optional[str] = None,
                 **tqdm_options: Any) -> 'DataCollection':
        """Show a tqdm progress bar advancing as elements pass this point; ``total`` defaults
        to the length when it is known; other keywords go to ``tqdm`` (``unit='passage'``).
        A stream stays a stream.

        >>> DataCollection.range(3).progress(desc='squares').map(lambda x: x * x).to_list()
        [0, 1, 4]
        """
        if total is None and not self.is_stream:
            total = len(self._items)
        return self._derive(with_progress(self._items, total, desc, **tqdm_options))

    def drop_empty(self) -> 'DataCollection':
        """Remove the :class:`Empty` elements a ``safe()`` chain produced."""
        return self._derive(item for item in self._items if item.__class__ is not Empty)

    def __getattr__(self, name: str) -> _OperatorPath:
        if name.startswith('_'):
            raise AttributeError(name)
        return _OperatorPath(self, name)
