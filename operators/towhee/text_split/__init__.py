"""towhee/text-split: cut a document into passages of at most ``max_words`` words.

Usage: ``towhee.ops.towhee.text_split(max_words=50)`` or ``dc.towhee.text_split(max_words=50)``.
"""
import re
from typing import List

_SENTENCE_END = re.compile(r'(?<=[.!?])\s+')


class TextSplit:
    """Splits on sentence ends and packs whole sentences into passages; a sentence longer
    than ``max_words`` is cut by words."""

    def __init__(self, max_words: int = 50) -> None:
        if max_words < 1:
            raise ValueError(f'max_words must be at least 1, got {max_words}')
        self.max_words = max_words

    def __call__(self, text: str) -> List[str]:
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
    return TextSplit(max_words)
