"""The augmentation / anonymization study: a grid of arms, replicates, several test sets, one row per model.

Protocol (critical review, Bissoto et al. 2021, Sec. 3 and Table 2):

- An **arm** is one training-set recipe: a synthetic source, the fraction of the real training set (1 .. 1/16),
  the real:synthetic ratio (0, 1/4, 1/2, 1), optional per-class ratios (the review's (1 : 1/2 : 3/4) real :
  synthetic benign : synthetic malignant), the sampling method (random / diverse / best / worst) and the mode
  (augmentation, anonymization = synthetic replaces real, synth-only = paper 003's classifiers trained on
  synthetic images alone). Each arm is compared with its **baseline**: the arm with the same real fraction and
  no synthetic images (synth-only arms: the full real set).
- **Replicates** (10 in the review): replicate ``r`` draws its own stratified real subset, shared by every arm,
  and the same initial weights for every arm; the synthetic sample of an arm is fixed across replicates
  (Sec. 3.2). Replicate ``r`` of an arm and of its baseline are therefore a matched pair.
- Every arm gets the same classifier, training setup, budget and model selection (``training.TrainingConfig``);
  model selection reads the validation split only, and a configuration that would select on a test set is
  refused before anything runs (``TestSetSelectionError``; Sec. 2, flaw 1).
- **Test sets**: several datasets, each labelled in- or out-of-distribution (Table 3); every trained model is
  scored on all of them.
- **Sources** are generated datasets, or the union of several read as one pool (the review's ``all``, "samples
  from all GANs together", Sec. 3.1 "Analyses"; ``SourceConfig.union``).
- **Twins**: arms that train identically in two modes (Table 2 lists 1:0 and 1:1 in both experiments) share
  their models: replicate ``r`` is trained once and its row copied (``StudyConfig.twins``).

A study folder holds ``study.json`` (the resolved config), ``results.jsonl`` (one row per arm and replicate: a
trained model, or a twin's copy of one; appended atomically after the model's predictions are saved in
``cells/``), ``selections/`` (the fixed synthetic samples) and, once complete, ``results.csv``, ``summary.json``,
the plots and ``report.md`` (``report``).
Rerunning a killed study with ``resume=True`` trains only the cells without a row: none twice, none lost. One
process at a time: ``run`` holds ``study.lock`` (``locking``); a second process is refused with the holder's PID.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from fractions import Fraction
from typing import Callable

import keras
import numpy as np

from keras_medgan import config as config_lib
from keras_medgan.config import DataConfig
from keras_medgan.data import pipelines, schema
from keras_medgan.evaluation import locking, sampling, statistics
from keras_medgan.evaluation.augmentation import AugmentationConfig, conventional_augmentation
from keras_medgan.evaluation.classifiers import ClassifierConfig, build_classifier
from keras_medgan.evaluation.training import (MONITORS, Rows, TrainingConfig, predict_probabilities,
                                              train_classifier)
from keras_medgan.io_utils import atomic_open

MODES = ("augmentation", "anonymization", "synth-only")
DISTRIBUTIONS = ("in", "out")
RESULTS = "results.jsonl"
STUDY_JSON = "study.json"
TEST_LABELS = "test_sets.npz"
UNION_MIXES = ("pooled", "equal")
LOCK_FILE = locking.LOCK_FILE
StudyLocked = locking.StudyLocked
SAMPLING_ABBREVIATIONS = {"random": "", "diverse": "div", "best": "bst", "worst": "wst"}  # the review's Fig. 2


class TestSetSelectionError(config_lib.ConfigError):
    """A configuration that would select the model or its hyperparameters on a test set."""


def _refuse_test_selection(what: str, fix: str) -> None:
    raise TestSetSelectionError(
        f"refused: {what}. That would choose the learning-rate drops, early stopping and the kept epoch on "
        "test data and make the test scores optimistic (critical review Sec. 2, flaw 1: 'choosing "
        f"hyperparameters directly on the test set'). Model selection reads the validation split only: {fix}.")


def _from_dict(cls, value, where: str):
    """A config dataclass from a TOML / JSON table, with unknown keys named."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table of {cls.__name__} keys. Received: {value!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**value)


