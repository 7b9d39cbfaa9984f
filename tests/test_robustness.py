"""The corruption generator, the robustness metrics on hand-made cases, and the suites end to end:
through evaluate.py on a committed model, and on CIFAR-10 from TFDS mock data."""
import functools
import json
import os
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import gcj
from conftest import smoke_config
from gcj import attacks, corruptions, data, metrics, models, suites
from gcj.evaluate import evaluate, format_tables, suite_options
from gcj.suites import adversarial, interpolation
from gcj.suites.corruptions import corrupted_test_set, mce


@pytest.fixture(scope="module")
def images():
    return data.load("digits", "test").images[:6]  # 8x8 real digits, uint8


def rgb(n=3, size=32):
    return np.asarray(jax.random.randint(jax.random.key(0), (n, size, size, 3), 40, 216)).astype(np.uint8)


@pytest.mark.parametrize("name", corruptions.NAMES)
def test_every_corruption_is_deterministic_and_keeps_shape_and_dtype(name):
    gray = data.load("fashion_mnist", "test").images[:3]
    for x in (gray, rgb()):
        a = corruptions.corrupt(x, name, 3, jax.random.key(1))
        assert a.shape == x.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, corruptions.corrupt(x, name, 3, jax.random.key(1)))
        # an image's corruption does not depend on the others
        np.testing.assert_array_equal(a[:2], corruptions.corrupt(x[:2], name, 3, jax.random.key(1)))
        assert np.any(a != x)


def test_corruptions_are_what_they_say():
    x = rgb(4)
    xf = x.astype(np.float64) / 255
    key = jax.random.key(2)
    noisy = corruptions.corrupt(x, "gaussian_noise", 5, key).astype(np.float64) / 255
    assert np.std(noisy - xf) == pytest.approx(0.10, rel=0.05)  # sigma of severity 5 (no clipping here)
    assert not np.array_equal(noisy, corruptions.corrupt(x, "gaussian_noise", 5, jax.random.key(3)) / 255)
    low = corruptions.corrupt(x, "contrast", 5, key).astype(np.float64) / 255  # (x - mean) * 0.15 + mean
    np.testing.assert_allclose(low, np.round(255 * ((xf - xf.mean((1, 2), keepdims=True)) * 0.15
                                                     + xf.mean((1, 2), keepdims=True))) / 255, atol=1e-9)
    gray = np.full((1, 8, 8, 1), 100, np.uint8)  # HSV value + 0.3 on a gray image
    assert np.all(corruptions.corrupt(gray, "brightness", 5, key) == round(100 + 0.3 * 255))
    # impulse noise: salt or pepper on about `amount` of the values
    sp = corruptions.corrupt(x, "impulse_noise", 5, key)
    assert np.mean(sp != x) == pytest.approx(0.07, abs=0.02) and set(np.unique(sp[sp != x])) <= {0, 255}
    # noise and blur grow with severity
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "zoom_blur", "contrast",
                 "pixelate", "fog"):
        change = [np.abs(corruptions.corrupt(x, name, s, key).astype(float) - x).mean() for s in (1, 3, 5)]
        assert change[0] < change[1] < change[2], (name, change)


def test_frost_uses_the_imagecorruptions_photographs_where_installed(tmp_path, monkeypatch):
    """Without the package: the procedural layer. With it (a stand-in package dir holding five
    uniform 'photographs' of brightness 200 and one of 0): on a black image frost is c1 x the
    photograph (severity 1: 0.2 x 200), greyscaled for one channel; the source is reported."""
    monkeypatch.setattr(corruptions, "_frost_photographs", functools.lru_cache(maxsize=1)(
        corruptions._frost_photographs.__wrapped__))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "imagecorruptions" not in p])
    black = np.zeros((3, 8, 8, 1), np.uint8)
    assert corruptions.frost_source() == "procedural"
    procedural = corruptions.corrupt(black, "frost", 1, jax.random.key(0))
    package = tmp_path / "site" / "imagecorruptions"
    (package / "frost").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('needs cv2')\n")  # found, never imported
    for i in range(1, 7):
        Image.new("RGB", (200, 120), (200, 200, 200) if i <= 5 else (0, 0, 0)).save(package / "frost" / f"frost{i}.png")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    corruptions._frost_photographs.cache_clear()
    assert corruptions.frost_source() == "photographs"
    frosted = corruptions.corrupt(black, "frost", 1, jax.random.key(0))
    assert np.all(frosted == round(0.2 * 200)) and not np.array_equal(frosted, procedural)
    rgb_frost = corruptions.corrupt(np.zeros((1, 32, 32, 3), np.uint8), "frost", 5, jax.random.key(0))
    assert np.all(rgb_frost == round(0.45 * 200))
    corruptions._frost_photographs.cache_clear()


