"""Quick start: Towhee's DataCollection on an embedded local Ray (no cluster needed).

Run it with ``python examples/quickstart.py`` once installed (``make demo`` installs it).
"""
import argparse
import os
import time

import towhee

from towhee_ray import DataCollection


@towhee.register(name='demo/word_count')
class WordCount:
    """A hub-style operator: built once per Ray actor, then called for each passage."""

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase
        self.built_in_pid = os.getpid()

    def __call__(self, passage: str) -> int:
        return len((passage.lower() if self.lowercase else passage).split())


def main() -> None:
    # The example of Towhee's original Ray documentation, verbatim.
    dc = DataCollection.range(1000).stream().set_parallel(num_worker=2, backend='ray')
    a = dc.map(lambda x: x + 1)
    b = a.map(lambda x: x * 2)
    c = b.to_list()
    print(f'set_parallel(backend="ray"): {len(c)} elements, first five {c[:5]}')

    pids = set(DataCollection.range(100).set_parallel(2, 'ray').map(lambda _: os.getpid()))
    print(f'the maps ran in Ray worker processes {sorted(pids)}, not in this one ({os.getpid()})')

    # Real English text that ships with CPython, split by the local hub operator
    # towhee/text-split (operators/) and counted by the operator registered above.
    from pydoc_data.topics import topics
    documents = [topics[name] for name in sorted(topics)]
    start = time.perf_counter()
    counts = (DataCollection(documents).stream()
              .set_parallel(num_worker=2, backend='ray')
              .towhee.text_split(max_words=64)
              .flatten()
              .demo.word_count()
              .to_list())
    print(f'{len(documents)} documents -> {len(counts)} passages, {sum(counts)} words '
          f'in {time.perf_counter() - start:.2f} s on Ray actors')

    # pmap / mmap, and safe(): a failing element becomes Empty and the stream goes on.
    squares, halves = DataCollection.range(6).stream().mmap(
        [lambda x: x * x, lambda x: 1 / (x - 3)], num_worker=2, backend='ray')
    print('mmap squares:', squares.to_list())
    print('mmap 1/(x-3) without safe():', end=' ')
    try:
        halves.to_list()
    except ZeroDivisionError as error:
        print(f'ZeroDivisionError: {error}')
    safe = DataCollection.range(6).safe().pmap(lambda x: 1 / (x - 3), backend='ray').to_list()
    print('pmap 1/(x-3) after safe():', safe)


if __name__ == '__main__':
    # no options: --help says what the example does
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
