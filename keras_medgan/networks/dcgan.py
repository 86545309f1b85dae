"""DCGAN generator and discriminator (Radford et al. 2016), class-conditional as in paper 001's cDCGAN.

Both builders return functional `keras.Model`s made of Keras core layers only,
so they serialise and load in safe mode without custom objects. A conditional
network takes a dict of inputs whose keys match the data pipeline's batch keys:
`{"z", "label"}` for G and `{"image", "label"}` for D, with `label` an int32
class index of shape `[batch]` (one-hot encoding happens inside the model).
"""

import math
import numbers

import keras

from keras_medgan.layers.normalization import FusedBatchNormalization, pix2pix_kernel_initializer
from keras_medgan.layers.resize_conv import ResizeConv2D

UPSAMPLINGS = ("transpose", "resize_conv")
CONDITIONINGS = ("label_maps", "projection")
DISCRIMINATOR_NORMS = ("batch", "layer", "none")
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 256
FIRST_SIZE = 4  # G starts from a 4x4 map and D ends on one (Radford et al. 2016, Fig. 1)


def dcgan_generator(
    image_size=64,
    channels=3,
    latent_dim=100,
    num_classes=0,
    base_filters=64,
    max_filters=512,
    upsampling="transpose",
    bn_momentum=0.9,
    leaky_slope=0.0,
    name="dcgan_generator",
):
    """Builds a (class-conditional) DCGAN generator as a functional `keras.Model`.

    Structure (PyTorch `examples/dcgan` `Generator`, generalised to
    32-256 px):

    - `z` `[batch, latent_dim]`, concatenated with the one-hot label when
      `num_classes > 0` (paper 001, Sec. II-C: "Gaussian-distributed noise and
      one-hot encoded class labels").
    - `project`: a dense layer to a 4x4 map with
      `min(base_filters * 2**(n - 1), max_filters)` channels, reshaped, then
      batch norm and activation; `n = log2(image_size) - 2` is the number of
      x2 upsampling blocks.
    - `up_1 .. up_{n-1}`: x2 upsampling convolution, batch norm, activation;
      `up_k` has `min(base_filters * 2**(n - 1 - k), max_filters)` filters, so
      the block before the output has `base_filters` (DCGAN `ngf`).
    - `up_n`: x2 upsampling convolution to `channels`, with bias, then a
      float32 tanh: images in [-1, 1].
    - No biases before a batch norm (its offset makes them redundant); weights
      N(0, 0.02), batch-norm scales N(1, 0.02) (Radford et al. 2016, Sec. 4).

    At 64 px with the defaults this is the PyTorch DCGAN generator
    (4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3).

    Code (vs. papers):
        - `upsampling="transpose"` (the default): 4x4 stride-2 transposed
          convolutions, as paper 001 ("progressively upscaling through
          transposed convolutional layers") and DCGAN. `"resize_conv"`: nearest
          x2 resize + 3x3 convolution (`ResizeConv2D`), against checkerboard
          artifacts.
        - `bn_momentum` uses the Keras convention (moving statistic
          `= momentum * moving + (1 - momentum) * batch`). Paper 001 reports
          "momentum=0.9" from PyTorch, whose convention is the complement: read
          literally, that is Keras `bn_momentum=0.1` (moving statistics almost
          equal to the last batch's). We default to 0.9, PyTorch's own default
          (0.1), which the paper may have meant; pass 0.1 for the literal
          reading.
        - `leaky_slope=0.0` is ReLU, as DCGAN and XRAY-GAN's CGAN (paper 004,
          Sec. 5.4: "only ReLU in the generator"); paper 001 applies LeakyReLU
          with slope 0.2 in G too: `leaky_slope=0.2`.

    Args:
        image_size: int. Height and width of the generated images: a power of
            two from 32 to 256. Defaults to `64`.
        channels: int. Image channels (1 for X-rays, 3 for skin). Defaults to
            `3`.
        latent_dim: int. Size of `z` (100 in paper 001 and DCGAN). Defaults to
            `100`.
        num_classes: int. Number of classes to condition on; `0` builds an
            unconditional generator taking `z` alone. Defaults to `0`.
        base_filters: int. Filters of the last hidden block (DCGAN `ngf`).
            Defaults to `64`.
        max_filters: int. Cap on the filters of any block. Defaults to `512`.
        upsampling: str. `"transpose"` or `"resize_conv"`. Defaults to
            `"transpose"`.
        bn_momentum: float. Batch-norm momentum, Keras convention (see above).
            Defaults to `0.9`.
        leaky_slope: float. Negative slope of the activations; `0` is ReLU.
            Defaults to `0.0`.
        name: str. Model name. Defaults to `"dcgan_generator"`.

    Returns:
        A `keras.Model` from `z` `[batch, latent_dim]` (unconditional) or
        `{"z": [batch, latent_dim], "label": int32 [batch]}` (conditional) to
        float32 images `[batch, image_size, image_size, channels]` in [-1, 1].

    Example:

    >>> generator = dcgan_generator(image_size=32, channels=1, num_classes=4)
    >>> generator({"z": np.zeros((2, 100), "float32"), "label": np.array([0, 3])}, training=False).shape
    (2, 32, 32, 1)

    Reference:
        - [Radford et al., 2016. Unsupervised Representation Learning with Deep
          Convolutional Generative Adversarial Networks](https://arxiv.org/abs/1511.06434).
        - Paper 001: Bingol et al., "Overcoming Medical Data Scarcity with GAN
          Generated Synthetic Images", Sec. II-C.
        - Paper 004: Chen & Wan, "XRAY-GAN", Sec. 4.1 and 5.4.
    """
    _check_image_size(image_size)
    for field, value in (("channels", channels), ("latent_dim", latent_dim), ("base_filters", base_filters),
                         ("max_filters", max_filters)):
        _check_int(field, value, minimum=1)
    _check_int("num_classes", num_classes, minimum=0)
    _check_max_filters(base_filters, max_filters)
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"`upsampling` must be one of {UPSAMPLINGS}. Received: upsampling={upsampling!r}")
    _check_unit_interval("bn_momentum", bn_momentum)
    _check_unit_interval("leaky_slope", leaky_slope)

    num_ups = int(math.log2(image_size)) - 2
    filters = [min(base_filters * 2 ** (num_ups - 1 - k), max_filters) for k in range(num_ups)]

    z = keras.Input((latent_dim,), name="z")
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        one_hot = keras.layers.CategoryEncoding(num_classes, output_mode="one_hot", name="label_one_hot")(label)
        x = keras.layers.Concatenate(name="z_label_concat")([z, one_hot])
        inputs = {"z": z, "label": label}
    else:
        x, inputs = z, z

    x = keras.layers.Dense(FIRST_SIZE * FIRST_SIZE * filters[0], use_bias=False,
                           kernel_initializer=pix2pix_kernel_initializer(), name="project")(x)
    x = keras.layers.Reshape((FIRST_SIZE, FIRST_SIZE, filters[0]), name="project_reshape")(x)
    x = _batch_norm(bn_momentum, name="project_norm")(x)
    x = _activation(leaky_slope, name="project_act")(x)
    for k in range(1, num_ups + 1):
        last = k == num_ups
        x = _upsample(upsampling, channels if last else filters[k], use_bias=last, name=f"up_{k}_upsample")(x)
        if last:
            break
        x = _batch_norm(bn_momentum, name=f"up_{k}_norm")(x)
        x = _activation(leaky_slope, name=f"up_{k}_act")(x)
    outputs = keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, outputs, name=name)


