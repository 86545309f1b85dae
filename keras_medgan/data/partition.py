"""Split one schema-v1 dataset into per-client datasets for federated training, by patient.

Paper 003 (Sec. 3.1) splits ISIC by patient ID into three hospitals of 2k, 12k and 20k images, "ensuring that
the data from an individual patient would not be present on more than one client", with "the proportion of
malignant and benign roughly the same" in each client. ``partition_dataset`` does that for any dataset
written by ``medgan-data``: records are re-written byte for byte (the encoded image is never decoded), each
client gets its own patient-level train/val/test splits and ``dataset.json``, and ``pooled/`` holds the union
of the clients with the same splits (the centralized comparison arm).

Example:

>>> plan = partition_dataset("data/demo-derm", "data/fed", sizes=[200, 1200, 2000], skew="none")
>>> plan["clients"][0]["num_images"], plan["clients"][0]["dir"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections import Counter, defaultdict
from typing import Callable, Sequence

import numpy as np

from keras_medgan.data import schema, writer

SKEWS = ("none", "label", "skin-type")
PARTITION_JSON = "partition.json"


@dataclasses.dataclass(frozen=True)
class _Meta:
    patient_id: str
    label: int
    fitzpatrick: int
    fitzpatrick_estimated: bool


def _records(data_dir: str, info: schema.DatasetInfo):
    """Every serialised record of every split, in a fixed order (splits, then shards, then file order)."""
    import tensorflow as tf

    for split in schema.SPLITS:
        if not info.shards.get(split) or not info.num_examples(split):
            continue
        for path in schema.shard_paths(data_dir, split, info):
            for raw in tf.data.TFRecordDataset(path):
                yield raw.numpy()


def _meta(raw: bytes) -> _Meta:
    ex = schema.parse_example(raw)
    return _Meta(ex[schema.PATIENT_ID].numpy().decode("utf-8"), int(ex[schema.LABEL]),
                 int(ex[schema.FITZPATRICK]), bool(int(ex[schema.FITZPATRICK_ESTIMATED])))


def _stratum(images: list[_Meta], skew: str) -> int:
    """The group a patient is dealt from: its most frequent label or skin type (0 for ``none``)."""
    if skew == "none":
        return 0
    values = [m.label if skew == "label" else m.fitzpatrick for m in images]
    return Counter(values).most_common(1)[0][0]


def assign_patients(patients: dict[str, list[_Meta]], sizes: Sequence[int], skew: str, seed: int,
                    concentration: float = 0.5) -> list[list[str]]:
    """Deals whole patients to clients until each holds about ``sizes[i]`` images.

    ``skew="none"``: every client draws from one shuffled queue, so its class mix follows the whole dataset
    (paper 003 Sec. 3.1). ``label`` / ``skin-type``: patients are grouped by their main label or Fitzpatrick
    type and each client's share of each group is a Dirichlet(``concentration``) draw, so class (or skin-type)
    mixes differ between clients. A client stops taking patients once it reaches its size (it may overshoot by
    less than one patient's images). Returns the patient ids of each client.
    """
    rng = np.random.default_rng(seed)
    strata = defaultdict(list)
    for pid in sorted(patients):
        strata[_stratum(patients[pid], skew)].append(pid)
    keys = sorted(strata)
    for k in keys:
        rng.shuffle(strata[k])
    total = {k: sum(len(patients[p]) for p in strata[k]) for k in keys}
    grand = sum(total.values())
    out = []
    for size in sizes:
        if skew == "none":
            share = np.array([total[k] / grand for k in keys])
        else:
            share = rng.dirichlet([concentration] * len(keys))
        quota = {k: share[i] * size for i, k in enumerate(keys)}
        taken, count = [], 0
        # First each group up to its quota, then whatever is left (largest groups first) to reach the size.
        for k in keys:
            got = 0
            while strata[k] and got < quota[k] and count < size:
                pid = strata[k].pop()
                taken.append(pid)
                got += len(patients[pid])
                count += len(patients[pid])
        for k in sorted(keys, key=lambda k: -len(strata[k])):
            while strata[k] and count < size:
                pid = strata[k].pop()
                taken.append(pid)
                count += len(patients[pid])
        if count < size:
            raise ValueError(f"the dataset has too few images left for a client of {size} images (it got {count}); "
                             f"`sizes` must sum to at most the dataset's {grand} images. Received: sizes={list(sizes)}")
        out.append(taken)
    return out


def partition_dataset(data_dir: str, out_dir: str, sizes: Sequence[int], skew: str = "none", seed: int = 0,
                      val_fraction: float = 0.1, test_fraction: float = 0.1, pooled: bool = True,
                      command: str = "", progress: Callable[[int], object] | None = None) -> dict:
    """Writes ``out_dir/client-<i>/`` (and ``out_dir/pooled/``) and ``out_dir/partition.json``.

    Args:
        data_dir: str. A schema-v1 dataset; all of its splits are pooled and dealt out again.
        out_dir: str. Output folder.
        sizes: list of int. Images per client (paper 003: 2000, 12000, 20000).
        skew: str. ``none`` (same class mix everywhere), ``label`` or ``skin-type`` (Dirichlet mixes).
        seed: int. Seeds the dealing and each client's split.
        val_fraction, test_fraction: float. Share of each client's images (whole patients) in val / test.
        pooled: bool. Also write the union of the clients (their splits kept) to ``out_dir/pooled``.
        command: str. Command line recorded in each ``dataset.json``.
        progress: optional callable, called with 1 per record read in the writing pass.

    Returns:
        The plan written to ``partition.json``: per client its folder, image counts per split and class,
        and its number of patients.

    Raises:
        ValueError: bad ``sizes`` / ``skew``, a dataset without patient ids, or sizes larger than the data.
    """
    if skew not in SKEWS:
        raise ValueError(f"`skew` must be one of {SKEWS}. Received: skew={skew!r}")
    if not sizes or any(int(s) < 1 for s in sizes):
        raise ValueError(f"`sizes` must be one positive image count per client. Received: sizes={list(sizes)}")
    info = schema.read_dataset_info(data_dir)
    metas = [_meta(raw) for raw in _records(data_dir, info)]
    if any(not m.patient_id for m in metas):
        raise ValueError(f"{data_dir} has records without a patient_id; a partition by patient needs one on every "
                         "record (re-create the dataset with medgan-data)")
    patients = defaultdict(list)
    for m in metas:
        patients[m.patient_id].append(m)
    clients = assign_patients(patients, [int(s) for s in sizes], skew, seed)
    client_of = {pid: i for i, pids in enumerate(clients) for pid in pids}
    split_of = {}
    for i, pids in enumerate(clients):
        ids = [pid for pid in pids for _ in patients[pid]]
        split_of.update(writer.assign_splits(ids, val_fraction, test_fraction, seed + i))
    names = [f"client-{i}" for i in range(len(sizes))] + (["pooled"] if pooled else [])
    out_dir = os.path.abspath(out_dir)
    with contextlib.ExitStack() as stack:  # a writer that did not finish deletes its temporary shards
        sinks = {name: stack.enter_context(writer.ShardedWriter(os.path.join(out_dir, name), num_shards=1,
                                                                image_format=info.image_format))
                 for name in names}
        for raw, m in zip(_records(data_dir, info), metas):
            if progress is not None:
                progress(1)
            i = client_of.get(m.patient_id)
            if i is None:
                continue
            label_name = info.class_names[m.label] if m.label >= 0 else "unlabeled"
            for name in (f"client-{i}", "pooled") if pooled else (f"client-{i}",):
                sinks[name].add_serialized(split_of[m.patient_id], raw, label_name=label_name,
                                           fitzpatrick=m.fitzpatrick, fitzpatrick_estimated=m.fitzpatrick_estimated)
        plan = {"source": os.path.abspath(data_dir), "sizes": [int(s) for s in sizes], "skew": skew, "seed": seed,
                "val_fraction": val_fraction, "test_fraction": test_fraction, "clients": []}
        for name in names:
            extra = {"partition_of": os.path.abspath(data_dir), "skew": skew, "client": name,
                     "source_dataset": info.source}
            out = sinks[name].finish(source=f"{info.source}/{name}", command=command, image_size=info.image_size,
                                     channels=info.channels, class_names=list(info.class_names),
                                     split_unit="patient", seed=seed, multi_label=info.multi_label, extra=extra)
            if name == "pooled":
                plan["pooled"] = {"dir": os.path.join(out_dir, name), "counts": out.counts}
                continue
            i = int(name.split("-")[1])
            plan["clients"].append({"name": name, "dir": os.path.join(out_dir, name), "requested": int(sizes[i]),
                                    "num_images": sum(out.num_examples(s) for s in schema.SPLITS),
                                    "num_patients": len(clients[i]), "counts": out.counts})
    schema.write_json_atomic(os.path.join(out_dir, PARTITION_JSON), plan)
    return plan


def client_dirs(out_dir: str) -> list[str]:
    """The client folders of a partition written by ``partition_dataset``, in client order."""
    path = os.path.join(out_dir, PARTITION_JSON)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {out_dir!r} is not a partition; write one with "
                                "`medgan-data partition`.")
    with open(path, encoding="utf-8") as f:
        return [c["dir"] for c in json.load(f)["clients"]]
