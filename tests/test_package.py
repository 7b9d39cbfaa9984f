"""gcj installs as a package: pyproject.toml's version and entry points are the code's."""
import os
import subprocess
import sys
import tomllib

import pytest
from packaging.version import Version

import gcj
from conftest import ROOT


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("entry_point", ["gcj-train", "gcj-evaluate"])
def test_entry_points_run(entry_point):
    """What the installed console script does: import the target and call it (here with --help)."""
    module, name = _pyproject()["project"]["scripts"][entry_point].split(":")
    code = f"import sys; sys.argv[0] = {entry_point!r}; from {module} import {name}; {name}()"
    r = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--workdir" in r.stdout, r.stderr[-2000:]  # (absl's --help exits with 1)


def test_version_and_dependencies_are_the_requirements():
    p = _pyproject()
    # (read without importing gcj: a build environment has no jax)
    assert p["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "gcj.version.__version__"}
    assert gcj.__version__.count(".") == 2
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        required = {line.split("#")[0].strip() for line in f} - {""}
    # requirements.txt = the package's dependencies + what the tests need
    assert set(p["project"]["dependencies"]) | set(p["project"]["optional-dependencies"]["test"]) == required


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_top_level_scripts_are_the_entry_points(script):
    r = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--workdir" in r.stdout, r.stderr[-2000:]


def test_constraints_pin_every_requirement_at_or_above_its_floor():
    """constraints.txt (what CI installs) pins each requirement at a version its floor admits."""
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        pins = {n.lower().replace("_", "-"): v for n, _, v in
                (line.strip().partition("==") for line in f if "==" in line)}
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        floors = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
    for req in floors:
        name, _, floor = req.partition(">=")
        assert Version(pins[name.lower()]) >= Version(floor), req
