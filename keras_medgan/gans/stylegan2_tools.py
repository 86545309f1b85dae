"""StyleGAN2 latent-space tools: projection of real images, the projection audit of paper 003, and SeFa.

- ``project``: find the w (or w+) whose image is perceptually closest to a target, as NVIDIA's projector
  (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN", Sec. 5 / Appendix D;
  ``NVlabs/stylegan2-ada-pytorch`` ``projector.py``), batched over targets.
- ``projection_audit``: the authenticity check of paper 003 (Carrasco Limeros et al. 2022, Sec. 4.3): cosine
  distances between real images and their projections in a classifier's embedding; a real image is flagged as
  possibly memorized when its own projection is its nearest neighbour and the distance is "too close", below the
  first quartile (Q1) of those distances.
- ``sefa_directions`` / ``sefa_edit_grid``: closed-form semantic factorisation (Shen & Zhou 2021, "Closed-form
  factorization of latent semantics in GANs", Sec. 3.2, Eq. 5; reference ``genforce/sefa``), the edits of paper
  003 Fig. 5.

Pure library: the command lines are in ``keras_medgan.recipes.stylegan2_tools``. All functions take the generator
to use (``StyleGAN2ADA.g_ema``).
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_medgan.layers.stylegan import ModulatedConv2D
from keras_medgan.metrics.perceptual import PerceptualFeatures, as_distance_fn, feature_distance
from keras_medgan.metrics.ppl import class_labels, map_w, synthesize, tile_ws

SPACES = ("w", "w+")
AUDIT_RULE = ("a real image is flagged as possibly memorized when the nearest neighbour of its embedding, among "
              "all projections{generated}, is its own projection and their cosine distance is below the first "
              "quartile (Q1) of the real-to-own-projection distances (paper 003, Sec. 4.3)")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# Projection
# ---------------------------------------------------------------------------


def w_statistics(generator, num_samples: int = 10000, seed: int = 123, batch_size: int = 1000):
    """Mean w and its spread ``sqrt(sum ||w - w_mean||^2 / N)`` over mapped samples (``projector.py``: 10,000
    samples, seed 123), per class for a conditional generator.

    Returns:
        ``(means, stds)``: ``[num_classes or 1, w_dim]`` and ``[num_classes or 1]`` float32 arrays.
    """
    rng = np.random.default_rng(seed)
    groups = range(generator.num_classes) if generator.num_classes else [None]
    means, stds = [], []
    for k in groups:
        ws = []
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            z = rng.standard_normal((n, generator.z_dim)).astype(np.float32)
            c = None if k is None else tf.one_hot(np.full(n, k), generator.num_classes)
            ws.append(map_w(generator, z, c).numpy())
        ws = np.concatenate(ws).astype(np.float64)
        mean = ws.mean(axis=0)
        means.append(mean)
        stds.append(math.sqrt(np.sum((ws - mean) ** 2) / len(ws)))
    return np.asarray(means, np.float32), np.asarray(stds, np.float32)


def learning_rate_schedule(step: int, steps: int, lr: float = 0.1, rampdown: float = 0.25,
                           rampup: float = 0.05) -> float:
    """NVIDIA's projector schedule: linear ramp-up over the first 5% of the steps, cosine ramp-down over the last
    25% (``projector.py``: ``lr_rampup_length=0.05``, ``lr_rampdown_length=0.25``, initial lr 0.1)."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / rampup)
    return lr * ramp


def noise_scale(step: int, steps: int, w_std: float | np.ndarray, initial_noise_factor: float = 0.05,
                noise_ramp_length: float = 0.75):
    """Std of the noise added to w: ``w_std * 0.05 * max(0, 1 - t / 0.75)^2``, zero after 75% of the steps
    (``projector.py``)."""
    t = step / steps
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