def test_corruption_arguments_are_checked(images):
    with pytest.raises(ValueError, match="unknown corruption"):
        corruptions.corrupt(images, "rain", 1, jax.random.key(0))
    with pytest.raises(ValueError, match="severity"):
        corruptions.corrupt(images, "fog", 6, jax.random.key(0))
    with pytest.raises(ValueError, match="uint8"):
        corruptions.corrupt(images / 255.0, "fog", 1, jax.random.key(0))


def test_attack_metrics_on_a_hand_made_case():
    # 4 attacked images of class 0; thresholds -5 for both classes
    ll_clean = np.array([[0.0, -9.0]] * 4)
    ll_adv = np.array([[0.0, -9.0],    # not fooled
                       [-9.0, -1.0],   # fooled, accepted
                       [-9.0, -7.0],   # fooled, rejected
                       [-20.0, -6.0]])  # fooled, rejected
    x = np.zeros((4, 2, 2, 1))
    x_adv = x.copy()
    x_adv[1, 0, 0, 0], x_adv[2, 0, 0, 0], x_adv[3] = 0.3, 0.4, 0.5
    r = adversarial.attack_metrics(ll_adv, ll_clean, x_adv, x, np.zeros(4, int), None, {"p1": np.array([-5.0, -5.0])})
    assert r["success_rate"] == 0.75 and r["accuracy"] == 0.25
    assert r["undetected_success_rate"]["p1"] == 0.25
    assert r["detection_rate"]["p1"] == pytest.approx(2 / 3) and r["rejection_rate"]["p1"] == 0.5
    assert r["mean_l2"] == pytest.approx((0.3 + 0.4 + 1.0) / 3) and r["mean_linf"] == pytest.approx(0.4)
    # paper 002 Tabs. 7-9: per-pixel L2 of the successes (0.3 and 0.4 on one of 4 pixels, 0.5 on all)
    assert r["corruption"] == pytest.approx((0.3 / 4 + 0.4 / 4 + 0.5) / 3)
    post = np.exp(ll_adv - np.logaddexp(ll_adv[:, :1], ll_adv[:, 1:]))
    assert r["entropy"] == pytest.approx(np.mean(-np.sum(post * np.log(post), 1)), rel=1e-5)
    assert "tests_auroc" not in r and "hit_step_cap" not in r
    t = adversarial.attack_metrics(ll_adv, ll_clean, x_adv, x, np.zeros(4, int), None, {},
                                  train_log_marginal=np.linspace(-3.0, 0.0, 50), stopped=np.array([1, 1, 0, 1], bool))
    # the score is log p(x): against the clean images it is the plain AUROC on log p(x); against the
    # training images (paper 002) the clean reference is replaced by the 50 training values
    assert t["tests_auroc_vs_clean"]["one_tailed"] == pytest.approx(t["auroc_log_marginal"])
    q_adv = np.logaddexp(ll_adv[:, 0], ll_adv[:, 1]) - np.log(2)
    assert t["tests_auroc"]["one_tailed"] == pytest.approx(metrics.auroc(np.linspace(-3.0, 0.0, 50), q_adv))
    q_clean = np.logaddexp(0.0, -9.0) - np.log(2)
    assert t["log_q_shift"]["fraction_fell"] == 0.75 and t["log_q_shift"]["mean_shift_train_sd"] == pytest.approx(
        np.mean(q_adv - q_clean) / np.std(np.linspace(-3.0, 0.0, 50)))
    assert set(t["tests_auroc"]) == {"one_tailed", "typicality", "two_tailed"} and t["hit_step_cap"] == 0.25
    assert r["wrong_class_confidence"] == pytest.approx(np.mean([1 / (1 + np.exp(-8)), 1 / (1 + np.exp(-2)),
                                                                 1 / (1 + np.exp(-14))]))
    assert r["auroc"] == pytest.approx(0.875)  # clean max 0 (x4) vs adversarial max 0, -1, -7, -6
    # an L2 budget of 0.45 (paper 001 Tab. 2): the 1.0 away one is no success
    b = adversarial.attack_metrics(ll_adv, ll_clean, x_adv, x, np.zeros(4, int), None,
                                  {"p1": np.array([-5.0, -5.0])}, max_l2=0.45)
    assert b["success_rate"] == 0.5 and b["undetected_success_rate"]["p1"] == 0.25
    assert b["success_rate_any_l2"] == 0.75 and "success_rate_any_l2" not in r
    assert b["mean_l2"] == pytest.approx(0.35) and b["accuracy"] == 0.25  # (accuracy: no budget)


