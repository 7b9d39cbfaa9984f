"""The 15 common corruptions × 5 severities, generated offline and deterministically.

Hendrycks & Dietterich's CIFAR-10-C recipe with its CIFAR-10-C severity constants (milder than
ImageNet-C's), rewritten on numpy / scipy / PIL for any image size and channel count (28×28
grayscale Fashion-MNIST included), so that no OpenCV, ImageMagick or scikit-image is needed.
Differences from the original generator, all documented here:
- ``motion_blur`` and the motion blur inside ``snow``: ImageMagick's one-sided motion blur is
  approximated by a Gaussian-weighted average of the image shifted 0..radius pixels along the
  angle (bilinear sampling, edge pixels repeated);
- ``frost``: the original blends crops of frost photographs; they ship with the optional PyPI
  package ``imagecorruptions`` (only its files are read: it needs OpenCV to import), and where it
  is installed gcj uses them as CIFAR-10-C does (one of the first five, scaled by 0.2 — times
  size/32 here, so a crop covers the same part of the photograph — a random crop, greyscaled for
  1-channel images). Without it the frost layer is procedural (thresholded, motion-blurred noise
  streaks at random angles plus a fine grain), scaled to the photographs' typical brightness, and
  blended with the same constants. ``frost_source()`` says which;
- the size-dependent constants (elastic transform, fog's fractal map) use the image size instead
  of 32.
Every random choice comes from a numpy generator seeded by (``key``, corruption, severity, image
index), so a set is identical on every machine and a subset of images gets the same corruptions.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import io
import os

import jax
import numpy as np
from PIL import Image
from scipy import ndimage

from gcj.errors import UserError

NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
         "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
         "elastic_transform", "pixelate", "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)

# CIFAR-10-C constants, severity 1..5.
CONSTANTS = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],                        # sigma
    "shot_noise": [500, 250, 100, 75, 50],                                    # photons per unit
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],                          # salt & pepper amount
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],  # radius, alias blur
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # sigma, delta, iters
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],               # radius, sigma
    "zoom_blur": [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                  np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)],         # zoom factors
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],  # loc, scale, zoom, threshold, radius, sigma, blend
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],      # image, frost weights
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],            # strength, decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],                                # + HSV value
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],                                  # contrast factor
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                          (0.1, 0.03, 0.03)],  # alpha, sigma, affine shift (× image size)
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],                                # downscale factor
    "jpeg_compression": [80, 65, 58, 50, 40],                                 # JPEG quality
}


# ---------------------------------------------------------------------------------- helpers

def _gaussian(x, sigma, mode="nearest", truncate=4.0):
    """Spatial Gaussian blur of [H, W, C] (skimage's defaults: nearest edges, 4 sigma)."""
    if sigma <= 0:
        return x
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode=mode, truncate=truncate)


def _disk(radius, alias_blur):
    size = 8 if radius <= 8 else int(np.ceil(radius))
    r = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(r, r)
    k = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    k /= k.sum()
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur ** 2))  # 3x3 Gaussian anti-aliasing
    g /= g.sum()
    k = ndimage.convolve1d(ndimage.convolve1d(k, g, 0, mode="mirror"), g, 1, mode="mirror")
    return k / k.sum()


def _clipped_zoom(x, factor):
    """Zoom [H, W, C] about its centre by ``factor`` >= 1 and crop back to H × W."""
    h = x.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    z = ndimage.zoom(x[top:top + ch, top:top + ch], (factor, factor, 1), order=1)
    trim = (z.shape[0] - h) // 2
    return z[trim:trim + h, trim:trim + h]


def _motion_blur(x, radius, sigma, angle_deg):
    """Gaussian-weighted average of x shifted 0..radius pixels along ``angle_deg`` (see module doc)."""
    theta = np.deg2rad(angle_deg)
    offsets = np.arange(int(radius) + 1)
    weights = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    out = np.zeros_like(x)
    for k, w in zip(offsets, weights):
        out += w * ndimage.shift(x, (k * np.sin(theta), -k * np.cos(theta), 0), order=1, mode="nearest")
    return out


