"""Evaluates a train.py workdir (gcj-evaluate, or python evaluate.py):
python evaluate.py --workdir <dir> --suites clean,rejection,ood,calibration --ood_dataset mnist5k --out report.json
python evaluate.py --workdir <dir> --suites clean,adversarial,corruptions,interpolation,nll_gap --out report.json
"""
from absl import flags

from gcj import cli
from gcj.evaluate import DEFAULT_SUITES, SUITES, evaluate, format_tables
from gcj.robustness import Options

flags.DEFINE_string("workdir", None, "A train.py workdir.")
flags.DEFINE_list("suites", list(DEFAULT_SUITES), f"Comma-separated suites: {','.join(SUITES)}.")
flags.DEFINE_list("ood_dataset", [], "Out-of-distribution datasets for the 'ood' suite, e.g. mnist5k.")
flags.DEFINE_string("ood_split", "test", "Split of the OOD datasets ('all' for mnist5k / digits).")
flags.DEFINE_string("data_dir", None, "Directory of IDX / CIFAR-10 binary / TFDS data for OOD sets.")
flags.DEFINE_integer("max_images", None, "Score at most this many training / OOD images (a seeded "
                     "random subset; the test set is always whole). For expensive likelihoods.")
flags.DEFINE_integer("max_test_images", None, "Use a seeded random subset of this many test images "
                     "(default: all). For expensive likelihoods.")
flags.DEFINE_string("out", None, "JSON report path; PNG plots are written beside it.")
_O = Options()
flags.DEFINE_integer("attack_images", _O.attack_images, "adversarial: correctly classified test images attacked.")
flags.DEFINE_integer("black_box_images", _O.black_box_images, "adversarial: images for boundary / LocalSearch.")
flags.DEFINE_list("attacks", [], "adversarial: attack names to run (default all; see gcj.robustness.default_attacks).")
flags.DEFINE_integer("cw_steps", _O.cw_steps, "adversarial: CW L2 steps at most.")
flags.DEFINE_integer("boundary_steps", _O.boundary_steps, "adversarial: boundary attack steps.")
flags.DEFINE_integer("ls_rounds", _O.ls_rounds, "adversarial: LocalSearch rounds.")
flags.DEFINE_enum("corruption_source", _O.corruption_source, ["auto", "tfds", "generated"],
                  "corruptions: TFDS cifar10_corrupted, or generated offline by gcj.corruptions.")
flags.DEFINE_integer("corruption_images", _O.corruption_images, "corruptions: first N test images per set.")
flags.DEFINE_list("corruptions", [], "corruptions: names (default all 15).")
flags.DEFINE_string("baseline_report", None, "corruptions: report.json of the mCE baseline model.")
flags.DEFINE_integer("interpolation_pairs", _O.interpolation_pairs, "interpolation: number of image pairs.")
flags.mark_flags_as_required(["workdir"])


def _main(argv):
    del argv  # (cli.run refuses extra arguments)
    f = flags.FLAGS
    options = Options(f.attack_images, f.black_box_images, tuple(f.attacks), f.cw_steps,
                      f.boundary_steps, f.ls_rounds, f.corruption_source, f.corruption_images,
                      tuple(f.corruptions), f.baseline_report, f.interpolation_pairs)
    report = evaluate(f.workdir, f.suites, f.ood_dataset, f.out, f.ood_split, f.data_dir,
                      max_images=f.max_images, options=options, max_test_images=f.max_test_images)
    print(format_tables(report))
    if f.out:
        print(f"report: {f.out}")


def main():
    """The ``gcj-evaluate`` entry point."""
    cli.run(_main, __name__)
