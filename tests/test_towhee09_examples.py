"""Towhee 0.9.0's documented DataCollection examples, run against towhee_ray.

Each example is written as in 0.9's docstrings (``towhee/functional/data_collection.py``
and ``towhee/functional/mixins/*.py``), with the output Towhee 0.9.0 gives (checked in a
``pip install towhee==0.9.0`` virtualenv). Only the import line differs. Where towhee_ray
deliberately differs, the test says so and the manual's "Differences from Towhee 0.9"
(docs/migrating.md) lists it.
"""
import random
import threading

import pytest

import towhee_ray as towhee
from towhee_ray import DataCollection, Empty, Entity, dc


def test_construction_chaining_and_decorators():
    chained = DataCollection([0, 1, 2, 3, 4]).map(lambda x: x + 1).map(lambda x: x * 2)
    assert chained.to_list() == [2, 4, 6, 8, 10]
    data = DataCollection([1, 2, 3, 4])

    @data.map
    def add1(x):
        return x + 1

    @add1.map
    def mul2(x):
        return x * 2

    @mul2.filter
    def ge3(x):
        return x >= 7

    assert ge3.to_list() == [8, 10]


def test_repr_indexing_concatenation_and_mmap():
    assert repr(DataCollection([1, 2, 3]).unstream()) == '[1, 2, 3]'
    assert DataCollection([0, 1, 2, 3, 4])[2] == 2
    dc0, dc1, dc2 = DataCollection.range(5), DataCollection.range(5), DataCollection.range(5)
    assert repr(dc0 + dc1 + dc2) == '[0, 1, 2, 3, 4, 0, ...]'
    a, b = DataCollection([1, 2, 3, 4]).map(lambda x: x + 1, lambda x: x * 2)
    assert (a.to_list(), b.to_list()) == ([2, 3, 4, 5], [2, 4, 6, 8])
    dc_ = DataCollection([0, 1, 2, 3, 4])
    dc_[2] = 3
    assert dc_.to_list() == [0, 1, 3, 3, 4]
    with pytest.raises(TypeError, match='indexing is only supported'):
        dc_.stream()[1]


def test_stream_and_unstream():
    assert DataCollection([0, 1, 2, 3, 4]).is_stream is False
    assert DataCollection([0, 1, 2, 3, 4]).stream().is_stream is True
    assert DataCollection(iter(range(5))).unstream().is_stream is False
    assert DataCollection(iter(range(5))).map(lambda x: x + 1).is_stream is True


def test_exception_safety():
    dc_ = DataCollection.range(5)
    with pytest.raises(ZeroDivisionError):
        dc_.map(lambda x: x / (0 if x == 3 else 2)).to_list()
    safe = dc_.exception_safe().map(lambda x: x / (0 if x == 3 else 2))
    # 0.9: [Some(0.0), Some(0.5), Some(1.0), Empty(), Some(2.0)]: towhee_ray keeps plain values
    out = safe.to_list()
    assert out[:3] + out[4:] == [0.0, 0.5, 1.0, 2.0] and isinstance(out[3], Empty)
    assert len(safe.filter(lambda x: x < 1.5).to_list()) == 4          # Empty kept
    assert safe.filter(lambda x: x < 1.5, drop_empty=True).to_list() == [0.0, 0.5, 1.0]
    filled = dc_.safe().map(lambda x: x / (0 if x == 3 else 2)).fill_empty(-1.0)
    assert filled.to_list() == [0.0, 0.5, 1.0, -1.0, 2.0]
    assert dc_.safe().map(lambda x: x / (0 if x == 3 else 2)).drop_empty().to_list() == [0.0, 0.5, 1.0, 2.0]
    exception_inputs = []
    dc_.safe().map(lambda x: x / (0 if x == 3 else 2)).drop_empty(
        lambda x: exception_inputs.append(x.get().value))
    assert exception_inputs == [3]


