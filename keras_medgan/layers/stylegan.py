"""The building blocks of StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

Everything here works on channels-last tensors and is a serializable Keras layer, except the FIR resampling
helpers, which are pure functions:

- equalised learning rate (StyleGAN, Sec. 4.1 of Karras et al. 2018 "Progressive Growing of GANs"): weights are
  stored as N(0, 1) / ``lr_multiplier`` and scaled at run time by ``lr_multiplier / sqrt(fan_in)``, so Adam's
  per-parameter step is the same for every layer (``EqualizedDense``, ``EqualizedConv2D``);
- weight modulation and demodulation (StyleGAN2 Sec. 2.2, Eq. 1-3; ``ModulatedConv2D``), computed as "scale the
  input channels, convolve with the shared kernel, scale the output channels", which is the same function as the
  per-sample kernel of Eq. 1-3 (``modulated_weights`` builds that kernel, for tests and for SeFa) and runs on every
  device without grouped convolutions;
- per-layer noise inputs with a learned strength (StyleGAN Sec. 3.2), random while training and a fixed buffer in
  inference, so that ``generate`` with a seed is reproducible (NVIDIA's ``noise_mode="const"``);
- FIR-filtered up- and downsampling with the [1, 3, 3, 1] filter (StyleGAN2 Appendix B, after Zhang 2019);
- the minibatch standard deviation layer (Karras et al. 2018, Sec. 3; StyleGAN2 config F: group 4, 1 channel).

The activation is leaky ReLU 0.2 times sqrt(2) (the "lrelu" gain that keeps unit variance), clamped to
``±conv_clamp`` when one is set (the ADA code uses 256 on the float16 layers).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

DEFAULT_TAPS = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
ACTIVATIONS = ("linear", "lrelu")


# ---------------------------------------------------------------------------------------------- pure helpers


def fir_kernel(taps=DEFAULT_TAPS) -> np.ndarray:
    """The separable 2-D FIR filter ``outer(taps, taps)``, normalised to sum to 1."""
    t = np.asarray(taps, np.float64)
    k = np.outer(t, t)
    return (k / k.sum()).astype("float32")


def _depthwise_fir(x, kernel: np.ndarray, pad: tuple, stride: int = 1):
    """Pads ``x`` by ``pad = (before, after)`` on H and W and applies ``kernel`` to every channel."""
    channels = x.shape[-1]
    k = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)), dtype=x.dtype)
    x = tf.pad(x, [[0, 0], [pad[0], pad[1]], [pad[0], pad[1]], [0, 0]])
    return tf.nn.depthwise_conv2d(x, k, strides=[1, stride, stride, 1], padding="VALID")


def fir_upsample_2x(x, taps=DEFAULT_TAPS):
    """x2 upsampling by zero insertion and the FIR filter with gain 4 (``upfirdn2d`` with up=2).

    For a 4-tap filter the padding is (2, 1): output pixel ``2i`` is centred on input pixel ``i``.
    """
    kernel = fir_kernel(taps) * 4.0
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    c = x.shape[-1]
    y = tf.reshape(x, [b, h, 1, w, 1, c])
    y = tf.pad(y, [[0, 0], [0, 0], [0, 1], [0, 0], [0, 1], [0, 0]])
    y = tf.reshape(y, [b, h * 2, w * 2, c])
    n = len(taps)
    return _depthwise_fir(y, kernel, ((n - 2 + 1) // 2 + 1, (n - 2) // 2))


def fir_downsample_2x(x, taps=DEFAULT_TAPS):
    """FIR filter, then keep every second pixel (``upfirdn2d`` with down=2); padding (1, 1) for 4 taps."""
    n = len(taps)
    return _depthwise_fir(x, fir_kernel(taps), ((n - 2 + 1) // 2, (n - 2) // 2), stride=2)


def lrelu(x, clamp=None):
    """Leaky ReLU 0.2 times sqrt(2) (StyleGAN2's ``lrelu`` gain), then ``clip(-clamp, clamp)``."""
    x = tf.nn.leaky_relu(x, LRELU_SLOPE) * tf.cast(LRELU_GAIN, x.dtype)
    if clamp is not None:
        x = tf.clip_by_value(x, -clamp, clamp)
    return x


def _activate(x, activation: str, clamp):
    if activation == "lrelu":
        return lrelu(x, clamp)
    return x if clamp is None else tf.clip_by_value(x, -clamp, clamp)


def normalize_2nd_moment(x, axis=-1, eps=1e-8):
    """``x / sqrt(mean(x**2) + eps)`` along ``axis`` (StyleGAN's pixel norm of z and of the class embedding)."""
    x = tf.convert_to_tensor(x)
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axis, keepdims=True) + eps)


