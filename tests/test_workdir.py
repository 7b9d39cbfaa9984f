"""What a training job on a cluster meets: two runs on one workdir, a stale lock, SIGTERM (preemption)
mid-epoch, a checkpoint of another model, a full disk."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import gcj
from conftest import ROOT, checkpoint_steps, smoke_config
from gcj import checkpoint, classifier, lock, metric_writer
from gcj import train as gcj_train
from gcj.errors import Preempted
from gcj.evaluate import evaluate
from gcj.train import train_and_evaluate

TRAIN = [sys.executable, "train.py", "--config", "configs/demo.py:smoke"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(workdir, **record):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, lock.NAME), "w") as f:
        json.dump(dict(dict(host=socket.gethostname(), since=time.time()), **record), f)


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_workdir(tmp_path):
    """One trains; the other refuses at once with one line naming the holder, and exits 2."""
    w = str(tmp_path / "w")
    runs = [subprocess.Popen([*TRAIN, "--workdir", w, "--cpu_devices", "1", "--config.num_epochs=1"], cwd=ROOT,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    out = [(p.wait(timeout=600), p.stderr.read()) for p in runs]
    assert sorted(rc for rc, _ in out) == [0, 2], out
    err = next(e for rc, e in out if rc == 2)
    assert "is being trained by pid" in err and socket.gethostname() in err and "one run per workdir" in err
    assert err.count("\n") == 1, err
    assert not os.path.exists(os.path.join(w, lock.NAME))  # released by the run that held it
    with open(os.path.join(w, "metrics.jsonl")) as f:  # written by one run only
        assert sum(1 for r in map(json.loads, f) if "epoch_seconds" in r) == 1


def test_a_lock_is_taken_over_only_from_a_process_that_is_gone(tmp_path):
    w = str(tmp_path / "w")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(w, pid=sleeper.pid)
        with pytest.raises(lock.WorkdirLockedError, match=f"is being trained by pid {sleeper.pid} on "):
            lock.acquire(w)
        _write_lock(w, pid=_dead_pid(), host="another-host")  # cannot be checked from here: refused
        with pytest.raises(lock.WorkdirLockedError, match="on another-host"):
            lock.acquire(w)
    finally:
        sleeper.kill()
    dead = _dead_pid()
    _write_lock(w, pid=dead)
    with pytest.warns(UserWarning, match=f"took over the lock .* left by pid {dead} .* no longer running"):
        with lock.hold(w) as path:
            assert lock.holder(w)["pid"] == os.getpid() and path.endswith(lock.NAME)
    assert lock.holder(w) is None and os.listdir(w) == []  # released, no stale copy left


def test_evaluate_on_a_workdir_in_training_uses_its_newest_complete_checkpoint(trained_workdir, tmp_path):
    workdir = str(tmp_path / "w")
    shutil.copytree(trained_workdir[0], workdir)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lines = []
    try:
        _write_lock(workdir, pid=sleeper.pid)
        os.makedirs(os.path.join(workdir, "checkpoints", "99.orbax-checkpoint-tmp-1"))  # a save in progress
        report = evaluate(workdir, ("clean",), log=lines.append)
    finally:
        sleeper.kill()
    said = [line for line in lines if "still being trained" in line]
    assert len(said) == 1 and f"by pid {sleeper.pid}" in said[0] and "newest complete checkpoint, step 12" in said[0]
    assert report["clean"]["accuracy"] == pytest.approx(evaluate(trained_workdir[0], ("clean",),
                                                                 log=lambda *_: None)["clean"]["accuracy"])


def test_sigterm_mid_epoch_saves_that_step_and_a_rerun_ends_bit_identical(trained_workdir, tmp_path, monkeypatch):
    """SIGTERM inside epoch 1 (6 steps an epoch; here when step 4 is logged, as a scheduler might
    send it then): the step is finished and saved (beside the checkpoint every 3 steps), then a
    rerun resumes from it and ends with the parameters of an uninterrupted run (the session's
    smoke run: the same config but for when it saves)."""
    cfg = smoke_config(checkpoint_every_steps=3)
    straight = trained_workdir[1]
    w = str(tmp_path / "w")
    write = metric_writer.MetricWriter.write

    def write_then_sigterm(self, record):
        write(self, record)
        if record.get("step") == 4 and "epoch_seconds" not in record:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(metric_writer.MetricWriter, "write", write_then_sigterm)
    with pytest.raises(Preempted, match=r"stopped by SIGTERM at step 4 \(epoch 1\): checkpoint saved in"):
        train_and_evaluate(cfg, w)
    monkeypatch.undo()
    assert checkpoint_steps(w) == [3, 4]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the training's only
    assert not os.path.exists(os.path.join(w, lock.NAME))
    resumed = train_and_evaluate(cfg, w)
    jax.tree_util.tree_map(np.testing.assert_array_equal, straight.params, resumed.params)
    assert checkpoint_steps(w)[-1] == 12


@pytest.mark.slow
def test_sigterm_in_the_closing_validation_stops_after_it_and_the_rerun_trains_no_step(trained_workdir, tmp_path,
                                                                                      monkeypatch):
    """The last epoch's checkpoint is on disk before that epoch's validation starts (for the score
    family, hours of ODE solves: a run killed there keeps its training); SIGTERM during it stops
    the run once it is scored, before the thresholds; the rerun trains no step and ends as the
    uninterrupted run (parameters, thresholds)."""
    w = str(tmp_path / "w")
    score, saved_before = classifier.batched_log_likelihoods, []

    def sigterm_in_closing_validation(*args, resume=None, **kwargs):
        if resume is not None and not saved_before:  # (the closing scorings are the resumable ones)
            final = os.path.join(w, "checkpoints", "12")
            deadline = time.time() + 20  # (orbax may still be renaming it into place)
            while not os.path.isdir(final) and time.time() < deadline:
                time.sleep(0.1)
            saved_before.append(os.path.isdir(final))
            os.kill(os.getpid(), signal.SIGTERM)
        return score(*args, resume=resume, **kwargs)
    monkeypatch.setattr(classifier, "batched_log_likelihoods", sigterm_in_closing_validation)
    with pytest.raises(Preempted, match=r"stopped by SIGTERM at step 12 \(end of epoch 2\)"):
        train_and_evaluate(smoke_config(), w)
    monkeypatch.undo()
    assert saved_before == [True]
    assert not os.path.exists(os.path.join(w, "thresholds.json"))
    monkeypatch.setattr(gcj_train, "train_epoch", lambda *a, **k: pytest.fail("trained again"))
    resumed = train_and_evaluate(smoke_config(), w)
    jax.tree_util.tree_map(np.testing.assert_array_equal, trained_workdir[1].params, resumed.params)
    for name, values in trained_workdir[1].thresholds.items():
        np.testing.assert_allclose(resumed.thresholds[name], values, rtol=1e-6, atol=1e-3)  # nats


@pytest.mark.slow
def test_a_run_killed_in_the_closing_validation_writes_that_epochs_record_when_run_again(trained_workdir, tmp_path,
                                                                                        monkeypatch):
    """Killed outright (no SIGTERM to finish on) while the last epoch is validated, after its
    checkpoint: metrics.jsonl lacks that epoch's record, perhaps ending in a line cut short. The
    rerun trains no step, validates and writes the record once (the uninterrupted run's
    val/accuracy); a rerun after that writes none."""
    w = str(tmp_path / "w")
    shutil.copytree(trained_workdir[0], w)
    os.remove(os.path.join(w, "thresholds.json"))
    path = os.path.join(w, "metrics.jsonl")
    records = [json.loads(line) for line in open(path)]
    closing = records[-1]
    assert closing["epoch"] == 2 and "val/accuracy" in closing
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records[:-1])
        f.write(json.dumps(closing)[:20])  # (killed mid-write)
    monkeypatch.setattr(gcj_train, "train_epoch", lambda *a, **k: pytest.fail("trained again"))
    for _ in range(2):
        resumed = train_and_evaluate(smoke_config(), w)
        lines = open(path).read().splitlines()
        written = [json.loads(line) for line in lines[len(records):]]
        assert lines[len(records) - 1] == json.dumps(closing)[:20]
        assert written == [{"step": 12, "epoch": 2, "val/accuracy": closing["val/accuracy"]}]
    for name, values in trained_workdir[1].thresholds.items():
        np.testing.assert_allclose(resumed.thresholds[name], values, rtol=1e-6, atol=1e-3)  # nats


def test_a_preempted_program_exits_143_and_says_where_to_resume():
    """What train.py does with the ``Preempted`` that training raises on SIGTERM (tested above):
    one line, exit status 143."""
    code = ("import sys\nfrom gcj import cli\nfrom gcj.errors import Preempted\n"
            "def main(argv):\n    raise Preempted('stopped by SIGTERM at step 4 (epoch 1): checkpoint saved in w; "
            "run the same command to resume from it')\nsys.argv = ['train.py']\ncli.run(main)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == Preempted.EXIT_STATUS == 143
    assert r.stderr == ("train.py: stopped by SIGTERM at step 4 (epoch 1): checkpoint saved in w; run the same "
                        "command to resume from it\n")


def test_a_checkpoint_of_another_model_is_named_not_set_aside(trained_workdir, tmp_path, monkeypatch):
    """Resuming with another width: the difference is named from the saved metadata, before any
    array is read (a failed read leaves orbax's reads running past it); no checkpoint is moved or
    skipped, and the workdir's config.json is still the one its checkpoints were saved with."""
    workdir = str(tmp_path / "w")
    shutil.copytree(trained_workdir[0], workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    config_before = open(os.path.join(workdir, "config.json")).read()
    reads = []
    read = ocp.CheckpointManager.restore
    monkeypatch.setattr(ocp.CheckpointManager, "restore", lambda mgr, *a, **k: reads.append(a) or read(mgr, *a, **k))
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"holds another model than this config's \(.* is "
                                                                 r"saved as \(.*\) float32, this model has"):
        train_and_evaluate(smoke_config(**{"model.sdim.rep_dim": 16}), workdir)
    assert reads == []
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
    assert open(os.path.join(workdir, "config.json")).read() == config_before
    assert gcj.load(workdir) is not None


def test_a_released_checkpoint_loads_but_does_not_resume(trained_workdir, tmp_path):
    """A workdir whose checkpoints hold the model variables only (``bench/package.sh``, as under
    ``pretrained/``): ``gcj.load`` reads it; training says why it cannot resume, touching nothing."""
    workdir = str(tmp_path / "w")
    shutil.copytree(trained_workdir[0], workdir)
    for step in os.listdir(os.path.join(workdir, "checkpoints")):
        shutil.rmtree(os.path.join(workdir, "checkpoints", step, "train"))
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    assert gcj.load(workdir) is not None
    with pytest.raises(checkpoint.VariablesOnlyError, match=r"at step 12 in .* holds the model variables only .* "
                                                            r"training cannot resume from it"):
        train_and_evaluate(smoke_config(), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_a_failure_that_is_not_corruption_is_reported_as_itself(trained_workdir, monkeypatch):
    """An I/O error or lack of memory while reading is not an unreadable checkpoint: no fallback."""
    for error in (OSError(5, "Input/output error"), MemoryError("out of memory")):
        def fail(self, *args, error=error, **kw):
            raise error
        monkeypatch.setattr(ocp.CheckpointManager, "restore", fail)
        with pytest.raises(checkpoint.CheckpointReadError, match=f"could not read the checkpoint at step 12 .*"
                                                                 f"{type(error).__name__}"):
            gcj.load(trained_workdir[0])


def _tmpfs(path, size: str) -> str | None:
    """Mounts a tmpfs of ``size`` at ``path``; why not, if it cannot."""
    if os.geteuid() != 0:
        return "mounting a small filesystem needs root"
    os.makedirs(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, text=True)
    return None if r.returncode == 0 else f"mount -t tmpfs failed: {r.stderr.strip()}"


@pytest.mark.slow
def test_a_full_disk_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    """A workdir on a 1 MB filesystem (room for one checkpoint of the smoke model, not two):
    training stops with one line that says the disk is full (orbax's threads print tracebacks of
    their own before it), within the timeout (no writer thread left blocked); the last good
    checkpoint loads, and the next run removes the half-written one (never taken as the newest:
    orbax lists complete checkpoints only)."""
    mnt = str(tmp_path / "small")
    why = _tmpfs(mnt, "1m")
    if why:
        pytest.skip(why)
    try:
        w = os.path.join(mnt, "w")
        r = subprocess.run([*TRAIN, "--workdir", w, "--cpu_devices", "1", "--config.num_epochs=30"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and r.stderr.count("train.py: error:") == 1, r.stderr[-3000:]
        # (the checkpoint's error even where a metrics write meets the full disk first: training
        # awaits the save in progress before it reports the metrics)
        assert last.startswith("train.py: error: could not save the checkpoint of step 12 in ") and \
            "no space left on device" in last and "the last good checkpoint (step 6) is intact" in last
        assert checkpoint_steps(w) == [6]
        clf = gcj.load(w)
        assert np.all(np.isfinite(clf.class_log_likelihoods(np.zeros((1, 32, 32, 1), np.float32))))
        checkpoint.manager(w, training=True).close()  # what the next run does first
        assert os.listdir(os.path.join(w, "checkpoints")) == ["6"]
    finally:
        subprocess.run(["umount", mnt], capture_output=True)