def test_entity_conversions():
    assert DataCollection([dict(a=1, b=2), dict(a=2, b=3)]).as_entity().as_str().to_list() == \
        ["{'a': 1, 'b': 2}", "{'a': 2, 'b': 3}"]
    assert DataCollection([(1, 2), (2, 3)]).as_entity(schema=['a', 'b']).as_str().to_list() == \
        ["{'a': 1, 'b': 2}", "{'a': 2, 'b': 3}"]
    assert DataCollection([1, 2]).as_entity(schema=['a']).as_str().to_list() == ["{'a': 1}", "{'a': 2}"]
    raw = DataCollection([(1, 2), (2, 3)]).as_entity(schema=['a', 'b']).as_raw()
    assert raw.to_list() == [(1, 2), (2, 3)]
    assert DataCollection([1, 2]).as_entity(schema=['a']).as_raw().to_list() == [1, 2]
    assert DataCollection(['{"x": 1}']).parse_json()[0].x == 1
    assert repr(DataCollection([Entity(x=1)]).as_json()) == '[\'{"x": 1}\']'


def test_select():
    df = DataCollection([Entity(a=i, b=i, c=i) for i in range(2)])
    assert repr(df.select['a']().to_list()) == "[<Entity dict_keys(['a'])>, <Entity dict_keys(['a'])>]"
    five = DataCollection([Entity(a=i, b=i, c=i) for i in range(5)])
    assert five.select['a', 'b']().as_raw().to_list() == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]
    assert five.select('a', 'b').as_raw().to_list() == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]


def test_fill_entity_replace_dropna_rename():
    df = DataCollection([Entity(num=i) for i in range(3)])
    assert repr(df.fill_entity({'foo': 'bar'}).fill_entity(usage='test').to_list()) == \
        "[<Entity dict_keys(['num', 'foo', 'usage'])>, <Entity dict_keys(['num', 'foo', 'usage'])>, " \
        "<Entity dict_keys(['num', 'foo', 'usage'])>]"
    assert df.fill_entity(_ReplaceNoneValue=True, _DefaultKVs={'FOO': None}).to_list()[0].FOO == 0
    df = DataCollection([Entity(num=i) for i in range(5)])
    assert [i.num for i in df.replace(num={0: 1, 1: 2, 2: 3, 3: 4, 4: 5})] == [1, 2, 3, 4, 5]
    entities = [Entity(a=i, b=i + 1) for i in range(3)]
    entities.append(Entity(a=3, b=''))
    assert repr(DataCollection(entities).dropna().to_list()) == repr(entities[:3])
    renamed = DataCollection([Entity(a=i, b=i + 1) for i in range(3)]).rename(column={'a': 'A', 'b': 'B'})
    assert repr(renamed.to_list()) == "[" + ", ".join(["<Entity dict_keys(['A', 'B'])>"] * 3) + "]"


def test_combine_select_from_zip():
    z = DataCollection.combine(towhee.range['a'](1, 5), towhee.range['b'](5, 10), towhee.range['c'](10, 15))
    assert z.as_raw().to_list() == [(1, 5, 10), (2, 6, 11), (3, 7, 12), (4, 8, 13)]
    dc3 = DataCollection([[1, 2, 0], [2, 3, 0]]).select_from(DataCollection([0.8, 0.9, 8.1, 9.2]))
    assert list(dc3) == [[0.9, 8.1, 0.8], [8.1, 9.2, 0.8]]
    assert list(DataCollection([1, 2, 3, 4]).zip(DataCollection([1, 2, 3, 4]).map(lambda x: x + 1))) == \
        [(1, 2), (2, 3), (3, 4), (4, 5)]


