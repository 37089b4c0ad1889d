"""towhee/color-histogram: an image -> a colour-histogram feature vector, no model needed.

Usage: ``towhee.ops.towhee.color_histogram(bins=8)``. The image is an RGB array of shape
(height, width, 3) with values 0-255, ``uint8`` (what ``towhee/image-decode`` returns); a
float image, values beyond 0-255 or an empty image are refused with a ``ValueError``. The
feature is the joint RGB histogram (soft-binned) with ``bins`` levels per channel
(``bins ** 3`` dimensions, float32), square-rooted and L2-normalized (the Hellinger kernel),
so the dot product of two features is their similarity in [0, 1]: near-duplicates
(re-encoded, resized, slightly brightened or noisy copies) score close to 1, different
pictures much lower.
"""
from typing import Any

import numpy as np


class ColorHistogram:
    """Joint RGB histogram of an image as a unit-norm float32 vector."""

    def __init__(self, bins: int = 8) -> None:
        if not isinstance(bins, int) or isinstance(bins, bool) or not 1 <= bins <= 256:
            raise ValueError(f'bins must be an integer in [1, 256] (levels per channel), got {bins!r}')
        self.bins = bins

    def __call__(self, image: Any) -> np.ndarray:
        """The feature of ``image``: an RGB array of shape (height, width, 3) with values 0-255
        (a ``towhee.types.Image`` or a numpy array, ``uint8`` as towhee/image-decode gives)."""
        pixels = np.asarray(image)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f'towhee/color-histogram needs an RGB image of shape (height, width, 3), '
                             f'got shape {pixels.shape}; decode it with towhee/image-decode first')
        if not pixels.size:
            raise ValueError(f'towhee/color-histogram: the image is empty (shape {pixels.shape}): it has no '
                             f'colours to count; drop such images first (filter(...))')
        if pixels.dtype.kind == 'f':
            raise ValueError(f'towhee/color-histogram needs uint8 pixels, 0-255, got {pixels.dtype}: convert '
                             f"a [0, 1] image with (image * 255).round().astype('uint8'), a 0-255 one with "
                             f"image.astype('uint8'); towhee/image-decode gives uint8")
        if pixels.dtype.kind not in 'iu':
            raise ValueError(f'towhee/color-histogram needs uint8 pixels, 0-255, got {pixels.dtype}: convert '
                             f'the image to uint8 first; towhee/image-decode gives uint8')
        if pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f'towhee/color-histogram needs uint8 pixels, 0-255, got {pixels.dtype} with '
                             f'values {pixels.min()}..{pixels.max()}: scale them to 0-255 first (a 16-bit '
                             f"image: (image >> 8).astype('uint8')); towhee/image-decode gives uint8")
        # Soft (trilinear) binning: each pixel is shared between the two nearest levels of
        # each channel, so a slight change of colour moves the feature slightly instead of
        # jumping a bin boundary (hard bins put a +6 brightened copy at 0.79 similarity).
        position = pixels.reshape(-1, 3).astype(np.float32) * (self.bins / 256.0) - 0.5
        lower = np.floor(position)
        upper_weight = position - lower
        lower = lower.astype(np.int64)
        histogram = np.zeros(self.bins ** 3, dtype=np.float64)
        for corner in range(8):
            take_upper = [(corner >> channel) & 1 for channel in range(3)]
            cell = np.zeros(len(position), dtype=np.int64)
            weight = np.ones(len(position), dtype=np.float32)
            for channel, upper in enumerate(take_upper):
                level = np.clip(lower[:, channel] + upper, 0, self.bins - 1)
                cell = cell * self.bins + level
                weight = weight * (upper_weight[:, channel] if upper else 1 - upper_weight[:, channel])
            histogram += np.bincount(cell, weights=weight, minlength=self.bins ** 3)
        feature = np.sqrt(histogram / max(len(position), 1)).astype(np.float32)
        return feature / np.linalg.norm(feature)


def color_histogram(bins: int = 8) -> ColorHistogram:
    """The operator; see :class:`ColorHistogram`."""
    return ColorHistogram(bins)
