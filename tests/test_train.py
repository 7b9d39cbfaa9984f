"""One training loop: steps, checkpoints, resume, determinism, sharding, failures, evaluate.py."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import gcj
from conftest import ROOT, checkpoint_steps, smoke_config
from gcj import checkpoint, cli, data, rejection
from gcj.config import base_config
from gcj.evaluate import evaluate
from gcj.metric_writer import records
from gcj.recipes import paper_config
from gcj.train import (Trainer, fit_thresholds, make_optimizer, make_schedule, scored_subset, train_and_evaluate,
                       train_epoch)

X = np.random.default_rng(0).uniform(size=(4, 32, 32, 1)).astype(np.float32)


def _epochs(workdir):
    return [r for r in records(workdir) if "epoch_seconds" in r]


def _copy(workdir, tmp_path):
    dst = str(tmp_path / "copy")
    shutil.copytree(workdir, dst)
    return dst


def _run(args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_training_learns_and_writes_the_workdir(trained_workdir):
    workdir, clf = trained_workdir
    assert {"config.json", "metrics.jsonl", "thresholds.json", "checkpoints"} <= set(os.listdir(workdir))
    epochs = _epochs(workdir)
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[-1]["train/loss"] < epochs[0]["train/loss"]
    # an epoch's CPU time: of this process's threads, at most every core busy for its wall time
    assert all(0 < r["epoch_cpu_seconds"] <= os.cpu_count() * r["epoch_seconds"] + 1 for r in epochs)
    thr = json.load(open(os.path.join(workdir, "thresholds.json")))
    assert set(thr) == {"p1", "p2", "conformal0.01"} and all(len(v) == 10 for v in thr.values())
    # the same curves for TensorBoard: one event per metrics.jsonl line, after the file version
    (events,) = [f for f in os.listdir(workdir) if "tfevents" in f]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = len(f.readlines())
    with open(os.path.join(workdir, events), "rb") as f:
        assert f.read().count(b"train/loss") == lines
    written = json.load(open(os.path.join(workdir, "config.json")))
    assert written["gcj_version"] == gcj.__version__ and written["provenance"]["gcj"] == gcj.__version__
    assert written["provenance"]["jaxlib"] and written["provenance"]["device_kind"]


def test_checkpoint_round_trip(trained_workdir):
    workdir, clf = trained_workdir
    loaded = gcj.load(workdir)
    np.testing.assert_array_equal(loaded.class_log_likelihoods(X), clf.class_log_likelihoods(X))
    assert loaded.thresholds == clf.thresholds
    assert loaded.config.to_dict() == clf.config.to_dict()


def _corrupt(workdir, step):
    """Overwrites the variables' data files of checkpoint ``step`` (as a full disk might)."""
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(step), "variables")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def test_resume_equals_uninterrupted_run(tmp_path, capsys):
    """A run resumed from the newest READABLE checkpoint (the newest is corrupted) ends where an
    uninterrupted run ends; the unreadable one is set aside, not overwritten."""
    cfg = smoke_config(num_epochs=3)
    straight = str(tmp_path / "straight")
    a = train_and_evaluate(cfg, straight)
    interrupted = _copy(straight, tmp_path)
    _corrupt(interrupted, 18)
    capsys.readouterr()
    with pytest.warns(UserWarning, match="newest checkpoint \\(step 18\\).*unreadable; using step 12"):
        b = train_and_evaluate(smoke_config(num_epochs=3), interrupted)
    out = capsys.readouterr().out
    assert "resumed from step 12" in out and "18.unreadable" in out
    assert os.path.isdir(os.path.join(interrupted, "checkpoints", "18.unreadable"))
    assert [r["epoch"] for r in _epochs(interrupted)] == [1, 2, 3, 3]
    # same config and seed: the same parameters, whether interrupted or not
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.params, b.params)