def project(generator, targets, distance_fn, steps: int = 1000, space: str = "w", lr: float = 0.1, seed: int = 0,
            labels=None, progress: bool = True, batch_size: int = 8, w_avg_samples: int = 10000,
            initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75) -> dict:
    """Projects target images into the generator's latent space (Karras et al. 2020, Sec. 5; ``projector.py``).

    For each target, w starts at the mean mapped w (10,000 samples; per class of the target's label for a
    conditional generator) and Adam (betas 0.9/0.999, peak lr 0.1 with the ``learning_rate_schedule`` ramps)
    minimises the perceptual distance between ``g(w + n)`` and the target, ``n`` Gaussian with std
    ``noise_scale`` (5% of the w spread, decaying to 0 at 75% of the steps). Targets are optimised in batches
    of ``batch_size``; each image's loss and Adam state are its own, so the result does not depend on the batch.

    Code vs. reference: the synthesis noise inputs stay at the generator's fixed buffers instead of being
    optimised with a noise regulariser (they are layer weights shared by all images here); ``space="w+"``
    optimises one w per synthesis layer (Abdal et al. 2019) instead of NVIDIA's single w.

    Args:
        generator: StyleGAN2 generator (``StyleGAN2ADA.g_ema``).
        targets: ``[N, H, W, C]`` images in [-1, 1] at the generator's resolution.
        distance_fn: ``metrics.perceptual.PerceptualFeatures`` (target features computed once) or a callable
            ``(a, b) -> [B]``.
        steps: int. Optimisation steps (``projector.py``: 1000).
        space: ``"w"`` (one w for all layers; the reference) or ``"w+"``.
        lr: float. Peak learning rate (0.1).
        seed: int. Seed of the w noise.
        labels: ``N`` class indices (conditional generator): the start w is that class's mean w, and the class
            is recorded; None for an unconditional generator (or to start a conditional one from the mean over
            all classes).
        progress: bool. A progress bar per batch.
        batch_size: int. Targets optimised together.
        w_avg_samples: int. Mapped samples for the start w and the w spread.
        initial_noise_factor, noise_ramp_length: the w-noise schedule (0.05, 0.75).

    Returns:
        ``{"ws": [N, num_ws, w_dim], "images": [N, H, W, C], "distances": [N], "history": [steps, N],
        "start_distances": [N]}`` (numpy float32); ``history[s]`` is each image's distance at step ``s`` (with the
        w noise of that step), ``distances`` that of the final ws, without noise.

    Example:

    >>> fn, origin = perceptual_features(64, 3, data_dir=data_dir)
    >>> result = project(model.g_ema, real_images, fn, steps=1000, labels=real_labels)
    >>> result["distances"], result["images"]
    """
    if space not in SPACES:
        raise ValueError(f"`space` must be one of {SPACES}. Received: space={space!r}")
    steps = _check_int("steps", steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    targets = np.asarray(targets, np.float32)
    shape = tuple(generator.synthesis.output_shape[1:])
    if targets.ndim != 4 or targets.shape[1:] != shape:
        raise ValueError(f"`targets` must be [N, {shape[0]}, {shape[1]}, {shape[2]}] images in [-1, 1] (the "
                         f"generator's resolution and channels). Received shape {targets.shape}")
    n = len(targets)
    if generator.num_classes and labels is not None:
        labels = class_labels(generator, labels, n, np.random.default_rng(0))
    elif labels is not None:
        class_labels(generator, labels, n, np.random.default_rng(0))  # raises: unconditional generator
    means, stds = w_statistics(generator, w_avg_samples)
    if generator.num_classes and labels is not None:
        start_w, w_std = means[labels], stds[labels]
    else:
        start_w = np.repeat(means.mean(axis=0, keepdims=True), n, axis=0)
        w_std = np.full(n, float(np.mean(stds)), np.float32)

    if isinstance(distance_fn, PerceptualFeatures):
        features = distance_fn

        def target_state(t):
            return features(t)

        def dist(images, state):
            return feature_distance(features(images), state)
    else:
        plain = as_distance_fn(distance_fn)

        def target_state(t):
            return tf.convert_to_tensor(t)

        def dist(images, state):
            return tf.cast(plain(images, state), tf.float32)

    seed_gen = keras.random.SeedGenerator(seed)
    outputs = {"ws": [], "images": [], "distances": [], "history": [], "start_distances": []}
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        w0 = start_w[start:stop]
        init = tile_ws(generator, w0).numpy() if space == "w+" else w0
        w_var = tf.Variable(init, dtype=tf.float32, name="w_opt")
        opt = keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        opt.build([w_var])
        state = target_state(tf.constant(targets[start:stop]))
        std = tf.constant(w_std[start:stop], tf.float32)

        def to_ws(w):
            return w if space == "w+" else tile_ws(generator, w)

        @tf.function
        def train(noise_factor, state=state, w_var=w_var, opt=opt, std=std):
            with tf.GradientTape() as tape:
                shape_ = tf.shape(w_var)
                scale = tf.reshape(std * noise_factor, [-1] + [1] * (len(w_var.shape) - 1))
                noise = keras.random.normal(shape_, seed=seed_gen) * scale
                d = dist(synthesize(generator, to_ws(w_var + noise)), state)
                loss = tf.reduce_sum(d)
            opt.apply_gradients([(tape.gradient(loss, w_var), w_var)])
            return d

        @tf.function
        def evaluate(state=state, w_var=w_var):
            ws = to_ws(w_var)
            images = synthesize(generator, ws)
            return ws, images, dist(images, state)

        outputs["start_distances"].append(evaluate()[2].numpy())
        history = []
        bar = keras.utils.Progbar(steps, unit_name="step") if progress else None
        for s in range(steps):
            opt.learning_rate.assign(learning_rate_schedule(s, steps, lr))
            factor = noise_scale(s, steps, 1.0, initial_noise_factor, noise_ramp_length)
            history.append(train(tf.constant(factor, tf.float32)).numpy())
            if bar is not None:
                bar.update(s + 1, values=[("distance", float(np.mean(history[-1])))])
        ws, images, d = evaluate()
        outputs["ws"].append(ws.numpy())
        outputs["images"].append(images.numpy())
        outputs["distances"].append(d.numpy())
        outputs["history"].append(np.stack(history))
    result = {key: np.concatenate(value, axis=1 if key == "history" else 0).astype(np.float32)
              for key, value in outputs.items()}
    return result


# ---------------------------------------------------------------------------
# The projection audit (paper 003, Sec. 4.3)
# ---------------------------------------------------------------------------


def _unit_rows(name: str, value) -> np.ndarray:
    array = np.asarray(value, np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D array [images, dims]. Received shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` holds NaN or Inf values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"`{name}` has all-zero rows (rows {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()}); "
                         "cosine distance is undefined for them")
    return array / norms


def cosine_distances(a, b) -> np.ndarray:
    """``1 - cos`` between every row of ``a`` and every row of ``b``: ``[len(a), len(b)]`` in [0, 2]."""
    return np.clip(1.0 - _unit_rows("a", a) @ _unit_rows("b", b).T, 0.0, 2.0)


def projection_audit(real_embeddings, projection_embeddings, generated_embeddings=None) -> dict:
    """The authenticity check of paper 003 (Sec. 4.3) on embeddings of real images and of their projections.

    For real image ``i``: ``distance[i]`` is the cosine distance between its embedding and that of its own
    projection; its nearest neighbour is searched among all projections (and the generated images, when
    given). It is flagged as possibly memorized when the nearest neighbour is its own projection AND
    ``distance[i] < Q1`` (strict), Q1 the first quartile of ``distance`` over all real images (paper 003:
    "only two projections being too close in terms of Q1 ... Only in these two cases the closest neighbor was the
    projection of the target image, meaning that the generative model could have memorized that sample").
    Ties in the nearest-neighbour search go to the own projection, then to the lowest index.

    Args:
        real_embeddings: ``[N, d]`` (e.g. the domain classifier's features of the real images).
        projection_embeddings: ``[N, d]``, row ``i`` the projection of real image ``i``.
        generated_embeddings: optional ``[M, d]`` of freshly generated images.

    Returns:
        JSON-ready dict: ``per_image`` (``distance``, ``nn_kind`` ``"own projection"`` / ``"projection"`` /
        ``"generated"``, ``nn_index``, ``nn_distance``, ``flagged``), ``flagged_indices``, ``n_flagged``,
        ``n_real``, ``n_generated``, ``threshold`` (Q1), ``likely_copy_fraction``, ``rule``, ``distance``
        (``"cosine"``) and ``summary`` (mean, median, q1, q3, min, max of ``distance``).

    Example:

    >>> audit = projection_audit(emb_real, emb_proj, emb_generated)
    >>> audit["n_flagged"], audit["flagged_indices"]
    """
    real = _unit_rows("real_embeddings", real_embeddings)
    proj = _unit_rows("projection_embeddings", projection_embeddings)
    if real.shape != proj.shape:
        raise ValueError(f"`real_embeddings` and `projection_embeddings` must have the same shape (row i = real "
                         f"image i and its projection). Received {real.shape} and {proj.shape}")
    n = len(real)
    to_proj = np.clip(1.0 - real @ proj.T, 0.0, 2.0)
    own = np.diag(to_proj).copy()
    m = 0
    if generated_embeddings is not None:
        gen = _unit_rows("generated_embeddings", generated_embeddings)
        if gen.shape[1] != real.shape[1]:
            raise ValueError(f"`generated_embeddings` must have {real.shape[1]} columns like the real embeddings. "
                             f"Received {gen.shape[1]}")
        m = len(gen)
        to_gen = np.clip(1.0 - real @ gen.T, 0.0, 2.0)
    threshold = float(np.percentile(own, 25))
    per_image, flagged = [], []
    for i in range(n):
        others = to_proj[i].copy()
        others[i] = np.inf
        best_p = int(np.argmin(others)) if n > 1 else -1
        candidates = [(own[i], 0, "own projection", i)]
        if best_p >= 0:
            candidates.append((others[best_p], 1, "projection", best_p))
        if m:
            best_g = int(np.argmin(to_gen[i]))
            candidates.append((to_gen[i, best_g], 2, "generated", best_g))
        nn_distance, _, kind, index = min(candidates, key=lambda c: (c[0], c[1], c[3]))
        is_flagged = kind == "own projection" and own[i] < threshold
        if is_flagged:
            flagged.append(i)
        per_image.append({"distance": float(own[i]), "nn_kind": kind, "nn_index": int(index),
                          "nn_distance": float(nn_distance), "flagged": bool(is_flagged)})
    return {
        "rule": AUDIT_RULE.format(generated=" and generated images" if m else ""),
        "distance": "cosine",
        "percentile": 25.0,
        "threshold": threshold,
        "n_real": int(n),
        "n_generated": int(m),
        "n_flagged": len(flagged),
        "likely_copy_fraction": len(flagged) / n,
        "flagged_indices": flagged,
        "n_nearest_is_own_projection": int(sum(p["nn_kind"] == "own projection" for p in per_image)),
        "summary": {"mean": float(np.mean(own)), "median": float(np.median(own)),
                    "q1": threshold, "q3": float(np.percentile(own, 75)),
                    "min": float(np.min(own)), "max": float(np.max(own))},
        "per_image": per_image,
    }


# ---------------------------------------------------------------------------
# SeFa (Shen & Zhou 2021)
# ---------------------------------------------------------------------------


def style_layers(generator) -> list:
    """``[(w_index, resolution, layer)]`` of the synthesis network's modulated convolutions (toRGB excluded, as
    the SeFa reference uses only the convolution layers' style weights), in network order."""
    out = []
    for layer in generator.synthesis.layers:
        if isinstance(layer, ModulatedConv2D) and layer.demodulate:
            out.append((layer.w_index, int(layer.output.shape[1]), layer))
    return out


def layer_band(generator, band: str) -> list:
    """w indices of a named band of synthesis layers: ``all``, ``early``, ``middle`` or ``late``.

    StyleGAN (Karras et al. 2019, Sec. 3.1) calls resolutions 4-8 coarse, 16-32 middle and 64+ fine; for
    generators of 64 px and more the bands are exactly those. Below 64 px the fine band would be empty, so the
    resolution blocks are split into three near-equal consecutive groups instead (32 px: 4-8 / 16 / 32).
    """
    layers = style_layers(generator)
    if band == "all":
        return sorted({i for i, _, _ in layers})
    if band not in ("early", "middle", "late"):
        raise ValueError(f"`layers` band must be one of all, early, middle, late. Received: {band!r}")
    resolutions = sorted({r for _, r, _ in layers})
    if max(resolutions) >= 64:
        groups = {"early": [r for r in resolutions if r <= 8], "middle": [r for r in resolutions if 16 <= r <= 32],
                  "late": [r for r in resolutions if r >= 64]}
    else:
        split = np.array_split(np.asarray(resolutions), 3)
        groups = dict(zip(("early", "middle", "late"), (list(s) for s in split)))
    return sorted({i for i, r, _ in layers if r in groups[band]})


def _w_indices(generator, layers) -> list:
    if isinstance(layers, str):
        return layer_band(generator, layers)
    indices = sorted({int(i) for i in layers})
    valid = sorted({i for i, _, _ in style_layers(generator)})
    bad = [i for i in indices if i not in valid]
    if not indices or bad:
        raise ValueError(f"`layers` must be 'all', 'early', 'middle', 'late' or w indices from {valid}. "
                         f"Received: {layers!r}")
    return indices


def sefa_weight_matrix(generator, layers="all") -> np.ndarray:
    """``A^T`` of SeFa Eq. 5: the style (affine) kernels ``[w_dim, in_channels]`` (times their runtime gain) of
    the chosen layers, concatenated along channels, each column normalised to unit length (``genforce/sefa``)."""
    indices = _w_indices(generator, layers)
    kernels = [np.asarray(layer.affine.kernel.numpy(), np.float64) * layer.affine.weight_gain
               for i, _, layer in style_layers(generator) if i in indices]
    weight = np.concatenate(kernels, axis=1)
    return weight / np.maximum(np.linalg.norm(weight, axis=0, keepdims=True), 1e-12)


def sefa_directions(generator, layers="all", k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` SeFa directions: eigenvectors of ``A^T A`` with the largest eigenvalues (Shen & Zhou 2021,
    Sec. 3.2, Eq. 5), ``A`` the stacked, column-normalised style weights of ``layers``.

    Args:
        generator: StyleGAN2 generator.
        layers: ``"all"`` (default; the reference's default), a band name (``layer_band``) or a list of w indices.
        k: int. Number of directions (1..w_dim).

    Returns:
        ``(eigenvalues [k] descending, directions [k, w_dim])``: unit-norm, mutually orthogonal directions, the
        sign of each fixed so that its largest-magnitude component is positive.

    Example:

    >>> values, directions = sefa_directions(model.g_ema, "all", k=5)
    >>> grid = sefa_edit_grid(model.g_ema, w, directions)
    """
    weight = sefa_weight_matrix(generator, layers)
    k = _check_int("k", k, 1)
    if k > weight.shape[0]:
        raise ValueError(f"`k` must be <= w_dim={weight.shape[0]}. Received: k={k}")
    values, vectors = np.linalg.eigh(weight @ weight.T)
    order = np.argsort(values)[::-1][:k]
    directions = vectors[:, order].T
    signs = np.sign(directions[np.arange(k), np.argmax(np.abs(directions), axis=1)])
    return values[order].astype(np.float64), (directions * signs[:, None]).astype(np.float32)


def sefa_edit_grid(generator, w, directions, alphas=(-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
                   layers="all") -> np.ndarray:
    """Images of ``w`` moved along each direction: ``w + alpha * n`` on the ws rows of ``layers`` (SeFa's editing,
    Shen & Zhou 2021 Sec. 3.2; ``genforce/sefa`` edits only the chosen layers, steps -3..3 by default).

    Args:
        generator: StyleGAN2 generator.
        w: ``[w_dim]``, ``[1, w_dim]``, ``[num_ws, w_dim]`` or ``[1, num_ws, w_dim]``: the code to edit.
        directions: ``[k, w_dim]`` (``sefa_directions``).
        alphas: step sizes (0 reproduces the original).
        layers: which ws rows to edit: ``"all"``, a band name or w indices (use those of ``sefa_directions``).

    Returns:
        float32 ``[k, len(alphas), H, W, C]``.
    """
    ws = np.asarray(w, np.float32)
    if ws.ndim == 3 and ws.shape[0] == 1:
        ws = ws[0]
    if ws.ndim == 2 and ws.shape[0] == 1 and generator.num_ws != 1:
        ws = ws[0]
    if ws.ndim == 1:
        ws = np.tile(ws[None], [generator.num_ws, 1])
    if ws.shape != (generator.num_ws, generator.w_dim):
        raise ValueError(f"`w` must be [w_dim] or [num_ws, w_dim] = [{generator.num_ws}, {generator.w_dim}]. "
                         f"Received shape {np.asarray(w).shape}")
    directions = np.asarray(directions, np.float32)
    if directions.ndim != 2 or directions.shape[1] != generator.w_dim:
        raise ValueError(f"`directions` must be [k, {generator.w_dim}]. Received shape {directions.shape}")
    alphas = np.asarray(alphas, np.float32).reshape(-1)
    mask = np.zeros((generator.num_ws, 1), np.float32)
    mask[_w_indices(generator, layers)] = 1.0
    edits = ws[None, None] + alphas[None, :, None, None] * directions[:, None, None, :] * mask[None, None]
    k, a = edits.shape[:2]
    flat = edits.reshape(k * a, generator.num_ws, generator.w_dim)
    images = [synthesize(generator, tf.constant(flat[i:i + 16])).numpy() for i in range(0, len(flat), 16)]
    images = np.concatenate(images)
    return images.reshape(k, a, *images.shape[1:])
