"""sorted_batch: batches of similar cost, outputs back in input order, on every backend."""
import itertools
import random

import pytest

from towhee_ray import DataCollection, Empty


def texts(count, seed=7):
    rng = random.Random(seed)
    return [f'{index}:' + 'w ' * rng.randint(0, 60) for index in range(count)]


def word_counts(batch):
    """A batched function: one output per element."""
    return [len(text.split()) for text in batch]


def on(backend, items):
    dc = DataCollection(iter(items))
    return dc.set_parallel(num_worker=2, backend=backend) if backend else dc


@pytest.mark.parametrize('backend', [None, 'thread', 'ray'])
def test_outputs_come_back_in_input_order_equal_to_the_unbatched_path(backend, request):
    if backend == 'ray':
        request.getfixturevalue('ray_cluster')
    items = texts(700)
    unbatched = on(backend, items).map(lambda text: len(text.split())).to_list()
    batched = on(backend, items).sorted_batch(16, window=100).map(word_counts).flatten().to_list()
    assert batched == unbatched == [len(text.split()) for text in items]


def test_batches_hold_elements_of_similar_cost_costliest_first():
    items = texts(64)
    batches = DataCollection(items).sorted_batch(8, window=32).to_list()
    assert sorted(itertools.chain.from_iterable(batches)) == sorted(items)
    for window in (batches[:4], batches[4:]):
        lengths = [len(text) for batch in window for text in batch]
        assert lengths == sorted(lengths, reverse=True)   # sorted within each window only
    assert {text for batch in batches[:4] for text in batch} == set(items[:32])


def test_a_stream_is_pulled_one_window_at_a_time_and_may_be_endless():
    pulled = []

    def endless():
        for index in itertools.count():
            pulled.append(index)
            yield str(index)

    batches = iter(DataCollection(endless()).sorted_batch(4, window=10))
    next(batches)
    assert len(pulled) == 10          # the first window, not more
    first = DataCollection(endless()).sorted_batch(4, window=10).map(lambda b: b).flatten().head(25).to_list()
    assert first == [str(index) for index in range(25)]


def test_the_default_window_is_thirty_two_batches():
    pulled = []

    def numbers():
        for index in range(1000):
            pulled.append(index)
            yield 'x' * (index % 7)

    next(iter(DataCollection(numbers()).sorted_batch(5)))
    assert len(pulled) == 32 * 5


def test_a_custom_key_orders_the_batches():
    items = [(index, random.Random(index).random()) for index in range(40)]
    batches = DataCollection(items).sorted_batch(10, key=lambda pair: pair[1], window=40).to_list()
    assert [pair[1] for pair in batches[0]] == sorted((pair[1] for pair in items), reverse=True)[:10]
    assert DataCollection(items).sorted_batch(10, key=lambda pair: pair[1]).flatten().to_list() == items


def test_a_filter_dropping_a_whole_batch_keeps_the_rest_in_order():
    items = [str(index) * (index % 5 + 1) for index in range(50)]
    batched = DataCollection(items).sorted_batch(5, window=25)
    survivors = {text for batch in batched for text in batch if '7' not in ''.join(batch)}
    kept = (batched.filter(lambda batch: '7' not in ''.join(batch)).flatten().to_list())
    assert 0 < len(kept) < len(items)
    assert kept == [text for text in items if text in survivors]


def test_a_failing_batch_of_a_safe_chain_becomes_one_empty_at_its_first_element():
    items = [f'{index}' * (index % 4 + 1) for index in range(20)]

    def fails_on_seven(batch):
        if any(text.startswith('7') for text in batch):
            raise ValueError('seven')
        return batch

    out = DataCollection(items).safe().sorted_batch(4, window=20).map(fails_on_seven).flatten().to_list()
    failed = [element for element in out if isinstance(element, Empty)]
    assert len(failed) == 1 and isinstance(failed[0].exception, ValueError)
    position = out.index(failed[0])
    lost = set(failed[0].value)
    assert ([element for element in out if not isinstance(element, Empty)]
            == [t for t in items if t not in lost])
    assert out[:position] == [text for text in items if text not in lost][:position]
    assert min(items.index(text) for text in lost) == position


def test_an_output_that_is_not_one_per_element_is_an_ordinary_value():
    totals = (DataCollection(['a', 'bb', 'ccc']).sorted_batch(2, window=3)
              .map(lambda b: sum(map(len, b))).to_list())
    assert totals == [5, 1]


@pytest.mark.parametrize('backend', [None, 'thread', 'ray'])
@pytest.mark.parametrize('wrong', ['fewer', 'more'])
def test_a_step_returning_another_number_of_results_fails_naming_the_step_and_batch(backend, wrong, request):
    if backend == 'ray':
        request.getfixturevalue('ray_cluster')
    texts = ['a', 'bb', 'ccc', 'dddd', 'e']

    def lengths(batch):
        out = [len(text) for text in batch]
        return out[:1] if wrong == 'fewer' else out + [99]

    count = '1 result' if wrong == 'fewer' else '3 results'
    expected = (rf"map\(lengths\) failed on element #0 \(\['dddd', 'ccc'\]\): ValueError: it returned "
                rf"{count} for a sorted batch of 2 elements: a step after sorted_batch must return one "
                rf"result per element")
    with pytest.raises(ValueError, match=expected):
        on(backend, texts).sorted_batch(2).map(lengths).flatten().to_list()
    out = on(backend, texts).safe().sorted_batch(2).map(lengths).flatten().to_list()
    # each failed batch is one Empty, at the place of its first element; ['e'] alone gets 1 or [1, 99]
    assert [item.value for item in out[:2]] == [['bb', 'a'], ['dddd', 'ccc']]
    assert out[2] == 1 if wrong == 'fewer' else out[2].value == ['e']
    assert len(out) == 3


def test_bad_arguments_are_refused_naming_what_to_do():
    dc = DataCollection(['a'])
    with pytest.raises(ValueError, match='window must hold at least one batch'):
        dc.sorted_batch(8, window=4)
    with pytest.raises(ValueError, match='sorted_batch size must be a positive integer'):
        dc.sorted_batch(0)
    with pytest.raises(TypeError, match='needs a callable'):
        dc.sorted_batch(8, key='len')
    with pytest.raises(TypeError, match=r'sorted_batch\(key=len\) failed on element #1 \(3\)'):
        DataCollection(['a', 3]).sorted_batch(2).to_list()
