"""The committed models load from a fresh checkout and still score what their reports say."""
import json
import os

import numpy as np
import pytest

import gcj
from conftest import ROOT
from gcj import data

NAMES = ["sdim_fashion_mnist", "disc_fashion_mnist", "sdim_logit_fashion_mnist"]


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DIR), reason="apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("name", NAMES)
def test_pretrained_model_matches_its_report(name):
    path = os.path.join(ROOT, "pretrained", name)
    clf = gcj.load(path)
    report = json.load(open(os.path.join(path, "report", "report.json")))
    test = data.load_dataset(clf.config.data, "test")
    n = 1000
    ll = gcj.classifier.batched_log_likelihoods(clf, test.images[:n], 500)
    acc = float(np.mean(ll.argmax(1) == test.labels[:n]))
    # the first 1000 test images: within 3 standard errors of the full-test accuracy in the report
    p = report["clean"]["accuracy"]
    assert abs(acc - p) < 3 * np.sqrt(p * (1 - p) / n), (acc, p)
    rejected = gcj.rejection.reject(ll, np.asarray(clf.thresholds["p1"])).mean()
    assert abs(rejected - report["rejection"]["p1"]["rejection_rate"]) < 0.03