def modulated_weights(weight, styles, demodulate: bool = True, eps: float = 1e-8):
    """The per-sample kernel of StyleGAN2 Eq. 1-3: ``w'_ijk = s_i w_ijk``, then divided by
    ``sqrt(sum_ik w'_ijk**2 + eps)`` for every output channel j when ``demodulate``.

    Args:
        weight: ``[kh, kw, in, out]`` kernel (already scaled by its equalised-LR gain).
        styles: ``[batch, in]`` styles.
    Returns:
        ``[batch, kh, kw, in, out]``.
    """
    w = weight[None] * styles[:, None, None, :, None]
    if demodulate:
        w = w * tf.math.rsqrt(tf.reduce_sum(tf.square(w), axis=[1, 2, 3], keepdims=True) + eps)
    return w


def minibatch_stddev(x, group_size: int = 4, num_channels: int = 1):
    """Appends the minibatch standard deviation (Karras et al. 2018, Sec. 3) as ``num_channels`` feature maps.

    The batch splits into groups of ``min(group_size, batch)`` images: sample ``n`` is in group ``n mod (batch /
    group)`` (members ``n, n + batch/group, ...``, as NVIDIA's reshape). Per group, the standard deviation of every
    feature over the group's members is averaged over height, width and the channels of each of the
    ``num_channels`` channel groups, and broadcast back to every member. The batch must be divisible by the group.
    """
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    c = x.shape[-1]
    g = tf.minimum(group_size, b)
    f = num_channels
    y = tf.reshape(tf.cast(x, tf.float32), [g, -1, h, w, f, c // f])
    y = y - tf.reduce_mean(y, axis=0)
    y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + 1e-8)  # [b/g, h, w, f, c/f]
    y = tf.reduce_mean(y, axis=[1, 2, 4])  # [b/g, f]
    y = tf.tile(y, [g, 1])  # row n = group n mod (b/g)
    y = tf.broadcast_to(y[:, None, None, :], [b, h, w, f])
    return tf.concat([x, tf.cast(y, x.dtype)], axis=-1)


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {ACTIVATIONS}. Received: activation={activation!r}")


def _normal(stddev):
    return keras.initializers.RandomNormal(0.0, stddev)


def _as_float(x):
    return None if x is None else float(x)


# ---------------------------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="keras_medgan")
class EqualizedDense(keras.layers.Layer):
    """A dense layer with equalised learning rate and a learning-rate multiplier.

    The weight is initialised N(0, 1 / lr_multiplier) and used as ``weight * lr_multiplier / sqrt(fan_in)``; the
    bias is used as ``bias * lr_multiplier``. The mapping network uses ``lr_multiplier=0.01`` (StyleGAN Sec. 4,
    Appendix C; StyleGAN2 config F); affine style layers use ``bias_init=1`` so styles start at one.

    Args:
        units: int. Output features.
        activation: ``"linear"`` or ``"lrelu"``.
        lr_multiplier: float. Learning-rate multiplier.
        bias_init: float. Initial bias.
        use_bias: bool.
    """

    def __init__(self, units, activation="linear", lr_multiplier=1.0, bias_init=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        _check_activation(activation)
        self.units = int(units)
        self.activation = activation
        self.lr_multiplier = float(lr_multiplier)
        self.bias_init = float(bias_init)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.weight_gain = self.lr_multiplier / math.sqrt(fan_in)
        self.kernel = self.add_weight(name="kernel", shape=(fan_in, self.units),
                                      initializer=_normal(1.0 / self.lr_multiplier))
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,),
                                        initializer=keras.initializers.Constant(self.bias_init / self.lr_multiplier))

    def call(self, inputs):
        x = tf.matmul(inputs, self.kernel * tf.cast(self.weight_gain, self.kernel.dtype))
        if self.use_bias:
            x = x + self.bias * tf.cast(self.lr_multiplier, self.bias.dtype)
        return _activate(x, self.activation, None)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=self.activation, lr_multiplier=self.lr_multiplier,
                      bias_init=self.bias_init, use_bias=self.use_bias)
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class EqualizedConv2D(keras.layers.Layer):
    """A 'same' convolution with equalised learning rate, optionally downsampling x2 (the discriminator's layers).

    ``down=True`` follows StyleGAN2's ``conv2d_resample``: a 3x3 kernel blurs with the FIR filter (padding 2) and
    convolves with stride 2; a 1x1 kernel (the residual skip) FIR-downsamples, then convolves.

    Args:
        filters, kernel_size: int.
        activation: ``"linear"`` or ``"lrelu"``.
        down: bool. Halve the resolution.
        use_bias: bool.
        conv_clamp: float or None. Clamp of the activations (ADA: 256 on float16 layers).
        taps: the FIR filter taps (StyleGAN2: [1, 3, 3, 1]).
    """

    def __init__(self, filters, kernel_size=3, activation="lrelu", down=False, use_bias=True, conv_clamp=None,
                 taps=DEFAULT_TAPS, **kwargs):
        super().__init__(**kwargs)
        _check_activation(activation)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.activation = activation
        self.down = bool(down)
        self.use_bias = bool(use_bias)
        self.conv_clamp = _as_float(conv_clamp)
        self.taps = tuple(float(t) for t in taps)

    def build(self, input_shape):
        fan_in = int(input_shape[-1]) * self.kernel_size ** 2
        self.weight_gain = 1.0 / math.sqrt(fan_in)
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, self.kernel_size,
                                                            int(input_shape[-1]), self.filters),
                                      initializer=_normal(1.0))
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        w = self.kernel * tf.cast(self.weight_gain, self.kernel.dtype)
        x = inputs
        if self.down and self.kernel_size == 1:
            x = tf.nn.conv2d(fir_downsample_2x(x, self.taps), w, 1, "VALID")
        elif self.down:
            n, k = len(self.taps), self.kernel_size
            pad = (n - 2 + 1) // 2 + k // 2, (n - 2) // 2 + k // 2
            x = tf.nn.conv2d(_depthwise_fir(x, fir_kernel(self.taps), pad), w, 2, "VALID")
        else:
            x = tf.nn.conv2d(x, w, 1, "SAME")
        if self.use_bias:
            x = x + self.bias
        return _activate(x, self.activation, self.conv_clamp)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.down:
            h, w = (None if h is None else h // 2), (None if w is None else w // 2)
        return (b, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, activation=self.activation,
                      down=self.down, use_bias=self.use_bias, conv_clamp=self.conv_clamp, taps=list(self.taps))
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class ModulatedConv2D(keras.layers.Layer):
    """StyleGAN2's synthesis layer: an affine style from w, a modulated (and demodulated) convolution, optional x2
    upsampling, a noise input, a bias and the activation. Inputs ``[x, ws]`` with ``ws`` of shape
    ``[batch, num_ws, w_dim]``; the layer reads ``ws[:, w_index]``.

    Modulation scales the kernel's input channels by the style ``s = A(w)`` (affine, bias initialised to 1), and
    demodulation rescales every output channel to unit expected norm (StyleGAN2 Sec. 2.2, Eq. 1-3). This layer
    computes ``conv(x * s, W) * d`` with ``d_j = 1 / sqrt(sum_ik (s_i W_ijk)^2 + 1e-8)``, the same function as the
    per-sample kernel of ``modulated_weights``. Without demodulation (toRGB) the kernel takes the equalised-LR gain
    ``1 / sqrt(fan_in)`` instead.

    ``up=True`` is a stride-2 transposed convolution followed by the [1, 3, 3, 1] FIR filter (StyleGAN2 Appendix
    B). Noise (StyleGAN Sec. 3.2): ``strength * n`` with one learned ``strength`` per layer (initially 0); ``n`` is
    fresh N(0, 1) per pixel when ``training`` is true and a fixed buffer otherwise.

    Args:
        filters, kernel_size: int.
        w_index: int. Which row of ``ws`` styles this layer.
        up: bool. Upsample x2 before the convolution.
        demodulate: bool. Demodulate (synthesis layers) or not (toRGB).
        activation: ``"lrelu"`` (synthesis layers) or ``"linear"`` (toRGB).
        use_noise: bool. Add the noise input.
        conv_clamp: float or None.
        seed: int. Seed of the fixed noise buffer and of the training noise.
    """

    def __init__(self, filters, kernel_size=3, w_index=0, up=False, demodulate=True, activation="lrelu",
                 use_noise=True, conv_clamp=None, taps=DEFAULT_TAPS, seed=0, **kwargs):
        super().__init__(**kwargs)
        _check_activation(activation)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.w_index = int(w_index)
        self.up = bool(up)
        self.demodulate = bool(demodulate)
        self.activation = activation
        self.use_noise = bool(use_noise)
        self.conv_clamp = _as_float(conv_clamp)
        self.taps = tuple(float(t) for t in taps)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        x_shape, w_shape = input_shape
        channels = int(x_shape[-1])
        self.affine = EqualizedDense(channels, bias_init=1.0, name="affine", dtype=self.dtype_policy)
        self.affine.build((None, int(w_shape[-1])))
        self.weight_gain = 1.0 / math.sqrt(channels * self.kernel_size ** 2)
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, self.kernel_size, channels,
                                                            self.filters), initializer=_normal(1.0))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        if self.use_noise:
            size = int(x_shape[1]) * (2 if self.up else 1)
            self.noise_strength = self.add_weight(name="noise_strength", shape=(), initializer="zeros")
            self.noise_const = self.add_weight(name="noise_const", shape=(size, size, 1), trainable=False,
                                               initializer=keras.initializers.RandomNormal(seed=self.seed))

    def styles(self, ws):
        """The style ``s = A(w)`` of this layer, float32 ``[batch, in]``."""
        return tf.cast(self.affine(ws[:, self.w_index]), tf.float32)

    def call(self, inputs, training=None):
        x, ws = inputs
        s = self.styles(ws)
        weight = tf.cast(self.kernel, tf.float32)
        if self.demodulate:
            d = tf.math.rsqrt(tf.matmul(tf.square(s), tf.reduce_sum(tf.square(weight), axis=[0, 1])) + 1e-8)
        else:
            s = s * self.weight_gain
        x = x * tf.cast(s[:, None, None, :], x.dtype)
        kernel = tf.cast(weight, x.dtype)
        if self.up:
            b, h, w_ = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
            k = self.kernel_size
            x = tf.nn.conv2d_transpose(x, tf.transpose(kernel, (0, 1, 3, 2)),
                                       tf.stack([b, 2 * h + k - 2, 2 * w_ + k - 2, self.filters]), 2, "VALID")
            x = _depthwise_fir(x, fir_kernel(self.taps) * 4.0, (len(self.taps) // 2 - k // 2,) * 2)
        else:
            x = tf.nn.conv2d(x, kernel, 1, "SAME")
        if self.demodulate:
            x = x * tf.cast(d[:, None, None, :], x.dtype)
        if self.use_noise:
            if training:
                shape = tf.concat([tf.shape(x)[:3], [1]], axis=0)
                noise = keras.random.normal(shape, seed=self.seed_generator, dtype=x.dtype)
            else:
                noise = tf.cast(self.noise_const, x.dtype)[None]
            x = x + noise * tf.cast(self.noise_strength, x.dtype)
        x = x + tf.cast(self.bias, x.dtype)
        return _activate(x, self.activation, self.conv_clamp)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape[0]
        if self.up:
            h, w = (None if h is None else 2 * h), (None if w is None else 2 * w)
        return (b, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, w_index=self.w_index, up=self.up,
                      demodulate=self.demodulate, activation=self.activation, use_noise=self.use_noise,
                      conv_clamp=self.conv_clamp, taps=list(self.taps), seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class ConstantInput(keras.layers.Layer):
    """The learned 4x4 constant that starts the synthesis network (StyleGAN Sec. 2), repeated over the batch of
    its input ``ws``."""

    def __init__(self, channels, size=4, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.size = int(size)

    def build(self, input_shape):
        self.const = self.add_weight(name="const", shape=(self.size, self.size, self.channels),
                                     initializer=_normal(1.0))

    def call(self, ws):
        return tf.tile(self.const[None], [tf.shape(ws)[0], 1, 1, 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, size=self.size)
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class FIRUpsample2D(keras.layers.Layer):
    """x2 FIR upsampling of the skip generator's running image (StyleGAN2 Fig. 7b)."""

    def __init__(self, taps=DEFAULT_TAPS, **kwargs):
        super().__init__(**kwargs)
        self.taps = tuple(float(t) for t in taps)

    def call(self, x):
        return fir_upsample_2x(x, self.taps)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)

    def get_config(self):
        config = super().get_config()
        config.update(taps=list(self.taps))
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class MinibatchStdDev(keras.layers.Layer):
    """``minibatch_stddev`` as a layer (StyleGAN2 config F: ``group_size=4``, ``num_channels=1``)."""

    def __init__(self, group_size=4, num_channels=1, **kwargs):
        super().__init__(**kwargs)
        self.group_size = int(group_size)
        self.num_channels = int(num_channels)

    def call(self, x):
        return minibatch_stddev(x, self.group_size, self.num_channels)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(group_size=self.group_size, num_channels=self.num_channels)
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class NormalizeSecondMoment(keras.layers.Layer):
    """``normalize_2nd_moment`` as a layer (the mapping network's input normalisation)."""

    def call(self, x):
        return normalize_2nd_moment(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_medgan")
class ScaledAdd(keras.layers.Layer):
    """``(a + b) * gain``: the residual discriminator's merge, gain sqrt(1/2) (StyleGAN2 Fig. 7c)."""

    def __init__(self, gain=math.sqrt(0.5), **kwargs):
        super().__init__(**kwargs)
        self.gain = float(gain)

    def call(self, inputs):
        a, b = inputs
        return (a + b) * tf.cast(self.gain, a.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(gain=self.gain)
        return config


@keras.saving.register_keras_serializable(package="keras_medgan")
class ProjectionOutput(keras.layers.Layer):
    """The conditional discriminator's output, ``sum(x * cmap) / sqrt(cmap_dim)`` (Miyato & Koyama 2018; the ADA
    code's ``cmap`` projection). Inputs ``[x, cmap]``, both ``[batch, cmap_dim]``; returns ``[batch, 1]``."""

    def call(self, inputs):
        x, cmap = inputs
        dim = x.shape[-1]
        return tf.reduce_sum(x * tf.cast(cmap, x.dtype), axis=-1, keepdims=True) * tf.cast(1 / math.sqrt(dim),
                                                                                          x.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)
