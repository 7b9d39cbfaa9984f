"""The README's Python blocks run as written, in order, in one namespace (on committed models)."""
import os
import re

import pytest

from conftest import ROOT


def _blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 3


@pytest.mark.slow  # (the attacks block compiles nine attacks)
@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_python_block_runs(index, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = _blocks()[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {})


def test_readme_counts_the_default_attacks():
    from gcj.suites import adversarial

    with open(os.path.join(ROOT, "README.md")) as f:
        said = re.search(r"`--suites adversarial` runs (\d+) attacks", f.read())
    assert said and int(said.group(1)) == len(adversarial.default_attacks())
