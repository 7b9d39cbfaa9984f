"""gcj: generative classifiers in JAX. One contract: log p(x|y) as [batch, classes] in nats.

Public API: ``load``, ``create``, ``Classifier``, ``log_posterior``, ``log_marginal``, and the
modules ``data``, ``rejection``, ``metrics`` (written once against the contract).
"""
from gcj import data, metrics, rejection
from gcj.classifier import Classifier, check_images, create, load, log_marginal, log_posterior

__all__ = ["Classifier", "check_images", "create", "load", "log_marginal", "log_posterior", "data",
           "metrics", "rejection"]
