"""How many bytes an element takes on its way to or from a worker, estimated cheaply.

Byte-bounded chunks need the size of the elements they carry, but serializing every
element twice (once to measure, once to send) would double the driver's cost. So sizes
come from what the objects already know: ``nbytes`` of arrays (numpy, towhee ``Image``,
torch, pyarrow), ``len`` of bytes and strings, a sample of a container's items; only other
objects are pickled, with protocol 5 and out-of-band buffers, so an array inside them is
counted by its length, never copied. A chunk measures every element while it is short and a
strided sample of them when it is long (long chunks only happen for small elements).
"""
from __future__ import annotations

import pickle
import sys
from typing import Any, List, Sequence, Tuple

# Approximate pickled sizes of scalars; only their order of magnitude matters.
_SCALAR_BYTES = {int: 8, float: 9, bool: 1, type(None): 1, complex: 17}
# What pickling adds around an array's data (dtype, shape, class): ~100-150 bytes.
ARRAY_OVERHEAD_BYTES = 128
# Items of a list, tuple or dict looked at; the rest are assumed alike.
CONTAINER_SAMPLE = 8
# Nesting followed before falling back to a shallow size.
MAX_DEPTH = 3
# Chunks up to this many elements measure every element, so that a chunk of large elements
# is cut exactly at the byte target; longer chunks measure SAMPLED_ELEMENTS of them. A long
# chunk means small elements: 16 samples cost ~10 us, nothing next to the chunk's ~1 ms of
# Ray overhead, and keep W2 (x + 1, benchmarks/run.py) at its speed.
EXACT_CHUNK_LENGTH = 64
SAMPLED_ELEMENTS = 16


def estimate_bytes(value: Any, depth: int = 0) -> int:
    """The approximate serialized size of ``value``, without copying large buffers.

    >>> import numpy as np
    >>> estimate_bytes(np.zeros((1000, 1000), dtype=np.uint8))
    1000128
    >>> estimate_bytes(b'x' * 5000), estimate_bytes(7)
    (5000, 8)
    >>> estimate_bytes([np.zeros(1000), np.zeros(1000)]) > 16_000
    True
    """
    kind = type(value)
    scalar = _SCALAR_BYTES.get(kind)
    if scalar is not None:
        return scalar
    if kind is bytes or kind is bytearray or kind is str:
        return len(value)
    nbytes = getattr(value, 'nbytes', None) if kind is not dict else None
    if isinstance(nbytes, int):
        return nbytes + ARRAY_OVERHEAD_BYTES
    if depth < MAX_DEPTH and (kind is dict or isinstance(value, (list, tuple))):   # namedtuples too
        items = list(value.items()) if kind is dict else value
        return _sampled_total(items, depth + 1) + 16
    return _pickled_bytes(value)


def _sampled_total(items: Sequence[Any], depth: int) -> int:
    if len(items) <= CONTAINER_SAMPLE:
        return sum(estimate_bytes(item, depth) for item in items)
    step = len(items) / CONTAINER_SAMPLE
    sample = [estimate_bytes(items[int(i * step)], depth) for i in range(CONTAINER_SAMPLE)]
    return int(sum(sample) / CONTAINER_SAMPLE * len(items))


def _pickled_bytes(value: Any) -> int:
    for dumps in (pickle.dumps, _cloudpickle_dumps):
        buffers: List[int] = []
        try:
            # A buffer_callback returning None keeps buffers out of band: counted, not copied.
            in_band = dumps(value, protocol=5, buffer_callback=lambda b: buffers.append(b.raw().nbytes))
        except Exception:   # e.g. an instance of a class defined in a function: cloudpickle's job
            continue
        return len(in_band) + sum(buffers)
    return sys.getsizeof(value)   # Ray could not send it either; the step will say so


def _cloudpickle_dumps(value: Any, **options: Any) -> bytes:
    from ray import cloudpickle   # only elements sent by the ray backend are measured
    return cloudpickle.dumps(value, **options)


def chunk_bytes(chunk: Sequence[Any]) -> Tuple[int, List[int]]:
    """The estimated bytes of a chunk, and each element's size when every one was measured
    (a short chunk), else an empty list.

    >>> chunk_bytes([b'ab', b'cde'])
    (5, [2, 3])
    >>> total, each = chunk_bytes([b'ab'] * 1000)
    >>> total, each
    (2000, [])
    """
    if len(chunk) <= EXACT_CHUNK_LENGTH:
        sizes = [estimate_bytes(item) for item in chunk]
        return sum(sizes), sizes
    step = len(chunk) / SAMPLED_ELEMENTS
    sample = sum(estimate_bytes(chunk[int(i * step)]) for i in range(SAMPLED_ELEMENTS))
    return int(sample / SAMPLED_ELEMENTS * len(chunk)), []
