"""gcj: generative classifiers in JAX. One contract: log p(x|y) as [batch, classes] in nats.

Public API: ``load``, ``create``, ``Classifier``, ``log_posterior``, ``log_marginal``, and the
modules ``data``, ``rejection``, ``metrics`` (written once against the contract) and
``diffusion`` (SDEs and probability-flow ODE likelihoods for any score function).
"""
from gcj import data, diffusion, metrics, rejection
from gcj.classifier import Classifier, check_images, create, load, log_marginal, log_posterior

__all__ = ["Classifier", "check_images", "create", "load", "log_marginal", "log_posterior", "data",
           "diffusion", "metrics", "rejection"]