@dataclasses.dataclass(frozen=True)
class TestSetConfig:
    """One test set of a study (critical review Table 3: each its own dataset, in- or out-of-distribution).

    Args:
        name: str. Short name used in rows, plots and the report.
        data_dir: str. Dataset folder; empty = the study's real dataset.
        split: str. Split(s) to read, ``test`` or e.g. ``train+val+test`` for an external dataset.
        distribution: str. ``in`` or ``out`` (of the training distribution).
        fitzpatrick: tuple of int. Keep only these skin types (e.g. (5, 6): a dark-skin shift); empty = all.
        note: str. Shown in the report.
    """

    name: str = ""
    data_dir: str = ""
    split: str = "test"
    distribution: str = "in"
    fitzpatrick: tuple = ()
    note: str = ""

    def __post_init__(self):
        if isinstance(self.fitzpatrick, list):
            object.__setattr__(self, "fitzpatrick", tuple(self.fitzpatrick))
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name or ""):
            raise ValueError(f"test_sets: name must be letters, digits, _ . or -. Received: {self.name!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"test set {self.name!r}: distribution must be 'in' or 'out'. Received: "
                             f"{self.distribution!r}")
        bad = [s for s in self.split.split("+") if s not in schema.SPLITS]
        if bad:
            raise ValueError(f"test set {self.name!r}: split must be {'|'.join(schema.SPLITS)} or several joined "
                             f"by '+'. Received: {self.split!r}")
        if not all(isinstance(t, int) and 1 <= t <= 6 for t in self.fitzpatrick):
            raise ValueError(f"test set {self.name!r}: fitzpatrick must list types 1..6. Received: "
                             f"{self.fitzpatrick!r}")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """A synthetic source: a TFRecord dataset written by a GAN recipe's ``generate`` command, or the union of
    other sources.

    The critical review's Fig. 2 labels name the GAN (p2p, spd, pgn, sgn) and ``all``, "samples from all GANs
    together" (Sec. 3.1, "Analyses"): ``SourceConfig(name="all", union=("p2p", "spd", "pgn", "sgn"))``. A union
    reads its members' datasets as one pool (nothing is copied or rewritten) and is sampled by every method like
    any other source.

    Args:
        name: str. Short name (the review's p2p / spd / pgn / sgn / all).
        data_dir: str. The generated dataset folder (``<generate --out>/dataset``). Empty for a union, and in
            presets whose recipe trains a GAN and fills it in (``recipes.augment_study``'s demo).
        split: str. Split holding the images (``generate`` writes ``train``).
        gan_args: tuple of str. For an empty ``data_dir``: ``--set`` overrides of the quick GAN the recipe trains.
        num_images: int. For an empty ``data_dir``: images the recipe generates; 0 = as many as the arms need.
        union: tuple of str. Names of other (non-union) sources read together as this one.
        mix: str. How a union draws an arm's images: ``pooled`` (default; one pool, so the sampling method ranks
            all members' images together and each member contributes in proportion to what it has, e.g. "diverse"
            also drops near-duplicates across GANs) or ``equal`` (each class's count split evenly between the
            members, each member sampled by the arm's method; the review does not say which it used).
    """

    name: str = ""
    data_dir: str = ""
    split: str = "train"
    gan_args: tuple = ()
    num_images: int = 0
    union: tuple = ()
    mix: str = "pooled"

    def __post_init__(self):
        for field in ("gan_args", "union"):
            value = getattr(self, field)
            if isinstance(value, (list, str)):
                object.__setattr__(self, field, tuple(value) if isinstance(value, list) else (value,))
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name or ""):
            raise ValueError(f"sources: name must be letters, digits, _ . or -. Received: {self.name!r}")
        if self.mix not in UNION_MIXES:
            raise ValueError(f"source {self.name!r}: mix must be one of {UNION_MIXES}. Received: {self.mix!r}")
        if self.union:
            if self.data_dir or self.gan_args or self.num_images:
                raise ValueError(f"source {self.name!r} is the union of {list(self.union)}: it reads its members' "
                                 "datasets, so leave data_dir, gan_args and num_images empty. Received: data_dir="
                                 f"{self.data_dir!r}, gan_args={list(self.gan_args)}, num_images={self.num_images}")
            if self.name in self.union or len(set(self.union)) != len(self.union):
                raise ValueError(f"source {self.name!r}: union must list other sources, each once. Received: "
                                 f"{list(self.union)}")
        elif self.mix != "pooled":
            raise ValueError(f"source {self.name!r}: mix applies to union sources only; set union = [...] or "
                             "remove mix")


def _fraction(value, where: str) -> float:
    """A number or a fraction string ('1/16') as float."""
    try:
        return float(Fraction(str(value))) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{where} must be a number or a fraction such as '1/4'. Received: {value!r}") from None


def fraction_text(value: float) -> str:
    """0.5 -> '1/2', 1.0 -> '1', 0.0 -> '0' (the review's notation)."""
    f = Fraction(value).limit_denominator(64)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


