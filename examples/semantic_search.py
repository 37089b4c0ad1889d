"""Semantic search over CPython's help topics: embedded on Ray actors, stored in and
searched with Milvus Lite (``make demo``).

The corpus ships with CPython (``pydoc_data.topics``, what ``help('try')`` shows). Each
topic is split into passages by the local hub operator ``towhee/text-split``; the passages
not yet in the Milvus Lite file are embedded by ``sentence-embedding/minilm``
(all-MiniLM-L6-v2, shipped inside a pip package) on 2 Ray actors that load the model once
each, and stored as they stream (``to_milvus``); the questions are answered by a Milvus
search. Run again, it embeds only what is missing: a job stopped halfway resumes, and a
second run answers at once. Nothing is downloaded.

With a GPU in the Ray cluster (``--device auto``, the default, or ``--device cuda``) the
passages go to the GPU as texts, 1,024 per call, to 4 actors sharing each GPU: each tokenizes
its calls in parallel and sorts them by token count itself, so this process only reads and
stores. Without one, the passages are tokenized here and sent in calls of similar token
counts to 2 CPU actors.

    python examples/semantic_search.py                     # stores into ./semantic_search.db
    python examples/semantic_search.py --db /tmp/help.db   # another Milvus Lite file
    python examples/semantic_search.py --address auto      # a running Ray cluster
    python examples/semantic_search.py --limit 10 --query 'how do I catch an exception?'
    python examples/semantic_search.py --device cpu        # the CPU even where there is a GPU
"""
import argparse
import os
import textwrap
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')   # the model is on disk: never try the network

import towhee_ray   # noqa: E402  (first: it quiets Towhee's import)
from towhee_ray import DataCollection, resolve_operator   # noqa: E402
from towhee_ray.sinks.milvus import connect   # noqa: E402

import towhee   # noqa: E402

QUERIES = [
    'how do I catch an exception and clean up afterwards?',
    'loop over the keys and values of a dictionary',
    'give a function default values for its arguments',
    'what happens when a module is imported?',
]
DEFAULT_DB = 'semantic_search.db'
COLLECTION = 'help_passages'
# Passages per call of the embedding operator. sorted_batch cuts the calls from windows of
# 16 calls sorted by token count, so a call pads little whatever its size (x1.05 the real
# tokens over this corpus, against x1.52 for calls of neighbours); 64 leaves each of 2
# actors ~10 calls, and the cheap last calls of a window let them finish together.
PASSAGES_PER_CALL = 64
# On a GPU: actors sharing each GPU (num_gpus=1/4 each). One actor leaves the GPU idle while
# it tokenizes and pads; the measurement on one H200 with 16 CPUs found 4 actors
# 6.3x one actor and 1.2x 8 actors (sentence-embedding/minilm's README, "what fills one").
ACTORS_PER_GPU = 4
# Passages per call to a GPU actor: the actor sorts a call by token count and cuts it into
# forward passes of 32,768 tokens (~256 passages), so a call of 1,024 keeps a few passes
# queued on the GPU; the fastest measured form used calls of 1,024 (chosen, not
# measured against other sizes).
GPU_PASSAGES_PER_CALL = 1024


@towhee.register(name='demo/embed')
class EmbedAndTag:
    """The local hub's MiniLM operator over a batch of passage rows (their token ids, made
    once by ``sentence-embedding/minilm-tokenizer``); each row comes back with its vector and
    the id of the model instance that made it (to count model loads)."""

    def __init__(self, device: str = 'auto') -> None:
        self.embed = towhee.ops.sentence_embedding.minilm(device=device).get_op()
        self.instance = f'{os.getpid()}:{id(self)}'

    def __call__(self, rows):
        # token ids when this process made them (CPU actors), else the texts (GPU actors
        # tokenize their own calls)
        vectors = self.embed([row['ids'] if 'ids' in row else row['text'] for row in rows])
        return [{**row, 'vec': vector, 'model': self.instance} for row, vector in zip(rows, vectors)]


def load_corpus(limit):
    from pydoc_data.topics import topics
    names = sorted(topics)[:limit]
    return names, [topics[name] for name in names]


def token_count(row):
    return len(row['ids'])


def count_models(rows, instances):
    """The rows, noting which model instance embedded each."""
    for row in rows:
        instances.add(row['model'])
        yield row


