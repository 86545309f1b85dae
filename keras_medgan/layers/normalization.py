"""The two normalizations of pix2pix, with PyTorch's defaults, behind one name."""

import keras

NORMS = ("batch", "instance")


def check_norm(norm):
    """Raises the standard ValueError unless `norm` is one of `NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {NORMS}. Received: norm={norm!r}")


def make_norm(norm, name=None):
    """Returns a fresh normalization layer matching pix2pix's `get_norm_layer`.

    - `"batch"`: `FusedBatchNormalization` (Keras `BatchNormalization`, one
      fused op on 4-D inputs) with PyTorch's `BatchNorm2d` defaults
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
    >>> make_norm("batch", name="down_2_norm")
    <FusedBatchNormalization name=down_2_norm, built=False>

    Reference:
        - [Isola et al., 2017. Image-to-Image Translation with Conditional
          Adversarial Networks](https://arxiv.org/abs/1611.07004); code:
          junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`.
    """
    check_norm(norm)
    if norm == "batch":
        return FusedBatchNormalization(
            momentum=0.9,
            epsilon=1e-5,
            gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=0.02),
            name=name,
        )
    return keras.layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5, name=name)


def pix2pix_kernel_initializer():
    """A new N(0, 0.02) initializer (pix2pix `init_type='normal'`); new per layer so seeds differ."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


@keras.saving.register_keras_serializable(package="keras_medgan")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs 4-D channels-last inputs as TensorFlow's fused kernel.

    Keras 3 normalizes with about a dozen element-wise ops (cast to float32, mean, squared difference,
    rsqrt, scale, shift, cast back) and differentiates each of them; `FusedBatchNormV3` does the same
    forward and backward in one op each, computing its statistics in float32 from bfloat16 or float16
    inputs as Keras does. On the pix2pix U-Net and PatchGAN shapes at 256 px, batch 4, bfloat16, the
    forward + backward of the normalizations went from 65 ms to 13 ms on the 2-core CPU of
    `docs/benchmarks.md` (issue 7).

    The result is Keras's to float32 rounding (`tests/layers/test_normalization.py`), including the
    moving statistics: the kernel returns the Bessel-corrected batch variance for running estimates,
    and this layer scales it back by `(n - 1) / n` so `moving_variance` tracks the biased variance, as
    Keras's does. Variables, config and checkpoints are `BatchNormalization`'s own.

    Falls back to `BatchNormalization.call` (same result, unfused) for anything else: another backend,
    a mask, `synchronized=True`, `renorm=True`, inputs that are not 4-D with the channel axis last, and
    training batches whose static size (batch x height x width) is unknown or 1.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        training = bool(training) and self.trainable
        count = inputs.shape[0] * inputs.shape[1] * inputs.shape[2] if None not in inputs.shape[:3] else None
        if training and (count is None or count < 2):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        empty = tf.constant([], tf.float32)
        outputs, batch_mean, batch_variance = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset,
            mean=empty if training else tf.cast(self.moving_mean, tf.float32),
            variance=empty if training else tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=training,
        )[:3]
        if training:
            variance = batch_variance * ((count - 1) / count)  # the kernel's n / (n - 1) undone
            self.moving_mean.assign(self.moving_mean * self.momentum + batch_mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.synchronized
                and not self.renorm and len(inputs.shape) == 4 and self.axis in (-1, 3))
