"""Runnable recipes: ``python -m keras_medgan.recipes.<name>``; each has ``get_config(preset)`` and ``main()``."""

import os

# Keep TensorFlow's C++ info logs (oneDNN, CUDA probing) off a newcomer's terminal; warnings and errors stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