@pytest.mark.slow
def test_score_family_trains_resumes_with_its_ema_and_loads(tmp_path, capsys):
    """The score family through the same loop: EMA parameters are what is evaluated and saved;
    the raw parameters travel in the train item, so a resumed run equals an uninterrupted one."""
    # no likelihood is computed (no validation split, no thresholds): ODE solves take minutes
    quick = {"data.val_size": 0, "thresholds.percentiles": ()}
    straight = str(tmp_path / "straight")
    a = train_and_evaluate(smoke_config("score_digits", **quick), straight)
    interrupted = _copy(straight, tmp_path)
    ckpts = os.path.join(interrupted, "checkpoints")
    shutil.rmtree(os.path.join(ckpts, max(os.listdir(ckpts), key=int)))  # killed in epoch 2
    capsys.readouterr()
    b = train_and_evaluate(smoke_config("score_digits", **quick), interrupted)
    assert "resumed from step 4" in capsys.readouterr().out
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.params, b.params)
    saved = checkpoint.restore_variables(interrupted, dict(params=a.params["params"]))
    jax.tree_util.tree_map(np.testing.assert_array_equal, saved["params"], a.params["params"])
    loaded = gcj.load(interrupted)  # (its likelihoods: test_pretrained's sbgc_digits)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.params, b.params)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(trained_workdir, tmp_path):
    workdir = _copy(trained_workdir[0], tmp_path)
    before = gcj.load(workdir).class_log_likelihoods(X)
    with pytest.raises(FloatingPointError, match="non-finite loss.*last good checkpoint \\(step 12\\)"):
        train_and_evaluate(smoke_config(num_epochs=4, **{"optim.lr": 1e30}), workdir)
    assert checkpoint_steps(workdir)[-1] == 12
    np.testing.assert_array_equal(gcj.load(workdir).class_log_likelihoods(X), before)
    fresh = str(tmp_path / "fresh")  # diverging before the first checkpoint: says there is none
    with pytest.raises(FloatingPointError, match="There is no checkpoint yet: nothing was saved"):
        train_and_evaluate(smoke_config(**{"optim.lr": 1e30}), fresh)


def test_unreadable_checkpoint_and_missing_workdir(trained_workdir, tmp_path):
    """gcj.load falls back to the newest readable checkpoint with a warning naming both steps,
    and fails with a message naming every step only when none can be read."""
    workdir = _copy(trained_workdir[0], tmp_path)
    _corrupt(workdir, 12)
    with pytest.warns(UserWarning, match="newest checkpoint \\(step 12\\).*unreadable; using step 6"):
        fallback = gcj.load(workdir)
    jax.tree_util.tree_map(np.testing.assert_array_equal, fallback.params, gcj.load(workdir, step=6).params)
    with pytest.raises(ValueError, match="unreadable checkpoint at step 12"):
        gcj.load(workdir, step=12)  # a step asked for is not replaced by another
    _corrupt(workdir, 6)
    with pytest.raises(ValueError, match="no readable checkpoint: unreadable checkpoint at step 12.*step 6"):
        gcj.load(workdir)
    with pytest.raises(FileNotFoundError, match="not a gcj workdir"):
        gcj.load(str(tmp_path / "nothing"))


def test_unknown_config_keys_are_errors(trained_workdir, tmp_path):
    r = _run(["train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "w"),
              "--config.optim.nope=1"])  # one line, no traceback
    assert r.returncode != 0 and r.stderr == "train.py: error: unknown config key 'nope' in --config.optim.nope\n"
    workdir = _copy(trained_workdir[0], tmp_path)
    cfg = json.load(open(os.path.join(workdir, "config.json")))
    cfg["model"]["widht"] = 3
    json.dump(cfg, open(os.path.join(workdir, "config.json"), "w"))
    with pytest.raises(KeyError, match="widht"):
        gcj.load(workdir)


