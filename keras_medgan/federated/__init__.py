"""Federated GAN training on Flower (paper 003, Sec. 3.2: three hospitals, FedAvg, weights exchanged every 100
iterations).

``adapter`` holds what a GAN must offer to be trained federated (``GANAdapter``) and the FedAvg maths used to
check Flower's result; ``client`` builds a Flower ``ClientApp`` around an adapter; ``server`` builds the
``ServerApp`` (FedAvg weighted by example count, failure tolerance, per-round checkpoints) and runs the
simulation engine. Only ``adapter`` imports without Flower: ``client`` and ``server`` need the ``federated``
extra (``pip install -e ".[federated]"``); ``require_flower()`` says so in one message.
"""

INSTALL_HINT = ('Federated training needs Flower: pip install -e ".[federated]" (or pip install "flwr[simulation]").')


def require_flower():
    """Imports and returns ``flwr``; raises ``ImportError`` with the install command when it is missing."""
    try:
        import flwr
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return flwr
