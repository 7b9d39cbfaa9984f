"""gcj's version, and what made a file: recorded in every config.json and report it writes."""
import jax
import jaxlib

__version__ = "0.6.1"


def provenance() -> dict:
    """The software and devices of this run: gcj, jax and jaxlib versions, the backend, the kind and
    number of devices, the number of processes."""
    return dict(gcj=__version__, jax=jax.__version__, jaxlib=jaxlib.__version__, backend=jax.default_backend(),
                device_kind=jax.devices()[0].device_kind, device_count=jax.device_count(),
                process_count=jax.process_count())
