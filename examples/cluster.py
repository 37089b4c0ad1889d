"""Run a chain on an existing Ray cluster instead of an embedded local Ray.

    ray start --head --port=6379          # on the head machine (and `ray start --address=...` on others)
    python examples/cluster.py --address 127.0.0.1:6379

Connect before the first chain (``ray.init(address=...)``); towhee_ray then uses that
connection. Setting ``RAY_ADDRESS`` instead works too. Code from this script travels to the
workers by value; operators of the local hub are imported from the workers' own copy.
"""
import argparse
import socket

import ray

from towhee_ray import DataCollection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--address', required=True, help="the cluster's address, e.g. 127.0.0.1:6379 or auto")
    args = parser.parse_args()
    ray.init(address=args.address, logging_level='ERROR')
    print(f'connected to the cluster at {args.address}: {int(ray.cluster_resources()["CPU"])} CPUs, '
          f'{len(ray.nodes())} node(s)')

    squares = (DataCollection.range(1000).stream().set_parallel(num_worker=2, backend='ray')
               .map(lambda x: x * x).to_list())
    print('sum of squares below 1000:', sum(squares))
    passages = (DataCollection(['Ray runs tasks. Actors keep state. Towhee builds pipelines.'])
                .set_parallel(num_worker=2, backend='ray').towhee.text_split(max_words=4)
                .flatten().map(lambda passage: (socket.gethostname(), passage)).to_list())
    print('passages split on the cluster:', [passage for _, passage in passages])
    ray.shutdown()


if __name__ == '__main__':
    main()
