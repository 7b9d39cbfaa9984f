"""Evaluates a train.py workdir (gcj-evaluate, or python evaluate.py):
python evaluate.py --workdir <dir> --suites clean,rejection,ood,calibration --ood_dataset mnist5k --out report.json
python evaluate.py --workdir <dir> --suites clean,adversarial,corruptions,interpolation,nll_gap --out report.json
"""
import os
import sys

import jax
from absl import flags

from gcj import cli
from gcj.errors import UserError
from gcj.evaluate import DEFAULT_SUITES, evaluate, format_tables
from gcj.suites import SUITES

flags.DEFINE_string("workdir", None, "A train.py workdir.")
flags.DEFINE_list("suites", list(DEFAULT_SUITES), f"Comma-separated suites: {','.join(SUITES)}.")
flags.DEFINE_list("ood_dataset", [], "Out-of-distribution datasets for the 'ood' suite, e.g. mnist5k.")
flags.DEFINE_string("ood_split", "test", "Split of the OOD datasets ('all' for mnist5k / digits).")
flags.DEFINE_string("data_dir", None, "Directory of IDX / CIFAR-10 binary / TFDS data for OOD sets.")
flags.DEFINE_integer("max_images", None, "Score at most this many training / OOD images (a seeded "
                     "random subset; the test set is always whole). For expensive likelihoods.")
flags.DEFINE_integer("max_test_images", None, "Use a seeded random subset of this many test images "
                     "(default: all). For expensive likelihoods.")
flags.DEFINE_string("out", None, "JSON report path; PNG plots are written beside it (default: "
                    "<workdir>/report/report.json).")
flags.DEFINE_multi_string("set", [], "key=value: a config setting changed for this evaluation, e.g. "
                          "--set model.score.ode.num_probes=10 (paper 004's OOD probes); repeatable.")
flags.DEFINE_integer("cpu_devices", 0, "On the CPU: JAX devices the batches are sharded over (0: one per "
                     "core, up to 8; 1: no split).")
cli.define_distributed_flags()
flags.DEFINE_bool("save_log_likelihoods", False, "Also write the test images' [N, C] log-likelihoods (with "
                  "their test-set positions and labels) beside --out, as <name>_log_likelihoods.npz.")
flags.DEFINE_bool("resumable", False, "Keep the scored batches (test, training, OOD and corrupted sets) and "
                  "the attacked ones (each attack's batches, then its judged images) beside --out (<name>_scores/, "
                  "removed once the report is written): the same command, run again after a stop, resumes at the "
                  "next batch. For expensive likelihoods (the score family's ODE).")
flags.DEFINE_bool("plots", True, "Write each suite's PNG plot beside --out (--noplots: the JSON only).")


def _define(option, suite: str) -> None:
    """The flag of a suite's option, its type from its default."""
    help_ = f"{suite}: {option.help}"
    if option.choices:
        flags.DEFINE_enum(option.name, option.default, list(option.choices), help_)
    elif isinstance(option.default, tuple):
        flags.DEFINE_list(option.name, list(option.default), help_)
    elif isinstance(option.default, bool):
        flags.DEFINE_bool(option.name, option.default, help_)
    elif isinstance(option.default, int):
        flags.DEFINE_integer(option.name, option.default, help_)
    elif isinstance(option.default, float):
        flags.DEFINE_float(option.name, option.default, help_)
    else:
        flags.DEFINE_string(option.name, option.default, help_)


for _suite in SUITES.values():  # each suite's own options (gcj/suites/<name>.py)
    for _option in _suite.options:
        _define(_option, _suite.name)
flags.mark_flags_as_required(["workdir"])


def _main(argv):
    del argv  # (cli.run refuses extra arguments)
    f = flags.FLAGS
    cli.use_cpu_devices(f.cpu_devices)
    cli.use_distributed(f.coordinator_address, f.num_processes, f.process_id, f.distributed, f.distributed_timeout,
                        cli.launch(sys.argv))
    options = {o.name: tuple(map(o.item, f[o.name].value)) if isinstance(o.default, tuple)
               else f[o.name].value for s in SUITES.values() for o in s.options}
    suites, out = list(f.suites), f.out or os.path.join(f.workdir, "report", "report.json")
    if "ood" in suites and not f.ood_dataset and not f["suites"].present:  # the defaults just run
        suites.remove("ood")
        if jax.process_index() == 0:
            print("(the ood suite needs --ood_dataset, e.g. mnist5k: left out)")
    report = evaluate(f.workdir, suites, f.ood_dataset, out, f.ood_split, f.data_dir,
                      max_images=f.max_images, options=options, max_test_images=f.max_test_images,
                      plots=f.plots, overrides=_overrides(f.set), save_log_likelihoods=f.save_log_likelihoods,
                      resumable=f.resumable)
    if jax.process_index() == 0:  # (every process computes the report; the first writes and prints it)
        print(format_tables(report))
        print(f"report: {out}")


def _overrides(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set takes key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def main():
    """The ``gcj-evaluate`` entry point."""
    cli.run(_main, __name__)
