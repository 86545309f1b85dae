"""The pix2pix U-Net generator, with DermGAN's resize-convolution decoder."""

import math
import numbers

import keras

from keras_medgan.layers.normalization import check_norm, make_norm, pix2pix_kernel_initializer
from keras_medgan.layers.resize_conv import ResizeConv2D

UPSAMPLINGS = ("resize_conv", "transpose")
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 512


def unet_generator(
    image_size=256,
    input_channels=3,
    output_channels=3,
    base_filters=64,
    max_filters=512,
    norm="batch",
    upsampling="resize_conv",
    dropout_rate=0.5,
    name="unet_generator",
):
    """Builds the pix2pix U-Net generator as a functional `keras.Model`.

    The generator maps a semantic map `[H, W, input_channels]` (for DermGAN
    the 3-channel skin-type / condition / ROI map) to an image
    `[H, W, output_channels]` in [-1, 1].

    Structure (pix2pix `UnetGenerator` / `UnetSkipConnectionBlock`):

    - Encoder: `num_downs = log2(image_size)` blocks `down_1 .. down_n` of
      LeakyReLU(0.2) -> 4x4 stride-2 convolution -> norm, with
      `min(base_filters * 2**(i - 1), max_filters)` filters in `down_i`. The
      outermost block has no LeakyReLU and no norm, the innermost (the 1x1
      bottleneck) no norm.
    - Decoder: blocks `up_n .. up_1` (in that order; `up_i` mirrors `down_i`) of
      ReLU -> x2 upsampling convolution -> norm -> dropout -> concatenation
      with the input of `down_i` (the skip connection). The outermost block
      `up_1` is ReLU -> upsampling convolution to `output_channels` -> tanh.
    - Biases as in PyTorch pix2pix: a convolution has a bias only when
      `norm="instance"`, except `up_1`, which always has one.
    - Weights initialised N(0, 0.02), batch-norm scales N(1, 0.02)
      (pix2pix `init_weights`).

    Code (vs. papers):
        - `upsampling="resize_conv"` (the default) is DermGAN's change (Sec. 2):
          each 4x4 stride-2 transposed convolution becomes a nearest x2 resize
          followed by a 3x3 convolution (`ResizeConv2D`), against checkerboard
          artifacts. `"transpose"` is the original pix2pix decoder.
        - Dropout is the generator's only noise source (pix2pix Sec. 3.1):
          dropout in the first three decoder blocks after the innermost one,
          as the pix2pix code does for `unet_256` (its `num_downs - 5` blocks
          with `use_dropout`; the paper's table also puts one on the innermost
          block). For smaller images it stays in the first
          `min(3, num_downs - 2)` of those decoder blocks, so `image_size=128`
          has three where pix2pix's `unet_128` has two. Dropout is active only
          with `training=True`; pix2pix samples at test time in training mode
          (dropout on, batch statistics), which `training=True` reproduces.
        - The final tanh runs in float32 (`dtype="float32"`) so the output is
          float32 under a mixed-precision policy; every other layer follows the
          global policy.

    Args:
        image_size: int. Height and width of input and output; a power of two
            between 32 and 512, so that the encoder halves it down to 1x1.
            Defaults to `256` (pix2pix `unet_256`).
        input_channels: int. Channels of the semantic map. Defaults to `3`.
        output_channels: int. Channels of the generated image. Defaults to `3`.
        base_filters: int. Filters of the outermost encoder block (pix2pix
            `ngf`). Defaults to `64`.
        max_filters: int. Cap on the filters of any block (pix2pix uses
            `8 * ngf`). Defaults to `512`.
        norm: str. `"batch"` or `"instance"` (see `make_norm`).
            Defaults to `"batch"`.
        upsampling: str. `"resize_conv"` (DermGAN) or `"transpose"` (pix2pix).
            Defaults to `"resize_conv"`.
        dropout_rate: float. Dropout rate in the three decoder blocks after the
            innermost; `0` removes the dropout layers. Defaults to `0.5`.
        name: str. Model name. Defaults to `"unet_generator"`.

    Returns:
        A `keras.Model` with input `semantic_map` `[batch, H, W, input_channels]`
        and a float32 output `[batch, H, W, output_channels]` in [-1, 1].

    Example:

    >>> generator = unet_generator(image_size=64, norm="instance")
    >>> generator(np.zeros((2, 64, 64, 3), "float32"), training=False).shape
    (2, 64, 64, 3)

    Reference:
        - [Isola et al., 2017. Image-to-Image Translation with Conditional
          Adversarial Networks](https://arxiv.org/abs/1611.07004), Sec. 3.1
          and Appendix 6.1.2; code: junyanz/pytorch-CycleGAN-and-pix2pix
          `models/networks.py` (`UnetGenerator`, `UnetSkipConnectionBlock`).
        - [Ghorbani et al., 2020. DermGAN: Synthetic Generation of Clinical
          Skin Images with Pathology](https://arxiv.org/abs/1911.08716), Sec. 2.
    """
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE
        or image_size & (image_size - 1)
    ):
        raise ValueError(
            f"`image_size` must be a power of two between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} "
            f"(the U-Net halves it down to 1x1). Received: image_size={image_size}"
        )
    for field, value in (
        ("input_channels", input_channels),
        ("output_channels", output_channels),
        ("base_filters", base_filters),
        ("max_filters", max_filters),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{field}` must be an integer >= 1. Received: {field}={value!r}")
    if max_filters < base_filters:
        raise ValueError(
            f"`max_filters` must be >= `base_filters` ({base_filters}). Received: max_filters={max_filters}"
        )
    check_norm(norm)
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"`upsampling` must be one of {UPSAMPLINGS}. Received: upsampling={upsampling!r}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate}")

    num_downs = int(math.log2(image_size))
    # filters[i - 1] = channels produced by down_i, and by up_{i + 1}.
    filters = [min(base_filters * 2**i, max_filters) for i in range(num_downs)]
    use_bias = norm == "instance"  # a norm's own offset makes a conv bias redundant
    num_dropout = min(3, num_downs - 2) if dropout_rate > 0 else 0
    dropout_blocks = set(range(num_downs - num_dropout, num_downs))

    inputs = keras.Input((image_size, image_size, input_channels), name="semantic_map")
    skips = {}
    x = inputs
    for i in range(1, num_downs + 1):
        skips[i] = x
        if i > 1:
            x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"down_{i}_lrelu")(x)
        x = keras.layers.Conv2D(
            filters[i - 1],
            4,
            strides=2,
            padding="same",  # equals PyTorch padding=1 for even sizes
            use_bias=use_bias,
            kernel_initializer=pix2pix_kernel_initializer(),
            name=f"down_{i}_conv",
        )(x)
        if 1 < i < num_downs:
            x = make_norm(norm, name=f"down_{i}_norm")(x)

    for i in range(num_downs, 0, -1):
        outermost = i == 1
        x = keras.layers.ReLU(name=f"up_{i}_relu")(x)
        x = _upsample(
            upsampling,
            output_channels if outermost else filters[i - 2],
            use_bias=outermost or use_bias,
            name=f"up_{i}_upsample",
        )(x)
        if outermost:
            break
        x = make_norm(norm, name=f"up_{i}_norm")(x)
        if i in dropout_blocks:
            x = keras.layers.Dropout(dropout_rate, name=f"up_{i}_dropout")(x)
        x = keras.layers.Concatenate(name=f"up_{i}_concat")([skips[i], x])

    outputs = keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, outputs, name=name)


def _upsample(upsampling, filters, use_bias, name):
    """The x2 upsampling convolution of one decoder block."""
    if upsampling == "resize_conv":
        return ResizeConv2D(
            filters,
            kernel_size=3,
            scale=2,
            interpolation="nearest",
            use_bias=use_bias,
            kernel_initializer=pix2pix_kernel_initializer(),
            name=name,
        )
    return keras.layers.Conv2DTranspose(
        filters,
        4,
        strides=2,
        padding="same",  # equals PyTorch ConvTranspose2d(padding=1): output 2x the input
        use_bias=use_bias,
        kernel_initializer=pix2pix_kernel_initializer(),
        name=name,
    )
