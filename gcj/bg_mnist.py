"""BG-MNIST (paper 001 §4.5): MNIST digits whose black background is replaced by a natural image,
blurred by a Gaussian of bandwidth X pixels — the discriminative difficulty of MNIST with the
generative difficulty of natural images.

Dataset names (``gcj.data.load`` loads the digits and backgrounds; this module composes them):
``bg_mnist_<X>`` (X = 0, 1, 5, ... the blur's standard deviation in pixels) takes its backgrounds from scikit-learn's two sample photos (random crops at random
scales, greyscaled), available offline; ``bg_mnist_cifar_<X>`` is the paper's recipe, CIFAR-10
images (greyscaled, resized to 28x28) from a TFDS ``cifar10`` prepared on a machine with
internet. The digits: full MNIST where it is present (IDX files in ``data_dir``, or TFDS), else
the offline MNIST-5k. Every image's background and crop are fixed by the split and its index, so
a dataset is the same on every machine.

A digit pixel of intensity d (0..255) is blended over the background b as
d + (1 - d / 255) b: black pixels (d = 0) show the background, white ones stay white.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import ndimage

_NAME = re.compile(r"^bg_mnist_(cifar_)?(\d+(?:\.\d+)?)$")
SIZE = 28
_SEEDS = {"train": 1, "test": 2}


def parse(name: str) -> tuple[str, float] | None:
    """(background source 'photos' | 'cifar10', blur bandwidth) of a BG-MNIST name, else None."""
    m = _NAME.match(name)
    return None if m is None else ("cifar10" if m.group(1) else "photos", float(m.group(2)))


def compose(digits: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """uint8 digits [N, H, W] blended over float backgrounds [N, H, W] in [0, 255]: uint8."""
    d = digits.astype(np.float32)
    return np.clip(np.round(d + (1.0 - d / 255.0) * backgrounds), 0, 255).astype(np.uint8)


def blur(backgrounds: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of bandwidth ``sigma`` pixels per image (0: unchanged), reflecting at the edges."""
    if sigma == 0:
        return backgrounds.astype(np.float32)
    return ndimage.gaussian_filter(backgrounds.astype(np.float32), (0, sigma, sigma), mode="reflect")


def rng(split: str) -> np.random.Generator:
    """The generator that fixes ``split``'s backgrounds and crops (the same on every machine)."""
    return np.random.default_rng(_SEEDS[split])


def photo_backgrounds(generator: np.random.Generator, n: int) -> np.ndarray:
    """``n`` greyscale float backgrounds [n, 28, 28] in [0, 255]: random crops (28 to ~210 pixels,
    resized) of scikit-learn's two sample photos."""
    # (imported here, as data._digits does: scikit-learn takes seconds to import, and only
    # BG-MNIST's backgrounds and the 8x8 digits need it)
    from sklearn.datasets import load_sample_images

    photos = [(p.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
              for p in load_sample_images().images]
    which = generator.integers(0, len(photos), n)
    out = np.empty((n, SIZE, SIZE), np.float32)
    for i in range(n):
        photo = photos[which[i]]
        h, w = photo.shape
        size = int(generator.integers(SIZE, min(h, w) // 2 + 1))
        top, left = int(generator.integers(0, h - size + 1)), int(generator.integers(0, w - size + 1))
        out[i] = _resize(photo[top:top + size, left:left + size], SIZE)
    return out


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average resize of a square float image to ``size`` x ``size`` (bins by index)."""
    n = image.shape[0]
    # pixel i is in bin k iff k n/size <= i < (k + 1) n/size: each bin starts at the ceiling of its
    # edge (n >= size: no bin is empty)
    bounds = np.ceil(np.linspace(0, n, size + 1)).astype(np.int64)
    starts = bounds[:-1]
    sums = np.add.reduceat(np.add.reduceat(image.astype(np.float64), starts, axis=0), starts, axis=1)
    counts = np.diff(bounds).astype(np.float64)
    return (sums / (counts[:, None] * counts[None, :])).astype(np.float32)
