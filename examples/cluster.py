"""Run a chain on a Ray cluster and see which node did what.

    python examples/cluster.py 127.0.0.1:6379     # a cluster started with `ray start`
    python examples/cluster.py                    # RAY_ADDRESS, else a local Ray

See docs/clusters.md for starting a head and a second node on one machine.
"""
import argparse
import collections
import time

import towhee_ray
from towhee_ray import DataCollection


def square_and_where(x):
    """Runs in a Ray worker: the result and the node it ran on."""
    import ray

    time.sleep(0.05)   # enough work per element for every CPU of the cluster to get some
    return x * x, ray.get_runtime_context().get_node_id()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('address', nargs='?', help="a Ray cluster's address, e.g. 127.0.0.1:6379 "
                                                   '(default: RAY_ADDRESS, else a local Ray)')
    address = parser.parse_args().address
    info = towhee_ray.init(address)   # ships towhee_ray and operators/ to a cluster's workers
    print(info)

    workers = max(1, int(info.cpus))
    out = (DataCollection.range(100).stream()
           .set_parallel(num_worker=workers, backend='ray', chunk_size=1)
           .map(square_and_where).to_list())
    assert [value for value, _ in out] == [x * x for x in range(100)]
    per_node = collections.Counter(node[:8] for _, node in out)
    print(f'{len(out)} elements on {workers} workers; elements per node: {dict(per_node)}')

    # A hub operator from operators/, as Ray actors; on a cluster it loads from the shipped copy.
    passages = (DataCollection(['Ray runs it. On every node. Of the cluster.'] * 4)
                .set_parallel(num_worker=2, backend='ray')
                .towhee.text_split(max_words=3).to_list())
    print(f'text_split on Ray actors: {passages[0]}')


if __name__ == '__main__':
    main()
