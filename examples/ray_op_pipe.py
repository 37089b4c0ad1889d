"""One heavy operator of a Towhee pipeline on Ray actors: ``towhee_ray.ray_op``.

The pipeline runs in this process as usual (Towhee's node threads); only the wrapped
operator runs in 2 Ray actors, each building it once however often the pipeline is called.
"""
import argparse
import functools
import os

import towhee
from towhee import ops, pipe

import towhee_ray


@towhee.register(name='demo/shout')
class Shout:
    """Stands for a model: built once per actor, then called for each passage."""

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.pid = os.getpid()

    def __call__(self, passage: str):
        return passage.upper() + self.mark, self.pid


def main() -> None:
    # A towhee.ops operator carries its init arguments; a factory works too.
    shout = towhee_ray.ray_op(ops.demo.shout('!'), num_worker=2)
    count = towhee_ray.ray_op(functools.partial(lambda: len), num_worker=1)
    p = (pipe.input('text')
         .flat_map('text', 'passage', ops.towhee.text_split(max_words=4))   # the local hub, offline
         .map('passage', ('loud', 'pid'), shout)
         .map('passage', 'length', count)
         .output('loud', 'pid', 'length'))

    print(p('Towhee builds pipelines. Ray runs them on many cores.').to_list())
    texts = [f'Document {i}. It has two sentences.' for i in range(40)]
    rows = [row for queue in p.batch(texts) for row in queue.to_list()]   # calls from many threads
    print(f'{len(rows)} passages; the operator ran in actor processes {sorted({pid for _, pid, _ in rows})}, '
          f'not in this one ({os.getpid()})')
    print('calls per actor:', sorted(stat['calls'] for stat in shout.stats()))
    shout.close()
    count.close()


if __name__ == '__main__':
    # no options: --help says what the example does
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
