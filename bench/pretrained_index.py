"""The table of committed models at the top of pretrained/README.md, generated from each model's own
files (config.json, metrics.jsonl, report/report.json): family, data, epochs trained, the config
evaluated, and its headline numbers. tests/test_pretrained.py checks that the README's table is
this one (every model listed, no number copied by hand).

    .venv/bin/python bench/pretrained_index.py            # prints the table
    .venv/bin/python bench/pretrained_index.py --write    # puts it in pretrained/README.md
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from gcj.metric_writer import records  # noqa: E402

PRETRAINED = os.path.join(ROOT, "pretrained")
START, END = "<!-- index: bench/pretrained_index.py -->", "<!-- end of index -->"


def _row(name: str) -> str:
    d = os.path.join(PRETRAINED, name)
    config = json.load(open(os.path.join(d, "config.json")))
    epochs = [r["epoch"] for r in records(d) if "epoch" in r]  # (steps logged: a run stopped after its
    # last step, before that epoch's summary, still trained it)
    report = json.load(open(os.path.join(d, "report", "report.json")))
    c = report.get("clean", {})
    numbers = [f"accuracy {100 * c['accuracy']:.2f}%"] if "accuracy" in c else []
    if "bits_per_dim" in c:
        numbers.append(f"{c['bits_per_dim']:.2f} bits/dim")
    for out, r in report.get("ood", {}).items():
        numbers.append(f"OOD {out} AUROC {100 * r['auroc']:.1f}%")
    if "interpolation" in report:
        numbers.append(f"paths never rejected {100 * report['interpolation']['fraction_never_rejected']:.1f}%")
    data = config["data"]
    return (f"| `{name}` | {config['model']['family']} | {data['name']} {data['image_size']}×{data['image_size']} | "
            f"{max(epochs) if epochs else 0} of {config['num_epochs']} | {report.get('num_test', '?')} | "
            f"{'; '.join(numbers)} | {report.get('gcj_version') or '< 0.2'} |")


def table() -> str:
    names = sorted(n for n in os.listdir(PRETRAINED) if os.path.isdir(os.path.join(PRETRAINED, n)))
    return "\n".join(["| model | family | data | epochs | test images | headline (report/report.json) | report of gcj |",
                      "|---|---|---|---|---|---|---|", *map(_row, names)]) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    text = table()
    if not args.write:
        print(text, end="")
        return
    path = os.path.join(PRETRAINED, "README.md")
    s = open(path).read()
    i, j = s.index(START) + len(START), s.index(END)
    open(path, "w").write(s[:i] + "\n" + text + s[j:])


if __name__ == "__main__":
    main()
