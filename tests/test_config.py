"""The config schema: one block per family, config.json round trips, and the explicit migration of
what older gcj wrote (never today's defaults for what an old file lacks)."""

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import gcj
from conftest import ROOT, load_config
from gcj import classifier
from gcj import config as config_lib
from gcj import migration
from gcj import models

OLD = json.load(open(os.path.join(ROOT, "tests", "data", "configs_gcj_0.2.0.json")))["configs"]
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _flat(c):
    return config_lib.flatten(json.loads(c.to_json()))


def test_every_config_holds_its_family_block_only_and_round_trips():
    for name in CONFIGS:
        for arg in (None, "smoke"):
            c = load_config(name, arg)
            family = c.model.family
            assert sorted(c.model.keys()) == sorted(["family", family]), name
            assert sorted(c.model[family].keys()) == sorted(models.get(family).config()), name
            back = migration.from_json(config_lib.to_json(c))
            assert _flat(back) == _flat(c), name


# what a configs/ file itself gives differently since gcj 0.2.0 (a config.json keeps what it was)
RECIPES_CHANGED_SINCE_0_2 = {
    "glow_cifar10": {"model.glow.steps": 16, "model.glow.width": 256},  # 0.6.0: paper 001 App. B's CIFAR-10 Glow
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_a_gcj_0_2_config_json_migrates_to_todays_config(name):
    """gcj 0.2.0 wrote one schema for all families; each configs/<name>.py[:smoke] as it wrote it
    migrates to exactly what the same file gives today, but for the keys added since, which take
    the value under which gcj behaves as 0.2.0 did (``migration.ADDED``)."""
    old = dict(OLD[name], gcj_version="0.2.0")
    file, _, arg = name.partition(":")
    migrated, today = _flat(migration.from_json(json.dumps(old))), _flat(load_config(file, arg or None))
    migrated.update(RECIPES_CHANGED_SINCE_0_2.get(name, {}))
    for key, (since, value) in migration.ADDED.items():
        if migration._older("0.2.0", since) and key in today:
            assert migrated.pop(key) == value
            today.pop(key)
    assert migrated == today


def test_pretrained_configs_without_a_version_migrate():
    """The 13 first committed models' config.json predate gcj_version (gcj < 0.2.0) and some
    keys; the later ones (gcj_version 0.3.0 on) read back as they were written (less the provenance
    that gcj >= 0.5.0 records beside the config)."""
    raws = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(ROOT, "pretrained", "*", "config.json")))]
    assert sum("gcj_version" not in raw for raw in raws) >= 13
    for raw in raws:
        c = migration.from_json(json.dumps(raw))
        if "gcj_version" in raw:  # as written, plus the keys added since, at their ADDED values
            back, written = _flat(c), config_lib.flatten({k: v for k, v in raw.items()
                                                            if k not in ("gcj_version", "provenance")})
            for key in set(back) - set(written):
                since, value = migration.ADDED[key]
                assert migration._older(raw["gcj_version"], since) and back.pop(key) == value
            assert back == written
            continue
        family = raw["model"]["family"]
        assert sorted(c.model.keys()) == sorted(["family", family])
        if family in ("sdim", "disc"):
            assert (c.model[family].width, c.model[family].blocks) == (raw["model"]["width"], raw["model"]["blocks"])
        if family == "score":
            assert c.model.score.ode.num_probes == raw["model"]["ode"]["num_probes"]


def test_a_key_an_old_file_lacks_takes_the_value_of_its_time_not_todays_default():
    """pretrained/ibinn_digits_beta1 was trained before optim.prior_lr_factor existed (the class
    means trained like every parameter): it reads as 0.0, though the paper IB-INN configs say 3.0."""
    raw = json.load(open(os.path.join(ROOT, "pretrained", "ibinn_digits_beta1", "config.json")))
    assert "prior_lr_factor" not in raw["optim"]
    assert load_config("ibinn_mnist").optim.prior_lr_factor == 3.0
    assert migration.from_json(json.dumps(raw)).optim.prior_lr_factor == 0.0


