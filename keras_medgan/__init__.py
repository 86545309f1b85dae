"""keras-medgan: synthetic medical images with GANs in Keras 3, judged honestly."""

__version__ = "0.1.0"
