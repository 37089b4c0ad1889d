"""The DataCollection API itself, run serially and on the thread backend (no Ray)."""
import itertools

import pytest

from towhee_ray import DataCollection, Empty


def test_lists_tuples_and_ranges_are_unstreamed_iterators_are_streams():
    assert not DataCollection([1, 2]).is_stream
    assert not DataCollection((1, 2)).is_stream
    assert not DataCollection.range(3).is_stream
    assert DataCollection(iter([1])).is_stream
    assert DataCollection(x for x in [1]).is_stream


def test_unstreamed_collection_has_a_length_and_can_be_read_twice():
    dc = DataCollection.range(4).map(lambda x: x * 2)
    assert len(dc) == 4
    assert dc.to_list() == dc.to_list() == [0, 2, 4, 6]


def test_stream_is_lazy_and_single_pass():
    calls = []
    dc = DataCollection.range(3).stream().map(lambda x: calls.append(x) or x)
    assert calls == []
    assert list(dc) == [0, 1, 2]
    assert list(dc) == []
    with pytest.raises(TypeError, match='unstream'):
        len(dc)


def test_stream_and_unstream_convert():
    dc = DataCollection(iter([3, 1])).unstream()
    assert not dc.is_stream and len(dc) == 2
    assert dc.stream().is_stream


def test_repr_shows_elements_as_towhee_09_and_a_stream_says_it_is_one():
    assert repr(DataCollection([1, 2])) == '[1, 2]'
    assert repr(DataCollection.range(100).set_parallel(2)) == '[0, 1, 2, 3, 4, 5, ...]'
    assert repr(DataCollection(iter([])).safe()) == '<DataCollection stream, safe>'


def test_map_filter_flatten_zip_batch():
    dc = DataCollection.range(6)
    assert dc.map(lambda x: x + 1).to_list() == [1, 2, 3, 4, 5, 6]
    assert dc.filter(lambda x: x % 3 == 0).to_list() == [0, 3]
    assert DataCollection([[1], [2, 3], []]).flatten().to_list() == [1, 2, 3]
    assert dc.zip(DataCollection('abc')).to_list() == [(0, 'a'), (1, 'b'), (2, 'c')]
    assert dc.batch(4).to_list() == [[0, 1, 2, 3], [4, 5]]
    assert DataCollection(iter('xy')).zip(DataCollection([1, 2])).is_stream


def test_map_with_several_functions_is_mmap():
    first, second = DataCollection([1, 2]).map(str, lambda x: -x)
    assert first.to_list() == ['1', '2'] and second.to_list() == [-1, -2]


@pytest.mark.parametrize('order', ['one_after_the_other', 'zipped', 'reversed'])
def test_mmap_branches_read_in_any_order_from_one_pass(order):
    pulled = []

    def source():
        for i in range(50):
            pulled.append(i)
            yield i

    squares, negatives = DataCollection(source()).mmap([lambda x: x * x, lambda x: -x], num_worker=2)
    if order == 'zipped':
        pairs = list(zip(squares, negatives))
        assert pairs == [(i * i, -i) for i in range(50)]
    else:
        branches = [squares, negatives] if order == 'one_after_the_other' else [negatives, squares]
        outputs = [b.to_list() for b in branches]
        assert sorted(outputs) == sorted([[i * i for i in range(50)], [-i for i in range(50)]])
    assert pulled == list(range(50))   # the source was read once


def test_set_parallel_applies_to_following_steps_and_derived_chains():
    dc = DataCollection.range(20).set_parallel(num_worker=3, backend='thread')
    assert (dc.get_backend(), dc.get_num_worker()) == ('thread', 3)
    derived = dc.map(lambda x: x).filter(lambda x: True)
    assert (derived.get_backend(), derived.get_num_worker()) == ('thread', 3)
    assert derived.map(lambda x: x * 2).to_list() == [2 * i for i in range(20)]


@pytest.mark.parametrize('chain', [
    lambda dc: dc.stream().safe().set_parallel(2),
    lambda dc: dc.set_parallel(2).stream().safe(),
    lambda dc: dc.safe().set_parallel(2).stream(),
])
def test_settings_carry_forward_in_any_order(chain):
    dc = chain(DataCollection.range(4)).map(lambda x: 6 // (x - 1))
    assert dc.is_stream
    assert repr(dc) == '<DataCollection stream, parallel=thread x2, safe>'
    out = dc.to_list()
    assert isinstance(out[1], Empty) and out[1].value == 1
    assert [out[0], out[2], out[3]] == [-6, 6, 3]


def test_pmap_defaults_to_chain_settings_then_thread_with_two_workers():
    dc = DataCollection.range(10)
    assert dc.pmap(lambda x: x * 3).to_list() == [3 * i for i in range(10)]
    assert dc.set_parallel(4).pmap(lambda x: x, backend='thread').to_list() == list(range(10))


def test_thread_backend_keeps_order_under_uneven_work():
    import time
    out = DataCollection.range(200).set_parallel(4).map(
        lambda x: time.sleep(0.0005 * (x % 7)) or x).to_list()
    assert out == list(range(200))


def test_safe_empty_carries_value_and_exception_and_passes_later_steps():
    out = (DataCollection(['1', 'x', '3']).safe().set_parallel(2)
           .map(int).map(lambda x: x * 10).to_list())
    assert out[0] == 10 and out[2] == 30
    assert isinstance(out[1], Empty) and out[1].value == 'x'
    assert isinstance(out[1].exception, ValueError)
    assert DataCollection(out).drop_empty().to_list() == [10, 30]


def test_filter_keeps_empty_elements_of_a_safe_chain():
    out = DataCollection([1, 0, 2]).safe().map(lambda x: 1 // x).filter(lambda x: x > 0).to_list()
    assert out[0] == 1 and isinstance(out[1], Empty) and len(out) == 2


def test_batch_rejects_bad_size():
    with pytest.raises(ValueError, match='batch size must be a positive integer'):
        DataCollection([1]).batch(0)


def test_a_long_stream_is_never_materialized():
    pulled = itertools.count()
    source = (next(pulled) for _ in itertools.repeat(None))   # infinite
    dc = DataCollection(source).set_parallel(2).map(lambda x: x + 1)
    assert list(itertools.islice(dc, 5)) == [1, 2, 3, 4, 5]
    assert next(pulled) < 100_000
    dc.close()
