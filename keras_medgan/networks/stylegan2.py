"""StyleGAN2 networks (Karras et al. 2020, config F, with the ADA paper's changes), in Keras 3.

- ``mapping_network``: z (and a class embedding) -> w; 8 equalised dense layers with learning-rate multiplier 0.01.
- ``synthesis_network``: ``ws [batch, num_ws, w_dim]`` -> image, the "skip" architecture with toRGB at every
  resolution, modulated/demodulated convolutions, noise inputs, a learned 4x4 constant and FIR resampling.
- ``StyleGAN2Generator``: mapping + synthesis with the tracked average ``w_avg`` for the truncation trick and
  style mixing; it is one serializable model, so ``generator.keras`` generates with truncation on its own.
- ``stylegan2_discriminator``: the residual architecture with a minibatch-stddev epilogue and, for a conditional
  model, projection on a mapped class embedding (the ADA code's ``cmap``).

Channel counts follow the ADA code: ``min(channel_base // resolution, channel_max)``; its 256-px ``paper256``
setting is ``channel_base=16384`` (32768 x fmaps 0.5), ``channel_max=512``, so the same builders make a 32-px
demo model with a small ``channel_base`` and the 256-px paper model.
"""

from __future__ import annotations

import copy
import math

import keras
import numpy as np
import tensorflow as tf

from keras_medgan.layers.stylegan import (ConstantInput, EqualizedConv2D, EqualizedDense, FIRUpsample2D,
                                          MinibatchStdDev, ModulatedConv2D, NormalizeSecondMoment, ProjectionOutput,
                                          ScaledAdd)


def _check_resolution(resolution):
    if not (isinstance(resolution, int) and resolution >= 8 and resolution & (resolution - 1) == 0):
        raise ValueError(f"`resolution` must be a power of two >= 8. Received: resolution={resolution!r}")


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at one resolution: ``min(channel_base // resolution, channel_max)`` (at least 1)."""
    return max(1, min(channel_base // resolution, channel_max))


def num_ws(resolution: int) -> int:
    """Number of w vectors the synthesis network reads: one per convolution plus the last toRGB
    (``2 log2(resolution) - 2``; 14 at 256 px)."""
    _check_resolution(resolution)
    return 2 * int(math.log2(resolution)) - 2


def _layer_dtype(res: int, resolution: int, num_fp16_res: int):
    """The ADA code runs the ``num_fp16_res`` highest resolutions in reduced precision and the rest in float32;
    here: the global (mixed) policy on those layers, float32 on the others."""
    return None if res >= resolution // 2 ** max(num_fp16_res - 1, 0) and num_fp16_res > 0 else "float32"


def mapping_network(z_dim: int = 512, num_classes: int = 0, w_dim: int = 512, num_layers: int = 8,
                    lr_multiplier: float = 0.01, name: str = "mapping") -> keras.Model:
    """The mapping network f: Z (x C) -> W (StyleGAN Sec. 2; ADA code ``MappingNetwork``).

    z is normalised to unit second moment; a conditional model embeds the one-hot class with an equalised dense
    layer, normalises it too and concatenates it (ADA Appendix D). ``z_dim=0`` maps the class alone (the
    discriminator's ``cmap``). Inputs ``[z, c]`` (``c`` one-hot) or ``z``; output ``w [batch, w_dim]``.
    """
    if z_dim < 0 or num_classes < 0 or z_dim + num_classes == 0:
        raise ValueError(f"mapping_network needs z_dim > 0 or num_classes > 0. Received: z_dim={z_dim}, "
                         f"num_classes={num_classes}")
    inputs, parts = [], []
    if z_dim:
        z = keras.Input((z_dim,), name="z")
        inputs.append(z)
        parts.append(NormalizeSecondMoment(name="normalize_z")(z))
    if num_classes:
        c = keras.Input((num_classes,), name="c")
        inputs.append(c)
        embed = EqualizedDense(w_dim, name="embed")(c)
        parts.append(NormalizeSecondMoment(name="normalize_c")(embed))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="concat")(parts)
    for i in range(num_layers):
        x = EqualizedDense(w_dim, activation="lrelu", lr_multiplier=lr_multiplier, name=f"fc{i}",
                           dtype="float32")(x)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], x, name=name)


