"""Semantic search over CPython's help topics, embedded on Ray actors (``make demo``).

The corpus ships with CPython (``pydoc_data.topics``, what ``help('try')`` shows). Each
topic is split into passages by the local hub operator ``towhee/text-split``, every passage
is embedded by ``sentence-embedding/minilm`` (all-MiniLM-L6-v2, shipped inside a pip package)
on 2 Ray actors that load the model once each, the vectors go into an index, and a few
questions are answered by nearest neighbours. Nothing is downloaded.

    python examples/semantic_search.py                     # an embedded local Ray
    python examples/semantic_search.py --address auto      # a running Ray cluster
    python examples/semantic_search.py --limit 10 --query 'how do I catch an exception?'
"""
import argparse
import os
import textwrap
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')   # the model is on disk: never try the network

import numpy as np   # noqa: E402
import towhee   # noqa: E402

from towhee_ray import DataCollection   # noqa: E402

QUERIES = [
    'how do I catch an exception and clean up afterwards?',
    'loop over the keys and values of a dictionary',
    'give a function default values for its arguments',
    'what happens when a module is imported?',
]
# Passages per call of the embedding operator: it sorts each call's passages by token
# count and encodes them 32 at a time. Larger calls pad less, smaller ones balance the 2
# actors better at the end (~1,300 passages: ~10 calls per actor). Not tuned yet.
PASSAGES_PER_CALL = 64


@towhee.register(name='demo/embed')
class EmbedAndTag:
    """The local hub's MiniLM operator; each vector comes back with the id of the model
    instance that made it, so the report can count model loads."""

    def __init__(self) -> None:
        self.embed = towhee.ops.sentence_embedding.minilm().get_op()
        self.instance = f'{os.getpid()}:{id(self)}'

    def __call__(self, passages):
        return [(self.instance, vector) for vector in self.embed(passages)]


def load_corpus(limit):
    from pydoc_data.topics import topics
    names = sorted(topics)[:limit]
    return names, [topics[name] for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--address', help='a Ray cluster to use (default: an embedded local Ray)')
    parser.add_argument('--workers', type=int, default=2, help='Ray actors embedding (default 2)')
    parser.add_argument('--limit', type=int, help='only the first LIMIT help topics')
    parser.add_argument('--query', action='append', help='a question (repeatable; default: four examples)')
    parser.add_argument('--top', type=int, default=3, help='results per question')
    args = parser.parse_args()
    if args.address:
        import ray
        ray.init(address=args.address, logging_level='ERROR')
    queries = args.query or QUERIES

    names, documents = load_corpus(args.limit)
    start = time.perf_counter()
    parts = (DataCollection(documents).set_parallel(num_worker=args.workers, backend='ray')
             .towhee.text_split(max_words=64).to_list())
    passages = [(name, text) for name, texts in zip(names, parts) for text in texts]
    print(f'{len(documents)} CPython help topics -> {len(passages)} passages '
          f'(towhee/text-split on Ray, {time.perf_counter() - start:.1f} s)')

    # The questions ride along with the passages, so the model loads only in the actors.
    texts = [text for _, text in passages] + queries
    start = time.perf_counter()
    tagged = (DataCollection(texts).stream()
              .set_parallel(num_worker=args.workers, backend='ray')
              .batch(PASSAGES_PER_CALL)
              .demo.embed()
              .flatten()
              .progress(total=len(texts), desc='embedding', unit='passage')
              .to_list())
    seconds = time.perf_counter() - start
    vectors = np.stack([vector for _, vector in tagged])
    index, questions = vectors[:len(passages)], vectors[len(passages):]

    for question, scores in zip(queries, questions @ index.T):   # unit vectors: cosine
        print(f'\n{question}')
        for best in np.argsort(-scores)[:args.top]:
            name, text = passages[best]
            snippet = textwrap.shorten(text, 90, placeholder=' ...')
            print(f'  {scores[best]:.2f}  {name:<16} {snippet}')

    loads = len({instance for instance, _ in tagged})
    print(f'\n{len(texts)} passages embedded in {seconds:.1f} s ({len(texts) / seconds:.1f} passages/s, '
          f'actor start and model load included) by {args.workers} Ray actors; model loads: {loads}')


if __name__ == '__main__':
    main()
