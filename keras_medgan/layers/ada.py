"""Adaptive discriminator augmentation (ADA): the differentiable augmentation pipeline and its controller.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (the ADA paper). Every
image shown to the discriminator, real or generated, goes through the same stochastic pipeline; each
transform is applied to each image independently with probability ``p`` (Sec. 2.2-2.3), which keeps the
augmentations from leaking into the generated images as long as ``p`` stays below about 0.8. ``p`` is tuned
during training from the overfitting heuristic ``r_t = E[sign(D(real))]`` (Sec. 3, ``adjust_p``).

The pipeline is Appendix B's "bgc" (pixel blitting + general geometric + colour). Its parameters, all
Appendix B defaults (the same as NVIDIA's stylegan2-ada-pytorch ``training/augment.py``):

============  ===================================================================================
xflip         mirror x with probability 0.5 (when the transform fires)
rotate90      rotate by k * 90 degrees, k uniform in {0, 1, 2, 3}
xint          integer translation, uniform in +-0.125 of the image size, rounded to whole pixels
scale         isotropic scaling, lognormal with std 0.2 * ln 2
rotate        arbitrary rotation, uniform in +-pi, tried twice (before and after ``aniso``), each
              with probability ``1 - sqrt(1 - p)`` so that P(any rotation) = p
aniso         anisotropic scaling (s, 1/s), lognormal with std 0.2 * ln 2
xfrac         fractional translation, normal with std 0.125 of the image size
brightness    add N(0, 0.2^2)
contrast      multiply by a lognormal with std 0.5 * ln 2
lumaflip      Householder reflection along the luma axis v = (1, 1, 1) / sqrt(3), i uniform in {0, 1}
hue           rotation about the luma axis, uniform in +-pi
saturation    scale the colour away from the luma axis by a lognormal with std 1 * ln 2
============  ===================================================================================

Geometric transforms compose into one 3x3 inverse matrix per image (output pixel -> input pixel, origin at
the image centre) and the image is resampled once, bilinearly, with reflect padding; colour transforms
compose into one 4x4 matrix per image applied once.

Code (vs. NVIDIA's pipeline):
    - The sampler is our own bilinear gather (``warp_affine``) so the gradient w.r.t. the images is exact
      (G and the R1 penalty backpropagate through it); sample points are pixel centres, so integer
      transforms (blits, the identity) reproduce pixels bit for bit.
    - NVIDIA pads the image, upsamples it 2x with a sym6 wavelet filter, samples, and filters back down to
      reduce aliasing of the general geometric transforms. We sample the image directly, for CPU speed:
      rotations and scalings alias slightly more. Blits are unaffected.
    - Reflect padding is periodic (mirror without repeating the edge pixel, like ``np.pad(mode="reflect")``)
      at any distance; NVIDIA reflects once, far enough for its transforms, and pads zeros beyond.
    - All random numbers of a call come from one ``keras.random.uniform`` draw of shape ``[batch, 28]`` (a
      fixed column per parameter); normal variates are ``sqrt(2) * erfinv(2u - 1)``. One draw advances a
      ``SeedGenerator`` once and makes an int seed reproducible without correlated streams.
    - 1-channel images: as in NVIDIA's code, the 4x4 colour matrix is reduced to the mean of its three
      colour rows, so brightness adds, contrast scales (around 0, the mid-grey of [-1, 1]), luma flip
      negates around 0; hue rotation and saturation (identities after that reduction) are skipped, as NVIDIA
      does.
    - Image-space filtering and corruptions (Appendix B's "f" and "c" groups) are not implemented; the ADA
      paper finds "bgc" the best on its limited-data benchmarks (Sec. 2.3, Fig. 4).
"""

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

BLIT_TRANSFORMS = ("xflip", "rotate90", "xint")
GEOMETRIC_TRANSFORMS = ("scale", "rotate", "aniso", "xfrac")
COLOR_TRANSFORMS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
AUGMENT_SPECS = {
    "bgc": BLIT_TRANSFORMS + GEOMETRIC_TRANSFORMS + COLOR_TRANSFORMS,
    "bg": BLIT_TRANSFORMS + GEOMETRIC_TRANSFORMS,
    "none": (),
}