def _plasma_fractal(size, decay, rng):
    """Diamond-square fractal noise on a power-of-two grid >= size, normalised to [0, 1]."""
    n = 1 << int(np.ceil(np.log2(max(size, 2))))
    m = np.zeros((n, n))
    step, wibble = n, 100.0

    def jitter(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[0:n:step, 0:n:step]
        sq = corners + np.roll(corners, -1, 0)
        sq = sq + np.roll(sq, -1, 1)
        m[half:n:step, half:n:step] = jitter(sq)
        centres = m[half:n:step, half:n:step]
        m[0:n:step, half:n:step] = jitter(centres + np.roll(centres, 1, 0) + corners + np.roll(corners, -1, 1))
        m[half:n:step, 0:n:step] = jitter(centres + np.roll(centres, 1, 1) + corners + np.roll(corners, -1, 0))
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def _gray(x):
    return x[..., :1] if x.shape[-1] == 1 else (x[..., :3] @ np.array([0.299, 0.587, 0.114]))[..., None]


def _pil(x):
    u8 = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)


def _from_pil(img, channels):
    a = np.asarray(img, np.float64) / 255
    return a[..., None] if a.ndim == 2 else a[..., :channels]


# ------------------------------------------------------------------------------ corruptions

def _apply(name, x, c, rng):
    """One corruption of a float64 [H, W, C] image in [0, 1] (unclipped result)."""
    h, w, ch = x.shape
    if name == "gaussian_noise":
        return x + rng.normal(scale=c, size=x.shape)
    if name == "shot_noise":
        return rng.poisson(x * c) / c
    if name == "impulse_noise":
        hit = rng.random(x.shape) < c
        return np.where(hit, (rng.random(x.shape) < 0.5).astype(np.float64), x)
    if name == "defocus_blur":
        k = _disk(*c)
        return np.stack([ndimage.convolve(x[..., i], k, mode="mirror") for i in range(ch)], -1)
    if name == "glass_blur":
        sigma, delta, iters = c
        x = np.floor(_gaussian(x, sigma) * 255) / 255  # the original round-trips through uint8
        for _ in range(iters):  # locally shuffle pixels
            for i in range(h - delta, delta, -1):
                for j in range(w - delta, delta, -1):
                    di, dj = rng.integers(-delta, delta, size=2)
                    x[[i, i + di], [j, j + dj]] = x[[i + di, i], [j + dj, j]]
        return _gaussian(x, sigma)
    if name == "motion_blur":
        return _motion_blur(x, c[0], c[1], rng.uniform(-45, 45))
    if name == "zoom_blur":
        return (x + sum(_clipped_zoom(x, f) for f in c)) / (len(c) + 1)
    if name == "snow":
        loc, scale, zoom, thresh, radius, sigma, blend = c
        layer = _clipped_zoom(rng.normal(loc, scale, (h, w, 1)), zoom)
        layer = np.where(layer < thresh, 0.0, layer)
        layer = np.round(np.clip(layer, 0, 1) * 255) / 255
        layer = _motion_blur(layer, radius, sigma, rng.uniform(-135, -45))
        x = blend * x + (1 - blend) * np.maximum(x, _gray(x) * 1.5 + 0.5)
        return x + layer + np.rot90(layer, k=2)
    if name == "frost":
        layer = _frost_photo_layer(h, w, ch, rng) if _frost_photographs() else _frost_layer(h, w, rng)
        return c[0] * x + c[1] * layer
    if name == "fog":
        strength, decay = c
        top = x.max()
        x = x + strength * _plasma_fractal(max(h, w), decay, rng)[:h, :w, None]
        return x * top / (top + strength)
    if name == "brightness":  # HSV value + c, hue and saturation kept: rgb scales with the value
        v = x.max(-1, keepdims=True)
        v_new = np.clip(v + c, 0, 1)
        return np.where(v > 0, x * v_new / np.where(v > 0, v, 1), v_new)
    if name == "contrast":
        mean = x.mean((0, 1), keepdims=True)
        return (x - mean) * c + mean
    if name == "elastic_transform":
        return _elastic(x, *(v * h for v in c), rng)
    if name == "pixelate":
        img = _pil(x)
        small = img.resize((int(w * c), int(h * c)), Image.Resampling.BOX)
        return _from_pil(small.resize((w, h), Image.Resampling.BOX), ch)
    if name == "jpeg_compression":
        buf = io.BytesIO()
        _pil(x).save(buf, "JPEG", quality=c)
        return _from_pil(Image.open(buf), ch)
    raise UserError(f"unknown corruption {name!r}; known: {', '.join(NAMES)}")


