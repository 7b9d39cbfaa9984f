"""gcj: generative classifiers in JAX. One contract: log p(x|y) as [batch, classes] in nats.

Public API: ``load``, ``create``, ``Classifier``, ``check_images``, ``log_posterior``,
``log_marginal``, ``UserError``, and the modules ``data``, ``rejection``, ``metrics`` (written once
against the contract), ``diffusion`` (SDEs and probability-flow ODE likelihoods for any score
function), ``attacks`` (by name in ``attacks.ATTACKS``), ``corruptions``, ``suites`` (the
evaluation suites, by name in ``suites.SUITES``) and ``keys`` (random keys by name).
"""
from gcj import attacks, corruptions, data, diffusion, keys, metrics, rejection, suites
from gcj.classifier import Classifier, check_images, create, load
from gcj.errors import UserError
from gcj.ops import log_marginal, log_posterior
from gcj.version import __version__

__all__ = ["__version__", "Classifier", "UserError", "check_images", "create", "load", "log_marginal",
           "log_posterior", "data", "attacks", "corruptions", "diffusion", "keys", "metrics", "rejection",
           "suites"]