# Columns of the per-image uniform draw, fixed per transform whatever the spec, so a transform's parameters
# do not depend on which other transforms are enabled.
_DRAW_COLUMNS = {
    "xflip": 2, "rotate90": 2, "xint": 3, "scale": 2, "rotate": 4, "aniso": 2, "xfrac": 3,
    "brightness": 2, "contrast": 2, "lumaflip": 2, "hue": 2, "saturation": 2,
}
_DRAW_OFFSETS = dict(zip(_DRAW_COLUMNS, np.cumsum([0] + list(_DRAW_COLUMNS.values()))[:-1].tolist()))
_NUM_DRAWS = sum(_DRAW_COLUMNS.values())

# Appendix B defaults (NVIDIA's augment.py names them *_std / *_max).
XINT_MAX = 0.125  # Integer translation range, fraction of the image size.
SCALE_STD = 0.2  # log2 std of isotropic scaling.
ROTATE_MAX = 1.0  # Arbitrary rotation range, fraction of a half turn (1 = +-pi).
ANISO_STD = 0.2  # log2 std of anisotropic scaling.
XFRAC_STD = 0.125  # Fractional translation std, fraction of the image size.
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2 std.
HUE_MAX = 1.0  # Hue rotation range, fraction of a half turn.
SATURATION_STD = 1.0  # log2 std.

_LN2 = math.log(2.0)
_UNIFORM_EPS = 2.0 ** -24  # Keeps erfinv(2u - 1) finite.


def resolve_spec(spec):
    """The tuple of transform names of ``spec`` (a key of ``AUGMENT_SPECS`` or a sequence of names)."""
    if isinstance(spec, str):
        if spec not in AUGMENT_SPECS:
            raise ValueError(f"`spec` must be one of {sorted(AUGMENT_SPECS)} or a tuple of transform names. "
                             f"Received: spec={spec!r}")
        return AUGMENT_SPECS[spec]
    names = tuple(spec)
    unknown = [name for name in names if name not in _DRAW_COLUMNS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"`spec` names must be distinct and among {list(_DRAW_COLUMNS)}. Received: spec={spec!r}")
    return names


def ada_augment(images, p, seed=None, spec="bgc"):
    """Augments a batch with the ADA pipeline, each transform firing per image with probability ``p``.

    Differentiable w.r.t. ``images`` (the gradient is exact: bilinear weights and a gather), traceable in
    ``tf.function`` with an unknown batch size. Computes in float32 and returns ``images.dtype``.

    Args:
        images: float tensor `[batch, height, width, channels]`, values about [-1, 1], channels 1 or 3.
        p: scalar float (tensor or variable). Augmentation probability in [0, 1] (ADA paper Sec. 2.2);
            ``p = 0`` returns the images unchanged.
        seed: `keras.random.SeedGenerator`, int or None. Randomness for `keras.random.uniform`; a
            generator advances once per call, an int gives the same augmentation every call.
        spec: str or tuple of str. A key of `AUGMENT_SPECS` (``"bgc"``: Appendix B's blit + geometric +
            colour, the ADA default; ``"bg"``: without colour, the best setting of the ISIC 2020 StyleGAN2-ADA
            study, where colour augmentation leaked into the generated skin tones) or a tuple of transform
            names, applied in Appendix B's order whatever the tuple order.

    Returns:
        The augmented images, same shape and dtype as ``images``.

    Example:

    >>> seed = keras.random.SeedGenerator(0)
    >>> ada_augment(np.zeros((4, 32, 32, 3), "float32"), p=0.2, seed=seed).shape
    TensorShape([4, 32, 32, 3])
    """
    names = set(resolve_spec(spec))
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"`images` must be [batch, height, width, 1 or 3]. Received shape: {images.shape}")
    if not images.dtype.is_floating:
        raise ValueError(f"`images` must be a float tensor. Received dtype: {images.dtype.name}")
    if images.shape[-1] == 1:
        names -= {"hue", "saturation"}  # identities for grey images once the colour matrix is reduced
    if not names:
        return images
    dtype = images.dtype
    x = tf.cast(images, tf.float32)
    p = tf.cast(tf.convert_to_tensor(p), tf.float32)
    batch = tf.shape(x)[0]
    draws = keras.random.uniform((batch, _NUM_DRAWS), dtype="float32", seed=seed)

    if names & set(BLIT_TRANSFORMS + GEOMETRIC_TRANSFORMS):
        shape = tf.shape(x)
        inverse = _geometric_inverse_matrix(names, draws, p, tf.cast(shape[2], tf.float32),
                                            tf.cast(shape[1], tf.float32))
        x = warp_affine(x, inverse)
    if names & set(COLOR_TRANSFORMS):
        x = _apply_color_matrix(x, _color_matrix(names, draws, p))
    return tf.cast(x, dtype)