def synthesis_network(resolution: int = 256, channels: int = 3, w_dim: int = 512, channel_base: int = 16384,
                      channel_max: int = 512, num_fp16_res: int = 0, conv_clamp=None, seed: int = 0,
                      name: str = "synthesis") -> keras.Model:
    """The synthesis network g: ``ws [batch, num_ws, w_dim]`` -> image ``[batch, R, R, channels]`` in about [-1, 1].

    StyleGAN2 Fig. 7b ("skip" generator): a learned 4x4 constant, at each resolution two modulated 3x3
    convolutions (the first upsamples) with noise, and a toRGB whose output is added to the FIR-upsampled image
    of the previous resolution. Layer ``i`` reads ``ws[:, i]``; the toRGB of a block shares the index of the next
    block's first convolution (as in the ADA code), so there are ``num_ws(resolution)`` rows. The image is
    float32.
    """
    _check_resolution(resolution)
    ws = keras.Input((num_ws(resolution), w_dim), name="ws")
    ch = lambda r: channels_at(r, channel_base, channel_max)  # noqa: E731
    dt = lambda r: _layer_dtype(r, resolution, num_fp16_res)  # noqa: E731
    clamp = lambda r: conv_clamp if dt(r) is None else None  # noqa: E731
    x = ConstantInput(ch(4), name="b4_const", dtype=dt(4))(ws)
    x = ModulatedConv2D(ch(4), 3, w_index=0, conv_clamp=clamp(4), seed=seed, name="b4_conv1", dtype=dt(4))(
        [x, ws])
    img = ModulatedConv2D(channels, 1, w_index=1, demodulate=False, activation="linear", use_noise=False,
                          conv_clamp=clamp(4), name="b4_torgb", dtype="float32")([x, ws])
    index = 1
    res = 8
    while res <= resolution:
        x = ModulatedConv2D(ch(res), 3, w_index=index, up=True, conv_clamp=clamp(res), seed=seed + 2 * index,
                            name=f"b{res}_conv0", dtype=dt(res))([x, ws])
        x = ModulatedConv2D(ch(res), 3, w_index=index + 1, conv_clamp=clamp(res), seed=seed + 2 * index + 1,
                            name=f"b{res}_conv1", dtype=dt(res))([x, ws])
        y = ModulatedConv2D(channels, 1, w_index=index + 2, demodulate=False, activation="linear", use_noise=False,
                            conv_clamp=clamp(res), name=f"b{res}_torgb", dtype="float32")([x, ws])
        img = keras.layers.Add(name=f"b{res}_skip", dtype="float32")([FIRUpsample2D(name=f"b{res}_up",
                                                                                   dtype="float32")(img), y])
        index += 2
        res *= 2
    return keras.Model(ws, img, name=name)


