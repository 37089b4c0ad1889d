"""A whole Towhee pipeline on Ray: ``DataCollection(...).set_parallel(backend='ray').map(p)``.

Each of the 2 actors builds the pipeline, and loads its operators, once; every element
gives exactly what ``p(element).to_list()`` gives in this process. The operator below is
registered in this script only: towhee_ray registers it again in the actors.
"""
import argparse
import os

import towhee
from towhee import ops, pipe

from towhee_ray import DataCollection


@towhee.register(name='demo/word_stats')
class WordStats:
    def __init__(self) -> None:
        self.built_in = os.getpid()

    def __call__(self, passage: str):
        words = passage.split()
        return len(words), max(len(word) for word in words), self.built_in


def main() -> None:
    p = (pipe.input('name', 'text')
         .flat_map('text', 'passage', ops.towhee.text_split(max_words=64))
         .map('passage', ('words', 'longest', 'pid'), ops.demo.word_stats())
         .output('name', 'words', 'longest', 'pid'))

    from pydoc_data.topics import topics
    documents = [(name, topics[name]) for name in sorted(topics)[:40]]   # two inputs: a tuple
    results = (DataCollection(documents).stream()
               .set_parallel(num_worker=2, backend='ray')
               .map(p)
               .progress(total=len(documents), desc='topics')
               .to_list())
    here = [row[:3] for row in p(*documents[0]).to_list()]
    print('first topic, same rows as p(*element).to_list() here (pid aside):',
          [row[:3] for row in results[0]] == here)
    rows = [row for rows in results for row in rows]
    print(f'{len(documents)} topics -> {len(rows)} passages, {sum(row[1] for row in rows)} words; '
          f'longest word {max(row[2] for row in rows)} letters')
    print(f'the pipeline ran in Ray actor processes {sorted({row[3] for row in rows})}, '
          f'not in this one ({os.getpid()})')


if __name__ == '__main__':
    # no options: --help says what the example does
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
