"""The command-line programs: a user's mistake (``gcj.UserError``) is one line and exit status 2;
anything else is a bug and keeps its traceback."""
import subprocess
import sys

from conftest import ROOT

PROGRAM = """
import sys
from gcj import cli, UserError
def main(argv):
    raise {error}
sys.argv = ["prog"]
cli.run(main)
"""


def _run(error: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM.format(error=error)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", **env})


def test_a_user_error_is_one_line_and_status_2():
    r = _run('UserError("pixels must be in [0, 1],\\n   got [0, 3]")')
    assert r.returncode == 2 and r.stderr == "prog: error: pixels must be in [0, 1], got [0, 3]\n"


def test_a_bug_shows_its_traceback():
    for error in ('KeyError("model")', 'OSError("disk")'):  # (once taken for a user's mistake)
        r = _run(error)
        assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr, r.stderr
        assert "prog: error:" not in r.stderr


def test_gcj_debug_shows_a_user_errors_traceback():
    r = _run('UserError("bad")', GCJ_DEBUG="1")
    assert r.returncode == 1 and "Traceback" in r.stderr and "UserError: bad" in r.stderr


def test_an_error_ends_the_process_whatever_threads_are_left():
    """A library's non-daemon thread (orbax's signalling threads) does not keep a failed program
    alive: a user error or a bug ends it at once."""
    for error, status in (('UserError("disk full")', 2), ('RuntimeError("a bug")', 1)):
        code = PROGRAM.replace("def main(argv):", "import threading, time\ndef main(argv):\n"
                               "    threading.Thread(target=time.sleep, args=(3600,)).start()")
        r = subprocess.run([sys.executable, "-c", code.format(error=error)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == status, r.stderr[-2000:]


def test_split_cpu_devices_wait_for_each_other_at_collectives():
    """use_cpu_devices gives XLA:CPU's collectives timeouts this XLA accepts (an unknown flag
    aborts the process) and long enough for a job sharing its cores; a user's own XLA_FLAGS win."""
    code = ("import os, jax, jax.numpy as jnp\nfrom gcj import cli\nn = cli.use_cpu_devices(2)\n"
            "mesh = jax.make_mesh((len(jax.devices()),), ('d',))\n"  # a sum over the devices: an all-reduce
            "x = jax.device_put(jnp.arange(6.0), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('d')))\n"
            "print(n, len(jax.devices()), float(jax.jit(jnp.sum)(x)), os.environ.get('XLA_FLAGS', ''))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[:3] == ["2", "2", "15.0"] and "terminate_timeout_seconds=3600" in r.stdout
    own = "--xla_force_host_platform_device_count=3"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "XLA_FLAGS": own})
    assert r.returncode == 0 and r.stdout.split() == ["0", "3", "15.0", own], r.stderr[-2000:]
