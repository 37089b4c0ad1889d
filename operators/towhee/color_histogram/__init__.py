"""towhee/color-histogram: an image -> a colour-histogram feature vector, no model needed.

Usage: ``towhee.ops.towhee.color_histogram(bins=8)``. The image is an RGB array of shape
(height, width, 3) (what ``towhee/image-decode`` returns). The feature is the joint RGB
histogram with ``bins`` levels per channel (``bins ** 3`` dimensions, float32), square-rooted
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
        levels = (pixels.reshape(-1, 3).astype(np.uint32) * self.bins) >> 8
        cells = (levels[:, 0] * self.bins + levels[:, 1]) * self.bins + levels[:, 2]
        histogram = np.bincount(cells, minlength=self.bins ** 3).astype(np.float32)
        feature = np.sqrt(histogram / max(len(cells), 1))
        return feature / np.linalg.norm(feature)


def color_histogram(bins: int = 8) -> ColorHistogram:
    return ColorHistogram(bins)