@dataclasses.dataclass(frozen=True)
class ArmConfig:
    """One training-set recipe of the study.

    Args:
        name: str. Unique name; empty = derived from the other fields.
        mode: str. ``augmentation``, ``anonymization`` or ``synth-only`` (``real_fraction`` must be 0).
        source: str. Name of a ``SourceConfig``; empty for arms without synthetic images.
        real_fraction: float or fraction string. Share of the real training set (Table 2: 1, 1/2, .. 1/16).
        ratio: float or fraction string. Synthetic images per real training image of the same class, relative to
            the whole real training set (Sec. 3.1; 1:1/2 -> 0.5).
        class_ratios: table ``{class name: ratio}`` overriding ``ratio`` per class (the balancing ratios).
        sampling: str. ``random``, ``diverse``, ``best`` or ``worst`` (Sec. 3).
        baseline: str. Name of the arm this one is compared with; empty = the arm with the same real fraction
            and no synthetic images (synth-only: real fraction 1).
    """

    name: str = ""
    mode: str = "augmentation"
    source: str = ""
    real_fraction: float = 1.0
    ratio: float = 0.0
    class_ratios: dict = dataclasses.field(default_factory=dict)
    sampling: str = "random"
    baseline: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "real_fraction", _fraction(self.real_fraction, "arms: real_fraction"))
        set_(self, "ratio", _fraction(self.ratio, "arms: ratio"))
        set_(self, "class_ratios", {str(k): _fraction(v, f"arms: class_ratios.{k}")
                                    for k, v in dict(self.class_ratios).items()})
        where = f"arm {self.name or '(unnamed)'}"
        if self.mode not in MODES:
            raise ValueError(f"{where}: mode must be one of {MODES}. Received: {self.mode!r}")
        if self.sampling not in sampling.SAMPLING_METHODS:
            raise ValueError(f"{where}: sampling must be one of {sampling.SAMPLING_METHODS}. Received: "
                             f"{self.sampling!r}")
        if not 0.0 <= self.real_fraction <= 1.0 or self.ratio < 0 or min(self.class_ratios.values(), default=0) < 0:
            raise ValueError(f"{where}: real_fraction must be in [0, 1] and ratios >= 0. Received: real_fraction="
                             f"{self.real_fraction}, ratio={self.ratio}, class_ratios={self.class_ratios}")
        if (self.mode == "synth-only") != (self.real_fraction == 0.0):
            raise ValueError(f"{where}: mode synth-only and real_fraction=0 go together. Received: mode="
                             f"{self.mode!r}, real_fraction={self.real_fraction}")
        if self.has_synthetic and not self.source:
            raise ValueError(f"{where}: adds synthetic images (ratio {self.ratio}, class_ratios "
                             f"{self.class_ratios}) but names no source; set source = one of the [[sources]]")
        if not self.has_synthetic and self.real_fraction == 0.0:
            raise ValueError(f"{where}: has neither real nor synthetic images")
        if not self.name:
            set_(self, "name", self.default_name())

    @property
    def has_synthetic(self) -> bool:
        return self.ratio > 0 or any(v > 0 for v in self.class_ratios.values())

    @property
    def training_key(self) -> tuple:
        """What decides the arm's training set; the mode and name do not. The review's anonymization grid lists
        1:0 and 1:1 again (Table 2) although they train exactly as the augmentation arms of those names: arms with
        equal keys share their models (``StudyConfig.twins``)."""
        if not self.has_synthetic:
            return (self.real_fraction,)
        return (self.real_fraction, self.source, self.ratio, tuple(sorted(self.class_ratios.items())), self.sampling)

    def default_name(self) -> str:
        parts = [self.mode, fraction_text(self.real_fraction).replace("/", "over"),
                 fraction_text(self.ratio).replace("/", "over")]
        parts += [f"{k}{fraction_text(v).replace('/', 'over')}" for k, v in sorted(self.class_ratios.items())]
        if self.has_synthetic:
            parts += [self.source, self.sampling]
        return "-".join(parts)

    def label(self, class_names=None) -> str:
        """The review's Fig. 2 label: real:synthetic or (real:synthetic benign:synthetic malignant), then the
        source and the sampling abbreviation (wst / bst / div; random is omitted)."""
        real = fraction_text(self.real_fraction)
        if self.class_ratios and class_names is not None and len(class_names) == 2:
            r = [self.class_ratios.get(c, self.ratio) for c in class_names]
            text = f"({real}:{fraction_text(r[0])}:{fraction_text(r[1])})"
        else:
            text = f"{real}:{fraction_text(self.ratio)}"
            if self.class_ratios:
                text += " [" + ", ".join(f"{k}={fraction_text(v)}" for k, v in sorted(self.class_ratios.items())) + "]"
        if self.has_synthetic:
            text += f" {self.source}"
            if SAMPLING_ABBREVIATIONS[self.sampling]:
                text += f" {SAMPLING_ABBREVIATIONS[self.sampling]}"
        return text


