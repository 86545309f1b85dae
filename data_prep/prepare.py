"""The one driver every `medgan-data` source goes through.

An adapter turns its source's metadata into ``SourceItem``s (plus the rows it had
to skip); ``prepare_dataset`` then loads, checks, crops, resizes and encodes
every image in worker processes, splits by patient, and writes the shards with
``keras_medgan.data.writer.ShardedWriter``. Unreadable images are skipped and
listed in ``dataset.json``; past ``max_bad`` of them the run fails, naming them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from typing import Callable, Iterable, Sequence

import click
import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_medgan.data import schema, skin_tone
from keras_medgan.data.writer import ImageRecord, ShardedWriter, assign_splits, command_line, resize_with_boxes, \
    serialize_record


class PreparationError(click.ClickException):
    """A user-facing failure of data preparation (exit status 1, message on stderr)."""


@dataclasses.dataclass
class SourceItem:
    """One input image as an adapter describes it, before loading.

    Args:
        source_id: str. The file name or record id (kept in the record for tracing).
        patient_id: str. The unit that never crosses splits.
        path: str or None. Image file to load (PNG, JPEG, ...).
        array: uint8 array or None. In-memory pixels instead of ``path`` (MedMNIST).
        label: int. Class index, -1 unlabeled.
        label_multi: tuple of int. Multi-label indices (ChestX-ray14).
        fitzpatrick: int. 1..6 when annotated, 0 unknown (estimated by ITA when asked).
        bboxes: list of normalised ``[ymin, xmin, ymax, xmax]``.
        bbox_labels: list of int, one per box.
        mask_path: str or None. A binary lesion mask whose connected components become boxes.
        split: str or None. An official split that must be kept.
    """

    source_id: str
    patient_id: str
    path: str | None = None
    array: np.ndarray | None = None
    label: int = -1
    label_multi: tuple = ()
    fitzpatrick: int = 0
    bboxes: list = dataclasses.field(default_factory=list)
    bbox_labels: list = dataclasses.field(default_factory=list)
    mask_path: str | None = None
    split: str | None = None


@dataclasses.dataclass(frozen=True)
class PrepOptions:
    """The options every `medgan-data` source shares (see ``common_options``)."""

    out: str
    image_size: int = 256
    resize: str = "crop"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    shards: int = 4
    image_format: str = "png"
    max_bad: int = 100
    workers: int = 0
    roi_crop: bool = False
    crops_per_image: int = 1


def mask_to_boxes(mask: np.ndarray, min_fraction: float = 0.001) -> list[list[float]]:
    """Normalised boxes of the connected components of a binary mask; specks below ``min_fraction`` of the area are dropped."""
    from scipy import ndimage

    binary = np.asarray(mask) > 0
    if binary.ndim == 3:
        binary = binary.any(axis=-1)
    h, w = binary.shape
    labelled, _ = ndimage.label(binary)
    boxes = []
    for sl in ndimage.find_objects(labelled):
        if sl is None:
            continue
        ys, xs = sl
        if (ys.stop - ys.start) * (xs.stop - xs.start) < min_fraction * h * w:
            continue
        boxes.append([ys.start / h, xs.start / w, ys.stop / h, xs.stop / w])
    return boxes


def _group_adjacent(boxes: np.ndarray, margin: float) -> list[list[int]]:
    """Groups boxes that overlap once grown by ``margin`` (normalised units)."""
    n = len(boxes)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            a, b = boxes[i], boxes[j]
            if (a[0] - margin <= b[2] and b[0] - margin <= a[2] and a[1] - margin <= b[3] and b[1] - margin <= a[3]):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def roi_crop_windows(
    height: int, width: int, boxes: Sequence[Sequence[float]], count: int, rng: np.random.Generator,
    margin: float = 0.05,
) -> list[tuple[int, int, int]]:
    """Random square windows ``(top, left, side)`` in pixels, each holding one ROI or a group of adjacent ROIs.

    The DermGAN pre-processing heuristic (Ghorbani et al. 2020, Sec. 2, "Data
    Preprocessing"): crop a random window around an ROI or a group of adjacent
    ROIs so that the condition is prominent and the background mostly gone. The
    paper gives no numbers; we take the side uniformly between 1.2x the group's
    larger extent and the image's shorter side, placed uniformly where it still
    contains the whole group.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return []
    groups = _group_adjacent(b, margin)
    short = min(height, width)
    windows = []
    for _ in range(count):
        g = b[groups[rng.integers(len(groups))]]
        y0, x0 = g[:, 0].min() * height, g[:, 1].min() * width
        y1, x1 = g[:, 2].max() * height, g[:, 3].max() * width
        need = max(y1 - y0, x1 - x0)
        lo = min(short, max(1.0, 1.2 * need))
        side = int(round(rng.uniform(lo, short))) if short > lo else short
        top_lo, top_hi = max(0, int(np.ceil(y1)) - side), min(height - side, int(np.floor(y0)))
        left_lo, left_hi = max(0, int(np.ceil(x1)) - side), min(width - side, int(np.floor(x0)))
        top = int(rng.integers(top_lo, top_hi + 1)) if top_hi >= top_lo else max(0, min(height - side, int(y0)))
        left = int(rng.integers(left_lo, left_hi + 1)) if left_hi >= left_lo else max(0, min(width - side, int(x0)))
        windows.append((top, left, side))
    return windows


def crop_boxes(boxes, box_labels, height, width, top, left, side):
    """Boxes (and labels) of the part of each box inside a square window, re-normalised to it."""
    out, labels = [], []
    for box, lab in zip(boxes, box_labels):
        y0 = (box[0] * height - top) / side
        x0 = (box[1] * width - left) / side
        y1 = (box[2] * height - top) / side
        x1 = (box[3] * width - left) / side
        y0, x0, y1, x1 = (float(np.clip(v, 0.0, 1.0)) for v in (y0, x0, y1, x1))
        if y1 - y0 > 0 and x1 - x0 > 0:
            out.append([y0, x0, y1, x1])
            labels.append(lab)
    return out, labels


def load_image(path: str, channels: int) -> np.ndarray:
    """Decodes an image file fully (so a truncated file fails here) as uint8 ``[H, W, channels]``."""
    with Image.open(path) as img:
        img.load()
        if channels == 1:
            img = img.convert("L")
            return np.asarray(img, dtype=np.uint8)[..., None]
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _as_uint8(array: np.ndarray, channels: int) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"in-memory pixels must be uint8. Received dtype={a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1 and channels == 3:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 3 and channels == 1:
        a = np.asarray(Image.fromarray(a).convert("L"))[..., None]
    return a


# Worker state, set once per process by _init_worker (fork or spawn).
_WORKER: dict = {}


def _init_worker(opts: PrepOptions, channels: int, estimate_skin_type: bool) -> None:
    _WORKER.update(opts=opts, channels=channels, estimate_skin_type=estimate_skin_type)


def _process(task: tuple[int, SourceItem]):
    """Loads one item and returns ``("ok", [(example bytes, label, fitz, estimated), ...])`` or ``("bad", reason)``."""
    index, item = task
    opts: PrepOptions = _WORKER["opts"]
    channels: int = _WORKER["channels"]
    try:
        if item.array is not None:
            image = _as_uint8(item.array, channels)
        else:
            if item.path is None or not os.path.exists(item.path):
                return "bad", f"file not found: {item.path}"
            image = load_image(item.path, channels)
        boxes, box_labels = list(item.bboxes), list(item.bbox_labels)
        if item.mask_path is not None:
            if not os.path.exists(item.mask_path):
                return "bad", f"mask file not found: {item.mask_path}"
            with Image.open(item.mask_path) as m:
                m.load()
                mask_boxes = mask_to_boxes(np.asarray(m.convert("L")))
            boxes += mask_boxes
            box_labels += [item.label] * len(mask_boxes)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        return "bad", f"unreadable image ({type(e).__name__}: {e})"
    h, w = image.shape[:2]
    if h < 8 or w < 8:
        return "bad", f"image too small ({w}x{h} px)"

    fitz, estimated = int(item.fitzpatrick), False
    if fitz == 0 and _WORKER["estimate_skin_type"] and image.shape[-1] == 3:
        exclude = skin_tone.boxes_to_mask((h, w), boxes) if boxes else None
        fitz, _ = skin_tone.estimate_fitzpatrick(image, exclude_mask=exclude)
        estimated = fitz > 0

    views = [(image, boxes, box_labels, item.source_id)]
    if opts.roi_crop and boxes:
        rng = np.random.default_rng([opts.seed, index])
        views = []
        for k, (top, left, side) in enumerate(roi_crop_windows(h, w, boxes, opts.crops_per_image, rng)):
            cb, cl = crop_boxes(boxes, box_labels, h, w, top, left, side)
            views.append((image[top:top + side, left:left + side], cb, cl, f"{item.source_id}#crop{k}"))

    out = []
    for view, vboxes, vlabels, source_id in views:
        resized, new_boxes, kept = resize_with_boxes(view, vboxes, opts.image_size, opts.resize)
        record = ImageRecord(
            image=resized,
            label=item.label,
            label_multi=tuple(item.label_multi),
            fitzpatrick=fitz,
            fitzpatrick_estimated=estimated,
            bboxes=new_boxes,
            bbox_labels=[int(vlabels[i]) for i in kept],
            patient_id=item.patient_id,
            source_id=source_id,
        )
        out.append((serialize_record(record, opts.image_format), item.label, fitz, estimated))
    return "ok", out


def _pool(workers: int, init_args):
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=init_args)


