"""Several processes on one mesh through jax.distributed: two real processes on localhost (CPU, gloo
collectives) train as one process with two devices does (one device each), and evaluate as one
process on one device does (two devices each: the attack batches split over them); only the
first writes; a killed process ends the other with a message, and a restart of both resumes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from gcj.evaluate import evaluate

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script: str, args: list, port: int, processes: int = 2, devices: int = 1) -> list:
    """``processes`` copies of ``script`` joined on 127.0.0.1:``port``, ``devices`` CPU devices each."""
    return [subprocess.Popen([sys.executable, script, *args, "--cpu_devices", str(devices), "--distributed_timeout", "20",
                              "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(processes),
                              "--process_id", str(i)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for i in range(processes)]


def _finish(procs, timeout: float = 240) -> list:
    """(return code, stdout, stderr) of each process, once it ended."""
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def _epochs(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if "epoch_seconds" in r]


def test_two_processes_train_as_one(trained_workdir, tmp_path):
    workdir = str(tmp_path / "w")
    runs = _finish(_launch("train.py", ["--config", "configs/demo.py:smoke", "--workdir", workdir], _port()))
    assert [rc for rc, _, _ in runs] == [0, 0], runs[0][2][-2000:] + runs[1][2][-2000:]
    assert "epoch=2" in runs[0][1] and "epoch=" not in runs[1][1]  # the first process logs
    # only the first process wrote: one event file, each metrics line once
    files = sorted(os.listdir(workdir))
    assert [f for f in files if "tfevents" not in f] == ["checkpoints", "config.json", "metrics.jsonl", "thresholds.json"]
    assert sum("tfevents" in f for f in files) == 1
    one = _epochs(trained_workdir[0])
    two = _epochs(workdir)
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for a, b in zip(two, one):  # the global batch split over two processes: the same training
        for k in ("train/loss", "train/nll", "train/mi", "train/margin"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), k
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["provenance"]["process_count"] == 2 and config["provenance"]["device_count"] == 2


def test_two_processes_evaluate_as_one(trained_workdir, tmp_path):
    """Two devices per process: the images scored on the mesh of all four, the attack batches
    dealt to the processes (batches of 4: each process attacks some, split over its two devices),
    one report equal to one process's on one device."""
    workdir = trained_workdir[0]
    out = tmp_path / "report" / "report.json"
    suites = "clean,rejection,calibration,adversarial"
    attack = dict(attacks=("fgsm_linf_8", "pgd_linf_8_margin"), attack_images=10)
    runs = _finish(_launch("evaluate.py", ["--workdir", workdir, "--suites", suites, "--out", str(out),
                                           "--set", "eval_batch_size=4", "--attacks", ",".join(attack["attacks"]),
                                           "--attack_images", "10"], _port(), devices=2))
    assert [rc for rc, _, _ in runs] == [0, 0], runs[0][2][-2000:] + runs[1][2][-2000:]
    assert "clean accuracy" in runs[0][1] and "clean accuracy" not in runs[1][1]
    two = json.load(open(out))
    one = evaluate(workdir, tuple(suites.split(",")), log=lambda *_: None, options=attack,
                   overrides={"eval_batch_size": "4"})
    assert two["provenance"]["process_count"] == 2 and two["provenance"]["device_count"] == 4
    for suite, key in (("clean", "accuracy"), ("calibration", "ece"), ("calibration", "entropy")):
        assert two[suite][key] == pytest.approx(one[suite][key], rel=1e-5, abs=1e-6)
    assert two["rejection"]["p1"] == pytest.approx(one["rejection"]["p1"], rel=1e-5, abs=1e-6)
    assert two["adversarial"]["num_images"] == one["adversarial"]["num_images"] > 4
    for name in attack["attacks"]:
        a, b = two["adversarial"]["attacks"][name], one["adversarial"]["attacks"][name]
        for key in ("success_rate", "success_rate_attack_draw", "accuracy", "mean_linf"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6, nan_ok=True), (name, key)


def test_a_killed_process_ends_the_other_and_a_restart_resumes(tmp_path):
    workdir = str(tmp_path / "w")
    args = ["--config", "configs/demo.py:smoke", "--workdir", workdir, "--config.num_epochs=1000"]
    procs = _launch("train.py", args, _port())
    deadline = time.time() + 120
    while not (os.path.exists(os.path.join(workdir, "metrics.jsonl")) and len(_epochs(workdir)) >= 2):
        assert time.time() < deadline and procs[0].poll() is None, "training did not start"
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    rc, out, err = _finish(procs[:1], timeout=90)[0]
    assert rc != 0 and time.time() - killed < 60
    # gcj's line where Python sees the lost peer first (a collective fails), else JAX's own when its
    # coordination service ends the process (the heartbeat stops: --distributed_timeout)
    ours = [line for line in err.splitlines() if line.startswith("train.py: error: a process of this run stopped")]
    theirs = ("Terminating process because the JAX distributed service detected fatal errors. This most "
              "likely indicates that another task died")
    assert len(ours) == 1 or theirs in err, err[-3000:]
    procs[1].communicate()
    done = _epochs(workdir)[-1]["epoch"]
    restart = [a if not a.startswith("--config.num_epochs") else f"--config.num_epochs={done + 1}" for a in args]
    runs = _finish(_launch("train.py", restart, _port()))
    assert [r[0] for r in runs] == [0, 0], runs[0][2][-2000:]
    assert "resumed from step" in runs[0][1] and _epochs(workdir)[-1]["epoch"] == done + 1
    np.testing.assert_array_less(0, len(json.load(open(os.path.join(workdir, "thresholds.json")))))


def test_bad_launches_end_with_one_line():
    """A process id out of range, a coordinator nobody runs, processes started with different
    configs: each ends at once (or after --distributed_timeout) with one line, never a hang."""
    def run(*extra, timeout=120):
        return subprocess.run([sys.executable, "train.py", "--config", "configs/demo.py:smoke", "--workdir",
                               "/nonexistent/never", "--cpu_devices", "1", *extra], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
    r = run("--coordinator_address", "127.0.0.1:1", "--num_processes", "2", "--process_id", "2")
    assert r.returncode == 2 and r.stderr == "train.py: error: --process_id must be in 0 .. 1, got 2\n"
    r = run("--coordinator_address", f"127.0.0.1:{_port()}", "--num_processes", "2", "--process_id", "1",
            "--distributed_timeout", "3")
    errors = [line for line in r.stderr.splitlines() if line.startswith("train.py: error:")]
    assert r.returncode == 2 and len(errors) == 1 and "cannot be reached within 3 s" in errors[0], r.stderr[-2000:]
    port = _port()
    procs = [subprocess.Popen([sys.executable, "train.py", "--config", "configs/demo.py:smoke", "--workdir",
                               "/nonexistent/never", "--cpu_devices", "1", f"--config.optim.lr={lr}",
                               "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                               "--process_id", str(i)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i, lr in enumerate((1e-3, 1e-2))]
    for rc, _, err in _finish(procs, timeout=120):
        assert rc == 2 and "train.py: error: the processes were started with different configs" in err, err[-2000:]