@dataclasses.dataclass(frozen=True)
class GroupConfig:
    """A factorial block of arms (the review's Table 2 rows): every combination of the listed levels, plus the
    baseline of each real fraction.

    Args:
        mode: str. The arms' mode.
        sources, real_fractions, ratios, sampling: lists of levels.
        class_ratios: list of ``{class name: ratio}`` tables; each is combined with each ratio.
    """

    mode: str = "augmentation"
    sources: tuple = ()
    real_fractions: tuple = (1.0,)
    ratios: tuple = (0.0,)
    class_ratios: tuple = ()
    sampling: tuple = ("random",)

    def __post_init__(self):
        for field in ("sources", "real_fractions", "ratios", "class_ratios", "sampling"):
            value = getattr(self, field)
            if isinstance(value, (list, str)):
                object.__setattr__(self, field, tuple(value) if isinstance(value, list) else (value,))
        if self.mode not in MODES:
            raise ValueError(f"groups: mode must be one of {MODES}. Received: {self.mode!r}")
        fractions = [_fraction(f, "groups: real_fractions") for f in self.real_fractions]
        if self.mode == "synth-only" and any(fractions):
            raise ValueError("groups: mode synth-only trains on synthetic images alone (paper 003): set "
                             f"real_fractions = [0]. Received: real_fractions={list(self.real_fractions)}")
        if self.mode != "synth-only" and not all(fractions):
            raise ValueError(f"groups: mode {self.mode} needs real images: real_fractions must be > 0 (use mode "
                             f"synth-only for none). Received: real_fractions={list(self.real_fractions)}")

    def arms(self) -> list[ArmConfig]:
        """Each real fraction's baseline (synth-only: all the real data, ``1:0``), then every combination."""
        out = []
        balance = [dict(c) for c in self.class_ratios] or [{}]
        for fraction in self.real_fractions:
            frac = _fraction(fraction, "groups: real_fractions")
            if self.mode == "synth-only":  # compared with the classifier trained on all the real data
                out.append(ArmConfig(mode="augmentation", real_fraction=1.0))
            else:
                out.append(ArmConfig(mode=self.mode, real_fraction=frac))
            for source in self.sources:
                for ratio in self.ratios:
                    for balancing in balance:
                        for method in self.sampling:
                            arm = ArmConfig(mode=self.mode, source=source, real_fraction=frac, ratio=ratio,
                                            class_ratios=balancing, sampling=method)
                            if arm.has_synthetic:
                                out.append(arm)
        return out


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Settings of the synthetic sampling methods.

    Args:
        max_hash_distance: int. ``diverse``: pHash bits (of 64) at or below which two images are near-duplicates
            (the review gives no value; ``sampling.DEFAULT_MAX_HASH_DISTANCE``).
        ancillary_epochs: int. ``best`` / ``worst``: epochs of the ancillary classifier (the metrics' cached
            domain classifier, trained on the real training split and validated on val).
        seed: int. Order of the random and diverse samples (fixed across replicates).
    """

    max_hash_distance: int = sampling.DEFAULT_MAX_HASH_DISTANCE
    ancillary_epochs: int = 8
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A whole study; ``study.json`` in the study folder is this, as JSON.

    Args:
        preset, name: where it started from and the folder name.
        data: DataConfig. The real dataset (``data_dir``, ``image_size``, ``classes``: the classes studied, in
            order; every source and test set must have them).
        demo_dataset, demo_num_images: demo data built when ``data.data_dir`` is empty.
        classifier, training, augmentation, sampling: see their classes; the same for every arm.
        replicates: int. Trained models per arm (critical review Sec. 3.1: 10).
        seed: int. Seeds real subsets (with the replicate) and initial weights.
        bootstrap: int. Resamples of the paired bootstrap and of the per-class F1 intervals.
        alpha: float. Family-wise significance level after Holm's correction.
        metric: str. The primary measure compared (``auc``, the review's; ``accuracy``; ``balanced_accuracy``).
        test_sets, sources, arms, groups: lists of tables (see their classes); ``groups`` expand into arms.
    """

    preset: str = "custom"
    name: str = "study"
    data: DataConfig = DataConfig(image_size=32, batch_size=32)
    demo_dataset: str = "demo-derm"
    demo_num_images: int = 2000
    classifier: ClassifierConfig = ClassifierConfig()
    training: TrainingConfig = TrainingConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    sampling: SamplingConfig = SamplingConfig()
    replicates: int = 10
    seed: int = 0
    bootstrap: int = 1000
    alpha: float = 0.05
    metric: str = "auc"
    test_sets: tuple = ()
    sources: tuple = ()
    arms: tuple = ()
    groups: tuple = ()

    def __post_init__(self):
        set_ = object.__setattr__
        for field, cls in (("test_sets", TestSetConfig), ("sources", SourceConfig), ("arms", ArmConfig),
                           ("groups", GroupConfig)):
            items = getattr(self, field)
            if isinstance(items, dict):
                items = [items]
            set_(self, field, tuple(_from_dict(cls, v, f"{field}[{i}]") for i, v in enumerate(items)))
        if not (isinstance(self.replicates, int) and self.replicates >= 1):
            raise ValueError(f"replicates must be an integer >= 1. Received: replicates={self.replicates!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1). Received: alpha={self.alpha!r}")
        if self.metric not in statistics.SCALAR_MEASURES:
            raise ValueError(f"metric must be one of {statistics.SCALAR_MEASURES}. Received: {self.metric!r}")
        if not (isinstance(self.bootstrap, int) and self.bootstrap >= 2):
            raise ValueError(f"bootstrap must be an integer >= 2. Received: bootstrap={self.bootstrap!r}")
        self._check_selection()
        names = [t.name for t in self.test_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"test set names must be unique. Received: {names}")
        sources = [s.name for s in self.sources]
        if len(set(sources)) != len(sources):
            raise ValueError(f"source names must be unique. Received: {sources}")
        unions = {s.name for s in self.sources if s.union}
        for s in self.sources:
            for member in s.union:
                if member not in sources:
                    raise ValueError(f"source {s.name!r}: union member {member!r} is not among the [[sources]] "
                                     f"{sources}")
                if member in unions:
                    raise ValueError(f"source {s.name!r}: union member {member!r} is itself a union; list its "
                                     "members instead")
        arms = self.all_arms()
        for arm in arms:
            if arm.source and arm.source not in sources:
                raise ValueError(f"arm {arm.name}: source {arm.source!r} is not among the [[sources]] {sources}")
        arm_names = [a.name for a in arms]
        duplicates = sorted({n for n in arm_names if arm_names.count(n) > 1})
        if duplicates:
            raise ValueError(f"arm names must be unique; repeated: {duplicates} (an arm listed in [[arms]] and "
                             "produced by a [[groups]] block, or two identical arms)")
        for arm in arms:
            self.baseline_of(arm)

    def _check_selection(self) -> None:
        """Refuses every way of selecting on test data (``TestSetSelectionError``)."""
        t = self.training
        test_names = {ts.name for ts in self.test_sets}
        if t.selection_split != "val":
            if t.selection_split == "test" or t.selection_split in test_names:
                _refuse_test_selection(f"training.selection_split={t.selection_split!r} selects on a test set",
                                       "set training.selection_split=val")
            raise ValueError(f"training.selection_split must be 'val' (the validation split of the real data). "
                             f"Received: {t.selection_split!r}")
        if t.monitor not in MONITORS:
            if "test" in t.monitor or any(n in t.monitor for n in test_names):
                _refuse_test_selection(f"training.monitor={t.monitor!r} reads a test-set measure",
                                       f"set training.monitor to one of {MONITORS}")
            raise ValueError(f"training.monitor must be one of {MONITORS}. Received: {t.monitor!r}")
        own = os.path.normpath(self.data.data_dir) if self.data.data_dir else ""
        for ts in self.test_sets:
            same = (not ts.data_dir) or (own and os.path.normpath(ts.data_dir) == own)
            splits = set(ts.split.split("+"))
            if same and "val" in splits:
                _refuse_test_selection(f"test set {ts.name!r} is the validation split of the real data, which "
                                       "already chooses the model", "test on the 'test' split or another dataset")
            if same and "train" in splits:
                raise ValueError(f"test set {ts.name!r} reads the real training split, which the classifiers "
                                 "train on; test on the 'test' split or another dataset")

    def all_arms(self) -> list[ArmConfig]:
        """The listed arms, then those of the groups, without repeating an arm listed twice by groups."""
        out, seen = list(self.arms), {a.name for a in self.arms}
        for group in self.groups:
            for arm in group.arms():
                if arm.name not in seen:
                    out.append(arm)
                    seen.add(arm.name)
        return out

    def twins(self) -> dict:
        """``{arm name: name of the earlier arm it shares its models with}`` for arms whose training set is that
        of an earlier arm (same ``training_key``; e.g. the anonymization grid's 1:0 and 1:1, Table 2). A twin's
        replicate ``r`` reuses the model of its primary's replicate ``r`` (same real subset, synthetic sample and
        seed, so training it again would only add run-to-run noise) and is trained once."""
        first, out = {}, {}
        for arm in self.all_arms():
            if arm.training_key in first:
                out[arm.name] = first[arm.training_key]
            else:
                first[arm.training_key] = arm.name
        return out

    def modes(self) -> dict:
        """``{mode: arm names}`` in ``MODES`` order: each mode's arms, preceded by the baselines they are compared
        with that belong to another mode (synth-only's 1:0). The review plots each application apart (Fig. 2)."""
        arms = self.all_arms()
        out = {}
        for mode in MODES:
            own = [a.name for a in arms if a.mode == mode]
            if not own:
                continue
            extra = []
            for a in arms:
                base = self.baseline_of(a) if a.mode == mode else None
                if base is not None and base.mode != mode and base.name not in extra:
                    extra.append(base.name)
            out[mode] = extra + own
        return out

    def baseline_of(self, arm: ArmConfig) -> ArmConfig | None:
        """The arm ``arm`` is compared with (None for a baseline itself): the arm with the same real fraction and
        no synthetic images, of the same mode when there is one (synth-only: all the real data, 1:0)."""
        arms = {a.name: a for a in self.all_arms()}
        if arm.baseline:
            if arm.baseline not in arms:
                raise ValueError(f"arm {arm.name}: baseline {arm.baseline!r} is not an arm of the study")
            return arms[arm.baseline]
        if not arm.has_synthetic:
            return None
        fraction = 1.0 if arm.mode == "synth-only" else arm.real_fraction
        candidates = [a for a in arms.values() if not a.has_synthetic and a.real_fraction == fraction]
        for a in sorted(candidates, key=lambda a: a.mode != arm.mode):  # stable: same mode first
            return a
        raise ValueError(f"arm {arm.name}: no baseline; add an arm with real_fraction={fraction_text(fraction)} "
                         "and ratio 0 (groups add it for you), or name one with baseline = ...")


