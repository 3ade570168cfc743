"""Anomaly detectors behind one interface (:class:`~audiosim.anomaly.detectors.base.Detector`).

``ae`` (the DCASE 2020 baseline), ``conv_ae``, ``vae`` (GLU-ConvVAE), ``gamma_vae``, ``id_classifier``
(MobileNetV2-style), ``metric`` (L2-softmax + LOF/Mahalanobis) and ``embedding`` (pooled or frame-level).
Build one with :func:`make_detector` (``"ae:epochs=30"``), reload a saved one with :func:`load_detector`.
Detector classes live in modules that import torch only inside their methods.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from audiosim.anomaly.detectors.base import ClipScores, Detector, parse_spec, read_detector_files, restore_detector
from audiosim.anomaly.detectors.features import FeatureCache
from audiosim.errors import AnomalyModelError

# kind -> (module, class)
DETECTORS: dict[str, tuple[str, str]] = {
    "ae": ("neural", "AEDetector"),
    "conv_ae": ("neural", "ConvAEDetector"),
    "gamma_vae": ("neural", "GammaVAEDetector"),
    "id_classifier": ("neural", "IdClassifierDetector"),
    "metric": ("neural", "MetricDetector"),
    "embedding": ("embedding", "EmbeddingDetector"),
    "vae": ("vae", "VaeDetector"),
}
# detectors that learn to tell IDs/sections apart: fitted across one machine type's IDs
CLASSIFIERS = ("id_classifier", "metric")


def detector_class(kind: str) -> type[Detector]:
    if kind not in DETECTORS:
        raise AnomalyModelError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS)}")
    module, name = DETECTORS[kind]
    return getattr(importlib.import_module(f"audiosim.anomaly.detectors.{module}"), name)


def make_detector(spec: str, *, device: str | None = None, **overrides) -> Detector:
    """A detector from ``kind[:key=value,...]`` (e.g. ``ae:epochs=30``, ``embedding:mode=frames,reduce=max``)."""
    kind, opts = parse_spec(spec)
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return detector_class(kind)(device=device, **opts)


def load_detector(directory: str | Path, *, device: str | None = None) -> Detector:
    """A saved detector, checked (checksums, fields, weights); AnomalyModelError for anything damaged."""
    d = Path(directory)
    meta, arrays = read_detector_files(d)
    kind = meta.get("kind")
    if kind not in DETECTORS:
        raise AnomalyModelError(f"{d}: unknown detector kind {kind!r}; fit it again")
    return restore_detector(detector_class(kind), meta, arrays, d, device=device)


__all__ = ["CLASSIFIERS", "ClipScores", "DETECTORS", "Detector", "FeatureCache", "detector_class", "load_detector",
           "make_detector"]
