"""Feature extractors and metrics by name.

Extractor specs: ``inception_v3``, ``inception_v3:WEIGHTS.h5`` (a local copy of the Keras ImageNet weights),
``classifier:PATH.keras`` (any saved classifier), ``classifier:auto`` (the domain classifier trained on the
real dataset's training split and cached; needs ``data_dir``). Register more with ``register_extractor``.
"""

from __future__ import annotations

from typing import Callable

from keras_medgan.metrics import features

METRIC_NAMES = ("fid", "kid", "is", "prdc", "memorization")

_EXTRACTORS: dict[str, Callable] = {}


def register_extractor(name: str, factory: Callable) -> None:
    """Registers ``factory(argument: str | None, data_dir: str | None) -> FeatureExtractor`` under ``name``."""
    if ":" in name:
        raise ValueError(f"extractor names cannot contain ':'. Received {name!r}")
    _EXTRACTORS[name] = factory


def extractor_names() -> list[str]:
    return sorted(_EXTRACTORS)


def get_extractor(spec: str, data_dir: str | None = None) -> features.FeatureExtractor:
    """Builds the extractor named by ``spec`` (``name`` or ``name:argument``)."""
    name, _, argument = spec.partition(":")
    if name not in _EXTRACTORS:
        raise ValueError(f"unknown feature extractor {spec!r}; choose one of {extractor_names()} "
                         "(e.g. inception_v3, classifier:PATH.keras, classifier:auto)")
    return _EXTRACTORS[name](argument or None, data_dir)


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"fid,kid"`` -> ``("fid", "kid")``, refusing unknown names."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or text!r}; choose from {','.join(METRIC_NAMES)}")
    return names


def _inception(argument, data_dir):
    return features.inception_v3(argument or "imagenet")


def _classifier(argument, data_dir):
    if not argument:
        raise ValueError("classifier needs a path: classifier:PATH.keras, or classifier:auto to train one on the "
                         "real dataset")
    if argument == "auto":
        if not data_dir:
            raise ValueError("classifier:auto trains the ruler on the real dataset's training split; it needs a "
                             "dataset folder (--real DATASET), not an image folder")
        from keras_medgan.metrics.domain_classifier import ensure_domain_classifier

        argument = ensure_domain_classifier(data_dir)
    return features.classifier_extractor(argument)


register_extractor("inception_v3", _inception)
register_extractor("classifier", _classifier)
