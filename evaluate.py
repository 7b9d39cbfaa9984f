"""Evaluates a train.py workdir:
python evaluate.py --workdir <dir> --suites clean,rejection,ood,calibration --ood_dataset mnist5k --out report.json
"""
from absl import app, flags, logging

from gcj.evaluate import SUITES, evaluate, format_tables

flags.DEFINE_string("workdir", None, "A train.py workdir.")
flags.DEFINE_list("suites", list(SUITES), f"Comma-separated suites: {','.join(SUITES)}.")
flags.DEFINE_list("ood_dataset", [], "Out-of-distribution datasets for the 'ood' suite, e.g. mnist5k.")
flags.DEFINE_string("ood_split", "test", "Split of the OOD datasets ('all' for mnist5k / digits).")
flags.DEFINE_string("data_dir", None, "Directory of IDX / CIFAR-10 binary / TFDS data for OOD sets.")
flags.DEFINE_integer("max_images", None, "Score at most this many training / OOD images (a seeded "
                     "random subset; the test set is always whole). For expensive likelihoods.")
flags.DEFINE_string("out", None, "JSON report path; PNG plots are written beside it.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    report = evaluate(f.workdir, f.suites, f.ood_dataset, f.out, f.ood_split, f.data_dir,
                      max_images=f.max_images)
    print(format_tables(report))
    if f.out:
        print(f"report: {f.out}")


if __name__ == "__main__":
    app.run(main)
