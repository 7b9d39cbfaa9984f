"""Trains a gcj classifier: gcj-train (or python train.py) --config configs/<name>.py --workdir <dir>
[--config.k=v]"""
import sys

from absl import flags
from ml_collections import config_flags

from gcj import cli
from gcj.train import train_and_evaluate

config_flags.DEFINE_config_file("config", None, "Python config file (configs/<name>.py[:smoke]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where config.json, metrics.jsonl, checkpoints go; resumes.")
flags.DEFINE_integer("cpu_devices", 0, "On the CPU: JAX devices the batch is sharded over (0: the most "
                     "cores, up to 8, that divide the batch size; 1: no split).")
cli.define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def _main(argv):
    del argv  # (cli.run refuses extra arguments)
    f = flags.FLAGS
    cli.use_cpu_devices(f.cpu_devices, [f.config.batch_size])
    cli.use_distributed(f.coordinator_address, f.num_processes, f.process_id, f.distributed, f.distributed_timeout,
                        cli.launch(sys.argv, f.config.to_json()))
    train_and_evaluate(f.config, f.workdir)


def main():
    """The ``gcj-train`` entry point."""
    cli.run(_main, __name__)
