"""BG-MNIST (paper 001 §4.5): MNIST-5k digits over blurred natural backgrounds."""
import numpy as np
import pytest

from gcj import bg_mnist, data, suites
from gcj.suites.base import Request


@pytest.fixture(scope="module")
def sets():
    return {x: data.load(f"bg_mnist_{x}", "test") for x in (0, 1, 5)}


def _entropy(values) -> float:
    """Entropy (bits) of the histogram of integer ``values``."""
    _, counts = np.unique(np.asarray(values, np.int64), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_shapes_labels_and_determinism(sets):
    digits = data.load("mnist5k", "test")
    for s in sets.values():
        assert s.images.shape == digits.images.shape and s.images.dtype == np.uint8
        np.testing.assert_array_equal(s.labels, digits.labels)
    np.testing.assert_array_equal(data.load("bg_mnist_1", "test").images, sets[1].images)
    every = data.load("bg_mnist_0", "all")
    assert len(every.labels) == len(data.load("mnist5k", "all").labels)
    np.testing.assert_array_equal(every.images[-len(sets[0].labels):], sets[0].images)  # train, then test


def test_the_background_replaces_the_black_pixels(sets):
    digits = data.load("mnist5k", "test").images[..., 0]
    plain = sets[0].images[..., 0]
    black, white = digits == 0, digits == 255
    assert black.mean() > 0.5
    assert plain[black].mean() > 40 and plain[black].std() > 20  # a natural image shows, not black
    np.testing.assert_array_equal(plain[white], 255)  # the digit's strokes stay
    # where the digit is black the image is the background itself: compose's rule, exactly
    bg = np.full(digits.shape, 100.0, np.float32)
    np.testing.assert_array_equal(bg_mnist.compose(digits, bg)[black], 100)


def test_blur_monotonically_lowers_the_pixel_entropy(sets):
    """The entropy of a background pixel given its left neighbour (of the difference of the two,
    over pixel pairs where the digit is black): what a density model has to pay per pixel."""
    black = data.load("mnist5k", "test").images[..., 0] == 0
    pairs = black[:, :, 1:] & black[:, :, :-1]
    diffs = {x: np.diff(sets[x].images[..., 0].astype(np.int64), axis=2)[pairs] for x in (0, 1, 5)}
    entropies = [_entropy(diffs[x]) for x in (0, 1, 5)]
    assert entropies[0] > entropies[1] > entropies[2], entropies


def test_names():
    suites.SUITES["ood"].check(Request(ood_datasets=("bg_mnist_0", "bg_mnist_cifar_1")))  # an out-set
    with pytest.raises(ValueError, match="bg_mnist_<blur>"):
        suites.SUITES["ood"].check(Request(ood_datasets=("bg_mnist_x",)))
    assert bg_mnist.parse("bg_mnist_0") == ("photos", 0.0)
    assert bg_mnist.parse("bg_mnist_cifar_2.5") == ("cifar10", 2.5)
    assert bg_mnist.parse("bg_mnistx") is None
    with pytest.raises(ValueError, match="bg_mnist_<blur>"):
        data.check_name("bg_mnist")
    with pytest.raises(data.DatasetNotFoundError, match="CIFAR-10"):
        data.load("bg_mnist_cifar_0", "test", "/nonexistent")


def test_the_papers_recipe_reads_cifar10_backgrounds_from_tfds():
    """bg_mnist_cifar_<X>: CIFAR-10 backgrounds through TFDS (mock data here)."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=7):
        s = data.load("bg_mnist_cifar_1", "test")
    digits = data.load("mnist5k", "test")
    assert s.images.shape == digits.images.shape
    np.testing.assert_array_equal(s.labels, digits.labels)
    black = digits.images == 0
    assert s.images[black].std() > 5  # CIFAR-10 (mock) pixels, not black
