"""The Python blocks of the README and of the documentation pages run as written, each on its
own (on committed models)."""
import glob
import os
import re

import pytest

from conftest import ROOT
from gcj.suites import adversarial


PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))]


def _blocks():
    """(page, its n-th block, the code) of every ```python block."""
    out = []
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            out += [(page, n, code) for n, code in
                    enumerate(re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M), 1)]
    return out


def test_readme_has_python_blocks():
    pages = {page for page, _, _ in _blocks()}
    assert len(_blocks()) >= 3 and {"README.md", "docs/contract.md"} <= pages


@pytest.mark.slow  # (the attacks block compiles nine attacks)
@pytest.mark.parametrize("page,n,code", _blocks(), ids=[f"{p}:{n}" for p, n, _ in _blocks()])
def test_readme_python_block_runs(page, n, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(code, f"{page} python block {n}", "exec"), {})


def test_readme_counts_the_default_attacks():
    with open(os.path.join(ROOT, "docs", "suites", "adversarial.md")) as f:
        said = re.search(r"`--suites adversarial` runs (\d+) attacks", f.read())
    assert said and int(said.group(1)) == len(adversarial.default_attacks())