def resolve_workers(workers: int) -> int:
    """0 means one per CPU core (at most 8)."""
    return workers if workers > 0 else max(1, min(8, os.cpu_count() or 1))


def prepare_dataset(
    items: Sequence[SourceItem],
    opts: PrepOptions,
    *,
    source: str,
    class_names: Sequence[str],
    channels: int = 3,
    split_unit: str = "patient",
    skipped: Iterable[dict] = (),
    estimate_skin_type: bool = False,
    multi_label: bool = False,
    extra: dict | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = click.echo,
) -> schema.DatasetInfo:
    """Loads, splits and writes ``items`` as a schema-v1 dataset in ``opts.out``.

    Items with an official ``split`` keep it; the others are split by
    ``patient_id`` with ``opts.val_fraction`` / ``opts.test_fraction``. Returns
    the ``DatasetInfo`` written to ``dataset.json``.

    Raises:
        PreparationError: no usable items, or more than ``opts.max_bad`` unreadable ones.
    """
    skipped = list(skipped)
    if not items:
        raise PreparationError(
            f"no usable images found for source {source!r} ({len(skipped)} skipped"
            + (f", e.g. {skipped[0]['input']}: {skipped[0]['reason']}" if skipped else "")
            + "). Check the paths and column names you passed."
        )
    if opts.max_bad < 0:
        raise PreparationError(f"--max-bad must be >= 0. Received: {opts.max_bad}")
    free = [it.patient_id for it in items if it.split is None]
    split_of_patient = assign_splits(free, opts.val_fraction, opts.test_fraction, opts.seed) if free else {}
    official = {}
    for it in items:
        if it.split is not None:
            if it.split not in schema.SPLITS:
                raise PreparationError(f"item {it.source_id!r} has split {it.split!r}; expected one of {schema.SPLITS}")
            official.setdefault(it.patient_id, set()).add(it.split)
    leaking = {p: s for p, s in official.items() if len(s) > 1 or (p in split_of_patient)}
    if leaking:
        p, s = next(iter(leaking.items()))
        echo(f"warning: {len(leaking)} {split_unit}(s) appear in more than one official split (e.g. {p!r} in "
             f"{sorted(s)}); the official splits are kept as published.")

    workers = resolve_workers(opts.workers)
    init_args = (opts, channels, estimate_skin_type)
    tasks = list(enumerate(items))
    bad = []
    writer = ShardedWriter(opts.out, num_shards=opts.shards, image_format=opts.image_format)
    pool = None
    try:
        if workers > 1:
            pool = _pool(workers, init_args)
            results = pool.imap(_process, tasks, chunksize=max(1, min(64, len(tasks) // (workers * 8) or 1)))
        else:
            _init_worker(*init_args)
            results = map(_process, tasks)
        with click.progressbar(results, length=len(tasks), label=f"{source}: writing {opts.out}",
                               file=None if progress else open(os.devnull, "w")) as bar:
            for (_, item), (status, payload) in zip(tasks, bar):
                if status == "bad":
                    bad.append({"input": item.path or item.source_id, "reason": payload})
                    if len(bad) > opts.max_bad:
                        listed = "\n".join(f"  {b['input']}: {b['reason']}" for b in bad[:20])
                        raise PreparationError(
                            f"{len(bad)} unreadable input(s), more than --max-bad {opts.max_bad}:\n{listed}\n"
                            "Fix or remove these files, or raise --max-bad to skip them. Nothing was written."
                        )
                    continue
                split = item.split or split_of_patient[item.patient_id]
                for example, label, fitz, estimated in payload:
                    name = class_names[label] if label >= 0 else "unlabeled"
                    writer.add_serialized(split, example, label_name=name, fitzpatrick=fitz,
                                          fitzpatrick_estimated=estimated)
        info = writer.finish(
            source=source,
            command=command_line(),
            image_size=[opts.image_size, opts.image_size],
            channels=channels,
            class_names=list(class_names),
            split_unit=split_unit,
            seed=opts.seed,
            skipped=skipped + bad,
            multi_label=multi_label,
            extra={**(extra or {}), "resize": opts.resize, "roi_crop": opts.roi_crop,
                   "crops_per_image": opts.crops_per_image if opts.roi_crop else 0,
                   "official_splits": bool(official)},
        )
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if info.skipped:
        echo(f"skipped {len(info.skipped)} input(s) (listed in {os.path.join(opts.out, schema.DATASET_JSON)}):")
        for s in info.skipped[:10]:
            echo(f"  {s['input']}: {s['reason']}")
        if len(info.skipped) > 10:
            echo(f"  ... and {len(info.skipped) - 10} more")
    echo(f"wrote {sum(info.num_examples(s) for s in schema.SPLITS)} records "
         f"(train {info.num_examples('train')}, val {info.num_examples('val')}, test {info.num_examples('test')}) "
         f"to {opts.out}")
    return info