@keras.saving.register_keras_serializable(package="keras_medgan")
class StyleGAN2Generator(keras.Model):
    """Mapping + synthesis, with ``w_avg`` for truncation (StyleGAN Sec. 3.1 / Appendix B) and style mixing.

    ``call(inputs, truncation_psi=1.0, truncation_cutoff=None, training=False)`` with ``inputs = [z, c]`` (``c``
    one-hot; ``z`` alone for an unconditional generator). ``w_avg`` is the running mean of the mapping outputs
    seen in training (``update_w_avg``, beta 0.995 as in the ADA code); truncation moves w towards it:
    ``w_avg + psi (w - w_avg)`` on the first ``truncation_cutoff`` rows of ws (all when None).

    Args:
        mapping: the ``mapping_network`` model.
        synthesis: the ``synthesis_network`` model.
        w_avg_beta: float. Decay of the ``w_avg`` tracker.
    """

    def __init__(self, mapping, synthesis, w_avg_beta=0.995, **kwargs):
        super().__init__(**kwargs)
        self.mapping = mapping
        self.synthesis = synthesis
        self.w_avg_beta = float(w_avg_beta)
        self.num_ws = int(synthesis.input_shape[1])
        self.w_dim = int(synthesis.input_shape[2])
        self.z_dim = int(mapping.inputs[0].shape[-1])
        self.num_classes = int(mapping.inputs[-1].shape[-1]) if len(mapping.inputs) > 1 else 0
        self.w_avg = self.add_weight(name="w_avg", shape=(self.w_dim,), initializer="zeros", trainable=False,
                                     aggregation="mean")

    def map(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, training=False):
        """``ws [batch, num_ws, w_dim]`` for latents ``z`` and one-hot classes ``c``, truncated towards ``w_avg``."""
        w = self.mapping([z, c] if self.num_classes else z, training=training)
        ws = tf.tile(tf.cast(w, tf.float32)[:, None, :], [1, self.num_ws, 1])
        if truncation_psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            mask = tf.constant((np.arange(self.num_ws) < cutoff).astype("float32"))[None, :, None]
            truncated = self.w_avg + truncation_psi * (ws - self.w_avg)
            ws = mask * truncated + (1.0 - mask) * ws
        return ws

    def update_w_avg(self, w):
        """Moves ``w_avg`` towards the batch mean of ``w`` (``[batch, w_dim]`` or ``[batch, num_ws, w_dim]``)."""
        w = tf.cast(w, tf.float32)
        mean = tf.reduce_mean(w if w.shape.rank == 2 else w[:, 0], axis=0)
        self.w_avg.assign(mean + self.w_avg_beta * (self.w_avg - mean))

    def call(self, inputs, truncation_psi=1.0, truncation_cutoff=None, training=False):
        if self.num_classes:
            z, c = inputs
        else:
            z, c = (inputs[0] if isinstance(inputs, (list, tuple)) else inputs), None
        ws = self.map(z, c, truncation_psi, truncation_cutoff, training=training)
        return self.synthesis(ws, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(mapping=keras.saving.serialize_keras_object(self.mapping),
                      synthesis=keras.saving.serialize_keras_object(self.synthesis), w_avg_beta=self.w_avg_beta)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)  # Keras's deserialisation empties the nested model configs it reads
        mapping = keras.saving.deserialize_keras_object(config.pop("mapping"), custom_objects=custom_objects)
        synthesis = keras.saving.deserialize_keras_object(config.pop("synthesis"), custom_objects=custom_objects)
        return cls(mapping, synthesis, **config)


def stylegan2_generator(resolution: int = 256, channels: int = 3, num_classes: int = 0, z_dim: int = 512,
                        w_dim: int = 512, mapping_layers: int = 8, mapping_lr_multiplier: float = 0.01,
                        channel_base: int = 16384, channel_max: int = 512, num_fp16_res: int = 0, conv_clamp=None,
                        w_avg_beta: float = 0.995, seed: int = 0, name: str = "generator") -> StyleGAN2Generator:
    """A built StyleGAN2 generator (see ``StyleGAN2Generator``); ``num_classes=0`` is unconditional.

    Defaults are config F / ADA ``paper256``: z and w 512, 8 mapping layers at learning-rate multiplier 0.01,
    ``channel_base=16384``, ``channel_max=512``. ``num_fp16_res=4`` and ``conv_clamp=256`` are the ADA code's
    mixed-precision setting.
    """
    mapping = mapping_network(z_dim, num_classes, w_dim, mapping_layers, mapping_lr_multiplier)
    synthesis = synthesis_network(resolution, channels, w_dim, channel_base, channel_max, num_fp16_res, conv_clamp,
                                  seed)
    g = StyleGAN2Generator(mapping, synthesis, w_avg_beta, name=name)
    inputs = [np.zeros((1, z_dim), "float32")] + ([np.zeros((1, num_classes), "float32")] if num_classes else [])
    g(inputs if num_classes else inputs[0])
    return g