def dcgan_discriminator(
    image_size=64,
    channels=3,
    num_classes=0,
    base_filters=64,
    max_filters=512,
    conditioning=None,
    spectral_norm=False,
    leaky_slope=0.2,
    norm="batch",
    bn_momentum=0.9,
    name="dcgan_discriminator",
):
    """Builds a (class-conditional) DCGAN discriminator as a functional `keras.Model`.

    Structure (PyTorch `examples/dcgan` `Discriminator`, generalised to
    32-256 px):

    - `block_1 .. block_n`, `n = log2(image_size) - 2`: 4x4 stride-2
      convolution, norm (not in `block_1`), LeakyReLU(`leaky_slope`); `block_k`
      has `min(base_filters * 2**(k - 1), max_filters)` filters and the last
      one ends on a 4x4 map.
    - `features`: that map flattened, `h` `[batch, 16 * filters_n]`.
    - `logits`: a dense layer to one float32 logit, `psi(h)` (the same as
      DCGAN's final 4x4 valid convolution).
    - Convolutions followed by a norm have no bias; weights N(0, 0.02),
      batch-norm scales N(1, 0.02).

    Class conditioning (`num_classes > 0`):
        - `"label_maps"`: the one-hot label broadcast to `[H, W, num_classes]`
          and concatenated to the image channels, so D judges `(x, y)` from
          the first layer on (the usual cDCGAN reading of "the discriminator
          receives the matching actual or fake data as well as the prior
          knowledge c", paper 001, Sec. II-B; paper 004, Eq. 6).
        - `"projection"` (Miyato & Koyama 2018): `logit = psi(h) + <V y, h>`,
          where `V y` is the label's learned embedding (`label_embedding`, a
          bias-free dense layer on the one-hot label, i.e. an embedding table)
          and `h` the `features`. Code (vs. paper): `h` is the flattened last
          map, not its global sum pool as in their ResNet.

    Code (vs. papers):
        - `spectral_norm=True` wraps every convolution and dense layer
          (including the projection embedding) in
          `keras.layers.SpectralNormalization` with one power iteration
          (paper 001: "spectral normalization (one power iteration)"). Keras's
          wrapper divides the kernel by its estimated spectral norm in place on
          every training call (a projection), where Miyato et al. 2018
          reparameterise it and back-propagate through sigma.
        - `norm="batch"` is DCGAN and paper 001 (batch norm, momentum 0.9,
          Keras convention: see `dcgan_generator` on the PyTorch convention);
          a WGAN-GP critic must not use it (Gulrajani et al. 2017, Sec. 4):
          use `"layer"` (per-sample normalisation over height, width and
          channels with a per-channel scale and offset,
          `GroupNormalization(groups=1)`) or `"none"`.
        - The logits are raw (no sigmoid) and float32 under mixed precision.

    Args:
        image_size: int. Height and width of the images: a power of two from
            32 to 256. Defaults to `64`.
        channels: int. Image channels. Defaults to `3`.
        num_classes: int. Number of classes to condition on; `0` builds an
            unconditional discriminator taking the image alone. Defaults to
            `0`.
        base_filters: int. Filters of `block_1` (DCGAN `ndf`). Defaults to
            `64`.
        max_filters: int. Cap on the filters of any block. Defaults to `512`.
        conditioning: str or None. `"label_maps"` or `"projection"`; None picks
            `"label_maps"` when `num_classes > 0`. Needs `num_classes > 0`.
            Defaults to None.
        spectral_norm: bool. Spectral normalisation of every weight layer.
            Defaults to `False`.
        leaky_slope: float. Negative slope of the LeakyReLUs (0.2 in DCGAN and
            paper 001). Defaults to `0.2`.
        norm: str. `"batch"`, `"layer"` or `"none"`. Defaults to `"batch"`.
        bn_momentum: float. Batch-norm momentum, Keras convention. Defaults to
            `0.9`.
        name: str. Model name. Defaults to `"dcgan_discriminator"`.

    Returns:
        A `keras.Model` from images `[batch, image_size, image_size, channels]`
        (unconditional) or `{"image": ..., "label": int32 [batch]}`
        (conditional) to float32 logits `[batch, 1]`.

    Example:

    >>> discriminator = dcgan_discriminator(32, channels=1, num_classes=4, conditioning="projection",
    ...                                     spectral_norm=True, norm="none")
    >>> discriminator({"image": np.zeros((2, 32, 32, 1), "float32"), "label": np.array([0, 3])}).shape
    (2, 1)

    Reference:
        - [Radford et al., 2016. Unsupervised Representation Learning with Deep
          Convolutional Generative Adversarial Networks](https://arxiv.org/abs/1511.06434).
        - [Miyato & Koyama, 2018. cGANs with Projection
          Discriminator](https://arxiv.org/abs/1802.05637), Eq. 3.
        - [Miyato et al., 2018. Spectral Normalization for Generative
          Adversarial Networks](https://arxiv.org/abs/1802.05957).
        - [Gulrajani et al., 2017. Improved Training of Wasserstein
          GANs](https://arxiv.org/abs/1704.00028), Sec. 4.
        - Paper 001: Bingol et al., Sec. II-C.
    """
    _check_image_size(image_size)
    for field, value in (("channels", channels), ("base_filters", base_filters), ("max_filters", max_filters)):
        _check_int(field, value, minimum=1)
    _check_int("num_classes", num_classes, minimum=0)
    _check_max_filters(base_filters, max_filters)
    if conditioning is None and num_classes:
        conditioning = "label_maps"
    if conditioning is not None:
        if conditioning not in CONDITIONINGS:
            raise ValueError(
                f"`conditioning` must be one of {CONDITIONINGS} or None. Received: conditioning={conditioning!r}")
        if not num_classes:
            raise ValueError(f"`conditioning={conditioning!r}` needs the classes: pass `num_classes` >= 1. "
                             f"Received: num_classes={num_classes}")
    if spectral_norm not in (True, False):
        raise ValueError(f"`spectral_norm` must be True or False. Received: spectral_norm={spectral_norm!r}")
    _check_unit_interval("leaky_slope", leaky_slope)
    if norm not in DISCRIMINATOR_NORMS:
        raise ValueError(f"`norm` must be one of {DISCRIMINATOR_NORMS}. Received: norm={norm!r}")
    _check_unit_interval("bn_momentum", bn_momentum)

    image = keras.Input((image_size, image_size, channels), name="image")
    x, inputs = image, image
    if conditioning:
        label = keras.Input((), dtype="int32", name="label")
        inputs = {"image": image, "label": label}
        one_hot = keras.layers.CategoryEncoding(num_classes, output_mode="one_hot", name="label_one_hot")(label)
        if conditioning == "label_maps":
            maps = keras.layers.Reshape((1, 1, num_classes), name="label_maps_reshape")(one_hot)
            maps = keras.layers.UpSampling2D(image_size, name="label_maps")(maps)
            x = keras.layers.Concatenate(name="image_label_maps_concat")([image, maps])

    num_downs = int(math.log2(image_size)) - 2
    for k in range(1, num_downs + 1):
        first = k == 1
        x = _weight_layer(
            keras.layers.Conv2D,
            f"block_{k}_conv",
            spectral_norm,
            filters=min(base_filters * 2 ** (k - 1), max_filters),
            kernel_size=4,
            strides=2,
            padding="same",  # equals PyTorch padding=1 for even sizes
            use_bias=first or norm == "none",
        )(x)
        if not first and norm == "batch":
            x = _batch_norm(bn_momentum, name=f"block_{k}_norm")(x)
        elif not first and norm == "layer":
            x = keras.layers.GroupNormalization(groups=1, epsilon=1e-5, name=f"block_{k}_norm")(x)
        x = keras.layers.LeakyReLU(negative_slope=leaky_slope, name=f"block_{k}_lrelu")(x)

    features = keras.layers.Flatten(name="features")(x)
    # The output layers compute in float32 under mixed precision (DESIGN.md); a spectral-norm wrapper casts its
    # output to its input's dtype, so it gets the float32 policy too.
    logits = _weight_layer(keras.layers.Dense, "logits", spectral_norm, dtype="float32", units=1)(features)
    if conditioning == "projection":
        embedding = _weight_layer(keras.layers.Dense, "label_embedding", spectral_norm, dtype="float32",
                                  units=features.shape[-1], use_bias=False)(one_hot)
        projection = keras.layers.Dot(axes=1, dtype="float32", name="projection")([embedding, features])
        logits = keras.layers.Add(dtype="float32", name="projected_logits")([logits, projection])
    return keras.Model(inputs, logits, name=name)