def test_batch_and_rolling():
    assert [list(b) for b in DataCollection(range(10)).batch(2)] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert repr(DataCollection(range(10)).batch(3)) == '[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]'
    assert repr(DataCollection(range(10)).batch(3, drop_tail=True)) == '[[0, 1, 2], [3, 4, 5], [6, 7, 8]]'
    entities = DataCollection([Entity(a=a, b=b) for a, b in zip(['abc', 'vdfvcd', 'cdsc'], [1, 2, 3])])
    assert repr(entities.batch(2).to_list()) == \
        "[[<Entity dict_keys(['a', 'b'])>, <Entity dict_keys(['a', 'b'])>], [<Entity dict_keys(['a', 'b'])>]]"
    assert [list(b) for b in DataCollection(range(5)).rolling(3)] == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert [list(b) for b in DataCollection(range(5)).rolling(3, drop_head=False)] == \
        [[0], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert [list(b) for b in DataCollection(range(5)).rolling(3, drop_tail=False)] == \
        [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4], [4]]
    every_second = DataCollection(range(5)).rolling(2, 2, drop_head=False, drop_tail=False)
    assert repr(every_second) == '[[0], [0, 1], [2, 3], [4]]'
    every_fourth = DataCollection(range(5)).rolling(2, 4, drop_head=False, drop_tail=False)
    assert repr(every_fourth) == '[[0], [0, 1], [4]]'


def test_flatten_shuffle_group_by_split_head_sample():
    assert DataCollection(range(10)).batch(2).flatten().to_list() == list(range(10))
    e = Entity(a=1, b=2, c=(i for i in range(3)))
    assert [str(i) for i in DataCollection([e]).flatten('c')] == \
        ["{'a': 1, 'b': 2, 'c': 0}", "{'a': 1, 'b': 2, 'c': 1}", "{'a': 1, 'b': 2, 'c': 2}"]
    with pytest.raises(TypeError, match='shuffle is not supported for streamed data collection'):
        DataCollection([0, 1, 2, 3, 4]).stream().shuffle()
    grouped = dc['a']([1, 1, 2, 2, 3, 3])
    assert [i.a for i in grouped] == [1, 1, 2, 2, 3, 3]
    assert [i.a for i in grouped.group_by('a')] == [1, 2, 3]
    a, b, c = DataCollection([0, 1, 2, 3, 4]).stream().split(3)
    assert a.zip(b, c).to_list() == [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4)]
    assert DataCollection.range(10).head(3).to_list() == [0, 1, 2]
    random.seed(9)   # sample() draws from the random module, as 0.9's did
    sampled = DataCollection(range(10000)).sample(0.1).to_list()
    assert 0.09 < len(sampled) / 10000. < 0.11 and sampled == sorted(set(sampled))


def test_split_train_test():
    train, test = DataCollection.range(10).split_train_test(shuffle=False)
    assert train.to_list() == [0, 1, 2, 3, 4, 5, 6, 7, 8] and test.to_list() == [9]


def test_list_methods():
    assert repr(DataCollection([0, 1, 2]).append(3).append(4)) == '[0, 1, 2, 3, 4]'
    assert repr(DataCollection([1, 2, 3]).clear()) == '[]'
    dc_ = DataCollection([1, 2, 3])
    dc_1 = dc_.copy()
    dc_1.append(4)      # 0.9's example appends to dc_1._iterable
    assert repr((dc_, dc_1)) == '([1, 2, 3], [1, 2, 3, 4])'
    assert DataCollection([1, 2, 3]).count(1) == 1
    assert repr(DataCollection([1, 2, 3]).extend([4, 5])) == '[1, 2, 3, 4, 5]'
    assert repr(DataCollection([1, 2, 3]).insert(0, 0)) == '[0, 1, 2, 3]'
    assert repr(DataCollection([1, 2, 3]).pop()) == '[1, 2]'
    assert repr(DataCollection([1, 2, 3]).remove(1)) == '[2, 3]'
    assert repr(DataCollection([1, 2, 3]).reverse()) == '[3, 2, 1]'
    assert repr(DataCollection([1, 4, 3]).sort()) == '[1, 3, 4]'