def test_bits_per_dim_thresholds_and_the_attack_threshold():
    """bpd thresholds (paper 001) sit beside the percentile ones, are one threshold on log p(x), and
    the chosen one comes first; a family without a pixel density refuses them."""

    def ctx(family, **options):
        ll_test = options.pop("ll_test", None)
        o = {"bpd_thresholds": (), "attack_threshold": "", "max_test_bpd_threshold": False, **options}
        clf = types.SimpleNamespace(family=models.get(family), image_shape=(8, 8, 1), num_classes=3,
                                    density_dims=64)
        return types.SimpleNamespace(clf=clf, request=types.SimpleNamespace(options=types.SimpleNamespace(**o)),
                                     percentile_thresholds={"p1": np.zeros(3), "p2": np.ones(3)}, ll_test=ll_test)
    t = adversarial.suite_thresholds(ctx("glow", bpd_thresholds=(1.4, 4.0), attack_threshold="bpd4"))
    assert list(t) == ["bpd4", "p1", "p2", "bpd1.4"]
    # paper 001's: one number, on log p(x)
    assert np.shape(t["bpd1.4"]) == () and t["bpd1.4"] == pytest.approx(-(1.4 - 8) * 64 * np.log(2.0), rel=1e-6)
    ll_test = np.array([[-10.0, -30.0, -30.0], [-50.0, -20.0, -50.0]])
    t = adversarial.suite_thresholds(ctx("glow", max_test_bpd_threshold=True, attack_threshold="bpd_test_max",
                                         ll_test=ll_test))
    assert list(t) == ["bpd_test_max", "p1", "p2"]  # at the least likely test image: all accepted
    assert t["bpd_test_max"] == pytest.approx(np.log(np.exp(ll_test[1]).mean()), rel=1e-6)
    assert not np.any(gcj.rejection.reject(ll_test, t["bpd_test_max"]))
    assert list(adversarial.suite_thresholds(ctx("glow"))) == ["p1", "p2"]
    with pytest.raises(ValueError, match="none of p1, p2"):
        adversarial.suite_thresholds(ctx("glow", attack_threshold="p5"))
    with pytest.raises(ValueError, match="need a pixel density"):
        adversarial.suite_thresholds(ctx("sdim", bpd_thresholds=(1.4,)))