def load_study_config(path: str) -> StudyConfig:
    """``study.json`` (or any JSON / TOML with the same keys) as a StudyConfig."""
    if path.endswith(".toml"):
        return config_lib.replace(StudyConfig(), config_lib.load_toml(path))
    with open(path, encoding="utf-8") as f:
        return config_lib.replace(StudyConfig(), json.load(f))


# ---------------------------------------------------------------------------------------------- data


@dataclasses.dataclass
class Images:
    """A labelled image set in memory: uint8 ``[n, S, S, C]``, labels in the study's class order, skin types."""

    images: np.ndarray
    labels: np.ndarray
    fitzpatrick: np.ndarray

    def __len__(self):
        return len(self.labels)

    def take(self, idx) -> "Images":
        return Images(self.images[idx], self.labels[idx], self.fitzpatrick[idx])


class UnionImages:
    """Several synthetic pools read as one, without copying them: the review's ``all`` source, "samples from all
    GANs together" (Sec. 3.1, "Analyses"). Index ``i`` is image ``i - offset[m]`` of member ``m``.

    Only ``labels``, ``fitzpatrick`` (small) and the offsets are built; ``take`` gathers the chosen images from the
    members, so a union costs no memory beyond the arm's own sample.

    Args:
        parts: ``{source name: Images}`` in the union's order.
    """

    def __init__(self, parts: dict):
        self.names = list(parts)
        self.parts = [parts[n] for n in self.names]
        shapes = {n: p.images.shape[1:] for n, p in parts.items()}
        if len(set(shapes.values())) > 1:
            raise config_lib.ConfigError(f"the union of {self.names} mixes image shapes {shapes}; set data.channels "
                                         "so that every source is read alike")
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.labels = np.concatenate([p.labels for p in self.parts])
        self.fitzpatrick = np.concatenate([p.fitzpatrick for p in self.parts])

    def __len__(self):
        return len(self.labels)

    def member_of(self, idx) -> np.ndarray:
        """Member number of each union index."""
        return np.searchsorted(self.offsets, np.asarray(idx, np.int64), side="right") - 1

    def take(self, idx) -> Images:
        idx = np.asarray(idx, np.int64)
        which = self.member_of(idx)
        images = np.empty((len(idx), *self.parts[0].images.shape[1:]), self.parts[0].images.dtype)
        for m, part in enumerate(self.parts):
            rows = which == m
            if rows.any():
                images[rows] = part.images[idx[rows] - self.offsets[m]]
        return Images(images, self.labels[idx], self.fitzpatrick[idx])

    def counts_by_member(self, idx) -> dict:
        """``{member: images}`` among the union indices ``idx``."""
        which = np.bincount(self.member_of(idx), minlength=len(self.names))
        return {n: int(k) for n, k in zip(self.names, which)}


def _split_evenly(counts, parts: int) -> list[np.ndarray]:
    """Each class's count split into ``parts`` near-equal shares (the first members take the remainders)."""
    counts = np.asarray(counts, np.int64)
    base, extra = counts // parts, counts % parts
    return [base + (m < extra) for m in range(parts)]


