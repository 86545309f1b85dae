"""Command lines of the StyleGAN2 latent-space tools: ``project``, ``sefa`` and ``ppl`` on a trained run.

The StyleGAN2-ADA recipe registers these as subcommands and passes ``load_model(run_dir) -> (model, cfg, info)``
(a ``StyleGAN2ADA`` whose ``g_ema`` is used, the run's resolved config, the dataset's ``DatasetInfo``). Each
function parses ``argv``, writes its results atomically into the run folder (or ``--out``), returns 0, and raises
``RecipeError`` for input the user can fix (wrap with ``recipes.common.guarded`` for an exit status).

- ``project`` (paper 003 Sec. 4.3): projects real images of a split, writes ``projection/`` with ``grid.png``
  (real | projection), ``projection.json`` (per-image perceptual distances, their distribution, the projection
  audit in the memorization audit's vocabulary), ``projection.md`` and ``ws.npy``.
- ``sefa`` (paper 003 Fig. 5; Shen & Zhou 2021): ``sefa/grid.png`` (rows = directions, columns = steps) and
  ``sefa/sefa.json``.
- ``ppl`` (paper 003 Table 1; Karras et al. 2019 Sec. 4.1): ``ppl.json``.
"""

from __future__ import annotations

import argparse
import io
import os
from typing import Callable

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from keras_medgan.callbacks.monitoring import image_grid, save_png_atomic, to_display
from keras_medgan.config import DataConfig
from keras_medgan.data import pipelines, schema
from keras_medgan.gans import stylegan2_tools as tools
from keras_medgan.io_utils import atomic_open
from keras_medgan.metrics.domain_classifier import RulerSettings, ensure_domain_classifier
from keras_medgan.metrics.features import classifier_extractor
from keras_medgan.metrics.perceptual import PerceptualFeaturesUnavailable, perceptual_features
from keras_medgan.metrics.ppl import perceptual_path_length
from keras_medgan.recipes.common import RecipeError

FEATURE_CHOICES = ("auto", "vgg16", "classifier")
FEATURES_HELP = ("Perceptual distance: auto (default) = VGG16 ImageNet features as in NVIDIA's projector and PPL, "
                 "falling back to the dataset's domain classifier (trained and cached on first use) when the VGG16 "
                 "weights cannot be loaded; vgg16 = VGG16 only (fails offline unless "
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 is in ~/.keras/models); classifier = the domain "
                 "classifier. The result files say which was used; values are comparable only under the same one.")
PAIR_COLUMNS = 4


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, metavar="RUN",
                        help="A StyleGAN2-ADA run folder (holds config.json and checkpoints/); its EMA generator is "
                             "used.")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="Where to write the results. Default: inside the run folder.")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _load(load_model: Callable, run: str):
    if not os.path.isdir(run):
        raise RecipeError(f"--run {run}: no such folder. Pass a StyleGAN2-ADA run directory (runs/stylegan2_ada/"
                          "<00001-name>/).")
    model, cfg, info = load_model(run)
    return model, cfg, info


def _class_names(cfg, info) -> list:
    """The generator's class names, label k = the k-th (``DataConfig.classes``, else the dataset's)."""
    return list(cfg.data.classes) if cfg.data.classes else list(info.class_names)


def _shape(generator) -> tuple:
    return tuple(int(s) for s in generator.synthesis.output_shape[1:])


def _features(args, cfg, resolution: int, channels: int):
    prefer = "classifier" if args.features == "classifier" else "vgg16"
    try:
        return perceptual_features(resolution, channels, data_dir=cfg.data.data_dir, prefer=prefer,
                                   fallback=args.features == "auto",
                                   ruler_settings=RulerSettings(epochs=cfg.eval.ruler_epochs))
    except PerceptualFeaturesUnavailable as e:
        raise RecipeError(f"--features {args.features}: {e}") from None


def _summary(values) -> dict:
    v = np.asarray(values, np.float64)
    return {"n": int(v.size), "mean": float(np.mean(v)), "std": float(np.std(v)), "median": float(np.median(v)),
            "q1": float(np.percentile(v, 25)), "q3": float(np.percentile(v, 75)), "min": float(np.min(v)),
            "max": float(np.max(v))}


