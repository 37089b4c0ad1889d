"""towhee/text-split: cut a document into passages of at most ``max_words`` words.

Usage: ``towhee.ops.towhee.text_split(max_words=50)`` or ``dc.towhee.text_split(max_words=50)``.
"""
import re
from typing import List

from towhee_ray.checks import positive_int

_SENTENCE_END = re.compile(r'(?<=[.!?])\s+')


class TextSplit:
    """Splits on sentence ends and packs whole sentences into passages; a sentence longer
    than ``max_words`` is cut by words."""

    def __init__(self, max_words: int = 50) -> None:
        self.max_words = positive_int(max_words, 'max_words', 'the most words of a passage')

    def __call__(self, text: str) -> List[str]:
        """The passages of ``text``, in order (none for a text without words)."""
        if not isinstance(text, str):
            if isinstance(text, (bytes, bytearray)):
                hint = "decode it first, e.g. text.decode('utf-8')"
            elif isinstance(text, (list, tuple)):
                hint = 'split each text in its own call: one element per text (flatten() a batch first)'
            else:
                hint = 'convert it first, or drop such elements (filter(...))'
            raise TypeError(f'towhee/text-split splits a str, got {type(text).__name__} ({text!r:.80}): '
                            f'{hint}')
        passages: List[str] = []
        current: List[str] = []
        for sentence in _SENTENCE_END.split(text.strip()):
            words = sentence.split()
            while len(words) > self.max_words:
                if current:
                    passages.append(' '.join(current))
                    current = []
                passages.append(' '.join(words[:self.max_words]))
                words = words[self.max_words:]
            if len(current) + len(words) > self.max_words:
                passages.append(' '.join(current))
                current = []
            current.extend(words)
        if current:
            passages.append(' '.join(current))
        return passages


def text_split(max_words: int = 50) -> TextSplit:
    """The operator; see :class:`TextSplit`."""
    return TextSplit(max_words)
