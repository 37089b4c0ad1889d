"""Near-duplicate images with hub operators on Ray: decode, colour histogram, compare.

The images are generated here (numpy + Pillow): a few pictures and, for each, a re-encoded
(JPEG), brightened, noisy, resized copy. ``towhee/image-decode`` and
``towhee/color-histogram`` come from the local hub (operators/); nothing is downloaded.
"""
import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from towhee import ops, pipe

from towhee_ray import DataCollection


def picture(seed: int, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = rng.integers(0, 256, 3)
    for _ in range(8):
        top, left = rng.integers(0, size - 16, 2)
        height, width = rng.integers(8, 64, 2)
        pixels[top:top + height, left:left + width] = rng.integers(0, 256, 3)
    return pixels


def altered_copy(pixels: np.ndarray, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    noisy = np.clip(pixels.astype(int) + 6 + rng.integers(-4, 5, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy).resize((100, 100))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix='towhee-ray-images-') as folder:   # removed at the end
        find_near_duplicates(Path(folder))


def find_near_duplicates(folder: Path) -> None:
    paths = []
    for seed in range(8):
        pixels = picture(seed)
        Image.fromarray(pixels).save(folder / f'picture{seed}.png')
        altered_copy(pixels, seed).save(folder / f'copy{seed}.jpg', quality=85)
        paths += [str(folder / f'picture{seed}.png'), str(folder / f'copy{seed}.jpg')]

    p = (pipe.input('path')
         .map('path', 'image', ops.towhee.image_decode())
         .map('image', 'feature', ops.towhee.color_histogram(bins=8))
         .output('feature'))
    rows = DataCollection(paths).set_parallel(num_worker=2, backend='ray').map(p).to_list()
    features = np.stack([row[0][0] for row in rows])
    similarity = features @ features.T
    np.fill_diagonal(similarity, -1)
    print(f'{len(paths)} images in {folder}, features of {features.shape[1]} dimensions (on Ray)')
    found = 0
    for i, path in enumerate(paths):
        best = int(similarity[i].argmax())
        found += best == i ^ 1   # picture2k and copy2k+1 are pairs
        print(f'  {Path(path).name:<14} nearest {Path(paths[best]).name:<14} '
              f'similarity {similarity[i, best]:.2f}')
    print(f'near-duplicates found: {found} of {len(paths)}')
    buffer = io.BytesIO()
    Image.fromarray(picture(0)).save(buffer, format='PNG')
    print('decoding bytes works too:', ops.towhee.image_decode()(buffer.getvalue()).shape)


if __name__ == '__main__':
    # no options: --help says what the example does
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