def test_mce_of_a_model_against_itself_is_one_and_scales_with_errors():
    sets = {f"{n}_{s}": dict(accuracy=0.9 - 0.1 * s / 5) for n in corruptions.NAMES for s in corruptions.SEVERITIES}
    base = dict(sets=sets, clean_accuracy=0.95)
    assert mce(base, base)["mce"] == pytest.approx(1.0)
    assert mce(base, base)["relative_mce"] == pytest.approx(1.0)
    worse = dict(sets={k: dict(accuracy=1 - 2 * (1 - v["accuracy"])) for k, v in sets.items()}, clean_accuracy=0.9)
    m = mce(worse, base)
    assert m["mce"] == pytest.approx(2.0) and m["relative_mce"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="lacks"):
        mce(base, dict(sets={}, clean_accuracy=0.9))


def test_nll_gap():
    ll = np.array([[-1.0, -3.0, -2.0], [-5.0, -1.0, -4.0]])
    ctx = suites.Context(None, suites.Request(), data.Split(np.zeros((2, 1, 1, 1), np.uint8), np.array([0, 0])),
                         ll, {}, {}, jax.random.key(0))
    g = suites.SUITES["nll_gap"].run(ctx)
    assert g["nll_true"] == [1.0, 5.0] and g["nll_wrong"] == [2.0, 1.0]
    assert g["fraction_true_more_likely"] == 0.5 and g["median_gap"] == pytest.approx(-1.5)