def stylegan2_discriminator(resolution: int = 256, channels: int = 3, num_classes: int = 0,
                            channel_base: int = 16384, channel_max: int = 512, mbstd_group_size: int = 4,
                            mbstd_num_channels: int = 1, mapping_layers: int = 8, num_fp16_res: int = 0,
                            conv_clamp=None, name: str = "discriminator") -> keras.Model:
    """The residual StyleGAN2 discriminator (StyleGAN2 Fig. 7c; ADA code ``Discriminator``).

    fromRGB (1x1) at the input resolution, then per resolution two 3x3 convolutions (the second downsamples with
    the FIR filter) added to a 1x1 downsampled skip, both scaled by sqrt(1/2). The 4x4 epilogue: minibatch stddev
    (group ``mbstd_group_size``), a 3x3 convolution, a dense layer and the output. A conditional discriminator
    (``num_classes > 0``) maps the one-hot class through ``mapping_layers`` dense layers to ``cmap`` and outputs
    ``sum(x * cmap) / sqrt(cmap_dim)`` (projection). Inputs ``image`` or ``[image, c]``; output ``[batch, 1]``
    float32 logits.
    """
    _check_resolution(resolution)
    ch = lambda r: channels_at(r, channel_base, channel_max)  # noqa: E731
    dt = lambda r: _layer_dtype(r, resolution, num_fp16_res)  # noqa: E731
    clamp = lambda r: conv_clamp if dt(r) is None else None  # noqa: E731
    image = keras.Input((resolution, resolution, channels), name="image")
    x = EqualizedConv2D(ch(resolution), 1, conv_clamp=clamp(resolution), name=f"b{resolution}_fromrgb",
                        dtype=dt(resolution))(image)
    res = resolution
    while res > 4:
        skip = EqualizedConv2D(ch(res // 2), 1, activation="linear", down=True, use_bias=False,
                               name=f"b{res}_skip", dtype=dt(res))(x)
        x = EqualizedConv2D(ch(res), 3, conv_clamp=clamp(res), name=f"b{res}_conv0", dtype=dt(res))(x)
        x = EqualizedConv2D(ch(res // 2), 3, down=True, conv_clamp=clamp(res), name=f"b{res}_conv1",
                            dtype=dt(res))(x)
        x = ScaledAdd(name=f"b{res}_add", dtype=dt(res))([skip, x])
        res //= 2
    x = MinibatchStdDev(mbstd_group_size, mbstd_num_channels, name="b4_mbstd", dtype="float32")(x)
    x = EqualizedConv2D(ch(4), 3, name="b4_conv", dtype="float32")(x)
    x = keras.layers.Flatten(name="b4_flatten", dtype="float32")(x)
    x = EqualizedDense(ch(4), activation="lrelu", name="b4_fc", dtype="float32")(x)
    if not num_classes:
        out = EqualizedDense(1, name="b4_out", dtype="float32")(x)
        return keras.Model(image, out, name=name)
    c = keras.Input((num_classes,), name="c")
    cmap = mapping_network(0, num_classes, ch(4), mapping_layers, 0.01, name="d_mapping")(c)
    x = EqualizedDense(ch(4), name="b4_out", dtype="float32")(x)
    out = ProjectionOutput(name="projection", dtype="float32")([x, cmap])
    return keras.Model([image, c], out, name=name)


def r1_gamma_heuristic(resolution: int, batch_size: int) -> float:
    """The ADA code's default R1 weight: ``gamma = 0.0002 * resolution**2 / batch_size`` (ADA Appendix D.2)."""
    return 0.0002 * resolution ** 2 / batch_size


def lazy_regularization(learning_rate: float, betas: tuple, interval: int) -> tuple:
    """Adam settings for lazily regularised networks (StyleGAN2 Sec. 3.1 / Appendix B): with the penalty every
    ``interval`` minibatches, ``c = interval / (interval + 1)`` scales the learning rate and raises the betas to
    the power c, so the reg steps do not change the effective optimiser."""
    c = interval / (interval + 1)
    return learning_rate * c, tuple(b ** c for b in betas)