def _save_npy(path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def _write_text(path: str, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def pair_grid(left: np.ndarray, right: np.ndarray, pairs_per_row: int = PAIR_COLUMNS) -> np.ndarray:
    """uint8 grid of (left | right) pairs, ``pairs_per_row`` pairs side by side, blank cells at the end."""
    n = len(left)
    rows = -(-n // pairs_per_row)
    blank = np.full_like(left[:1], 255)
    columns = []
    for c in range(min(pairs_per_row, n)):
        idx = [c * rows + r for r in range(rows)]
        for images in (left, right):
            columns.append(np.concatenate([images[i:i + 1] if i < n else blank for i in idx]))
    return image_grid(columns)


# ---------------------------------------------------------------------------
# project
# ---------------------------------------------------------------------------

PROJECT_DESCRIPTION = """\
Project real images into the generator's latent space and audit the projections (paper 003, Sec. 4.3).

For each real image of --split (with its class, for a conditional run), w is optimised from the mean mapped w
of that class so that the EMA generator's image is perceptually closest to it (NVIDIA's projector: Adam, peak
lr 0.1 with ramp-up/ramp-down, noise on w during the first 75%% of the steps). Then the real images, their
projections and as many freshly generated images are embedded with the domain classifier (the metrics' ruler,
classifier:auto) and the projection audit flags real images whose nearest neighbour is their own projection
at a cosine distance below the first quartile of the real-to-projection distances ("too close": possibly
memorized).

Writes RUN/projection/ (or --out): grid.png (pairs real | projection), projection.json, projection.md, ws.npy.

examples:
  %(prog)s --run runs/stylegan2_ada/00001-demo
  %(prog)s --run runs/stylegan2_ada/00001-demo --split test --num-images 64 --steps 500 --space w+
  %(prog)s --run RUN --features classifier --out /tmp/projection
"""


def _real_images(cfg, info, split: str, count: int, resolution: int, channels: int, conditional: bool):
    if info.num_examples(split) == 0:
        raise RecipeError(f"--split {split}: the dataset {cfg.data.data_dir} has no {split} images "
                          f"(counts: { {s: info.num_examples(s) for s in ('train', 'val', 'test')} }). Choose "
                          "another --split.")
    data = DataConfig(data_dir=cfg.data.data_dir, image_size=resolution, channels=channels,
                      resize=getattr(cfg.data, "resize", "stretch"), batch_size=64, shuffle_buffer=0, cache=False, repeat=False,
                      drop_remainder=False, classes=tuple(cfg.data.classes))
    images, labels, ids = [], [], []
    for batch in pipelines.make_dataset(data, split):
        keep = batch["label"].numpy() >= 0 if conditional else np.ones(len(batch["label"]), bool)
        images.append(batch["image"].numpy()[keep])
        labels.append(batch["label"].numpy()[keep])
        ids += [s.decode("utf-8", "replace") for s in batch["source_id"].numpy()[keep]]
        if len(ids) >= count:
            break
    if not ids:
        raise RecipeError(f"--split {split}: no labelled images of the run's classes {_class_names(cfg, info)}; "
                          "a conditional projection needs each image's class. Choose another --split.")
    return np.concatenate(images)[:count], np.concatenate(labels)[:count].astype(np.int64), ids[:count]


def projection_markdown(result: dict) -> str:
    """The projection section for ``projection.md`` / a run's ``report.md``."""
    s = result["settings"]
    a = result["projection_audit"]
    d = result["perceptual_distance"]
    lines = ["## Projection of real images (paper 003, Sec. 4.3)", "",
             f"{s['num_images']} `{s['split']}` images projected into {s['space']} with {s['steps']} steps. "
             f"Perceptual distance: {s['perceptual']['origin']}.", "",
             "| perceptual distance to target | mean | median | Q1 | Q3 | min | max |", "|---|---|---|---|---|---|---|",
             f"| final | {d['mean']:.4g} | {d['median']:.4g} | {d['q1']:.4g} | {d['q3']:.4g} | {d['min']:.4g} | "
             f"{d['max']:.4g} |"]
    if "start" in result:
        st = result["start"]
        lines.append(f"| start (mean w) | {st['mean']:.4g} | {st['median']:.4g} | {st['q1']:.4g} | {st['q3']:.4g} | "
                     f"{st['min']:.4g} | {st['max']:.4g} |")
    c = a["summary"]
    lines += ["", "### Projection audit (memorization)", "",
              f"Embedding: `{a['extractor']['name']}` ({a['extractor']['weights']}, fingerprint "
              f"`{a['extractor']['fingerprint']}`); cosine distances real -> own projection: mean {c['mean']:.4g}, "
              f"median {c['median']:.4g}, Q1 {c['q1']:.4g}, Q3 {c['q3']:.4g} (paper 003 on ISIC: mean 0.1444, "
              "median 0.00283, Q1 0.013).", "",
              f"**{a['n_flagged']} of {a['n_real']} real images flagged** ({a['likely_copy_fraction']:.1%}); "
              f"{a['n_nearest_is_own_projection']} have their own projection as nearest neighbour. Rule: {a['rule']}."]
    if a["flagged_indices"]:
        lines += ["", "| image | source_id | class | cosine distance |", "|---|---|---|---|"]
        for i in a["flagged_indices"]:
            row = result["per_image"][i]
            lines.append(f"| {i} | {row['source_id']} | {row.get('class') or ''} | {row['cosine_distance']:.4g} |")
    if s["perceptual"]["kind"] == "classifier":
        lines += ["", "Note: the projection was optimised on the conv activations of the same domain classifier whose "
                      "embedding the audit measures with (VGG16 was not used), so real-to-projection distances are "
                      "smaller than an independent ruler would measure; compare runs only under the same setting."]
    lines += ["", "The Q1 rule flags at most a quarter of the images by construction: a flag marks a pair to look at, "
                  "not a proven copy (paper 003 found 2 of 12,000)."]
    lines += ["", f"Pairs (real | projection): `{s['grid']}`."]
    return "\n".join(lines) + "\n"


def project_command(argv, prog: str, load_model: Callable) -> int:
    """``project``: see ``PROJECT_DESCRIPTION``."""
    parser = _parser(prog, PROJECT_DESCRIPTION)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"),
                        help="Real images to project. Default: val (images the GAN did not train on; use train to "
                             "audit memorization of the training set, as paper 003 projected its training data).")
    parser.add_argument("--num-images", type=_positive_int, default=32,
                        help="How many images of the split (the first N in file order). Default: 32.")
    parser.add_argument("--steps", type=_positive_int, default=1000,
                        help="Optimisation steps per image (NVIDIA's projector: 1000). Default: 1000.")
    parser.add_argument("--space", choices=tools.SPACES, default="w",
                        help="w: one w for all layers (NVIDIA's projector; default); w+: one w per layer (closer "
                             "fits, less like what the generator samples).")
    parser.add_argument("--features", choices=FEATURE_CHOICES, default="auto", help=FEATURES_HELP)
    parser.add_argument("--batch-size", type=_positive_int, default=8,
                        help="Images optimised together (results do not depend on it). Default: 8.")
    parser.add_argument("--num-generated", type=int, default=None,
                        help="Freshly generated images added to the audit's nearest-neighbour search (same classes "
                             "as the real images). Default: --num-images; 0 = none.")
    parser.add_argument("--seed", type=int, default=None, help="Seed of the w noise and the generated images. "
                                                               "Default: the run's train.seed.")
    args = parser.parse_args(argv)
    model, cfg, info = _load(load_model, args.run)
    g = model.g_ema
    resolution, _, channels = _shape(g)
    seed = cfg.train.seed if args.seed is None else args.seed
    names = _class_names(cfg, info)
    out = args.out or os.path.join(args.run, "projection")
    num_generated = args.num_images if args.num_generated is None else args.num_generated
    if num_generated < 0:
        raise RecipeError(f"--num-generated must be >= 0. Received {num_generated}")

    real, labels, ids = _real_images(cfg, info, args.split, args.num_images, resolution, channels,
                                     bool(g.num_classes))
    fn, origin = _features(args, cfg, resolution, channels)
    print(f"projecting {len(real)} {args.split} images ({args.steps} steps, {args.space}); perceptual distance: "
          f"{origin}")
    result = tools.project(g, real, fn, steps=args.steps, space=args.space, seed=seed,
                           labels=labels if g.num_classes else None, batch_size=args.batch_size)

    ruler_path = ensure_domain_classifier(cfg.data.data_dir, RulerSettings(epochs=cfg.eval.ruler_epochs))
    extractor = classifier_extractor(ruler_path)
    emb_real = extractor(real).features
    emb_proj = extractor(result["images"]).features
    emb_gen = None
    if num_generated:
        gen_labels = np.resize(labels, num_generated) if g.num_classes else num_generated
        generated = model.generate(gen_labels, seed=seed)
        emb_gen = extractor(generated).features
    audit = tools.projection_audit(emb_real, emb_proj, emb_gen)
    audit["extractor"] = extractor.record()
    audit["method"] = "projection (paper 003, Sec. 4.3)"

    os.makedirs(out, exist_ok=True)
    grid_path = save_png_atomic(pair_grid(to_display(real), to_display(result["images"])),
                                os.path.join(out, "grid.png"))
    _save_npy(os.path.join(out, "ws.npy"), result["ws"])
    per_image = []
    for i, source_id in enumerate(ids):
        row = {"index": i, "source_id": source_id, "label": int(labels[i]),
               "class": names[labels[i]] if 0 <= labels[i] < len(names) else None,
               "perceptual_distance": float(result["distances"][i]),
               "start_perceptual_distance": float(result["start_distances"][i]),
               "cosine_distance": audit["per_image"][i]["distance"],
               "nearest": {k: audit["per_image"][i][k] for k in ("nn_kind", "nn_index", "nn_distance")},
               "flagged": audit["per_image"][i]["flagged"]}
        per_image.append(row)
    audit_out = {k: v for k, v in audit.items() if k != "per_image"}
    record = {
        "settings": {"run": os.path.abspath(args.run), "split": args.split, "num_images": len(real),
                     "steps": args.steps, "space": args.space, "lr": 0.1, "seed": seed, "resolution": resolution,
                     "channels": channels, "conditional": bool(g.num_classes), "num_generated": int(num_generated),
                     "perceptual": fn.record(), "grid": os.path.basename(grid_path), "ws": "ws.npy",
                     "noise_inputs": "fixed buffers (not optimised)"},
        "perceptual_distance": _summary(result["distances"]),
        "start": _summary(result["start_distances"]),
        "projection_audit": audit_out,
        "per_image": per_image,
    }
    schema.write_json_atomic(os.path.join(out, "projection.json"), record)
    _write_text(os.path.join(out, "projection.md"), projection_markdown(record))
    print(f"perceptual distance: median {record['perceptual_distance']['median']:.4g} "
          f"(start {record['start']['median']:.4g}); audit: {audit['n_flagged']} of {audit['n_real']} flagged "
          f"(Q1 {audit['threshold']:.4g}) -> {out}")
    return 0


# ---------------------------------------------------------------------------
# sefa
# ---------------------------------------------------------------------------

SEFA_DESCRIPTION = """\
Edit an image along the generator's SeFa directions (Shen & Zhou 2021; paper 003 Fig. 5).

The directions are the top-k eigenvectors of A^T A, A the column-normalised style (affine) weights of the chosen
synthesis layers; the image's w is moved by alpha * direction on those layers' w rows. The start is the w of a
seed (with --class for a conditional run) or, with --image, the projection of that image.

Writes RUN/sefa/ (or --out): grid.png (rows = directions, largest eigenvalue first; columns = alphas; with a
symmetric odd --alphas the centre column is the original) and sefa.json (eigenvalues, directions, settings).

examples:
  %(prog)s --run runs/stylegan2_ada/00001-demo --seed 3 --class melanoma
  %(prog)s --run RUN --image lesion.png --class nevus --k 10 --layers early --alphas -5,5,11
"""


def _alphas(text: str) -> np.ndarray:
    try:
        start, stop, count = text.split(",")
        start, stop, count = float(start), float(stop), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,STOP,COUNT (e.g. -3,3,7), got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"COUNT must be >= 1, got {count}")
    return np.linspace(start, stop, count)


def _glue_negative_values(argv: list, option: str) -> list:
    """``[option, "-3,3,7"]`` -> ``["option=-3,3,7"]``: argparse would take a value starting with '-' for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == option and i + 1 < len(argv):
            out.append(f"{option}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _class_index(args, g, names) -> int | None:
    if not g.num_classes:
        if args.class_name is not None:
            raise RecipeError(f"--class {args.class_name}: this run's generator is unconditional; leave --class out.")
        return None
    if args.class_name is None:
        return 0
    if args.class_name not in names:
        raise RecipeError(f"--class {args.class_name!r} is not one of the run's classes {names}.")
    return names.index(args.class_name)


def _read_image(path: str, resolution: int, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.BICUBIC)
            pixels = np.asarray(im, np.float32)
    except (OSError, UnidentifiedImageError) as e:
        raise RecipeError(f"--image {path}: cannot be read as an image ({e}). Pass a PNG or JPEG file.") from None
    if channels == 1:
        pixels = pixels[..., None]
    return pixels[None] / 127.5 - 1.0


def sefa_command(argv, prog: str, load_model: Callable) -> int:
    """``sefa``: see ``SEFA_DESCRIPTION``."""
    parser = _parser(prog, SEFA_DESCRIPTION)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--seed", type=int, default=None,
                        help="Latent seed of the image to edit. Default: the run's train.seed.")
    source.add_argument("--image", metavar="PATH", default=None,
                        help="Edit this image instead: it is projected first (resized to the generator's resolution).")
    parser.add_argument("--k", type=_positive_int, default=5,
                        help="Number of directions (rows), largest eigenvalue first. Default: 5 (paper 003 "
                             "inspected the first 10).")
    parser.add_argument("--layers", choices=("all", "early", "middle", "late"), default="all",
                        help="Synthesis layers whose style weights define the directions and whose w rows are edited: "
                             "all (default), early (coarse: 4-8 px), middle (16-32 px), late (64 px and up); below "
                             "64 px the resolution blocks are split in thirds.")
    parser.add_argument("--alphas", type=_alphas, default=_alphas("-3,3,7"), metavar="START,STOP,COUNT",
                        help="Step sizes along each direction: COUNT values from START to STOP. Default: -3,3,7 "
                             "(the SeFa reference's).")
    parser.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                        help="Class of the image (conditional runs). Default: the first class.")
    parser.add_argument("--steps", type=_positive_int, default=1000,
                        help="Projection steps with --image. Default: 1000.")
    parser.add_argument("--features", choices=FEATURE_CHOICES, default="auto",
                        help="With --image: " + FEATURES_HELP)
    args = parser.parse_args(_glue_negative_values(list(argv), "--alphas"))
    model, cfg, info = _load(load_model, args.run)
    g = model.g_ema
    resolution, _, channels = _shape(g)
    names = _class_names(cfg, info)
    label = _class_index(args, g, names)
    if args.k > g.w_dim:
        raise RecipeError(f"--k {args.k} is larger than the generator's w_dim ({g.w_dim}).")
    out = args.out or os.path.join(args.run, "sefa")
    seed = cfg.train.seed if args.seed is None else args.seed
    if args.image is not None:
        if not os.path.isfile(args.image):
            raise RecipeError(f"--image {args.image}: no such file.")
        target = _read_image(args.image, resolution, channels)
        fn, origin = _features(args, cfg, resolution, channels)
        projected = tools.project(g, target, fn, steps=args.steps, seed=seed,
                                  labels=None if label is None else [label])
        w = projected["ws"][0]
        start = {"image": os.path.abspath(args.image), "projection_distance": float(projected["distances"][0]),
                 "perceptual": origin}
    else:
        z = np.random.default_rng(seed).standard_normal((1, g.z_dim)).astype(np.float32)
        c = None if label is None else tf.one_hot([label], g.num_classes)
        w = tools.map_w(g, z, c).numpy()[0]
        start = {"seed": seed, "z": "np.random.default_rng(seed).standard_normal((1, z_dim))"}
    values, directions = tools.sefa_directions(g, args.layers, args.k)
    images = tools.sefa_edit_grid(g, w, directions, args.alphas, args.layers)
    grid = image_grid([to_display(images[:, j]) for j in range(images.shape[1])])
    os.makedirs(out, exist_ok=True)
    grid_path = save_png_atomic(grid, os.path.join(out, "grid.png"))
    zero = np.flatnonzero(np.isclose(args.alphas, 0.0))
    record = {"eigenvalues": [float(v) for v in values], "layers": args.layers,
              "w_indices": tools.layer_band(g, args.layers), "k": args.k,
              "alphas": [float(a) for a in args.alphas], "original_column": int(zero[0]) if zero.size else None,
              "class": None if label is None else names[label], "start": start, "grid": os.path.basename(grid_path),
              "directions": directions.tolist(),
              "method": "SeFa (Shen & Zhou 2021, Eq. 5): eigenvectors of A^T A, A = column-normalised style weights "
                        "of the chosen modulated convolutions (toRGB excluded)"}
    schema.write_json_atomic(os.path.join(out, "sefa.json"), record)
    print(f"SeFa eigenvalues ({args.layers}): {', '.join(f'{v:.4g}' for v in values)} -> {grid_path}")
    return 0


# ---------------------------------------------------------------------------
# ppl
# ---------------------------------------------------------------------------

PPL_DESCRIPTION = """\
Perceptual path length of the EMA generator (Karras et al. 2019, Sec. 4.1; paper 003 Table 1).

W space, end-point sampling, epsilon 1e-4: for latent pairs, d(g(w0), g(w0 + eps (w1 - w0))) / eps^2, averaged
after discarding values below the 1st and above the 99th percentile; a bootstrap 95%% interval of that mean.
For a conditional run both ends share a class drawn in proportion to the training split's class counts (as the
reference implementation draws labels from the dataset).