@pytest.mark.slow
def test_suites_through_evaluate_on_a_committed_model(tmp_path, monkeypatch):
    monkeypatch.setattr(interpolation, "RECORDED_PAIRS", 3)  # curves kept for 3 of the 4 pairs
    out = tmp_path / "report.json"
    # attacks sharing one compilation, the sanity checks' unbounded and black-box attacks; every
    # attack itself is tested in test_attacks.py
    opts = dict(attack_images=12, black_box_images=3, ls_rounds=3, eot=2, eot_check_draws=3, apgd_steps=5,
                square_queries=30, attacks=("pgd_linf_4_margin", "pgd_linf_8_margin", "pgd_linf_unbounded",
                                            "local_search", "apgd_ce_linf_8", "square_linf_8"),
                corruptions=("gaussian_noise", "contrast"), corruption_images=40, interpolation_pairs=4)
    report = evaluate("pretrained/ibinn_digits_beta1", ("clean", "adversarial", "corruptions", "interpolation",
                                                      "nll_gap"), out=str(out), options=opts, log=lambda *_: None)
    a = report["adversarial"]["attacks"]
    assert set(a) == set(opts["attacks"]) and a["pgd_linf_unbounded"]["success_rate"] == 1.0
    assert a["pgd_linf_8_margin"]["success_rate"] >= a["pgd_linf_4_margin"]["success_rate"] - 1e-9
    assert a["local_search"]["num"] == 3 and all(len(r["undetected_success_rate"]) == 2 for r in a.values())
    assert any("unbounded PGD success 100.0%" in s for s in report["adversarial"]["sanity"])
    # the per-image worst case: no attack's success beyond it; stochastic: EoT and fresh draws
    w = report["adversarial"]["worst_case"]
    assert set(w) == {"linf 4/255", "linf 8/255"} and report["adversarial"]["eot"] == 2
    for k in ("pgd_linf_8_margin", "apgd_ce_linf_8", "square_linf_8"):
        assert w["linf 8/255"]["robust_accuracy"] <= 1 - a[k]["success_rate"] + 1e-9
        assert 0 <= a[k]["adversarial_under_draws"] <= 1
    assert w["linf 8/255"]["robust_accuracy"] <= w["linf 4/255"]["robust_accuracy"]
    assert w["linf 8/255"]["robust_or_rejected"]["p1"] >= w["linf 8/255"]["robust_accuracy"]
    assert any("square_linf_8 (no gradients)" in s for s in report["adversarial"]["sanity"])
    c = report["corruptions"]
    assert len(c["sets"]) == 10 and c["source"] == ["generated"] and c["num_images"] == 40
    # paper 004 Fig. 4 and Tab. 2, paper 002's tests on log p(x) (fitted on the training images)
    assert c["sets"]["gaussian_noise_5"]["mean_log_px"] < c["sets"]["gaussian_noise_1"]["mean_log_px"]
    assert set(c["per_corruption"]["contrast"]["tests_auroc"]) == {"one_tailed", "typicality", "two_tailed"}
    assert c["mean_accuracy_without_noises"] == pytest.approx(c["per_corruption"]["contrast"]["accuracy"])
    assert "frost" not in c and a["pgd_linf_4_margin"]["corruption"] > 0 and "tests_auroc" in a["local_search"]
    assert mce(c, c)["mce"] == pytest.approx(1.0)
    i = report["interpolation"]
    assert i["num_pairs"] == 4 and np.asarray(i["log_px"]).shape == (3, 24) == np.shape(i["posterior_b"])
    assert len(i["mean_log_px"]) == 24 and np.all(np.isfinite(i["mean_posterior_a"]))
    assert np.all(np.add(i["mean_posterior_a"], i["mean_posterior_b"]) <= 1 + 1e-5)
    # paper 001's rule by default: a path is rejected somewhere iff log p(x) falls below every test
    # image's there (3 of the 4 paths' curves are kept: the fourth may go either way)
    assert i["rule"] == "paper" and i["paper_rule"]["threshold_bits_per_dim"] > 0
    kept = int(np.sum(np.all(np.asarray(i["log_px"]) >= i["paper_rule"]["threshold_log_px"] - 0.005, 1)))
    assert kept <= 4 * i["fraction_never_rejected"] <= kept + 1
    assert 0 <= i["fraction_never_rejected_percentile"] <= 1
    assert '"t": [0.0, ' in out.read_text()  # a list of numbers on one line
    assert report["nll_gap"]["fraction_true_more_likely"] == pytest.approx(report["clean"]["accuracy"])
    assert json.loads(out.read_text())["corruptions"]["mean_accuracy"] == c["mean_accuracy"]
    for png in ("adversarial_accuracy_vs_eps", "corruptions", "corruption_log_likelihood", "interpolation", "nll_gap"):
        assert (tmp_path / f"{png}.png").exists()
    text = format_tables(report)
    assert "pgd_linf_unbounded" in text and "severity 5" in text and "interpolation (4 pairs)" in text
    assert "worst case per image over the 6 attacks" in text and "adversarial under fresh draws" in text
    with pytest.raises(ValueError, match="unknown attacks"):
        evaluate("pretrained/ibinn_digits_beta1", ("adversarial",), options=dict(attacks=("pgd",)))
    with pytest.raises(ValueError, match="max_test_images"):
        evaluate("pretrained/ibinn_digits_beta1", ("clean",), max_test_images=1)
    sub = evaluate("pretrained/ibinn_digits_beta1", ("corruptions",), max_test_images=30, log=lambda *_: None,
                   options=dict(corruptions=("contrast",), corruption_images=10, corruption_subset="random"))
    assert sub["num_test"] == 30 and sub["corruptions"]["num_images"] == 10
    with pytest.raises(ValueError, match="no corruptions suite"):
        evaluate("pretrained/ibinn_digits_beta1", ("corruptions",),
                 options=dict(baseline_report="pretrained/ibinn_digits_beta1/report/report.json"))


def test_suites_on_cifar10_from_tfds_mock_data():
    import tensorflow_datasets as tfds

    cfg = smoke_config("glow_cifar10")
    clf = gcj.create(cfg, jax.random.key(0))
    thresholds = {"p1": np.full(10, -np.inf), "p2": np.full(10, -np.inf)}
    with tfds.testing.mock_data(num_examples=6):
        split, source = corrupted_test_set(cfg.data, "frost", 2, jax.random.key(0), "tfds")
        assert source == "tfds" and split.images.shape == (6, 32, 32, 3)
        test = data.load_dataset(cfg.data, "test")
        ll = gcj.classifier.batched_log_likelihoods(clf, test.images, 6)
        options = suite_options(dict(corruption_source="tfds", corruptions=("frost",), attack_images=2,
                                     attacks=("fgsm_linf_8",), eot=1))
        ctx = suites.Context(clf, suites.Request(options), test, ll, thresholds, {}, jax.random.key(1),
                             log=lambda *_: None, ll_train=ll)
        r = suites.SUITES["corruptions"].run(ctx)
    assert r["source"] == ["tfds"] and set(r["sets"]) == {f"frost_{s}" for s in range(1, 6)}
    ctx.test = data.Split(test.images, (ll.argmax(1)).astype(np.int32))  # every image "correct"
    adv = suites.SUITES["adversarial"].run(ctx)
    assert adv["attacks"]["fgsm_linf_8"]["num"] == 2
    with pytest.raises(ValueError, match="cifar10 only"):
        corrupted_test_set(smoke_config("glow_digits").data, "fog", 1, jax.random.key(0), "tfds")