def frost_source() -> str:
    """'photographs' where ``imagecorruptions``' frost photographs are installed, else 'procedural'."""
    return "photographs" if _frost_photographs() else "procedural"


@functools.lru_cache(maxsize=1)
def _frost_photographs() -> tuple:
    """The frost photographs of the ``imagecorruptions`` package (found, not imported), RGB on
    [0, 1], in its order; () where it is not installed."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        return ()
    files = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "frost", "frost*")))
    return tuple(np.asarray(Image.open(f).convert("RGB"), np.float64) / 255 for f in files)


def _frost_photo_layer(h, w, ch, rng):
    """CIFAR-10-C's frost layer: one of the first five photographs, scaled by 0.2 (x size / 32),
    a random h x w crop (greyscale for 1 channel)."""
    photos = _frost_photographs()
    photo = photos[int(rng.integers(min(5, len(photos))))]
    scale = 0.2 * max(h, w) / 32
    size = (max(w + 1, round(photo.shape[1] * scale)), max(h + 1, round(photo.shape[0] * scale)))
    small = np.asarray(_pil(photo).resize(size, Image.Resampling.BICUBIC), np.float64) / 255
    top, left = int(rng.integers(0, small.shape[0] - h)), int(rng.integers(0, small.shape[1] - w))
    crop = small[top:top + h, left:left + w]
    return _gray(crop) if ch == 1 else crop


def _frost_layer(h, w, rng):
    """Procedural frost: bright streaks (thresholded, motion-blurred noise) and grain, mean ~0.45."""
    layer = np.zeros((h, w, 1))
    for _ in range(3):
        seeds = (rng.random((h, w, 1)) > 0.85).astype(np.float64)
        layer += _motion_blur(seeds, max(2, h // 8), max(1.0, h / 16), rng.uniform(0, 360))
    layer = _gaussian(layer, 0.5) + 0.3 * rng.random((h, w, 1))
    layer = (layer - layer.min()) / max(layer.max() - layer.min(), 1e-8)
    return np.clip(layer * 0.45 / max(layer.mean(), 1e-8), 0, 1)


def _elastic(x, alpha, sigma, shift, rng):
    h, w, _ = x.shape
    centre, half = np.array([w, h], np.float64) // 2, min(h, w) // 3
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half])  # (x, y)
    dst = src + rng.uniform(-shift, shift, src.shape)
    a = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # dst = a @ [x, y, 1]
    inv = np.linalg.inv(np.r_[a, [[0, 0, 1]]])  # output (x, y) -> input (x, y)
    m = inv[[1, 0]][:, [1, 0]]  # in (row, col) order
    offset = inv[[1, 0], 2]
    x = np.stack([ndimage.affine_transform(x[..., i], m, offset, order=1, mode="mirror")
                  for i in range(x.shape[-1])], -1)
    dx = _gaussian(rng.uniform(-1, 1, (h, w, 1)), sigma, mode="reflect", truncate=3)[..., 0] * alpha
    dy = _gaussian(rng.uniform(-1, 1, (h, w, 1)), sigma, mode="reflect", truncate=3)[..., 0] * alpha
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([ndimage.map_coordinates(x[..., i], [rows + dy, cols + dx], order=1, mode="reflect")
                     for i in range(x.shape[-1])], -1)


def corrupt(images: np.ndarray, name: str, severity: int, key: jax.Array) -> np.ndarray:
    """``images`` uint8 [N, H, W, C] corrupted by ``name`` at ``severity`` (1..5): uint8, same shape.

    Deterministic given ``key``; image n's corruption depends only on (key, name, severity, n).
    """
    if name not in NAMES:
        raise UserError(f"unknown corruption {name!r}; known: {', '.join(NAMES)}")
    if severity not in SEVERITIES:
        raise UserError(f"severity must be one of {SEVERITIES}, got {severity}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
    seed = [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]
    c = CONSTANTS[name][severity - 1]
    out = np.empty_like(images)
    for n, img in enumerate(images):
        rng = np.random.default_rng([*seed, NAMES.index(name), severity, n])
        x = _apply(name, img.astype(np.float64) / 255, c, rng)
        out[n] = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return out