def _weight_layer(layer_class, name, spectral_norm, dtype=None, **kwargs):
    """A `layer_class` with N(0, 0.02) weights, wrapped in spectral normalisation under `name` when asked for."""
    kwargs["kernel_initializer"] = pix2pix_kernel_initializer()
    if not spectral_norm:
        return layer_class(name=name, dtype=dtype, **kwargs)
    layer = layer_class(name=f"{name}_layer", dtype=dtype, **kwargs)
    return keras.layers.SpectralNormalization(layer, power_iterations=1, name=name, dtype=dtype)


def _batch_norm(momentum, name):
    """DCGAN batch norm: PyTorch's epsilon, scale initialised N(1, 0.02)."""
    return FusedBatchNormalization(
        momentum=momentum,
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=0.02),
        name=name,
    )


def _activation(leaky_slope, name):
    """ReLU when `leaky_slope` is 0, else LeakyReLU."""
    if leaky_slope == 0:
        return keras.layers.ReLU(name=name)
    return keras.layers.LeakyReLU(negative_slope=leaky_slope, name=name)


def _upsample(upsampling, filters, use_bias, name):
    """One x2 upsampling convolution of the generator."""
    if upsampling == "resize_conv":
        return ResizeConv2D(filters, kernel_size=3, scale=2, interpolation="nearest", use_bias=use_bias,
                            kernel_initializer=pix2pix_kernel_initializer(), name=name)
    return keras.layers.Conv2DTranspose(
        filters,
        4,
        strides=2,
        padding="same",  # equals PyTorch ConvTranspose2d(4, 2, padding=1): output 2x the input
        use_bias=use_bias,
        kernel_initializer=pix2pix_kernel_initializer(),
        name=name,
    )


def _check_image_size(image_size):
    integer = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if not (integer and MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE and not image_size & (image_size - 1)):
        raise ValueError(
            f"`image_size` must be a power of two between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} "
            f"(DCGAN doubles a 4x4 map up to it). Received: image_size={image_size!r}"
        )


def _check_int(field, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{field}` must be an integer >= {minimum}. Received: {field}={value!r}")


def _check_max_filters(base_filters, max_filters):
    if max_filters < base_filters:
        raise ValueError(
            f"`max_filters` must be >= `base_filters` ({base_filters}). Received: max_filters={max_filters}"
        )


def _check_unit_interval(field, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{field}` must be in [0, 1). Received: {field}={value!r}")