def test_corrupted_sets_are_the_scored_test_images():
    """With max_test_images the corrupted sets are made from the scored random subset's images (by
    their positions in the test set); the first n positions are the first n images as before."""
    cfg = smoke_config("glow_digits").data
    full = data.load_dataset(cfg, "test")
    key, idx = jax.random.key(0), np.array([5, 17, 40])
    every, _ = corrupted_test_set(cfg, "contrast", 3, key, "generated")
    some, source = corrupted_test_set(cfg, "contrast", 3, key, "generated", indices=idx)
    assert source == "generated"
    np.testing.assert_array_equal(some.labels, full.labels[idx])
    np.testing.assert_allclose(some.images, every.images[idx], atol=1e-6)  # contrast: per image
    first, _ = corrupted_test_set(cfg, "gaussian_noise", 1, key, "generated", max_images=3)
    same, _ = corrupted_test_set(cfg, "gaussian_noise", 1, key, "generated", indices=np.arange(3))
    np.testing.assert_array_equal(first.images, same.images)


def test_a_suite_is_a_plug_in(monkeypatch, tmp_path):
    """A suite registered in gcj.suites.SUITES runs on the shared context with its own options;
    the report records the options every suite ran with and the config."""
    toy = suites.Suite("toy", run=lambda ctx: dict(n=len(ctx.ll_test), train=len(ctx.ll_train),
                                                   size=ctx.request.options.toy_size),
                       table=lambda block, report: [f"toy suite saw {block['n']} test images"],
                       options=(suites.Option("toy_size", 3, "how big."),), reads=("max_images",),
                       needs_train=True)
    monkeypatch.setitem(suites.SUITES, "toy", toy)
    with pytest.raises(ValueError, match=r"unknown suite options \['toy_sise'\]"):
        evaluate("pretrained/ibinn_digits_beta1", ("toy",), options=dict(toy_sise=5))
    out = tmp_path / "report.json"
    report = evaluate("pretrained/ibinn_digits_beta1", ("clean", "toy", "interpolation"), out=str(out),
                      max_images=50, options=dict(interpolation_pairs=2, toy_size=5), log=lambda *_: None)
    assert report["toy"] == dict(n=report["num_test"], train=50, size=5) and report["num_train_scored"] == 50
    assert report["options"] == {"toy": {"max_images": 50, "toy_size": 5},
                                 "interpolation": {"interpolation_pairs": 2, "interpolation_steps": 24,
                                                   "interpolation_rule": "paper"}}
    assert report["config"]["model"]["family"] == "ibinn" and report["gcj_version"] == gcj.__version__
    assert f"toy suite saw {report['num_test']} test images" in format_tables(report)
    assert json.loads(out.read_text())["toy"] == report["toy"]


def test_suites_report_the_configs_percentile_thresholds(tmp_path):
    """The thresholds the robustness suites report are the config's thresholds.percentiles."""
    workdir = str(tmp_path / "w")
    shutil.copytree("pretrained/ibinn_digits_beta1", workdir, ignore=shutil.ignore_patterns("report"))
    with open(f"{workdir}/config.json") as f:
        cfg = json.load(f)
    cfg["thresholds"]["percentiles"] = [2.0]
    with open(f"{workdir}/config.json", "w") as f:
        json.dump(cfg, f)
    opts = dict(corruptions=("contrast",), corruption_images=20, interpolation_pairs=2)
    report = evaluate(workdir, ("corruptions", "interpolation"), options=opts, log=lambda *_: None)
    assert set(report["corruptions"]["per_severity"]["1"]) == {"accuracy", "p2"}