def adjust_p(p, r_t, target=0.6, batch_size=64, interval=4, ada_kimg=500):
    """One step of the ADA controller: ``clip(p + sign(r_t - target) * batch_size * interval / (ada_kimg * 1000))``.

    ADA paper Sec. 3: ``r_t = E[sign(D(x_real))]`` over the last ``interval`` minibatches; ``p`` rises when
    the discriminator is too sure of the reals (``r_t > target``, target 0.6) and falls otherwise, fast
    enough to go from 0 to 1 in ``ada_kimg`` = 500 k images; adjusted every ``interval`` = 4 minibatches.
    ``batch_size`` defaults to 64, NVIDIA's ``paper256`` minibatch (the ADA paper's 256 px setting). The
    result is clipped to [0, 1]. Python numbers in give a Python float; tensors give a float32 tensor.

    Example:

    >>> adjust_p(0.5, r_t=0.8, batch_size=64)
    0.500512
    """
    step = batch_size * interval / (ada_kimg * 1000)
    if all(isinstance(v, numbers.Real) for v in (p, r_t, target)):
        sign = (r_t > target) - (r_t < target)
        return float(min(max(p + sign * step, 0.0), 1.0))
    p = tf.cast(tf.convert_to_tensor(p), tf.float32)
    r_t = tf.cast(tf.convert_to_tensor(r_t), tf.float32)
    return tf.clip_by_value(p + tf.sign(r_t - target) * step, 0.0, 1.0)


def warp_affine(images, inverse_matrix):
    """Bilinear resampling ``out[y, x] = in[G_inv @ (x, y, 1)]`` with coordinates centred on the image.

    ``inverse_matrix`` `[batch, 3, 3]` maps output pixel centres to input positions, both in pixels with the
    origin at the image centre (x right, y down); positions outside the image read the periodic mirror
    (``np.pad(mode="reflect")``). The identity matrix reproduces the image exactly. Exact gradient w.r.t.
    ``images`` (gathers and fixed bilinear weights); none w.r.t. the matrix. Computes in float32 and returns
    ``images.dtype``.
    """
    images = tf.convert_to_tensor(images)
    dtype = images.dtype
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], images.shape[-1]
    hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cy, cx = (hf - 1.0) / 2.0, (wf - 1.0) / 2.0
    ys = tf.range(hf) - cy
    xs = tf.range(wf) - cx
    gy, gx = tf.meshgrid(ys, xs, indexing="ij")  # [H, W]
    g = tf.stop_gradient(tf.cast(inverse_matrix, tf.float32))
    g = g[:, :, :, None, None]  # [B, 3, 3, 1, 1]
    src_x = g[:, 0, 0] * gx + g[:, 0, 1] * gy + g[:, 0, 2] + cx  # [B, H, W]
    src_y = g[:, 1, 0] * gx + g[:, 1, 1] * gy + g[:, 1, 2] + cy
    x0f, y0f = tf.floor(src_x), tf.floor(src_y)
    fx, fy = (src_x - x0f)[..., None], (src_y - y0f)[..., None]
    x0, y0 = tf.cast(x0f, tf.int32), tf.cast(y0f, tf.int32)
    x0, x1 = _reflect_index(x0, width), _reflect_index(x0 + 1, width)
    y0, y1 = _reflect_index(y0, height), _reflect_index(y0 + 1, height)
    flat = tf.reshape(images, tf.stack([batch, height * width, channels]))

    def gather(yi, xi):
        index = tf.reshape(yi * width + xi, tf.stack([batch, height * width]))
        return tf.reshape(tf.gather(flat, index, batch_dims=1), shape)

    top = (1.0 - fx) * gather(y0, x0) + fx * gather(y0, x1)
    bottom = (1.0 - fx) * gather(y1, x0) + fx * gather(y1, x1)
    return tf.cast((1.0 - fy) * top + fy * bottom, dtype)


