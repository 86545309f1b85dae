"""`medgan-data`: dataset preparation for keras-medgan (a thin click CLI over keras_medgan.data)."""

import os

# Keep TensorFlow's C++ info logs (oneDNN, CUDA probing) off the terminal; warnings and errors stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