def test_a_new_attack_is_a_function_and_a_registry_line(monkeypatch, trained_workdir):
    """An attack registered in ``gcj.attacks.ATTACKS`` (keyword-only parameters) runs in the
    adversarial suite once an ``AttackSpec`` names it, with the suite's thresholds and metrics."""
    calls = []

    def noise(model, x, labels, key, *, eps, thresholds=None):
        calls.append(dict(eps=eps, thresholds=thresholds))
        x_adv = jnp.clip(x + eps * jnp.sign(jax.random.normal(key, x.shape)), 0.0, 1.0)
        return attacks.AttackResult(x_adv, jnp.zeros(x.shape[0], bool))

    monkeypatch.setitem(attacks.ATTACKS, "noise", attacks.Attack(noise))
    specs = adversarial.default_attacks
    monkeypatch.setattr(adversarial, "default_attacks", lambda **kw: specs(**kw) + [
        adversarial.AttackSpec("noise_linf_8", "noise", (("eps", 8 / 255),))])
    report = evaluate(trained_workdir[0], ("adversarial",), max_images=64, log=lambda *_: None,
                      options=dict(attacks=("noise_linf_8",), attack_images=5))
    r = report["adversarial"]["attacks"]["noise_linf_8"]
    assert calls and calls[0] == dict(eps=8 / 255, thresholds=None) and r["num"] == 5
    assert r["mean_linf"] == pytest.approx(8 / 255, abs=1e-6) or r["success_rate"] == 0.0
    assert 0.0 <= r["success_rate"] <= 1.0 and "linf 8/255" in report["adversarial"]["worst_case"]
    with pytest.raises(ValueError, match="unknown attack 'nois'"):
        attacks.get("nois")


@pytest.mark.slow
def test_attacks_through_a_surrogate_are_judged_by_the_model(monkeypatch, trained_workdir):
    """``--attack_surrogate``: the attacks are handed the family's surrogate of log p(x|y) (here a
    made-up one, the model's log-likelihoods negated, so that the two disagree on every image);
    their images are judged by the model itself, the surrogate's verdict kept beside."""
    seen = []

    def unchanged(model, x, labels, key, *, thresholds=None):
        ll = model.log_likelihood_fn(model.params, x, key)
        seen.append(np.asarray(ll))
        return attacks.AttackResult(x, attacks.is_success(ll, labels))

    monkeypatch.setitem(attacks.ATTACKS, "unchanged", attacks.Attack(unchanged))
    specs = adversarial.default_attacks
    monkeypatch.setattr(adversarial, "default_attacks", lambda **kw: specs(**kw) + [
        adversarial.AttackSpec("unchanged", "unchanged", ())])
    negated = lambda module, c: lambda variables, x, key: -module.apply(variables, x)
    monkeypatch.setitem(models.get("sdim").surrogates, "negated", negated)
    report = evaluate(trained_workdir[0], ("adversarial",), max_images=64, log=lambda *_: None,
                      options=dict(attacks=("unchanged",), attack_images=5, attack_surrogate="negated"))
    a = report["adversarial"]
    clf = gcj.load(trained_workdir[0])
    assert a["attack_surrogate"] == "negated" and a["attacks"]["unchanged"]["num"] == 5
    assert np.concatenate(seen).shape == (5, clf.num_classes)
    # the clean images, correctly classified by the model: no success judged by it; the negated
    # surrogate calls every one of them misclassified
    assert a["attacks"]["unchanged"]["success_rate"] == 0.0
    assert a["attacks"]["unchanged"]["success_rate_attack_draw"] == 1.0
    with pytest.raises(gcj.UserError, match="family 'sdim' has no attack surrogate 'elbo' \\(it has: negated\\)"):
        evaluate(trained_workdir[0], ("adversarial",), max_images=64, log=lambda *_: None,
                 options=dict(attacks=("unchanged",), attack_images=5, attack_surrogate="elbo"))


