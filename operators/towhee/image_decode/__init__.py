"""towhee/image-decode: a file path or encoded bytes -> an RGB ``towhee.types.Image``.

Usage: ``towhee.ops.towhee.image_decode()`` or ``dc.towhee.image_decode()``. Decodes every
format Pillow reads (PNG, JPEG, GIF, BMP, WebP, ...); greyscale, palette and RGBA images
come back as RGB (alpha is dropped), ``uint8`` of shape (height, width, 3).
"""
import io
import os
from typing import Union

import numpy as np


class ImageDecode:
    """Decodes one image; the input is a path (``str`` or ``os.PathLike``) or bytes."""

    def __call__(self, image: Union[str, os.PathLike, bytes, bytearray]):
        from PIL import Image as PILImage
        from towhee.types import Image

        if isinstance(image, (bytes, bytearray, memoryview)):
            source = io.BytesIO(image)
        elif isinstance(image, (str, os.PathLike)):
            source = image
        else:
            raise TypeError(f'towhee/image-decode takes a file path or bytes, got {type(image).__name__}')
        with PILImage.open(source) as decoded:
            pixels = np.asarray(decoded.convert('RGB'))
        return Image(pixels, 'RGB')


def image_decode() -> ImageDecode:
    return ImageDecode()
