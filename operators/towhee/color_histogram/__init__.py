"""towhee/color-histogram: an image -> a colour-histogram feature vector, no model needed.

Usage: ``towhee.ops.towhee.color_histogram(bins=8)``. The image is an RGB array of shape
(height, width, 3) (what ``towhee/image-decode`` returns). The feature is the joint RGB
histogram (soft-binned) with ``bins`` levels per channel (``bins ** 3`` dimensions, float32), square-rooted
and L2-normalized (the Hellinger kernel), so the dot product of two features is their
similarity in [0, 1]: near-duplicates (re-encoded, resized, slightly brightened or noisy
copies) score close to 1, different pictures much lower.
"""
import numpy as np


class ColorHistogram:
    """Joint RGB histogram of an image as a unit-norm float32 vector."""

    def __init__(self, bins: int = 8) -> None:
        if not isinstance(bins, int) or not 1 <= bins <= 256:
            raise ValueError(f'bins must be an integer in [1, 256] (levels per channel), got {bins!r}')
        self.bins = bins

    def __call__(self, image) -> np.ndarray:
        pixels = np.asarray(image)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f'towhee/color-histogram needs an RGB image of shape (height, width, 3), '
                             f'got shape {pixels.shape}; decode it with towhee/image-decode first')
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
    return ColorHistogram(bins)
