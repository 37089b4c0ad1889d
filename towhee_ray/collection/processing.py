"""Reshaping a collection in the driver: ``head``, ``run``, ``batch``, ``sorted_batch``,
``rolling``, ``shuffle``, ``sample``, ``split``, ``group_by``, indexing and ``+`` (Towhee
0.9's DataProcessingMixin, and length-aware batching). These steps move elements around
without computing on them, so they never go to a backend.
"""
from __future__ import annotations

import itertools
import math
import numbers
import random
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from towhee_ray.checks import positive_int, shown
from towhee_ray.collection.columns import Columns
from towhee_ray.rows import fields_of, is_entity, with_fields
from towhee_ray.guard import Empty, Failure, Guarded, callable_name, step_error
from towhee_ray.positions import InputOrder, SortedBatch

# sorted_batch's default window, in batches. Over the demo corpus (1,277 passages of CPython's
# help topics in topic order, benchmarks/w5_model.py), batches of 64 cut from windows sorted by
# token count, then encoded 32 at a time, compute x1.14 the real tokens with windows of 4
# batches, x1.09 with 8, x1.05 with 16 and x1.03 with 32 (the whole corpus), against x1.52
# for batch(64) in input order and x1.37 for 16-batch windows sorted by characters. A larger
# window also balances the workers' finish better (batches go costliest first within a
# window): W5's 2 actors went from 0.98x to 1.07x the best single process, once started, when
# the window went from 16 to 32 batches (3 interleaved rounds, 2-vCPU VM; that corpus is 20
# batches, so one window at 32). 32 batches' elements in the driver are small for texts or
# token ids (32 x 64 passages, ~2 MB); pass window= to hold fewer.
SORT_WINDOW_BATCHES = 32


def _batches(items: Iterable[Any], size: int, drop_tail: bool) -> Iterator[List[Any]]:
    iterator = iter(items)
    while True:
        batch = list(itertools.islice(iterator, size))
        if len(batch) == size or (batch and not drop_tail):
            yield batch
        if len(batch) < size:
            return


def _sorted_batches(items: Iterable[Any], size: int, key: Callable[[Any], Any],
                    window: int) -> Iterator[SortedBatch]:
    """Batches of ``size`` cut from each window of ``window`` elements sorted by ``key``,
    costliest first (the cheap batches then come last and the workers finish together)."""
    iterator = iter(items)
    start = 0
    while True:
        elements = list(itertools.islice(iterator, window))
        if not elements:
            return
        costs = [_cost(key, element, start + index) for index, element in enumerate(elements)]
        try:
            order = sorted(range(len(elements)), key=costs.__getitem__, reverse=True)
        except TypeError as error:
            raise _unordered(key, elements, costs, start, error) from error
        for first in range(0, len(order), size):
            chosen = order[first:first + size]
            yield SortedBatch([elements[i] for i in chosen], tuple(start + i for i in chosen),
                              start, len(elements))
        start += len(elements)
        del elements, costs, order


def _unordered(key: Callable[[Any], Any], elements: List[Any], costs: List[Any], start: int,
               error: TypeError) -> TypeError:
    """The error for a window whose costs cannot be sorted, naming the first element whose
    cost is not a number.

    >>> str(_unordered(len, ['a', 'b'], [1, None], 10, TypeError('...')))[:81]
    'sorted_batch(key=len): element #11 costs None (NoneType), which cannot be ordered'
    """
    name = callable_name(key)
    index = next((index for index, cost in enumerate(costs)
                  if not isinstance(cost, numbers.Real) and elements[index].__class__ is not Empty), 0)
    cost = shown(costs[index], kind=True)
    return TypeError(f'sorted_batch(key={name}): element #{start + index} costs {cost}, '
                     f'which cannot be ordered with the others ({error}); key must give each element a '
                     f'number (len, or how many tokens it has). The element: {shown(elements[index], 80)}')


def _cost(key: Callable[[Any], Any], element: Any, position: int) -> Any:
    if element.__class__ is Empty:   # a failed element of a safe() chain costs nothing
        return 0
    try:
        return key(element)
    except Exception as error:
        step = f'sorted_batch(key={callable_name(key)})'
        raise step_error(Failure(element, error), step, position) from error