def test_dc_factory_and_runas_op():
    assert towhee.dc([0, 1, 2]).to_list() == [0, 1, 2]
    assert repr(towhee.dc['column']([0, 1, 2]).to_list()) == \
        "[<Entity dict_keys(['column'])>, <Entity dict_keys(['column'])>, <Entity dict_keys(['column'])>]"
    assert repr(towhee.dc['string', 'int']([['a', 1], ['b', 2], ['c', 3]]).to_list()) == \
        "[" + ", ".join(["<Entity dict_keys(['string', 'int'])>"] * 3) + "]"
    entities = [Entity(a=i, b=i) for i in range(5)]
    res = DataCollection(entities).runas_op['a', 'b'](func=lambda x: x - 1).to_list()
    assert res[0].a == res[0].b + 1
    assert [str(r) for r in dc['a'](range(3)).runas_op['a', 'b'](lambda x: x + 1)] == \
        ["{'a': 0, 'b': 1}", "{'a': 1, 'b': 2}", "{'a': 2, 'b': 3}"]


def in_two_threads_at_least(threads, enough):
    """A function for a thread step that records its thread and, the first time a thread
    runs it, waits until a second thread has run it too (``enough`` is set then): two
    threads served the step, whatever the scheduling, or it times out saying so."""
    lock = threading.Lock()

    def record(x):
        with lock:
            first_time = threading.current_thread().ident not in threads
            threads.add(threading.current_thread().ident)
            if len(threads) >= 2:
                enough.set()
        if first_time:
            enough.wait(timeout=120)
        return x
    return record


def test_parallel_examples():
    stage_1, stage_2 = set(), set()
    two_in_1, two_in_2 = threading.Event(), threading.Event()
    out = (DataCollection.range(1000).stream().set_parallel(4)
           .map(in_two_threads_at_least(stage_1, two_in_1))
           .map(in_two_threads_at_least(stage_2, two_in_2)).to_list())
    assert out == list(range(1000))
    assert two_in_1.is_set() and two_in_2.is_set() and 2 <= len(stage_1) <= 4 and 2 <= len(stage_2) <= 4
    assert threading.current_thread().ident not in stage_1 | stage_2
    assert DataCollection.range(1000).set_parallel(2).map(lambda x: x + 1).to_list() == list(range(1, 1001))
    parallel = dc['a'](range(1000)).set_parallel(5)
    assert [row.b for row in parallel.runas_op['a', 'b'](lambda x: x + 1)] == list(range(1, 1001))
    statement = DataCollection.range(6)
    statement.set_parallel(3)       # the statement form changes the collection, as in 0.9
    assert (statement.get_backend(), statement.get_num_worker()) == ('thread', 3)
    assert (DataCollection.range(3).get_backend(), DataCollection.range(3).get_num_worker()) == (None, None)


def test_csv_and_json_lines(tmp_path):
    path = tmp_path / 'x.csv'
    dc['a', 'b']([(1, 'x'), (2, 'y')]).to_csv(path)
    assert path.read_text(encoding='utf-8-sig').replace('\r\n', '\n') == 'a,b\n1,x\n2,y\n'
    assert [str(e) for e in DataCollection.read_csv(path)] == ["{'a': '1', 'b': 'x'}", "{'a': '2', 'b': 'y'}"]
    lines = tmp_path / 'x.json'
    lines.write_text('{"a": 1}\n{"a": 2, "b": "x"}\n')
    assert [str(e) for e in DataCollection.read_json(lines)] == ["{'a': 1}", "{'a': 2, 'b': 'x'}"]


def test_show_plain(capsys):
    # 0.9 (tablefmt='plain') printed tabulate's plain table
    dc['a', 'b']([(1, 'x'), (2, 'y')]).show(tablefmt='plain')
    assert capsys.readouterr().out == '  a  b\n  1  x\n  2  y\n'
