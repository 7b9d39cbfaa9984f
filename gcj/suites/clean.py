"""Test accuracy; bits/dim where log p(x|y) is a density of the pixels."""
import numpy as np

from gcj import classifier, diffusion, ops
from gcj.suites.base import Context, Suite, pct


def run(ctx: Context) -> dict:
    ll, labels = ctx.ll_test, ctx.test.labels
    out = dict(accuracy=float(np.mean(ll.argmax(1) == labels)))
    if ctx.clf.family.density:  # log p(x|y) is a density of the (dequantized) pixels
        dim = ctx.clf.density_dims  # (a padded Glow: its padded image)
        out["bits_per_dim"] = float(np.mean(diffusion.bits_per_dim(np.asarray(classifier.log_marginal(ll)), dim)))
        out["bits_per_dim_given_label"] = float(np.mean(diffusion.bits_per_dim(ops.pick(ll, labels), dim)))
    return out


def table(c: dict, report: dict) -> list:
    lines = [f"clean accuracy        {pct(c['accuracy'])}"]
    if "bits_per_dim" in c:
        lines.append(f"bits/dim              {c['bits_per_dim']:.3f} (given the label "
                     f"{c['bits_per_dim_given_label']:.3f})")
    return lines


SUITE = Suite("clean", run, table)