def test_missing_or_unknown_keys_are_refused_with_their_names():
    c = json.loads(config_lib.to_json(load_config("demo", "smoke")))
    del c["model"]["sdim"]["margin"]
    with pytest.raises(KeyError, match=r"lacks model\.sdim\.margin"):
        migration.from_json(json.dumps(c))
    c = json.loads(config_lib.to_json(load_config("demo", "smoke")))
    del c["optim"]["prior_lr_factor"]  # in ADDED, but a 0.3.0 file has it: refused too
    with pytest.raises(KeyError, match=r"lacks optim\.prior_lr_factor"):
        migration.from_json(json.dumps(c))
    old = dict(OLD["demo:smoke"], gcj_version="0.2.0")
    del old["model"]["margin"]  # SDIM's margin has been there from the start: never filled
    with pytest.raises(KeyError, match=r"lacks model\.sdim\.margin"):
        migration.from_json(json.dumps(old))
    old = dict(OLD["demo:smoke"], gcj_version="0.2.0", extra=1)
    with pytest.raises(KeyError, match="unknown config keys.*extra"):
        migration.from_json(json.dumps(old))
    c = json.loads(config_lib.to_json(load_config("score_digits", "smoke")))
    c["model"]["family"] = "nope"
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        migration.from_json(json.dumps(c))


def test_old_names_and_typed_overrides():
    c = load_config("sdim_logit_fashion_mnist", "smoke")
    assert migration.new_name(c, "model.base_workdir") == "model.sdim_logit.base_workdir"
    assert migration.new_name(c, "model.base.width") == "model.sdim_logit.base.width"
    assert migration.new_name(c, "model.width") is None  # not a key of SDIM-logit
    s = load_config("score_digits", "smoke")
    assert migration.new_name(s, "model.ode.num_probes") == "model.score.ode.num_probes"
    config_lib.override(s, "model.score.ode.dequantize", "false")
    config_lib.override(s, "model.score.unet.ch_mult", "(1, 2)")
    config_lib.override(s, "model.score.ode.checkpoints", "8")
    assert (s.model.score.ode.dequantize, s.model.score.unet.ch_mult, s.model.score.ode.checkpoints) == (False, (1, 2), 8)


def test_the_command_line_takes_the_old_names_and_says_the_new_ones():
    code = ("import sys; from absl import flags; from gcj import cli; import gcj.scripts.train;"
            "cli._parse(sys.argv); c = flags.FLAGS.config; print(c.model.sdim.width, c.model.sdim.blocks)")
    argv = ["--config", "configs/demo.py:smoke", "--workdir", "w", "--config.model.width=6",
            "--config.model.blocks", "2"]
    r = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["6", "2"]
    assert "--config.model.width is --config.model.sdim.width since gcj 0.3.0" in r.stderr
    r = subprocess.run([sys.executable, "-c", code, *argv[:4], "--config.model.hidden=3"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "family 'sdim' has no such key" in r.stderr


def test_a_family_without_its_block_is_named():
    c = load_config("demo", "smoke")
    c.model.family = "disc"  # an SDIM config switched to disc: it has no model.disc block
    with pytest.raises(ValueError, match=r"no model\.disc block \(it has model\.sdim\).*configs/disc_\*\.py"):
        gcj.classifier.build_module(c)


def test_precision_is_set_for_likelihoods_and_checked():
    """``config.precision`` is the matmul precision the likelihood is traced at (seen in its
    jaxpr): 'highest' by default, JAX's own with 'default'; an unknown name is refused."""
    c = load_config("demo", "smoke")
    x = jnp.zeros((2, 32, 32, 1))

    def traced(precision):
        c.precision = precision
        clf = classifier.create(c, jax.random.key(0))
        return str(jax.make_jaxpr(clf.log_likelihood_fn)(clf.params, x, jax.random.key(1)))
    assert c.precision == "highest" and "Precision.HIGHEST" in traced("highest")
    assert "Precision.HIGHEST" not in traced("default")
    with pytest.raises(ValueError, match="unknown precision 'fastest'"):
        traced("fastest")
