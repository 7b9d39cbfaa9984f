"""The documentation names what the code writes: every key of every committed report is in the
table of its suite's page (docs/suites/<suite>.md; the top level in docs/suites/index.md), and
every registered attack and suite has its section."""
import glob
import json
import os
import re

from conftest import ROOT
from gcj import attacks, suites

DOCS = os.path.join(ROOT, "docs")


def _patterns(page: str) -> list[list[str]]:
    """The first column of a page's key tables, each split into its parts (``<name>``: any one)."""
    with open(os.path.join(DOCS, page)) as f:
        keys = re.findall(r"^\| `([^`-][^`]*)` \|", f.read(), re.M)  # (not the options' `--flag` rows)
    return [re.split(r"\.(?![^<]*>)", k) for k in keys]


def _part(p: str) -> str:
    """A regex of one part: ``<name>`` stands for any text (``<corruption>_<severity>``: gaussian_noise_3)."""
    return "".join(".+" if re.fullmatch(r"<[^>]+>", t) else re.escape(t) for t in re.split(r"(<[^>]+>)", p) if t)


def _matches(pattern: list[str], path: tuple, whole: bool = True) -> bool:
    """``path`` is ``pattern`` (``whole``) or, for an empty block, its beginning."""
    return (len(pattern) == len(path) if whole else len(pattern) >= len(path)) and all(
        re.fullmatch(_part(p), k) for p, k in zip(pattern, path))


def _leaves(block, path=()):
    """(path, whole) of each value; an empty dict is a beginning (``whole`` False)."""
    if isinstance(block, dict) and block:
        for k, v in block.items():
            yield from _leaves(v, (*path, str(k)))
    else:
        yield path, not (isinstance(block, dict) and path)


def _reports() -> dict:
    out = {}
    for f in sorted(glob.glob(os.path.join(ROOT, "pretrained", "*", "report", "*.json")) +
                    glob.glob(os.path.join(ROOT, "bench", "results", "**", "*.json"), recursive=True)):
        with open(f) as fh:
            r = json.load(fh)
        if isinstance(r, dict) and "gcj_version" in r:
            out[os.path.relpath(f, ROOT)] = r
    return out


def test_every_report_key_is_documented_on_its_suites_page():
    reports = _reports()
    assert len(reports) >= 20
    top = _patterns("suites/index.md")
    missing = set()
    for where, report in reports.items():
        for name, block in report.items():
            if name in suites.SUITES:
                patterns = _patterns(f"suites/{name}.md")
                missing |= {(name, ".".join(p)) for p, whole in _leaves(block)
                            if p and not any(_matches(q, p, whole) for q in patterns)}
            elif not any(q[0] == name for q in top):
                missing.add(("top level", name))
    assert not missing, sorted(missing)[:20]


def test_the_key_tables_fail_on_an_undocumented_key():
    patterns = _patterns("suites/ood.md")
    assert any(_matches(q, ("mnist5k", "detection_rate", "p1")) for q in patterns)
    assert not any(_matches(q, ("mnist5k", "detection_rate_made_up", "p1")) for q in patterns)


def test_every_suite_and_attack_has_its_section():
    for name, suite in suites.SUITES.items():
        with open(os.path.join(DOCS, "suites", f"{name}.md")) as f:
            page = f.read()
        assert not [o.name for o in suite.options if f"| `--{o.name}` |" not in page], name
    with open(os.path.join(DOCS, "attacks.md")) as f:
        sections = set(re.findall(r"^## `(\w+)`", f.read(), re.M))
    assert sections == set(attacks.ATTACKS)
