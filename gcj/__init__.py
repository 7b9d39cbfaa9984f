"""gcj: generative classifiers in JAX. One contract: log p(x|y) as [batch, classes] in nats.

Public API: ``load``, ``create``, ``Classifier``, ``log_posterior``, ``log_marginal``, and the
modules ``data``, ``rejection``, ``metrics`` (written once against the contract) and
``diffusion`` (SDEs and probability-flow ODE likelihoods for any score function), ``attacks``,
``corruptions`` and ``robustness`` (the robustness suites).
"""
__version__ = "0.4.1"

from gcj import attacks, corruptions, data, diffusion, metrics, rejection, robustness
from gcj.classifier import Classifier, check_images, create, load, log_marginal, log_posterior

__all__ = ["__version__", "Classifier", "check_images", "create", "load", "log_marginal", "log_posterior", "data",
           "attacks", "corruptions", "diffusion", "metrics", "rejection", "robustness"]