def test_a_sanity_check_says_what_it_found():
    """A failed check states the failure, not the claim it tested."""
    res = lambda acc, s=1.0: dict(accuracy=acc, success_rate=s, undetected_success_rate={"p1": s})  # noqa: E731
    rising = {"pgd_linf_4_ce": res(0.10), "pgd_linf_6_ce": res(0.11), "pgd_linf_8_ce": res(0.08),
              "pgd_linf_unbounded": res(0.0), "local_search": res(0.5, 0.9)}
    lines = adversarial.sanity_checks(rising)
    assert "WARNING: PGD L∞ (ce) accuracy does not fall monotonically with eps: 10.0%, 11.0%, 8.0%" in lines[0]
    assert "black-box local_search success 90.0% <= white-box unbounded PGD 100.0%" in lines[-1]
    rising["local_search"] = res(0.0, 1.0)
    rising["pgd_linf_unbounded"] = res(0.0, 0.5)
    lines = adversarial.sanity_checks(rising)
    assert lines[-1] == "WARNING: black-box local_search success 100.0% > white-box unbounded PGD 50.0%"
    falling = {k: res(a) for k, a in (("pgd_linf_4_ce", 0.2), ("pgd_linf_6_ce", 0.1), ("pgd_linf_8_ce", 0.1))}
    assert adversarial.sanity_checks(falling) == [
        "ok: PGD L∞ (ce) accuracy falls monotonically with eps: 20.0% >= 10.0% >= 10.0%"]


def test_a_resumable_adversarial_suite_resumes_at_its_next_batch(monkeypatch, trained_workdir, tmp_path):
    """``resumable``: each finished attack batch is kept, and each finished attack with its judged
    images, so an evaluation stopped in the middle of an attack attacks only the batches left; the
    report is the one an evaluation in one go writes."""
    calls, stop_at = [], {"noise_linf_4": 2}  # (the first run stops at this attack's third batch)

    def noise(model, x, labels, key, *, eps, thresholds=None):
        name = f"noise_linf_{round(eps * 255)}"
        calls.append(name)
        if stop_at.get(name) == calls.count(name) - 1:
            raise KeyboardInterrupt
        return attacks.AttackResult(jnp.clip(x + eps * jnp.sign(jax.random.normal(key, x.shape)), 0.0, 1.0),
                                    jnp.zeros(x.shape[0], bool))

    monkeypatch.setitem(attacks.ATTACKS, "noise", attacks.Attack(noise))
    specs = adversarial.default_attacks
    monkeypatch.setattr(adversarial, "default_attacks", lambda **kw: specs(**kw) + [
        adversarial.AttackSpec(f"noise_linf_{e}", "noise", (("eps", e / 255),)) for e in (8, 4)])
    out = str(tmp_path / "report.json")
    run = functools.partial(evaluate, trained_workdir[0], ("adversarial",), max_images=64, log=lambda *_: None,
                            overrides={"eval_batch_size": "2"},
                            options=dict(attacks=("noise_linf_8", "noise_linf_4"), attack_images=5))
    with pytest.raises(KeyboardInterrupt):
        run(out=out, resumable=True)
    assert calls == ["noise_linf_8"] * 3 + ["noise_linf_4"] * 3
    calls.clear()
    a = run(out=out, resumable=True)
    assert calls == ["noise_linf_4"] * 1  # batches 0 and 1 kept; the first attack kept whole
    assert not os.path.exists(gcj.evaluate.scores_dir(out))
    stop_at.clear()
    b = run()
    for r in (a, b):
        for name in r["adversarial"]["attacks"]:
            r["adversarial"]["attacks"][name].pop("seconds")
    assert json.dumps(a["adversarial"]) == json.dumps(b["adversarial"])  # (NaN where no attack succeeded)