Writes RUN/ppl.json (or --out/ppl.json) and prints the value with the distance used.

examples:
  %(prog)s --run runs/stylegan2_ada/00001-demo
  %(prog)s --run RUN --num-samples 50000 --features vgg16
"""


def _train_label_probabilities(cfg, info, names) -> np.ndarray:
    counts = info.counts.get("train", {})
    p = np.asarray([float(counts.get(n, 0)) for n in names])
    return p / p.sum() if p.sum() > 0 else np.full(len(names), 1.0 / len(names))


def ppl_command(argv, prog: str, load_model: Callable) -> int:
    """``ppl``: see ``PPL_DESCRIPTION``."""
    parser = _parser(prog, PPL_DESCRIPTION)
    parser.add_argument("--num-samples", type=_positive_int, default=2000,
                        help="Latent pairs (the reference's ppl_wend uses 50,000). Default: 2000.")
    parser.add_argument("--epsilon", type=float, default=1e-4, help="Step along the path (Sec. 4.1). Default: 1e-4.")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="Pairs per forward pass. Default: 32.")
    parser.add_argument("--seed", type=int, default=None, help="Seed of the latents. Default: the run's train.seed.")
    parser.add_argument("--features", choices=FEATURE_CHOICES, default="auto", help=FEATURES_HELP)
    args = parser.parse_args(argv)
    if not args.epsilon > 0:
        raise RecipeError(f"--epsilon must be > 0. Received {args.epsilon}")
    if args.num_samples < 2:
        raise RecipeError("--num-samples must be >= 2 (percentile filtering needs several pairs).")
    model, cfg, info = _load(load_model, args.run)
    g = model.g_ema
    resolution, _, channels = _shape(g)
    seed = cfg.train.seed if args.seed is None else args.seed
    names = _class_names(cfg, info)
    labels = None
    if g.num_classes:
        p = _train_label_probabilities(cfg, info, names)
        labels = np.random.default_rng(seed + 1).choice(g.num_classes, size=args.num_samples, p=p)
    fn, origin = _features(args, cfg, resolution, channels)
    print(f"PPL over {args.num_samples} pairs; distance: {origin}")
    result = perceptual_path_length(g, fn, num_samples=args.num_samples, epsilon=args.epsilon,
                                    batch_size=args.batch_size, seed=seed, labels=labels, progress=True)
    if labels is not None:
        result["labels"] = "drawn in proportion to the train split's class counts"
    result.update(distance=fn.record(), run=os.path.abspath(args.run), resolution=resolution,
                  metric="ppl_wend (W space, end-point sampling)")
    out = args.out or args.run
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "ppl.json")
    schema.write_json_atomic(path, result)
    ci = f" [95% CI {result['ci_low']:.4g}, {result['ci_high']:.4g}]" if "ci_low" in result else ""
    print(f"PPL (W, end, eps={args.epsilon:g}) = {result['ppl']:.4g}{ci}; {result['n_kept']} of {result['n']} pairs "
          f"within the 1st-99th percentiles; distance: {origin} -> {path}")
    return 0