def embedding_plan(device, workers):
    """Where the passages are embedded: ``(device, actors, GPUs per actor)``, from the Ray
    cluster's GPUs (``towhee_ray.init`` connects, or describes the connection made)."""
    if device == 'cpu':
        return 'cpu', workers or 2, None
    gpus = towhee_ray.init().gpus
    if not gpus:
        if device == 'cuda':
            raise SystemExit('--device cuda: the Ray cluster has no GPU. Run where Ray sees one '
                             '(and torch is a CUDA build), or use --device auto or cpu.')
        return 'cpu', workers or 2, None
    workers = workers or ACTORS_PER_GPU * int(gpus)
    return 'cuda', workers, min(1.0, gpus / workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].replace('\n', ' '))
    parser.add_argument('--db', default=DEFAULT_DB, help=f'the Milvus Lite file (default ./{DEFAULT_DB})')
    parser.add_argument('--address', help='a Ray cluster to use (default: an embedded local Ray)')
    parser.add_argument('--workers', type=int,
                        help=f'Ray actors embedding (default 2 on CPUs, {ACTORS_PER_GPU} per GPU)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                        help="where to embed: 'auto' (default) uses the Ray cluster's GPUs when it has any")
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
    parts = DataCollection(documents).towhee.text_split(max_words=64).to_list()
    rows = [{'id': f'{name}#{number}', 'topic': name, 'text': text}
            for name, texts in zip(names, parts) for number, text in enumerate(texts)]
    print(f'{len(documents)} CPython help topics -> {len(rows)} passages '
          f'(towhee/text-split, {time.perf_counter() - start:.1f} s)')

    # Only the passages the Milvus Lite file does not hold yet go to the model.
    already = []
    missing = DataCollection(rows).skip_existing['id'](COLLECTION, uri=args.db, callback=already.append)
    start = time.perf_counter()
    instances = set()
    if len(missing):
        device, workers, gpus_per_actor = embedding_plan(args.device, args.workers)
        if device == 'cpu':
            embedded = (missing.stream()
                        .sentence_embedding.minilm_tokenizer['text', 'ids']()   # here: token ids, once
                        .set_parallel(num_worker=workers, backend='ray')
                        .sorted_batch(PASSAGES_PER_CALL, key=token_count)      # calls of similar token counts
                        .demo.embed(device='cpu'))                              # 2 Ray actors
        else:   # texts in calls of 1,024; the GPU actors tokenize and sort them
            embedded = (missing.stream()
                        .set_parallel(num_worker=workers, backend='ray', num_gpus=gpus_per_actor)
                        .batch(GPU_PASSAGES_PER_CALL)
                        .demo.embed(device='cuda'))
        # the bar counts the passages of each call as it comes back; flatten() then gives the
        # rows back in input order, which waits for the calls of a whole sorting window
        embedded = (embedded.progress(total=len(missing), desc='embedding', unit='passage', count=len)
                    .flatten())
        stored = (DataCollection(count_models(embedded, instances))
                  .to_milvus['id', 'vec', 'topic', 'text'](collection=COLLECTION, uri=args.db))
        new = stored.insert_count
    else:
        new = 0
    seconds = time.perf_counter() - start

    # The questions are embedded here, once: no Ray actor is needed to answer them.
    query_device = 'cpu' if args.device == 'cpu' else 'auto'
    embed = resolve_operator('sentence_embedding.minilm', (), {'device': query_device}).create()
    client = connect(args.db)
    answers = client.search(COLLECTION, data=embed(queries), limit=args.top, output_fields=['topic', 'text'])
    for question, hits in zip(queries, answers):
        print(f'\n{question}')
        for hit in hits:
            snippet = textwrap.shorten(hit['entity']['text'], 90, placeholder=' ...')
            print(f"  {hit['distance']:.2f}  {hit['entity']['topic']:<16} {snippet}")

    report = f'\nstored {new:,} new passages, {len(already):,} already there ({args.db})'
    if new:
        on = '' if device == 'cpu' else f' sharing {workers * gpus_per_actor:g} GPU(s)'
        report += (f'; embedded in {seconds:.1f} s ({new / seconds:.1f} passages/s, actor start and model '
                   f'load included) by {workers} Ray actors{on}; model loads: {len(instances)}')
    else:
        report += '; nothing to embed, no Ray actor started'
    print(report)


if __name__ == '__main__':
    main()
