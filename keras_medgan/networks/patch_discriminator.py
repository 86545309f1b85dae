"""The pix2pix PatchGAN discriminator, exposing DermGAN's feature-matching layer."""

import numbers

import keras

from keras_medgan.layers.normalization import check_norm, make_norm, pix2pix_kernel_initializer


def patch_discriminator(
    image_size=256,
    map_channels=3,
    image_channels=3,
    base_filters=64,
    n_layers=3,
    norm="batch",
    name="patch_discriminator",
):
    """Builds the conditional pix2pix PatchGAN discriminator as a functional `keras.Model`.

    The discriminator sees the semantic map and an image (real or generated),
    concatenated on channels, and scores every overlapping patch of the image
    (70x70 pixels at `n_layers=3`) with one logit.

    Structure (pix2pix `NLayerDiscriminator`), blocks `block_1 ..
    block_{n_layers + 1}` then `logits`, all 4x4 convolutions:

    - `block_1`: `base_filters` filters, stride 2, with bias, no norm,
      LeakyReLU(0.2).
    - `block_2 .. block_{n_layers}`: `min(2**(k - 1), 8) * base_filters`
      filters, stride 2, norm, LeakyReLU(0.2).
    - `block_{n_layers + 1}`: `min(2**n_layers, 8) * base_filters` filters,
      stride 1, norm, LeakyReLU(0.2). Its activations are the `"features"`
      output.
    - `logits`: 1 filter, stride 1, with bias, no activation.

    Every convolution pads by 1 pixel and then convolves 'valid', exactly like
    PyTorch's `padding=1`: a stride-2 layer takes the size `s` to `s // 2` and
    each stride-1 layer takes away one pixel, so 256 px gives 30x30 logits and
    31x31 features. Convolutions followed by a norm have a bias only with
    `norm="instance"`. Weights initialised N(0, 0.02), batch-norm scales
    N(1, 0.02) (pix2pix `init_weights`).

    Code (vs. papers):
        - DermGAN (Sec. 2) computes its feature-matching loss "on the output of
          the discriminator's second to last convolutional layer": that is
          `block_{n_layers + 1}` after its norm and LeakyReLU (512 channels at
          the pix2pix setting), returned as `"features"` beside the logits.
        - Both outputs are float32 (`dtype="float32"` output layers) under a
          mixed-precision policy; every other layer follows the global policy.
        - The logits are raw (no sigmoid): pair them with a loss on logits.

    Args:
        image_size: int. Height and width of the inputs; at least
            `3 * 2**n_layers`, so the last two stride-1 layers keep at least
            one patch. Defaults to `256`.
        map_channels: int. Channels of the semantic map. Defaults to `3`.
        image_channels: int. Channels of the image. Defaults to `3`.
        base_filters: int. Filters of the first convolution (pix2pix `ndf`).
            Defaults to `64`.
        n_layers: int. Number of stride-2 convolutions (pix2pix `n_layers_D`);
            `3` gives 70x70 patches. Defaults to `3`.
        norm: str. `"batch"` or `"instance"` (see `make_norm`).
            Defaults to `"batch"`.
        name: str. Model name. Defaults to `"patch_discriminator"`.

    Returns:
        A `keras.Model` taking `[semantic_map, image]` (shapes
        `[batch, H, W, map_channels]` and `[batch, H, W, image_channels]`) and
        returning a dict of float32 tensors: `"logits"` `[batch, h, w, 1]`, one
        logit per patch, and `"features"` `[batch, h + 1, w + 1, channels]`,
        the second-to-last layer's activations.

    Example:

    >>> discriminator = patch_discriminator(image_size=64)
    >>> out = discriminator([np.zeros((2, 64, 64, 3)), np.zeros((2, 64, 64, 3))], training=False)
    >>> out["logits"].shape, out["features"].shape
    ((2, 6, 6, 1), (2, 7, 7, 512))

    Reference:
        - [Isola et al., 2017. Image-to-Image Translation with Conditional
          Adversarial Networks](https://arxiv.org/abs/1611.07004), Sec. 3.2
          and Appendix 6.1.2; code: junyanz/pytorch-CycleGAN-and-pix2pix
          `models/networks.py` (`NLayerDiscriminator`).
        - [Ghorbani et al., 2020. DermGAN: Synthetic Generation of Clinical
          Skin Images with Pathology](https://arxiv.org/abs/1911.08716), Sec. 2,
          feature matching loss.
    """
    for field, value in (
        ("image_size", image_size),
        ("map_channels", map_channels),
        ("image_channels", image_channels),
        ("base_filters", base_filters),
        ("n_layers", n_layers),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{field}` must be an integer >= 1. Received: {field}={value!r}")
    min_size = 3 * 2**n_layers
    if image_size < min_size:
        raise ValueError(
            f"`image_size` must be >= {min_size} for n_layers={n_layers} (each stride-2 layer halves it "
            f"and the two stride-1 4x4 layers take away 2 more pixels). Received: image_size={image_size}"
        )
    check_norm(norm)
    use_bias = norm == "instance"  # a norm's own offset makes a conv bias redundant

    semantic_map = keras.Input((image_size, image_size, map_channels), name="semantic_map")
    image = keras.Input((image_size, image_size, image_channels), name="image")
    x = keras.layers.Concatenate(name="map_image_concat")([semantic_map, image])

    for k in range(1, n_layers + 2):
        first, last = k == 1, k == n_layers + 1
        x = _conv(
            x,
            min(2 ** (k - 1), 8) * base_filters,
            strides=1 if last else 2,
            use_bias=first or use_bias,
            name=f"block_{k}_conv",
            pad_name=f"block_{k}_pad",
        )
        if not first:
            x = make_norm(norm, name=f"block_{k}_norm")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"block_{k}_lrelu")(x)

    features = keras.layers.Activation("linear", dtype="float32", name="features")(x)
    logits = _conv(x, 1, strides=1, use_bias=True, name="logits", pad_name="logits_pad", dtype="float32")
    return keras.Model([semantic_map, image], {"logits": logits, "features": features}, name=name)


def _conv(x, filters, strides, use_bias, name, pad_name, dtype=None):
    """A 4x4 convolution with PyTorch's `padding=1`: explicit zero padding, then 'valid'."""
    x = keras.layers.ZeroPadding2D(1, name=pad_name)(x)
    return keras.layers.Conv2D(
        filters,
        4,
        strides=strides,
        padding="valid",
        use_bias=use_bias,
        kernel_initializer=pix2pix_kernel_initializer(),
        dtype=dtype,
        name=name,
    )(x)
