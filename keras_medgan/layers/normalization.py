"""The two normalizations of pix2pix, with PyTorch's defaults, behind one name."""

import keras

NORMS = ("batch", "instance")


def check_norm(norm):
    """Raises the standard ValueError unless `norm` is one of `NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {NORMS}. Received: norm={norm!r}")


def make_norm(norm, name=None):
    """Returns a fresh normalization layer matching pix2pix's `get_norm_layer`.

    - `"batch"`: `BatchNormalization` with PyTorch's `BatchNorm2d` defaults
      (`momentum=0.9`, the complement of PyTorch's 0.1, and `epsilon=1e-5`) and
      pix2pix's `init_weights` scale initialisation N(1, 0.02).
    - `"instance"`: PyTorch `InstanceNorm2d(affine=False)`, i.e. per-sample,
      per-channel normalization with no learned scale or offset:
      `GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5)`.

    Args:
        norm: str. `"batch"` or `"instance"`.
        name: str or None. Layer name.

    Example:

    >>> make_norm("instance", name="down_2_norm")
    <GroupNormalization name=down_2_norm, built=False>

    Reference:
        - [Isola et al., 2017. Image-to-Image Translation with Conditional
          Adversarial Networks](https://arxiv.org/abs/1611.07004); code:
          junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`.
    """
    check_norm(norm)
    if norm == "batch":
        return keras.layers.BatchNormalization(
            momentum=0.9,
            epsilon=1e-5,
            gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=0.02),
            name=name,
        )
    return keras.layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5, name=name)


def pix2pix_kernel_initializer():
    """A new N(0, 0.02) initializer (pix2pix `init_type='normal'`); new per layer so seeds differ."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)