@keras.saving.register_keras_serializable(package="keras_medgan")
class AdaptiveAugment(keras.layers.Layer):
    """The ADA augmentation pipeline as a layer holding its probability ``p``.

    Applies `ada_augment` when called with ``training=True`` and is the identity otherwise. ``p`` is a
    non-trainable float32 weight named ``"p"`` (saved with the model, so a resumed run keeps its
    augmentation strength); update it with ``layer.p.assign(adjust_p(layer.p, r_t, ...))`` (ADA Sec. 3).
    ``p`` is read in float32 under mixed precision; its replicas take the first replica's value under a
    distribution strategy. Inputs follow the layer's dtype policy (cast to its compute dtype).

    Args:
        spec: str or tuple of str. Key of `AUGMENT_SPECS` or tuple of transform names. Defaults to
            ``"bgc"`` (ADA paper Appendix B, its best pipeline for limited data, Sec. 2.3).
        init_p: float. Initial probability in [0, 1]. Defaults to `0.0` (ADA paper Sec. 3: p starts at
            zero and is raised by the controller).
        seed: int or None. Seed of the layer's `keras.random.SeedGenerator`. Defaults to `None`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, such as `name` and `dtype`.

    Example:

    >>> augment = AdaptiveAugment(spec="bg", init_p=0.2, seed=1)
    >>> augment(np.zeros((2, 32, 32, 3), "float32"), training=True).shape
    TensorShape([2, 32, 32, 3])

    Reference:
        - [Karras et al., 2020. Training Generative Adversarial Networks with Limited
          Data](https://arxiv.org/abs/2006.06676), Sec. 2-3 and Appendix B.
    """

    def __init__(self, spec="bgc", init_p=0.0, seed=None, **kwargs):
        spec = spec if isinstance(spec, str) else tuple(spec)
        resolve_spec(spec)
        if isinstance(init_p, bool) or not isinstance(init_p, numbers.Real) or not 0.0 <= init_p <= 1.0:
            raise ValueError(f"`init_p` must be a number in [0, 1]. Received: init_p={init_p!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        super().__init__(**kwargs)
        self.spec = spec
        self.init_p = float(init_p)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.p = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.init_p),
            dtype="float32",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
            name="p",
        )
        self.built = True

    def call(self, images, training=False):
        if not training:
            return images
        return ada_augment(images, self.p, seed=self.seed_generator, spec=self.spec)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"spec": self.spec if isinstance(self.spec, str) else list(self.spec),
                       "init_p": self.init_p, "seed": self.seed})
        return config


def _reflect_index(index, size):
    """Integer pixel indices folded into [0, size) by periodic mirroring without repeating the edge."""
    period = tf.maximum(2 * (size - 1), 1)
    folded = tf.math.floormod(index, period)
    return tf.minimum(folded, period - folded)


def _column(draws, name, i=0):
    """Column ``i`` of transform ``name``'s uniform draws, shape [batch]."""
    return draws[:, _DRAW_OFFSETS[name] + i]


def _normal(u):
    """Standard normal variates from uniforms by the inverse CDF."""
    u = tf.clip_by_value(u, _UNIFORM_EPS, 1.0 - _UNIFORM_EPS)
    return math.sqrt(2.0) * tf.math.erfinv(2.0 * u - 1.0)


def _fires(draws, name, probability, i=0):
    """Per-image boolean: transform ``name`` applies to the image (uniform draw below the probability)."""
    return _column(draws, name, i) < probability