def load_images(data_dir: str, split: str, classes, image_size: int, channels: int | None = None,
                fitzpatrick=(), what: str = "dataset") -> Images:
    """Reads ``split`` (``a+b`` for several) of a schema-v1 dataset with ``classes`` renumbered in that order.

    The uint8 array is allocated once from ``dataset.json``'s counts and filled batch by batch, so reading the
    review's 14,805 training images at 299 px (4 GB) needs 4 GB, not twice that; with ``fitzpatrick`` only the
    kept images touch memory.
    """
    try:
        info = schema.read_dataset_info(data_dir)
    except (FileNotFoundError, schema.SchemaError) as e:
        raise config_lib.ConfigError(f"{what}: {e}") from None
    missing = [c for c in classes if c not in info.class_names]
    if missing:
        raise config_lib.ConfigError(f"{what} ({data_dir}) has no class(es) {missing}; its classes are "
                                     f"{list(info.class_names)}. Every source and test set needs the study's "
                                     f"classes {list(classes)}.")
    splits = [s for s in split.split("+") if info.num_examples(s)]
    expected = sum(int(info.counts.get(s, {}).get(c, 0)) for s in splits for c in classes)
    shape = (image_size, image_size, channels or info.channels)
    images = np.empty((expected, *shape), np.uint8)  # pages are committed only where written
    labels, types = np.empty(expected, np.int64), np.empty(expected, np.int64)
    n, overflow = 0, []
    for s in splits:
        cfg = DataConfig(data_dir=data_dir, image_size=image_size, channels=channels, batch_size=256,
                         shuffle_buffer=0, cache=False, repeat=False, drop_remainder=False, classes=tuple(classes))
        for batch in pipelines.make_dataset(cfg, s):
            x = pipelines.to_uint8(batch["image"]).numpy()
            y, t = batch["label"].numpy().astype(np.int64), batch["fitzpatrick"].numpy().astype(np.int64)
            if fitzpatrick:
                keep = np.isin(t, list(fitzpatrick))
                x, y, t = x[keep], y[keep], t[keep]
            k = min(len(y), expected - n)
            images[n:n + k], labels[n:n + k], types[n:n + k] = x[:k], y[:k], t[:k]
            n += k
            if k < len(y):  # dataset.json undercounts: keep the rest aside (rare; costs a copy at the end)
                overflow.append((x[k:], y[k:], t[k:]))
    out = Images(images[:n], labels[:n], types[:n])
    if overflow:
        out = Images(*(np.concatenate([getattr(out, f)] + [o[i] for o in overflow])
                       for i, f in enumerate(("images", "labels", "fitzpatrick"))))
    if not len(out):
        if fitzpatrick:
            raise config_lib.ConfigError(f"{what} ({data_dir}) has no images of Fitzpatrick types "
                                         f"{list(fitzpatrick)} in split {split!r}")
        raise config_lib.ConfigError(f"{what} ({data_dir}) has no images of the classes {list(classes)} in split "
                                     f"{split!r}")
    return out


# ---------------------------------------------------------------------------------------------- results


def read_rows(path: str) -> list[dict]:
    """The rows of ``results.jsonl``, first row per cell; a torn last line (a kill mid-write) is dropped."""
    if not os.path.exists(path):
        return []
    rows, seen = [], set()
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # only the last line can be torn
                continue
            raise ValueError(f"{path} line {i + 1} is not JSON; the results file was edited by hand or corrupted")
        if row["cell"] not in seen:
            seen.add(row["cell"])
            rows.append(row)
    return rows


