"""Resize-convolution upsampling: the DermGAN replacement for transposed convolution."""

import numbers

import keras

INTERPOLATIONS = ("nearest", "bilinear")
# Below this many input pixels per channel the transposed-convolution rewrite of nearest x2 + 3x3 costs more
# (re-deriving the kernel from the weights, forward and backward) than the multiply-adds it saves; measured
# on the U-Net decoder's shapes (8x8 inputs: 2.2x slower at batch 1, 16x16: 1.3x faster), tools/bench.py.
MIN_PIXELS_FOR_TRANSPOSED = 256


@keras.saving.register_keras_serializable(package="keras_medgan")
class ResizeConv2D(keras.layers.Layer):
    """Upsampling by resizing, then a stride-1 'same' convolution.

    A transposed convolution whose kernel size is not divisible by its stride
    overlaps unevenly and paints a checkerboard on the generated image. DermGAN
    (Ghorbani et al. 2020, Sec. 2, "Checkerboard effect reduction", after Odena
    et al. 2016) replaces every deconvolution of the pix2pix U-Net with a
    nearest-neighbour resize followed by a convolution: every output pixel then
    sees the same number of input pixels, so a constant input gives a constant
    output away from the borders.

    Nearest x2 with a 3x3 kernel (DermGAN's setting) on inputs of at least
    16x16 pixels runs as the equivalent 4x4 stride-2 transposed convolution,
    its kernel summed from the 3x3 taps (see `_nearest_x2_taps`): the same
    function of the same weights, 16 instead of 36 multiply-adds per input
    pixel, and no resized map in memory. Other settings resize, then convolve.

    The layer works on channels-last tensors `[batch, height, width, channels]`
    and returns `[batch, height * scale, width * scale, filters]`.

    Args:
        filters: int. Number of output channels of the convolution.
        kernel_size: int. Side of the square convolution kernel. Defaults to `3`.
        scale: int. Integer upsampling factor for height and width.
            Defaults to `2`.
        interpolation: str. `"nearest"` (DermGAN) or `"bilinear"`.
            Defaults to `"nearest"`.
        use_bias: bool. Whether the convolution adds a bias. Use `False` when a
            normalization layer follows. Defaults to `True`.
        kernel_initializer: str, dict or `keras.initializers.Initializer`.
            Initializer of the convolution kernel. Defaults to
            `"glorot_uniform"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, such as
            `name` and `dtype`.

    Example:

    >>> layer = ResizeConv2D(filters=64)
    >>> layer(np.zeros((2, 16, 16, 128), "float32")).shape
    (2, 32, 32, 64)

    Reference:
        - [Ghorbani et al., 2020. DermGAN: Synthetic Generation of Clinical
          Skin Images with Pathology](https://arxiv.org/abs/1911.08716), Sec. 2.
        - [Odena et al., 2016. Deconvolution and Checkerboard
          Artifacts](https://distill.pub/2016/deconv-checkerboard/).
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        scale=2,
        interpolation="nearest",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        _check_positive_int("filters", filters)
        _check_positive_int("kernel_size", kernel_size)
        _check_positive_int("scale", scale)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}. Received: interpolation={interpolation!r}"
            )
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.scale = int(scale)
        self.interpolation = interpolation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

        self.upsample = keras.layers.UpSampling2D(
            size=self.scale,
            interpolation=interpolation,
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="upsample",
        )
        self.conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            padding="same",
            data_format="channels_last",
            use_bias=use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape):
        self.upsample.build(input_shape)
        self.conv.build(self.upsample.compute_output_shape(input_shape))

    def call(self, inputs):
        if self.runs_transposed(inputs.shape):
            return self._transposed_equivalent(inputs)
        return self.conv(self.upsample(inputs))

    def runs_transposed(self, input_shape) -> bool:
        """Whether inputs of ``input_shape`` take the transposed-convolution path (same outputs, fewer FLOPs)."""
        height, width = input_shape[1], input_shape[2]
        return (self.interpolation == "nearest" and self.scale == 2 and self.kernel_size == 3
                and height is not None and width is not None and height * width >= MIN_PIXELS_FOR_TRANSPOSED)

    def _transposed_equivalent(self, inputs):
        # conv_transpose wants [4, 4, out, in]: transpose the 3x3 kernel first, 9 taps instead of 16 to move.
        kernel = keras.ops.transpose(self.conv.kernel, (0, 1, 3, 2))
        kernel = _nearest_x2_taps(_nearest_x2_taps(kernel, axis=0), axis=1)
        outputs = keras.ops.conv_transpose(inputs, kernel, strides=2, padding="same", data_format="channels_last")
        if self.use_bias:
            outputs = keras.ops.add(outputs, self.conv.bias)
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        height = None if height is None else height * self.scale
        width = None if width is None else width * self.scale
        return (batch, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "scale": self.scale,
                "interpolation": self.interpolation,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


def _nearest_x2_taps(kernel, axis):
    """The 4 taps of a stride-2 transposed convolution equal to nearest x2 resize + this 3-tap axis.

    Output row 2i of resize-then-convolve reads input rows i-1 (tap 0) and i (taps 1 + 2); row 2i+1 reads
    rows i (taps 0 + 1) and i+1 (tap 2). In the transposed convolution's kernel (padding 1) those are taps
    3, 1, 2 and 0, so along ``axis`` the kernel is ``[w2, w1 + w2, w0 + w1, w0]``.
    """
    w0, w1, w2 = keras.ops.split(kernel, 3, axis=axis)
    return keras.ops.concatenate([w2, w1 + w2, w0 + w1, w0], axis=axis)


def _check_positive_int(field, value):
    """Raises the standard ValueError unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{field}` must be an integer >= 1. Received: {field}={value!r}")