def _matrix3(rows):
    """[batch, 3, 3] from a 3x3 nested list of [batch] tensors or Python numbers."""
    reference = next(v for row in rows for v in row if isinstance(v, tf.Tensor))
    entries = [[v if isinstance(v, tf.Tensor) else tf.fill(tf.shape(reference), float(v)) for v in row]
               for row in rows]
    return tf.stack([tf.stack(row, axis=-1) for row in entries], axis=-2)


def _translate(tx, ty):
    return _matrix3([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _scale(sx, sy):
    return _matrix3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _rotate(cos, sin):
    return _matrix3([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])


def _geometric_inverse_matrix(names, draws, p, width, height):
    """The composed inverse geometric transform (output pixel -> input pixel), Appendix B order."""
    ones = tf.ones_like(draws[:, 0])
    zeros = tf.zeros_like(ones)
    g_inv = _scale(ones, ones)
    if "xflip" in names:
        flip = tf.where(_fires(draws, "xflip", p) & (_column(draws, "xflip", 1) < 0.5), -ones, ones)
        g_inv = g_inv @ _scale(flip, ones)
    if "rotate90" in names:
        k = tf.minimum(tf.cast(tf.floor(_column(draws, "rotate90", 1) * 4.0), tf.int32), 3)
        k = tf.where(_fires(draws, "rotate90", p), k, 0)
        # Exact cos/sin of k * 90 degrees, so blits stay integer-valued.
        cos = tf.gather(tf.constant([1.0, 0.0, -1.0, 0.0]), k)
        sin = tf.gather(tf.constant([0.0, 1.0, 0.0, -1.0]), k)
        g_inv = g_inv @ _rotate(cos, sin)
    if "xint" in names:
        fires = _fires(draws, "xint", p)
        tx = tf.round((_column(draws, "xint", 1) * 2.0 - 1.0) * XINT_MAX * width)
        ty = tf.round((_column(draws, "xint", 2) * 2.0 - 1.0) * XINT_MAX * height)
        g_inv = g_inv @ _translate(tf.where(fires, -tx, zeros), tf.where(fires, -ty, zeros))
    if "scale" in names:
        # Inverse scale drawn directly: graph-mode division may use an approximate reciprocal, and 1 / 1
        # must stay exactly 1 for images the transform skips.
        log_s = _normal(_column(draws, "scale", 1)) * SCALE_STD * _LN2
        s_inv = tf.where(_fires(draws, "scale", p), tf.exp(-log_s), ones)
        g_inv = g_inv @ _scale(s_inv, s_inv)
    # Two chances of rotating, each with p_rot, so that P(pre or post) = p (Appendix B).
    p_rot = 1.0 - tf.sqrt(tf.clip_by_value(1.0 - p, 0.0, 1.0))
    if "rotate" in names:
        theta = (_column(draws, "rotate", 1) * 2.0 - 1.0) * math.pi * ROTATE_MAX
        theta = tf.where(_fires(draws, "rotate", p_rot), theta, zeros)
        g_inv = g_inv @ _rotate(tf.cos(theta), -tf.sin(theta))
    if "aniso" in names:
        log_s = _normal(_column(draws, "aniso", 1)) * ANISO_STD * _LN2
        fires = _fires(draws, "aniso", p)
        g_inv = g_inv @ _scale(tf.where(fires, tf.exp(-log_s), ones), tf.where(fires, tf.exp(log_s), ones))
    if "rotate" in names:
        theta = (_column(draws, "rotate", 3) * 2.0 - 1.0) * math.pi * ROTATE_MAX
        theta = tf.where(_fires(draws, "rotate", p_rot, 2), theta, zeros)
        g_inv = g_inv @ _rotate(tf.cos(theta), -tf.sin(theta))
    if "xfrac" in names:
        fires = _fires(draws, "xfrac", p)
        tx = _normal(_column(draws, "xfrac", 1)) * XFRAC_STD * width
        ty = _normal(_column(draws, "xfrac", 2)) * XFRAC_STD * height
        g_inv = g_inv @ _translate(tf.where(fires, -tx, zeros), tf.where(fires, -ty, zeros))
    return g_inv


def _color_matrix(names, draws, p):
    """The composed 4x4 homogeneous colour transform (colour_out = C @ colour_in), Appendix B order."""
    ones = tf.ones_like(draws[:, 0])
    zeros = tf.zeros_like(ones)
    eye = tf.eye(4, batch_shape=tf.shape(ones))
    luma = tf.constant([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)
    vv = tf.tensordot(luma, luma, axes=0)  # [4, 4] projector onto the luma axis
    c = eye
    if "brightness" in names:
        b = tf.where(_fires(draws, "brightness", p), _normal(_column(draws, "brightness", 1)) * BRIGHTNESS_STD, zeros)
        shift = tf.concat([tf.tile(b[:, None], [1, 3]), tf.zeros_like(b[:, None])], axis=1)  # [B, 4]
        c = _with_last_column(eye, shift) @ c
    if "contrast" in names:
        s = tf.exp(_normal(_column(draws, "contrast", 1)) * CONTRAST_STD * _LN2)
        s = tf.where(_fires(draws, "contrast", p), s, ones)
        c = tf.linalg.diag(tf.stack([s, s, s, ones], axis=-1)) @ c
    if "lumaflip" in names:
        i = tf.where(_fires(draws, "lumaflip", p) & (_column(draws, "lumaflip", 1) < 0.5), ones, zeros)
        c = (eye - 2.0 * vv * i[:, None, None]) @ c  # Householder reflection.
    if "hue" in names:
        fires = _fires(draws, "hue", p)
        theta = (_column(draws, "hue", 1) * 2.0 - 1.0) * math.pi * HUE_MAX
        rotation = _about_luma(vv, tf.cos(theta)[:, None, None], _cross_matrix(luma) * tf.sin(theta)[:, None, None])
        # Exact identity where the transform does not fire (vv + (I - vv) rounds to 1 - 1 ulp otherwise).
        c = tf.where(fires[:, None, None], rotation, eye) @ c
    if "saturation" in names:
        s = tf.exp(_normal(_column(draws, "saturation", 1)) * SATURATION_STD * _LN2)
        c = tf.where(_fires(draws, "saturation", p)[:, None, None], _about_luma(vv, s[:, None, None], 0.0), eye) @ c
    return c


def _with_last_column(eye, column):
    """Identity [B, 4, 4] with its last column replaced by ``column`` [B, 4] (a homogeneous translation)."""
    return tf.concat([eye[:, :, :3], column[:, :, None] + eye[:, :, 3:]], axis=2)


def _cross_matrix(axis):
    """Homogeneous 4x4 ``[axis]_x`` (cross product with ``axis``), zero last row and column."""
    a, b, c = axis[0], axis[1], axis[2]
    return tf.stack([tf.stack([0.0, -c, b, 0.0]), tf.stack([c, 0.0, -a, 0.0]),
                     tf.stack([-b, a, 0.0, 0.0]), tf.zeros(4)])


def _about_luma(vv, radial, extra):
    """``vv + (I3 - vv) * radial + extra`` with the homogeneous corner kept at 1 (saturation, Rodrigues hue)."""
    complement = tf.constant(np.diag([1.0, 1.0, 1.0, 0.0]), tf.float32) - vv
    corner = tf.constant(np.diag([0.0, 0.0, 0.0, 1.0]), tf.float32)
    return vv + complement * radial + extra + corner


def _apply_color_matrix(images, c):
    """Applies [B, 4, 4] colour matrices; 1-channel images use the mean of the three colour rows (NVIDIA)."""
    if images.shape[-1] == 3:
        linear = c[:, None, None, :3, :3]  # [B, 1, 1, 3, 3]
        offset = c[:, None, None, :3, 3]  # [B, 1, 1, 3]
        return tf.reduce_sum(linear * images[..., None, :], axis=-1) + offset
    gain = tf.reduce_sum(c[:, :3, :3], axis=(1, 2)) / 3.0  # sum of the mean row's colour entries
    offset = tf.reduce_mean(c[:, :3, 3], axis=1)
    return images * gain[:, None, None, None] + offset[:, None, None, None]
