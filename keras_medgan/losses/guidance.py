"""Score-guidance losses of XRAY-GAN's UCGAN (paper 004, Chen & Wan, Sec. 4.2, Eq. 7-10).

A classifier ``C`` and a feature network ``phi`` guide the generator with three
scores computed on each mini-batch:

| function | paper | weight in Eq. 10 (Sec. 5.4) |
|---|---|---|
| ``inception_score_loss`` | Eq. 7, the log of the IS of Eq. 3 | alpha = -0.25 (negative: G maximises it) |
| ``gaussian_mmd2`` | Eq. 8, unbiased MMD^2 of class-probability vectors | beta = 3 |
| ``style_loss`` (``gram_matrix``) | Eq. 9, Gram-matrix style loss of generated vs real | eta = 0.015 |
| ``style_content_loss`` | the gamma term of Eq. 10 | gamma = 0.001 |

All functions are pure, work on any float dtype and return float32 scalars.
"""

from __future__ import annotations

import math

import tensorflow as tf

# Paper 004, Sec. 3: "the Gaussian kernel k(x, x') = exp(-||x - x'||^2)", i.e. exp(-d^2 / (2 sigma^2)) with
# 2 sigma^2 = 1.
PAPER_MMD_SIGMA = math.sqrt(0.5)


def _f32(x):
    return tf.cast(x, tf.float32)


def inception_score_loss(probs):
    """The IS loss of paper 004, Eq. 7: ``mean_i KL(p(y | x_i) || p~(y))``.

    ``p~(y) = mean_i p(y | x_i)`` is the batch's empirical marginal (Eq. 3). This
    is the *log* of the Inception Score of Eq. 3, not the IS itself: the paper
    "discards the exponential term for simplicity" (Sec. 4.2), so Eq. 7 equals
    ``H(p~(y)) - mean_i H(p(y | x_i))``. Its range is ``[0, log K]``: 0 when all
    rows are equal, ``log K`` for confident one-hot rows spread evenly over the
    ``K`` classes. It is a quantity to *maximise*: the paper weights it with
    alpha = -0.25 (Sec. 5.4), and so does ``ScoreGuidedGAN``; this function does
    not flip the sign.

    Args:
        probs: ``[N, K]`` class probabilities (rows sum to 1), e.g. ``C(G(z))``.

    Returns:
        float32 scalar.
    """
    p = _f32(probs)
    marginal = tf.reduce_mean(p, axis=0, keepdims=True)
    # xlogy: 0 * log 0 = 0, with a zero gradient there, so one-hot rows are exact and finite.
    kl = tf.reduce_sum(tf.math.xlogy(p, p) - tf.math.xlogy(p, marginal), axis=-1)
    return tf.reduce_mean(kl)


def gaussian_kernel(x, y, sigma=PAPER_MMD_SIGMA):
    """``k(x_i, y_j) = exp(-||x_i - y_j||^2 / (2 sigma^2))`` for ``x [N, D]``, ``y [M, D]`` -> ``[N, M]``."""
    x, y = _f32(x), _f32(y)
    sq = (tf.reduce_sum(tf.square(x), 1)[:, None] + tf.reduce_sum(tf.square(y), 1)[None, :]
          - 2.0 * tf.matmul(x, y, transpose_b=True))
    return tf.exp(-tf.maximum(sq, 0.0) / (2.0 * tf.square(_f32(sigma))))


def median_bandwidth(x, y):
    """The median heuristic: sigma = median pairwise distance of the pooled sample (no gradient)."""
    z = tf.stop_gradient(tf.concat([_f32(x), _f32(y)], axis=0))
    sq = tf.reduce_sum(tf.square(z[:, None, :] - z[None, :, :]), axis=-1)
    n = tf.shape(z)[0]
    off = tf.boolean_mask(sq, ~tf.eye(n, dtype=tf.bool))
    k = tf.size(off) // 2
    median = tf.math.top_k(off, k=k + 1).values[-1]
    return tf.sqrt(tf.maximum(median, 1e-12))


def gaussian_mmd2(x, y, sigma=PAPER_MMD_SIGMA):
    """Unbiased squared MMD with a Gaussian kernel, paper 004 Eq. 8.

    Eq. 8 estimates ``M_k(P_r, P_g)`` (Eq. 5) from ``X = {x_1..x_N} ~ P_r`` and
    ``Y = {y_1..y_N} ~ P_g``, the classifier's probability vectors on real and on
    generated images (footnote 1: class distributions, not images). We read each
    of its three sums as an *average over its pairs with distinct indices*:

        MMD2_u = mean_{i != i'} k(x_i, x_i') + mean_{j != j'} k(y_j, y_j') - 2 mean_{i != j} k(x_i, y_j)

    which is the U-statistic of Gretton et al. 2012 (JMLR, Lemma 6) for equal
    sample sizes. (Taken literally, the paper's ``1 / C(N, 2)`` before sums over
    ordered pairs would double every term; the cross term's ``i != j`` is what
    makes it Lemma 6 rather than Eq. 3 of Gretton et al.) It is unbiased, so it
    can be slightly negative, and it is exactly 0 when ``X`` and ``Y`` are the
    same set in the same order.

    Bandwidth: the paper fixes ``k(x, x') = exp(-||x - x'||^2)`` (Sec. 3), i.e.
    ``sigma = sqrt(1/2)``, the default here; probability vectors are at most
    ``sqrt(2)`` apart, so this kernel never saturates. ``sigma=None`` uses the
    median heuristic (median pairwise distance of the pooled sample, treated as
    a constant).

    Args:
        x: ``[N, D]`` samples of P_r (real class probabilities).
        y: ``[N, D]`` samples of P_g; the same N (N >= 2).
        sigma: float, scalar tensor or None. Kernel bandwidth. Defaults to
            ``PAPER_MMD_SIGMA``.

    Returns:
        float32 scalar.
    """
    x, y = _f32(x), _f32(y)
    if x.shape[0] is not None and y.shape[0] is not None and x.shape[0] != y.shape[0]:
        raise ValueError(f"Eq. 8 compares two samples of the same size N. Received: {x.shape[0]} and {y.shape[0]}")
    if sigma is None:
        sigma = median_bandwidth(x, y)
    n = tf.shape(x)[0]
    off_diagonal = 1.0 - tf.eye(n, dtype=tf.float32)
    pairs = tf.cast(n * (n - 1), tf.float32)

    def mean_off_diagonal(k):
        return tf.reduce_sum(k * off_diagonal) / pairs

    return (mean_off_diagonal(gaussian_kernel(x, x, sigma)) + mean_off_diagonal(gaussian_kernel(y, y, sigma))
            - 2.0 * mean_off_diagonal(gaussian_kernel(x, y, sigma)))


