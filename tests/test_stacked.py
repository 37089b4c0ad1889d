"""Vectors on their way back from Ray workers: a batch's or a chunk's arrays of one shape
travel as one matrix (towhee_ray/backends/stacked.py) and arrive as the list the operator
returned, each caller or element its own; on a real local Ray."""
import pickle

import numpy as np
import pytest
from towhee import ops, pipe

from tests import ops as test_ops   # registers tests_ns/vectors
from towhee_ray import DataCollection, ray_op, wide
from towhee_ray.backends.stacked import StackedRows, stacked, stacked_outputs


vector = test_ops.Vectors()   # a number's vector: 8 float32s, 9 for a negative number


def assert_vectors(got, numbers):
    assert len(got) == len(numbers)
    for array, number in zip(got, numbers):
        expected = vector(number)
        assert type(array) is np.ndarray and array.dtype == np.float32 and array.shape == expected.shape
        np.testing.assert_array_equal(array, expected)


# -- what travels as one matrix, and what as it is ----------------------------------------------

def test_a_list_of_equal_arrays_pickles_as_one_buffer_and_unpickles_as_its_rows():
    rows = [vector(i) for i in range(5)]
    buffers = []
    data = pickle.dumps(stacked(rows), protocol=5, buffer_callback=buffers.append)
    back = pickle.loads(data, buffers=buffers)
    assert len(buffers) == 1 and type(back) is list
    assert_vectors(back, range(5))
    assert all(row.base is back[0].base for row in back)   # rows of one matrix


@pytest.mark.parametrize('values', [
    [vector(1)],                                           # one: nothing to save
    [vector(1), vector(-1)],                               # two shapes
    [vector(1), vector(1).astype(np.float64)],             # two dtypes
    [vector(1), 'text'],                                   # not all arrays
    [vector(1), None],
    [np.float32(1), np.float32(2)],                        # numpy scalars
    [np.array(1.0), np.array(2.0)],                        # 0-d: rows of a 1-d matrix would be scalars
    [np.array([object()]), np.array([object()])],          # Python objects
    [np.ma.masked_array([1.0]), np.ma.masked_array([2.0])],   # a subclass
    [np.ones((3, 2)).T, np.ones((3, 2)).T],                # not C-contiguous: its layout is kept
    (vector(1), vector(2)),                                # a tuple stays a tuple
], ids=['one', 'shapes', 'dtypes', 'text', 'none', 'scalars', '0-d', 'objects', 'subclass', 'layout',
        'tuple'])
def test_anything_else_travels_as_it_is(values):
    assert stacked(values) is values


def test_a_chunks_outputs_stack_as_a_whole_or_each_list_of_vectors():
    assert type(stacked_outputs([vector(1), vector(2)])) is StackedRows
    outputs = stacked_outputs([[vector(1), vector(2)], [vector(3)], 'text', [vector(4), vector(-4)]])
    assert [type(output).__name__ for output in outputs] == ['StackedRows', 'list', 'str', 'list']


# -- on Ray ---------------------------------------------------------------------------------------

@pytest.mark.usefixtures('ray_cluster')
def test_a_ray_op_batchs_vectors_arrive_as_rows_of_one_matrix_each_callers_own():
    with ray_op(ops.tests_ns.vectors(), num_worker=1, max_batch_size=16) as embed:
        p = wide(pipe.input('x').map('x', 'y', embed).output('y'), in_flight=16)
        got = [queue.get()[0] for queue in p.batch(list(range(32)))]   # two batches of 16
        assert_vectors(got, range(32))
        assert all(row.base is got[0].base for row in got[:16]) and got[16].base is got[31].base
        assert got[0].base is not got[16].base
        # a batch of two shapes, or with a failed row, arrives row by row, each its own
        assert_vectors([queue.get()[0] for queue in p.batch([1, -2, 3])], [1, -2, 3])
        assert embed.stats()[0]['batch_sizes'] == {16: 2, 3: 1}


@pytest.mark.usefixtures('ray_cluster')
def test_a_ray_op_given_a_list_returns_its_vectors_as_rows_of_one_matrix():
    # a pipe of lists: each call's argument a batch, its result that batch's vectors
    with ray_op(ops.tests_ns.vectors(), num_worker=1) as embed:
        p = pipe.input('x').map('x', 'y', embed).output('y')
        got = p(list(range(16))).get()[0]
        assert type(got) is list
        assert_vectors(got, range(16))
        assert all(row.base is got[0].base for row in got)   # one matrix
        assert_vectors(p([1, -2, 3]).get()[0], [1, -2, 3])      # two shapes: as they are
        assert_vectors([p(5).get()[0]], [5])                      # one vector: as it is
        again = p(list(range(16))).get()[0]
        assert again[0].base is not got[0].base                   # each call its own matrix


@pytest.mark.usefixtures('ray_cluster')
def test_a_ray_steps_vectors_arrive_as_the_outputs_each_elements_own():
    numbers = list(range(-3, 45))
    mapped = (DataCollection(numbers).set_parallel(2, backend='ray', chunk_size=16)
              .map(lambda x: vector(x)).to_list())
    assert_vectors(mapped, numbers)
    assert all(row.base is mapped[16].base for row in mapped[16:32])   # a chunk of one shape: one matrix
    by_operator = DataCollection(numbers).set_parallel(2, backend='ray', chunk_size=16).tests_ns.vectors()
    assert_vectors(by_operator.to_list(), numbers)
    batches = (DataCollection(numbers).set_parallel(2, backend='ray').batch(16)
               .tests_ns.vectors().to_list())
    assert [len(batch) for batch in batches] == [16, 16, 16]
    assert_vectors([row for batch in batches for row in batch], numbers)
    assert all(row.base is batches[1][0].base for row in batches[1])   # a batch's list: one matrix