def _windows(items: Iterable[Any], size: int, step: int, drop_head: bool,
             drop_tail: bool) -> Iterator[List[Any]]:
    # Towhee 0.9's algorithm, kept as is so that the partial windows are the same.
    buffer: List[Any] = []
    gap = 0
    in_head = True
    for item in items:
        if gap:
            gap -= 1
            continue
        buffer.append(item)
        if (not drop_head and in_head) or len(buffer) == size:
            yield buffer.copy()
        if len(buffer) == size:
            in_head = False
            buffer = buffer[step:]
            gap = step - size if step > size else 0
    while not drop_tail and buffer:
        yield buffer
        buffer = buffer[step:]


def _groups(rows: Iterable[Any], field: str) -> Iterator[Any]:
    for _, group in itertools.groupby(rows, key=lambda row: fields_of(row)[field]):
        group = list(group)
        merged = {name: value if name == field else [fields_of(row)[name] for row in group]
                  for name, value in fields_of(group[0]).items()}
        yield with_fields(group[0], merged)


def _concatenate(first: Iterable[Any], second: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from second


class _Expand:
    """One row per element of the given list fields (zipped), the other fields repeated."""

    def __init__(self, fields: Tuple[str, ...]) -> None:
        self.fields = fields

    def __call__(self, row: Any) -> List[Any]:
        values = Columns(self.fields).read(row)
        if len(self.fields) > 1:
            values = [value if hasattr(value, '__len__') else list(value) for value in values]
            if len({len(value) for value in values}) > 1:   # zip would drop the values past the shortest
                sizes = ', '.join(f'{field!r} {len(value)}' for field, value in zip(self.fields, values))
                raise ValueError(f'flatten{list(self.fields)} pairs the values of its fields one to one, and '
                                 f'they hold different numbers of them ({sizes}): make them equally long '
                                 f'in the step that makes them, or flatten one field')
        return [with_fields(row, dict(zip(self.fields, parts))) for parts in zip(*values)]


def flatten_values(items: Iterable[Any]) -> Iterator[Any]:
    """The elements of each element; an ``Empty`` passes through, and a row (whose
    iteration would give its field names) asks for the fields to flatten. The elements of
    sorted batches (``sorted_batch``) come back in input order."""
    order = InputOrder()
    for position, item in enumerate(items):
        kind = item.__class__
        if kind is SortedBatch:
            yield from order.add(item)
        elif kind is Empty:
            if item.value.__class__ is SortedBatch:   # a sorted batch whose step failed
                yield from order.add_failed(item.value, item)
            else:
                yield from order.flush()
                yield item
        elif isinstance(item, dict) or is_entity(item):
            raise TypeError("flatten() of entity or dict rows needs the list field(s) to flatten: "
                            "flatten('field')")
        else:
            yield from order.flush()
            try:
                elements = iter(item)
            except TypeError:
                raise TypeError(f'flatten(): element #{position} is {shown(item, kind=True)}, which holds no '
                                f'elements; flatten() takes elements that are lists (what batch() or a step '
                                f'returning lists makes)') from None
            yield from elements
    yield from order.flush()


def _unnest(expanded: Iterable[Any]) -> Iterator[Any]:
    for rows in expanded:
        if rows.__class__ is Empty:
            yield rows
        else:
            yield from rows


class ProcessingMixin:
    """Towhee 0.9's data-processing methods."""

    def head(self, n: int = 5) -> 'ProcessingMixin':
        """The first ``n`` elements (a stream stays lazy).

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(10).head(3)
        [0, 1, 2]
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f'head(n) needs a non-negative integer, got {n!r}')
        return self._derive(itertools.islice(self._items, n))

    def run(self) -> None:
        """Run the chain to its end for its side effects, keeping no element.

        >>> from towhee_ray import DataCollection
        >>> seen = []
        >>> DataCollection.range(3).stream().map(seen.append).run()
        >>> seen
        [0, 1, 2]
        """
        for _ in self._items:
            pass

    def batch(self, size: int, drop_tail: bool = False) -> 'ProcessingMixin':
        """Lists of ``size`` consecutive elements; the last one may be shorter, unless
        ``drop_tail`` drops it.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(5).batch(2)
        [[0, 1], [2, 3], [4]]
        >>> DataCollection.range(5).batch(2, drop_tail=True)
        [[0, 1], [2, 3]]
        """
        positive_int(size, 'batch size')
        return self._derive(_batches(self._items, size, drop_tail))

    def sorted_batch(self, size: int, key: Callable[[Any], Any] = len,
                     window: Optional[int] = None) -> 'ProcessingMixin':
        """Batches of ``size`` elements of similar cost, for a batched operator: each window
        of ``window`` consecutive elements (``32 * size`` by default) is sorted by
        ``key(element)`` (``len``: characters of a text, token ids of a tokenized text) and
        cut into batches, costliest first. ``flatten()`` after the batched step puts the
        outputs back in input order, as long as the step gives one output per element.

        A stream stays a stream; the driver holds one window of elements at a time.

        >>> from towhee_ray import DataCollection
        >>> words = DataCollection(['a', 'ccc', 'bb', 'dddd', 'e']).stream()
        >>> batches = words.sorted_batch(2, window=4)
        >>> [list(b) for b in batches]
        [['dddd', 'ccc'], ['bb', 'a'], ['e']]
        >>> lengths = DataCollection(['a', 'ccc', 'bb', 'dddd', 'e']).sorted_batch(2, window=4)
        >>> lengths.map(lambda batch: [len(word) for word in batch]).flatten().to_list()
        [1, 3, 2, 4, 1]
        """
        positive_int(size, 'sorted_batch size')
        if not callable(key):
            raise TypeError(f'sorted_batch(key=...) needs a callable giving an element\'s cost '
                            f'(e.g. len), got {key!r}')
        window = SORT_WINDOW_BATCHES * size if window is None else positive_int(window, 'sorted_batch window')
        if window < size:
            raise ValueError(f'sorted_batch(size={size}, window={window}): the window must hold at '
                             f'least one batch; give window >= size, or leave it out ({SORT_WINDOW_BATCHES} '
                             f'batches)')
        return self._derive(_sorted_batches(self._items, size, key, window))

    def rolling(self, size: int, step: int = 1, drop_head: bool = True,
                drop_tail: bool = True) -> 'ProcessingMixin':
        """Windows of ``size`` elements, each ``step`` after the previous; ``drop_head`` /
        ``drop_tail`` drop the partial windows at the start / end.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(5).rolling(3)
        [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
        >>> DataCollection.range(5).rolling(2, 2, drop_head=False, drop_tail=False)
        [[0], [0, 1], [2, 3], [4]]
        """
        positive_int(size, 'rolling size')
        positive_int(step, 'rolling step')
        return self._derive(_windows(self._items, size, step, drop_head, drop_tail))

    def shuffle(self) -> 'ProcessingMixin':
        """The elements in a random order (unstreamed collections only).

        >>> from towhee_ray import DataCollection
        >>> sorted(DataCollection.range(5).shuffle())
        [0, 1, 2, 3, 4]
        """
        if self.is_stream:
            raise TypeError('shuffle is not supported for streamed data collection: '
                            'call unstream() first')
        return self._derive(random.sample(list(self._items), len(self._items)))

    def sample(self, ratio: float = 1.0) -> 'ProcessingMixin':
        """Each element kept with probability ``ratio``.

        >>> from towhee_ray import DataCollection
        >>> 800 < len(DataCollection.range(10000).sample(0.1)) < 1200
        True
        """
        if not 0 <= ratio <= 1:
            raise ValueError(f'sample(ratio) needs a ratio between 0 and 1, got {ratio!r}')
        return self._derive(item for item in self._items if random.random() < ratio)

    def split(self, count: int) -> List['ProcessingMixin']:
        """``count`` collections with the same elements, fed from one pass over this one.

        >>> from towhee_ray import DataCollection
        >>> a, b, c = DataCollection([0, 1, 2]).stream().split(3)
        >>> a.zip(b, c).to_list()
        [(0, 0, 0), (1, 1, 1), (2, 2, 2)]
        """
        positive_int(count, 'split count')
        sources = itertools.tee(self._items, count) if self.is_stream else [self._items] * count
        return [self._derive(source) for source in sources]

    def split_train_test(self, size: Sequence[float] = (0.9, 0.1), shuffle: bool = True,
                         random_state: Optional[int] = None) -> Tuple['ProcessingMixin', 'ProcessingMixin']:
        """A train and a test collection, as scikit-learn's ``train_test_split`` (which 0.9
        called) cuts them: ``size`` is the two fractions (or counts); the test part is
        rounded up, the train part down. Unstreamed collections only.

        >>> from towhee_ray import DataCollection
        >>> train, test = DataCollection.range(10).split_train_test(shuffle=False)
        >>> train.to_list(), test.to_list()
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], [9])
        """
        if self.is_stream:
            raise TypeError('split_train_test() needs an unstreamed DataCollection: call unstream() first')
        items = list(self._items)
        train_size, test_size = size
        test_count = test_size if isinstance(test_size, int) else math.ceil(test_size * len(items))
        train_count = train_size if isinstance(train_size, int) else math.floor(train_size * len(items))
        if train_count + test_count > len(items) or min(train_count, test_count) < 0:
            raise ValueError(f'split_train_test(size={list(size)}) asks for {train_count} + {test_count} '
                             f'elements of {len(items)}')
        if shuffle:
            random.Random(random_state).shuffle(items)
        return self._derive(items[:train_count]), self._derive(items[train_count:train_count + test_count])

    def group_by(self, field: str) -> 'ProcessingMixin':
        """Merge consecutive rows with the same value of ``field``; their other fields
        become lists.

        >>> from towhee_ray import DataCollection
        >>> rows = DataCollection['a', 'b']([(1, 'x'), (1, 'y'), (2, 'z')]).group_by('a')
        >>> rows.as_str().to_list()
        ["{'a': 1, 'b': ['x', 'y']}", "{'a': 2, 'b': ['z']}"]
        """
        if not isinstance(field, str) or not field:
            raise IndexError('Please specify the column to group by: group_by(\'field\')')
        return self._derive(_groups(self._items, field))

    def _flatten_fields(self, fields: Sequence[str]) -> 'ProcessingMixin':
        fields = tuple(fields)
        expanded = self._run(f'flatten{list(fields)}', Guarded(_Expand(fields), self._settings.safe),
                             in_driver=True)
        return self._derive(_unnest(expanded._items))

    def __getitem__(self, index: Any) -> Any:
        """An element (``dc[2]``) or a collection of a slice (``dc[1:3]``); unstreamed only.

        >>> from towhee_ray import DataCollection
        >>> dc = DataCollection.range(5)
        >>> dc[2], dc[1:3]
        (2, [1, 2])
        """
        if self.is_stream:
            raise TypeError('indexing is only supported for unstreamed DataCollections: '
                            'call unstream() first')
        if isinstance(index, slice):
            return self._derive(list(self._items[index]))
        if isinstance(index, (str, tuple)):
            raise TypeError(f"dc[{index!r}]: a column subscript goes on a step (dc.ns.op['in', "
                            f"'out'](...)) or on the class: DataCollection['a'](iterable)")
        try:
            return self._items[index]
        except IndexError:
            size = len(self._items)
            within = f'indices 0 to {size - 1}, or -1 to -{size} from the end' if size else 'no index'
            raise IndexError(f'dc[{index}]: the collection has {size} elements ({within})') from None

    def __add__(self, other: Iterable[Any]) -> 'ProcessingMixin':
        """The elements of this collection, then those of ``other``.

        >>> from towhee_ray import DataCollection
        >>> DataCollection.range(3) + DataCollection.range(2)
        [0, 1, 2, 0, 1]
        """
        stream = self.is_stream or getattr(other, 'is_stream', False)
        return self._derive(_concatenate(self._items, other), stream=stream)
