"""Where the out-set's log p(x) falls in the training distribution (why a test fails or works):
percentiles of log p(x) (nats) on the first N training, test and out-set images of a workdir.

    .venv/bin/python bench/ood_quantiles.py pretrained/ibinn_fashion_mnist_beta1 \
        pretrained/ibinn_fashion_mnist_betainf > bench/results/fashion_mnist_ood_quantiles.txt
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import classifier, data  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workdirs", nargs="+")
    p.add_argument("--ood_dataset", default="mnist5k")
    p.add_argument("--ood_split", default="all")
    p.add_argument("--num", type=int, default=3000)
    args = p.parse_args()
    for workdir in args.workdirs:
        clf = gcj.load(workdir)
        d = clf.config.data

        def log_px(split):
            ll = classifier.batched_log_likelihoods(clf, split.images[:args.num], 500)
            return np.asarray(classifier.log_marginal(ll))

        train = log_px(data.load_dataset(d, "train"))
        ood = data.load(args.ood_dataset, args.ood_split, d.data_dir or None)
        ood = data.Split(data.to_shape(ood.images, d.image_size, d.channels, d.resize), ood.labels)
        sets = dict(train=train, test=log_px(data.load_dataset(d, "test")), ood=log_px(ood))
        print(f"{workdir}: log p(x) percentiles 1 / 5 / 50 / 95 / 99 of the first {args.num} images")
        for name, v in sets.items():
            print(f"  {name:5s} " + " ".join(f"{q:9.1f}" for q in np.percentile(v, [1, 5, 50, 95, 99])))
        lo, hi = np.percentile(train, [1, 99])
        print(f"  {args.ood_dataset}: {100 * np.mean(sets['ood'] > hi):.1f}% above the training 99th "
              f"percentile, {100 * np.mean(sets['ood'] < lo):.1f}% below its 1st")


if __name__ == "__main__":
    main()
