"""Every config builds; the paper-size models take one real training step at a tiny batch."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, load_config
from gcj import classifier
from gcj.train import init_state, make_optimizer, make_train_step

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_documents_its_command(name):
    for arg in (None, "smoke"):
        c = load_config(name, arg)
        v = jax.eval_shape(lambda: classifier.init_variables(c, jax.random.key(0)))
        assert v["params"] and (c.model.family in classifier.DENSITY_FAMILIES or v["batch_stats"])
    with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
        assert f"python train.py --config configs/{name}.py" in f.read()


@pytest.mark.parametrize("name", [pytest.param("sdim_cifar10", marks=pytest.mark.slow), "sdim_fashion_mnist",
                                  pytest.param("score_cifar10", marks=pytest.mark.slow)])
def test_paper_size_model_takes_one_step(name):
    c = load_config(name)
    c.optim.warmup_steps = 0  # a warm-up's first step has learning rate 0: nothing would move
    module = classifier.build_module(c)
    v = classifier.init_variables(c, jax.random.key(0))
    tx = make_optimizer(c.optim, 10, 1, v["params"])
    state = init_state(v, tx, c.optim.ema_decay)
    rng = np.random.default_rng(0)
    size = c.data.image_size
    images = rng.integers(0, 256, (4, size, size, c.data.channels)).astype(np.uint8)
    labels = np.array([0, 1, 2, 3], np.int32)
    step = jax.jit(make_train_step(module, tx, c.data, c.optim.ema_decay))
    new, metrics = step(state, images, labels, jax.random.key(1))
    assert int(new["step"]) == 1 and np.isfinite(float(metrics["loss"]))
    if "ema" in state:  # the EMA moved towards the new parameters by 1 - decay
        a, b, e = (jax.tree_util.tree_leaves(t)[0] for t in (state["ema"], new["params"], new["ema"]))
        np.testing.assert_allclose(e, c.optim.ema_decay * a + (1 - c.optim.ema_decay) * b, rtol=1e-5, atol=1e-7)
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), new["params"], state["params"])
    moved = jax.tree_util.tree_leaves(moved)
    if c.model.family == "score":
        # DDPM++ zero-initializes every block's last layer: what feeds only into one (attention
        # q/k/v) gets ~1e-20 gradients at step 1, below float32 resolution after Adam (82% move)
        assert np.mean(moved) > 0.75
    else:
        assert all(moved)  # every parameter received an update


def test_paper_001_glows_have_the_papers_architecture():
    """App. B: 4 levels of 12 steps with 128 channels (MNIST), of 16 steps with 256 (CIFAR-10);
    the counts are those of bench/results/param_counts_flows.md."""
    for name, steps, width, total in (("glow_mnist", 12, 128, 1_484_008), ("glow_cifar10", 16, 256, 9_464_480)):
        c = load_config(name)
        g = c.model.glow
        assert (g.levels, g.steps, g.width, g.pad_to) == (4, steps, width, 32)
        v = jax.eval_shape(lambda: classifier.init_variables(c, jax.random.key(0)))
        assert sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(v["params"])) == total