def gram_matrix(features):
    """Gram matrices of feature maps (paper 004, Sec. 3; Johnson et al. 2016, Eq. 3; Gatys et al. 2016).

    ``G[b, c, c'] = sum_{h, w} phi[b, h, w, c] phi[b, h, w, c'] / (C H W)``.

    Args:
        features: ``[B, H, W, C]`` feature maps.

    Returns:
        float32 ``[B, C, C]``.
    """
    f = _f32(features)
    shape = tf.shape(f)
    norm = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.einsum("bhwc,bhwd->bcd", f, f) / norm


def _as_list(features):
    return list(features) if isinstance(features, (list, tuple)) else [features]


def style_loss(fake_features, real_features):
    """The style Gram-matrix loss between a generated and a real batch, paper 004 Eq. 9.

    ``sum_j || mean_b G_j(I_g)[b] - mean_b G_j(I_r)[b] ||_F^2`` over the layers ``j``.

    Eq. 9 is ``||G_j(I_g) - G_j(I_r)||_F^2`` for one generated and one real image,
    summed over layers as in Johnson et al. (2016, Sec. 3.2). A generated and a real
    batch are not paired, so we compare the *batch-mean* Gram matrices: the style
    statistics of the generated batch against those of the real batch ("style
    similarity between generated X-rays and real X-rays within each batch",
    Sec. 4.2). This is invariant to the order of either batch and the two batches
    may differ in size.

    Args:
        fake_features: a ``[B, H, W, C]`` tensor or a list of them (one per layer) for the generated images.
        real_features: the same layers for the real images.

    Returns:
        float32 scalar.
    """
    fake_features, real_features = _as_list(fake_features), _as_list(real_features)
    if len(fake_features) != len(real_features):
        raise ValueError(f"style_loss needs the same layers for both batches. Received {len(fake_features)} and "
                         f"{len(real_features)} feature maps")
    total = tf.constant(0.0)
    for fake, real in zip(fake_features, real_features):
        diff = tf.reduce_mean(gram_matrix(fake), axis=0) - tf.reduce_mean(gram_matrix(real), axis=0)
        total = total + tf.reduce_sum(tf.square(diff))
    return total


def content_loss(transferred_features, content_features):
    """Feature reconstruction loss of Johnson et al. (2016, Sec. 3.2): ``mean_b ||phi(I^)_b - phi(I_c)_b||^2 / (CHW)``.

    The two batches are paired (image ``b`` of one is the transfer of image ``b`` of the other).

    Args:
        transferred_features: ``[B, H, W, C]`` features of the transferred images ``I^``.
        content_features: ``[B, H, W, C]`` features of their content targets.

    Returns:
        float32 scalar.
    """
    return tf.reduce_mean(tf.square(_f32(transferred_features) - _f32(content_features)))


def style_content_loss(transferred_features, style_features, content_features, content_layer=None):
    """The gamma term of paper 004, Eq. 10: ``l_style(I^, I_r) + l_content(I^, I_g)``.

    Sec. 4.2 names ``I_r`` the style target (real images), ``I_g`` the content
    target (generated images) and ``I^`` "the style transferred image", but UCGAN
    has no separate transformation network (Johnson et al.'s ``f_W``) that would
    produce ``I^`` from ``I_g``. Our reading, used by ``ScoreGuidedGAN``: the
    generator *is* the transformation network, so ``I^ = G(z)`` under the weights
    being updated and ``I_g = G(z)`` for the same ``z`` under the weights at the
    start of the training step (a constant). The content part keeps G's
    within-step updates from moving away from what it drew, while the style part
    pulls those images towards the real style. When ``I^`` and ``I_g`` coincide
    (the first G update of a step) the content part is 0 and the term is
    ``l_style(I^, I_r)``, Eq. 9's value again. This function itself takes the
    three sets of features and does not depend on that reading.

    Args:
        transferred_features: list of ``[B, H, W, C]`` features of ``I^`` (one per layer).
        style_features: the same layers for the style targets ``I_r`` (any batch size).
        content_features: the same layers for the content targets ``I_g`` (paired with ``I^``).
        content_layer: int or None. Which layer of the lists the content loss uses;
            None means ``len(layers) // 2`` (Johnson et al.: style at relu1_2..relu4_3,
            content at relu3_3, the third of four). Defaults to None.

    Returns:
        float32 scalar.
    """
    transferred_features, content_features = _as_list(transferred_features), _as_list(content_features)
    if content_layer is None:
        content_layer = len(transferred_features) // 2
    return (style_loss(transferred_features, style_features)
            + content_loss(transferred_features[content_layer], content_features[content_layer]))