@pytest.mark.slow
def test_data_parallel_on_four_devices_matches_one_and_checkpoints_move_between_them(trained_workdir, tmp_path):
    """The jitted step sharded over a 4-device mesh computes the same training as on one device;
    the evaluation's batches sharded over them give the log-likelihoods of one device. A checkpoint
    restores onto any number of devices: the 1-device run resumes on 4, the 4-device run loads on 1."""
    resumed = _copy(trained_workdir[0], tmp_path)
    code = ("import jax, sys; sys.path.insert(0, 'tests'); from conftest import smoke_config;"
            "from gcj.train import train_and_evaluate; assert jax.device_count() == 4;"
            # (no percentile thresholds: what is compared is the training)
            f"train_and_evaluate(smoke_config(**{{'thresholds.percentiles': ()}}), {str(tmp_path / 'w4')!r});"
            # evaluation sharded over the 4 devices, batches of 5 padded to 8: as unsharded
            "import gcj, numpy as np; from gcj import classifier, data;"
            f"clf = gcj.load({str(tmp_path / 'w4')!r}); imgs = data.load_dataset(clf.config.data, 'test').images[:7];"
            "np.testing.assert_allclose(classifier.batched_log_likelihoods(clf, imgs, 5),"
            " clf.class_log_likelihoods(data.to_float(imgs)), rtol=1e-5, atol=1e-4);"
            # the 1-device workdir, one more epoch on 4 devices
            f"train_and_evaluate(smoke_config(num_epochs=3), {resumed!r})")
    r = _run(["-c", code], env={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
                                "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr[-3000:]
    for four, one in zip(_epochs(str(tmp_path / "w4")), _epochs(trained_workdir[0]), strict=True):
        for k in ("train/loss", "train/nll", "train/mi", "train/margin", "val/accuracy"):
            assert four[k] == pytest.approx(one[k], rel=1e-3, abs=1e-4), k
    assert f"resumed from step 12 in {resumed}" in r.stdout and [e["epoch"] for e in _epochs(resumed)] == [1, 2, 3]
    assert jax.device_count() == 1  # this process: the 4-device checkpoint, on one device
    np.testing.assert_allclose(gcj.load(str(tmp_path / "w4")).class_log_likelihoods(X),
                               trained_workdir[1].class_log_likelihoods(X), rtol=1e-3, atol=1e-3)


def test_train_epoch_fetches_metrics_only_when_logging_and_names_the_first_nonfinite_step():
    """The device is waited for only every log_every steps; a NaN loss is reported at the next
    fetch with the step where it first appeared."""
    losses = [1.0, 3.0, float("nan"), 2.0, 5.0, 7.0]

    def step_fn(state, images, labels, key):
        i = int(state["step"])
        return dict(step=state["step"] + 1), dict(loss=jnp.float32(losses[i]), accuracy=jnp.float32(0.5))

    trainer = Trainer(None, None, None, step_fn, lambda b: b, None, len(losses))
    logged = []
    batches = [(np.zeros(1), np.zeros(1))] * 2
    state, means = train_epoch(trainer, dict(step=jnp.int32(0)), batches, None, 2,
                               lambda step, avg: logged.append((step, avg["loss"])))
    assert logged == [(2, 2.0)] and means == dict(loss=2.0, accuracy=0.5)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 3$"):
        train_epoch(trainer, state, [(np.zeros(1), np.zeros(1))] * 4, None, 2, lambda *a: None)


def test_sdim_logit_keeps_its_base_frozen(tmp_path):
    base_dir, head_dir = str(tmp_path / "disc"), str(tmp_path / "logit")
    base = train_and_evaluate(smoke_config("disc_fashion_mnist", **{"data.name": "mnist5k"}), base_dir)
    cfg = smoke_config("sdim_logit_fashion_mnist", **{"data.name": "mnist5k", "model.sdim_logit.base.width": 8,
                                                       "model.sdim_logit.base_workdir": base_dir})
    before = cfg.to_json()
    head = train_and_evaluate(cfg, head_dir)
    assert cfg.to_json() == before  # the caller's config is untouched; the run's comes from the base
    for col in ("params", "batch_stats"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, head.params[col]["encoder"]["base"],
                               base.params[col])
    assert gcj.load(head_dir).config.model.sdim_logit.base.width == base.config.model.disc.width == 4
    fresh = gcj.create(head.config, jax.random.key(0)).params["params"]["conditionals"]["mean"]
    assert not np.allclose(head.params["params"]["conditionals"]["mean"], fresh)


def test_evaluate_cli_writes_report_and_plots(trained_workdir, tmp_path):
    out = tmp_path / "report" / "report.json"
    r = _run(["evaluate.py", "--workdir", trained_workdir[0], "--ood_dataset", "digits",
              "--ood_split", "all", "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.load(open(out))
    assert "%|" not in r.stderr + r.stdout  # no progress bars when the output is not a terminal
    # what made it, and no path of this machine: the workdir relative to the report
    assert rep["provenance"]["jax"] == jax.__version__ and rep["provenance"]["backend"] == "cpu"
    assert rep["provenance"]["device_count"] >= 1 and rep["provenance"]["process_count"] == 1
    assert os.path.samefile(out.parent / rep["workdir"], trained_workdir[0]) and not os.path.isabs(rep["workdir"])
    assert str(tmp_path) not in out.read_text() and rep["model"] == os.path.basename(trained_workdir[0])
    assert rep["gcj_version"] == gcj.__version__
    values = [rep["clean"]["accuracy"], rep["calibration"]["ece"], rep["calibration"]["mce"],
              rep["ood"]["digits"]["auroc"]]
    for p in ("p1", "p2"):
        values += [rep["rejection"][p]["acc_left"], rep["rejection"][p]["rejection_rate"],
                   rep["ood"]["digits"]["detection_rate"][p]]
    assert all(0.0 <= v <= 1.0 for v in values), values
    assert rep["ood"]["digits"]["num"] == 1797
    assert np.isfinite(rep["calibration"]["oce"]) or rep["calibration"]["oce_fraction"] == 0
    assert {"rejection_curve.png", "reliability.png", "ood_digits_hist.png"} <= set(os.listdir(out.parent))
    (events,) = [f for f in os.listdir(out.parent) if "tfevents" in f]  # the plots, for TensorBoard
    assert b"rejection/rejection_curve" in open(out.parent / events, "rb").read()
    assert "clean accuracy" in r.stdout and "detection rate p1" in r.stdout
    # the smoke model's 64 validation images cannot fit conformal thresholds: n/a, not 0.00%
    assert set(rep["thresholds_not_fitted"]) == {"conformal0.01"} and "conformal0.01" not in rep["rejection"]
    assert "conformal0.01 n/a (too few calibration images: 64 in all, fewer than 99" in r.stdout
    assert "time: load" in r.stdout and set(rep["seconds"]) == {"load", "scoring", "suites"}
    quiet = tmp_path / "quiet" / "report.json"
    r = _run(["evaluate.py", "--workdir", trained_workdir[0], "--suites", "clean,calibration",
              "--noplots", "--out", str(quiet), "--set", "eval_batch_size=7"])
    assert r.returncode == 0 and os.listdir(quiet.parent) == ["report.json"], r.stderr[-3000:]
    rep = json.load(open(quiet))  # --set: the evaluated config, recorded
    assert rep["overrides"] == {"eval_batch_size": "7"} and rep["config"]["eval_batch_size"] == 7
    bad = _run(["evaluate.py", "--workdir", trained_workdir[0], "--suites", "clean", "--set", "model.nope=1"])
    assert bad.returncode != 0 and "unknown config key 'model.nope'" in bad.stderr
    # user errors: one line naming the problem, no traceback; a missing workdir is said first
    bad = _run(["evaluate.py", "--workdir", trained_workdir[0], "--suites", "clean,attacks"])
    assert bad.returncode != 0 and bad.stderr.startswith("evaluate.py: error: unknown suites ['attacks']")
    # no flag but the workdir: the default suites run (ood, which needs a data set, left out) and
    # the report goes to <workdir>/report/
    w = _copy(trained_workdir[0], tmp_path)
    r = _run(["evaluate.py", "--workdir", w, "--noplots"])
    assert r.returncode == 0 and "ood suite needs --ood_dataset" in r.stdout, r.stderr[-3000:]
    assert f"report: {os.path.join(w, 'report', 'report.json')}" in r.stdout
    rep = json.load(open(os.path.join(w, "report", "report.json")))
    assert {"clean", "rejection", "calibration"} <= set(rep) and "ood" not in rep
    bad = _run(["evaluate.py", "--workdir", w, "--suites", "ood"])  # asked for by name: needs its flag
    assert bad.returncode == 2 and "needs at least one --ood_dataset" in bad.stderr
    missing = _run(["evaluate.py", "--workdir", str(tmp_path / "nowhere"), "--suites", "ood"])
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    assert "nowhere' is not a gcj workdir: no config.json" in missing.stderr


def test_bad_requests_name_the_problem(trained_workdir, tmp_path):
    with pytest.raises(ValueError, match="needs at least one --ood_dataset"):
        evaluate(trained_workdir[0], ["ood"])
    with pytest.raises(ValueError, match="batch_size 4096 exceeds"):
        train_and_evaluate(smoke_config(batch_size=4096), str(tmp_path / "big"))
    with pytest.raises(ValueError, match="sdim_logit needs config.model.sdim_logit.base_workdir"):
        train_and_evaluate(smoke_config("sdim_logit_fashion_mnist", **{"data.name": "mnist5k"}),
                           str(tmp_path / "nobase"))
    with pytest.raises(ValueError, match="unknown config argument"):
        paper_config("sdim", "mnist", "tiny")


def test_sdim_logit_on_any_user_function(tmp_path):
    """A frozen user function x -> logits as the base: trains, reloads, differentiates through it."""
    w = jax.random.normal(jax.random.key(7), (32 * 32, 10)) / 32.0
    base_fn = lambda x: x.reshape(x.shape[0], -1) @ w  # noqa: E731
    cfg = smoke_config("sdim_logit_fashion_mnist", **{"data.name": "mnist5k"})
    workdir = str(tmp_path / "fn")
    clf = train_and_evaluate(cfg, workdir, base_fn=base_fn)
    assert "base" not in clf.params["params"]["encoder"]  # nothing of the base is trained
    loaded = gcj.load(workdir, base_fn=base_fn)
    np.testing.assert_array_equal(loaded.class_log_likelihoods(X), clf.class_log_likelihoods(X))
    g = jax.grad(lambda x: loaded.log_likelihood_fn(loaded.params, x, None)[:, 0].sum())(jnp.asarray(X))
    assert float(jnp.abs(g).sum()) > 0


def test_learning_rate_schedules():
    cfg = base_config().optim
    cfg.update(dict(lr=1.0, warmup_steps=10, schedule="step", decay_every_epochs=2))
    lr = make_schedule(cfg, steps_per_epoch=5, num_epochs=10)
    # warm-up from 0, then / 10 every 2 epochs (10 steps) counted from its end
    assert [float(lr(s)) for s in (0, 5, 10, 19, 20, 30)] == pytest.approx([0, 0.5, 1, 1, 0.1, 0.01])
    cfg.update(dict(schedule="milestones", milestones=(1, 3), warmup_steps=0))
    lr = make_schedule(cfg, steps_per_epoch=5, num_epochs=10)
    assert [float(lr(s)) for s in (4, 5, 14, 15, 40)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    cfg.schedule = "linear"
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        make_schedule(cfg, 5, 10)


def test_prior_lr_factor_trains_the_class_means_by_plain_sgd():
    cfg = base_config().optim
    cfg.update(dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.5, prior_lr_factor=3.0))
    params = {"prior": {"mu": np.ones(2, np.float32)}, "flow": {"w": np.ones(2, np.float32)}}
    tx = make_optimizer(cfg, 10, 1, params)
    state = tx.init(params)
    grads = {"prior": {"mu": np.full(2, 2.0, np.float32)}, "flow": {"w": np.full(2, 2.0, np.float32)}}
    for _ in range(2):  # the second step shows momentum where there is one
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(updates["prior"]["mu"], -0.3 * 2.0)  # 3 x lr, no decay/momentum
    np.testing.assert_allclose(updates["flow"]["w"], -0.1 * (2.5 + 0.9 * 2.5))  # decay + momentum


def test_cpu_devices_split_the_batch_evenly():
    """train.py's default --cpu_devices: the most cores, up to 8, that divide the batch."""
    assert cli.auto_cpu_devices(2, [128]) == 2 and cli.auto_cpu_devices(2, [127]) == 1
    assert cli.auto_cpu_devices(16, [128]) == 8 and cli.auto_cpu_devices(6, [100, 50]) == 5
    assert cli.auto_cpu_devices(4, []) == 4 and cli.auto_cpu_devices(1, [64]) == 1


def test_a_failed_checkpoint_save_stops_training_with_a_message(tmp_path, monkeypatch):
    """A save the filesystem refuses (here: no space left) stops training with one message naming
    the step, the folder and what is kept; the checkpoint manager is closed on the way out."""
    def full(self, step, *args, **kw):
        if step == 12:
            raise OSError(28, "No space left on device")
        return real(self, step, *args, **kw)

    real, closed = ocp.CheckpointManager.save, []
    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    monkeypatch.setattr(ocp.CheckpointManager, "close", lambda self: closed.append(self.directory))
    with pytest.raises(checkpoint.CheckpointSaveError,
                       match=r"could not save the checkpoint of step 12 in .*checkpoints: no space left on device \(OSError: .*No space left"
                             r".*; the last good checkpoint \(step 6\) is intact"):
        train_and_evaluate(smoke_config(), str(tmp_path / "w"))
    assert len(closed) == 1 and gcj.load(str(tmp_path / "w")) is not None  # step 6 still loads


@pytest.mark.slow
def test_max_scored_images_fits_the_thresholds_on_a_seeded_subset(trained_workdir):
    """``max_scored_images``: the thresholds come from that many training (and validation) images,
    the same seeded ones every time; 0 scores them all."""
    clf = gcj.load(trained_workdir[0])
    config = clf.config.as_configdict()
    trn, val = data.load_train_val(config)
    config.max_scored_images = 40
    few = scored_subset(trn, config, "train")
    assert len(few.labels) == 40 and np.array_equal(few.images, scored_subset(trn, config, "train").images)
    fitted = fit_thresholds(clf, trn, val, config)
    ll = gcj.classifier.batched_log_likelihoods(clf, few.images, 64)
    np.testing.assert_allclose(fitted["p1"], rejection.percentile_thresholds(ll, few.labels, 1.0), rtol=1e-5, atol=1e-4)
    config.max_scored_images = 0
    assert len(scored_subset(trn, config, "train").labels) == len(trn.labels)


@pytest.mark.slow
def test_the_last_validation_is_not_scored_again_for_the_thresholds(tmp_path, monkeypatch):
    """The conformal thresholds reuse the last epoch's validation scores (the same images, model and
    key): the validation subset is scored once, and the thresholds equal those fitted afresh."""
    scored = []
    real = gcj.classifier.batched_log_likelihoods

    def counting(clf, images, *args, **kwargs):
        scored.append(len(images))
        return real(clf, images, *args, **kwargs)

    monkeypatch.setattr(gcj.classifier, "batched_log_likelihoods", counting)
    config = smoke_config(num_epochs=1, val_every_epochs=0)
    clf = train_and_evaluate(config, str(tmp_path / "w"))
    trn, val = data.load_train_val(config)
    assert sorted(scored) == sorted([len(val.labels), len(trn.labels)])
    refit = fit_thresholds(clf, trn, val, config)
    assert refit.keys() == clf.thresholds.keys()
    for name in refit:
        np.testing.assert_allclose(clf.thresholds[name], refit[name], rtol=1e-5, atol=1e-4)
    assert not os.path.exists(str(tmp_path / "w" / "scores"))  # (kept only until thresholds.json)


@pytest.mark.slow
def test_a_run_stopped_while_fitting_thresholds_resumes_its_kept_scores(tmp_path, monkeypatch):
    """Stopped while the training images are scored for the thresholds: the validation rows are
    kept in workdir/scores/ and the run again uses them (here marked, to be seen)."""
    real, workdir = gcj.classifier.batched_log_likelihoods, str(tmp_path / "w")
    config = smoke_config(num_epochs=1, val_every_epochs=0)
    trn, val = data.load_train_val(config)

    def stop_at_train(clf, images, *args, **kwargs):
        if len(images) == len(trn.labels):
            raise KeyboardInterrupt
        return real(clf, images, *args, **kwargs)

    monkeypatch.setattr(gcj.classifier, "batched_log_likelihoods", stop_at_train)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, workdir)
    kept = os.path.join(workdir, "scores", "val.npz")
    with np.load(kept) as f:
        assert f["ll"].shape == (len(val.labels), 10)
        np.savez(kept, fingerprint=f["fingerprint"], ll=np.full_like(f["ll"], -7.0))
    returned = []

    def spy(clf, images, *args, **kwargs):
        returned.append(real(clf, images, *args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(gcj.classifier, "batched_log_likelihoods", spy)
    train_and_evaluate(config, workdir)
    assert any(np.all(r == -7.0) for r in returned) and not os.path.exists(os.path.dirname(kept))


@pytest.mark.slow
def test_saved_log_likelihoods_are_the_reports_and_reproduce_from_their_keys(trained_workdir, tmp_path):
    """``save_log_likelihoods``: the [N, C] test scores the report was computed from, with the
    scored subset's positions, labels and the documented per-batch keys (a stochastic family, the
    score model, reproduces them from those keys)."""
    out = str(tmp_path / "r" / "report.json")
    rep = evaluate("pretrained/sbgc_digits", ("clean",), out=out, max_test_images=4, log=lambda *_: None,
                   save_log_likelihoods=True, overrides={"model.score.ode.rtol": "1e-3", "model.score.ode.atol": "1e-3"})
    saved = np.load(gcj.evaluate.log_likelihoods_path(out))
    ll, idx, bs = saved["test"], saved["test_indices"], int(saved["batch_size"])
    assert ll.shape == (4, 10) and len(set(idx.tolist())) == 4 and gcj.evaluate.log_likelihoods_path(out).endswith(
        "report_log_likelihoods.npz")
    clf = gcj.load("pretrained/sbgc_digits", overrides={"model.score.ode.rtol": "1e-3", "model.score.ode.atol": "1e-3"})
    test = data.load_dataset(clf.config.data, "test")
    np.testing.assert_array_equal(saved["test_labels"], test.labels[idx])
    assert rep["clean"]["accuracy"] == pytest.approx(np.mean(ll.argmax(1) == test.labels[idx]))
    key = gcj.keys.named(jax.random.key(int(saved["seed"])), "test", "likelihood")
    again = gcj.classifier.batched_log_likelihoods(clf, test.images[idx[:bs]], bs, key)
    np.testing.assert_allclose(again, ll[:bs], rtol=0, atol=0.05)


def test_scoring_resumes_at_its_next_batch_only_from_its_own_rows(trained_workdir, tmp_path):
    """``batched_log_likelihoods(resume=)``: kept rows of the same images, key, batch, config and
    parameters are used (the batches after them scored); rows made from anything else are not."""
    clf = gcj.load(trained_workdir[0])
    images = data.load_dataset(clf.config.data, "test").images[:10]
    key, path = jax.random.key(3), str(tmp_path / "scores.npz")
    fresh = gcj.classifier.batched_log_likelihoods(clf, images, 4, key)
    np.testing.assert_allclose(gcj.classifier.batched_log_likelihoods(clf, images, 4, key, resume=path), fresh,
                               rtol=1e-5, atol=1e-4)
    with np.load(path) as f:  # all rows kept; now as if stopped after the first batch, its rows marked
        mark, kept = str(f["fingerprint"]), f["ll"]
    assert kept.shape == (10, 10)
    np.savez(path, fingerprint=mark, ll=np.full((5, 10), -7.0, np.float32))  # 1 whole batch (+1 row)
    resumed = gcj.classifier.batched_log_likelihoods(clf, images, 4, key, resume=path)
    assert np.all(resumed[:4] == -7.0)
    np.testing.assert_allclose(resumed[4:], fresh[4:], rtol=1e-5, atol=1e-4)
    np.savez(path, fingerprint=mark, ll=np.full((5, 10), -7.0, np.float32))
    for other in (dict(key=jax.random.key(4)), dict(images=images[::-1].copy()), dict(batch_size=2)):
        args = dict(images=images, batch_size=4, key=key) | other
        got = gcj.classifier.batched_log_likelihoods(clf, args["images"], args["batch_size"], args["key"], resume=path)
        assert not np.any(got == -7.0)
        np.savez(path, fingerprint=mark, ll=np.full((5, 10), -7.0, np.float32))


def test_a_resumable_evaluation_gives_the_same_report_and_removes_its_scores(trained_workdir, tmp_path):
    out = str(tmp_path / "report.json")
    suites, corrupt = ("clean", "rejection", "corruptions"), dict(corruptions=("contrast",), corruption_images=8)
    kept = set()  # what the scores folder held while the suites logged (each corrupted set's scores too)
    a = evaluate(trained_workdir[0], suites, out=out, plots=False, max_images=40, resumable=True, options=corrupt,
                 log=lambda *_: kept.update(os.listdir(gcj.evaluate.scores_dir(out))))
    assert {f"corruptions_contrast_{s}.npz" for s in range(1, 6)} <= kept, kept
    assert not os.path.exists(gcj.evaluate.scores_dir(out))
    b = evaluate(trained_workdir[0], suites, plots=False, log=lambda *_: None, max_images=40, options=corrupt)
    assert a["clean"] == b["clean"] and a["rejection"] == b["rejection"] and a["corruptions"] == b["corruptions"]
    with pytest.raises(ValueError, match="give out"):
        evaluate(trained_workdir[0], ("clean",), resumable=True)