def _rewrite_rows(path: str, rows: list[dict]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def append_row(path: str, row: dict) -> None:
    """Appends one JSON line and fsyncs it, so a finished cell is on disk before the next one starts."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def cell_name(arm: str, replicate: int) -> str:
    return f"{arm}/r{replicate:02d}"


def predictions_path(out_dir: str, arm: str, replicate: int) -> str:
    return os.path.join(out_dir, "cells", arm, f"r{replicate:02d}.npz")


def load_predictions(out_dir: str, arm: str, replicate: int) -> dict:
    with np.load(predictions_path(out_dir, arm, replicate)) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------------------------------------- runner


class Study:
    """Runs a ``StudyConfig`` in ``out_dir``: loads the data once, fixes the synthetic samples, trains the cells.

    Example:

    >>> study = Study(load_study_config("recipes/augment_study/paper.toml"), "runs/augment_study/00001-paper")
    >>> study.run()            # a killed run continues with Study(...).run(resume=True)
    """

    def __init__(self, cfg: StudyConfig, out_dir: str, log: Callable[[str], object] = print):
        if not cfg.data.data_dir:
            raise config_lib.ConfigError("data.data_dir is empty: pass the real dataset (--data DIR)")
        for s in cfg.sources:
            if not s.data_dir and not s.union:
                raise config_lib.ConfigError(f"source {s.name!r} has no data_dir: point it at a generated dataset "
                                             "(<generate --out>/dataset), or make it a union = [...] of other sources")
        self.cfg = cfg
        self.out_dir = out_dir
        self.log = log
        self.arms = cfg.all_arms()
        self.results_path = os.path.join(out_dir, RESULTS)
        self._data = None
        self._cache = {}  # per-source pHashes and ancillary-classifier errors

    # -- set-up

    def prepare(self, resume: bool = False) -> list[dict]:
        """Writes or checks ``study.json``; returns the rows already done (after dropping a torn line)."""
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, STUDY_JSON)
        mine = config_lib.to_dict(self.cfg)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if not resume:
                raise config_lib.ConfigError(f"{self.out_dir} already holds a study; continue it with --resume "
                                             "or choose another folder (nothing was changed).")
            mine = json.loads(json.dumps(mine))
            try:  # read back through StudyConfig: fields added since the study started take their defaults
                saved = json.loads(json.dumps(config_lib.to_dict(config_lib.replace(StudyConfig(), saved))))
            except (config_lib.ConfigError, ValueError, TypeError) as e:
                raise config_lib.ConfigError(f"{path} cannot be read as a study config ({e}); start a new study "
                                             "instead") from None
            if mine != saved:
                changed = sorted(k for k in set(saved) | set(mine) if mine.get(k) != saved.get(k))
                raise config_lib.ConfigError(f"the study in {self.out_dir} was started with other settings "
                                             f"({', '.join(changed)} differ); a resumed study must keep its config "
                                             "so that its rows stay comparable. Start a new study instead.")
        else:
            schema.write_json_atomic(path, mine)
        rows = read_rows(self.results_path)
        if os.path.exists(self.results_path):
            _rewrite_rows(self.results_path, rows)  # drops a torn last line and any duplicate
        return rows

    def data(self) -> dict:
        """Real train / val, the test sets and the synthetic pools, read once."""
        if self._data is None:
            c = self.cfg
            read = dict(classes=c.data.classes, image_size=c.data.image_size, channels=c.data.channels)
            data = {"train": load_images(c.data.data_dir, "train", what="the real dataset", **read),
                    "val": load_images(c.data.data_dir, c.training.selection_split, what="the real dataset", **read),
                    "tests": {t.name: load_images(t.data_dir or c.data.data_dir, t.split, fitzpatrick=t.fitzpatrick,
                                                  what=f"test set {t.name!r}", **read) for t in c.test_sets},
                    "pools": {s.name: load_images(s.data_dir, s.split, what=f"source {s.name!r}", **read)
                              for s in c.sources if not s.union}}
            for s in c.sources:  # unions read their members' pools as one, without copying them
                if s.union:
                    data["pools"][s.name] = UnionImages({m: data["pools"][m] for m in s.union})
            self._data = data
        return self._data

    def selections(self) -> dict:
        """``{arm name: pool indices}``: each arm's fixed synthetic sample, also saved in ``selections/``.

        Counts follow the review's Sec. 3.1 (ratio x the whole real training set, per class); the sample is drawn
        once and kept for every replicate (Sec. 3.2). A union source is sampled like any other (``mix="pooled"``:
        one pool; ``"equal"``: each class's count split evenly between its members).
        """
        c, data = self.cfg, self.data()
        class_names = list(c.data.classes)
        real_counts = np.bincount(data["train"].labels, minlength=len(class_names))
        sources = {s.name: s for s in c.sources}
        out = {}
        for arm in self.arms:
            if not arm.has_synthetic:
                out[arm.name] = np.zeros(0, np.int64)
                continue
            unknown = [k for k in arm.class_ratios if k not in class_names]
            if unknown:
                raise config_lib.ConfigError(f"arm {arm.name}: class_ratios names {unknown}, not among the "
                                             f"study's classes {class_names}")
            counts = sampling.synthetic_counts(real_counts, arm.ratio,
                                               {class_names.index(k): v for k, v in arm.class_ratios.items()})
            source = sources[arm.source]
            pool = data["pools"][arm.source]
            record = {"arm": arm.name, "source": arm.source, "sampling": arm.sampling,
                      "counts": dict(zip(class_names, counts.tolist()))}
            try:
                if source.union and source.mix == "equal":
                    idx = []
                    shares = _split_evenly(counts, len(source.union))
                    for m, (member, share) in enumerate(zip(source.union, shares)):
                        local = self._select(member, share, arm.sampling)
                        idx.append(local + pool.offsets[m])
                    idx = np.sort(np.concatenate(idx))
                else:
                    idx = self._select(arm.source, counts, arm.sampling)
            except sampling.NotEnoughSyntheticImages as e:
                raise config_lib.ConfigError(f"arm {arm.name}: {e}") from None
            if source.union:
                record["members"] = pool.counts_by_member(idx)
            out[arm.name] = idx
            schema.write_json_atomic(os.path.join(self.out_dir, "selections", f"{arm.name}.json"),
                                     {**record, "indices": idx.tolist()})
        return out

    def _select(self, source: str, counts, method: str) -> np.ndarray:
        """``sampling.select_synthetic`` on one source's pool (a union's hashes and errors are its members')."""
        pool = self.data()["pools"][source]
        kwargs = {}
        if method == "diverse":
            kwargs.update(hashes=self._per_image(source, "hashes"), max_distance=self.cfg.sampling.max_hash_distance)
        elif method in ("best", "worst"):
            kwargs["errors"] = self._per_image(source, "errors")
        return sampling.select_synthetic(pool.labels, counts, method, seed=self.cfg.sampling.seed,
                                         class_names=list(self.cfg.data.classes), source=f"source {source!r}",
                                         **kwargs)

    def _per_image(self, source: str, what: str) -> np.ndarray:
        """pHash bits (``hashes``) or ancillary-classifier errors (``errors``) of a source's images, computed once
        per base source; a union concatenates its members' (its images are never gathered for this)."""
        key = (what, source)
        if key not in self._cache:
            pool = self.data()["pools"][source]
            if isinstance(pool, UnionImages):
                self._cache[key] = np.concatenate([self._per_image(m, what) for m in pool.names])
            elif what == "hashes":
                self._cache[key] = sampling.perceptual_hashes(pool.images)
            else:
                self._cache[key] = sampling.classification_error(self._ancillary_probs(pool), pool.labels)
        return self._cache[key]

    def _ancillary_probs(self, pool: Images) -> np.ndarray:
        """The ancillary classifier's probabilities of the study's classes on a synthetic pool (best / worst).

        The review does not describe its ancillary model; ours is the metrics suite's cached domain classifier
        (trained on the real training split only, validated on val), read on the study's class columns.
        """
        from keras_medgan.metrics.domain_classifier import RulerSettings, ensure_domain_classifier
        from keras_medgan.metrics.features import classifier_extractor

        c = self.cfg
        path = ensure_domain_classifier(c.data.data_dir, RulerSettings(epochs=c.sampling.ancillary_epochs,
                                                                       seed=c.seed), verbose=0)
        extractor = classifier_extractor(path)
        probs = extractor(pool.images).probs.astype(np.float64)  # uint8 in, as the metrics read it
        names = list(schema.read_dataset_info(c.data.data_dir).class_names)
        columns = [names.index(k) for k in c.data.classes]
        probs = probs[:, columns]
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)

    def save_test_labels(self) -> None:
        """``test_sets.npz``: labels and skin types of every test set (the report's paired bootstraps read it)."""
        arrays = {}
        for name, test in self.data()["tests"].items():
            arrays[f"{name}/labels"], arrays[f"{name}/fitzpatrick"] = test.labels, test.fitzpatrick
        with atomic_open(os.path.join(self.out_dir, TEST_LABELS), "wb") as f:
            np.savez(f, **arrays)

    # -- cells

    def cells(self) -> list[tuple[ArmConfig, int]]:
        """Every (arm, replicate), replicate-major so that a partial study is balanced across arms."""
        return [(arm, r) for r in range(self.cfg.replicates) for arm in self.arms]

    def run(self, resume: bool = False, max_cells: int | None = None) -> list[dict]:
        """Trains every missing cell; returns all rows. ``max_cells`` stops after that many new cells.

        Holds the folder's lock (``locking.hold``) throughout: a second process on the same folder is refused
        with ``StudyLocked`` naming the PID; a lock left by a dead process is taken over. A twin arm's cell
        (``StudyConfig.twins``) copies its primary's row and predictions instead of training.
        """
        with locking.hold(self.out_dir, log=self.log):
            rows = self.prepare(resume)
            done = {r["cell"] for r in rows}
            todo = [(a, r) for a, r in self.cells() if cell_name(a.name, r) not in done]
            twins = self.cfg.twins()
            models = len(self.cells()) - len(twins) * self.cfg.replicates
            self.log(f"study {self.out_dir}: {len(self.cells())} cells ({models} models), {len(done)} done, "
                     f"{len(todo)} to go")
            if not todo:
                return rows
            selected = self.selections()
            self.save_test_labels()
            by_cell = {r["cell"]: r for r in rows}
            for i, (arm, rep) in enumerate(todo):
                if max_cells is not None and i >= max_cells:
                    break
                primary = by_cell.get(cell_name(twins[arm.name], rep)) if arm.name in twins else None
                if primary is not None:
                    row = self.copy_cell(arm, rep, primary)
                else:
                    row = self.run_cell(arm, rep, selected[arm.name])
                append_row(self.results_path, row)
                rows.append(row)
                by_cell[row["cell"]] = row
                self.log(f"[{len(rows)}/{len(self.cells())}] {row['cell']}"
                         + (f" (the models of {primary['cell']})" if primary is not None else "") + ": " + ", ".join(
                             f"{t} {self.cfg.metric} {v[self.cfg.metric]:.3f}" for t, v in row["tests"].items()))
            return rows

    def copy_cell(self, arm: ArmConfig, replicate: int, primary: dict) -> dict:
        """The row of a twin arm's cell: its primary's model and scores, under this arm's name and mode."""
        source = load_predictions(self.out_dir, primary["arm"], replicate)
        with atomic_open(predictions_path(self.out_dir, arm.name, replicate), "wb") as f:
            np.savez(f, **source)
        return {**primary, "cell": cell_name(arm.name, replicate), "arm": arm.name, "mode": arm.mode,
                "label": arm.label(list(self.cfg.data.classes)), "same_model_as": primary["cell"], "seconds": 0.0}

    def run_cell(self, arm: ArmConfig, replicate: int, synthetic_idx: np.ndarray) -> dict:
        """Trains and scores one model; saves its test predictions; returns its row."""
        c, data = self.cfg, self.data()
        class_names = list(c.data.classes)
        seed = c.seed * 1000 + replicate  # the same for every arm of a replicate: matched pairs
        real_idx = sampling.stratified_subset(data["train"].labels, arm.real_fraction, (c.seed, replicate))
        pool = data["pools"][arm.source] if arm.has_synthetic else None
        synth = pool.take(synthetic_idx) if pool is not None else None
        # The real rows are read in place (no copy of the training set per model); only the sample is gathered.
        images = Rows((data["train"].images, real_idx), *([synth.images] if synth is not None else []))
        labels = np.concatenate([data["train"].labels[real_idx]] + ([synth.labels] if synth is not None else []))
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        channels = images.shape[-1]
        model, origin = build_classifier(c.classifier, c.data.image_size, channels, len(class_names))
        augment = conventional_augmentation(c.augmentation, channels, seed=seed)
        t0 = time.time()
        trained = train_classifier(model, images, labels, data["val"].images, data["val"].labels, c.training,
                                   augmentation=augment, reference_size=len(data["train"]), seed=seed)
        tests, probs = {}, {}
        for t in c.test_sets:
            test = data["tests"][t.name]
            probs[t.name] = predict_probabilities(model, test.images, augment, c.training.tta)
            tests[t.name] = statistics.classification_report(test.labels, probs[t.name], class_names,
                                                             fitzpatrick=test.fitzpatrick)
        path = predictions_path(self.out_dir, arm.name, replicate)
        with atomic_open(path, "wb") as f:
            np.savez(f, **probs)
        return {
            "cell": cell_name(arm.name, replicate), "arm": arm.name, "replicate": replicate, "mode": arm.mode,
            "source": arm.source, "sampling": arm.sampling if arm.has_synthetic else "",
            "real_fraction": arm.real_fraction, "ratio": arm.ratio, "class_ratios": arm.class_ratios,
            "label": arm.label(class_names), "seed": seed, "n_real": int(len(real_idx)),
            "n_synthetic": int(len(synth)) if synth is not None else 0,
            **({"synthetic_members": pool.counts_by_member(synthetic_idx)} if isinstance(pool, UnionImages) else {}),
            "train_counts": np.bincount(labels, minlength=len(class_names)).tolist(),
            "classifier": c.classifier.name, "weights": origin, "epochs_run": trained.epochs_run,
            "best_epoch": trained.best_epoch, "steps_per_epoch": trained.steps_per_epoch,
            f"best_{c.training.monitor}": trained.best_value, "seconds": round(time.time() - t0, 2),
            "tests": tests,
        }

