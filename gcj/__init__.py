"""gcj: generative classifiers in JAX. One contract: log p(x|y) as [batch, classes]."""
from gcj.classifier import Classifier, create, load, log_marginal, log_posterior

__all__ = ["Classifier", "create", "load", "log_marginal", "log_posterior"]
