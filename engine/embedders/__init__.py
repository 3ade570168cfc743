"""The embedder registry: ``get_embedder(name, **options)`` builds a model by name.

Entries are import paths, so listing embedders imports no framework; TensorFlow or torch is
imported only when the embedder that needs it is constructed.
"""

from __future__ import annotations

import importlib
import inspect
from types import MappingProxyType

from audiosim.engine.embedders.base import Embedder, EmbedderInfo
from audiosim.errors import EmbedderOptionError, UnknownEmbedderError

EMBEDDERS = MappingProxyType(
    {
        "logmel": ("audiosim.engine.embedders.logmel", "LogMelEmbedder", "weight-free log-mel/MFCC statistics baseline"),
        "yamnet": ("audiosim.engine.embedders.yamnet", "YamnetEmbedder", "YAMNet (AudioSet), 1024-d, TF-Hub or TFLite"),
        "panns": ("audiosim.engine.embedders.panns", "PannsEmbedder", "PANNs Cnn14 (AudioSet), 2048-d, torch, 32 or 16 kHz"),
        "vggish": ("audiosim.engine.embedders.vggish", "VggishEmbedder", "VGGish (AudioSet), 128-d per 0.96 s, TF checkpoint or TF-Hub"),
        "vae": ("audiosim.engine.embedders.vae", "VaeEmbedder", "GLU-ConvVAE latent mean per window; needs a checkpoint from `audiosim vae train`"),
    }
)


def available_embedders() -> list[str]:
    return sorted(EMBEDDERS)


def describe_embedders() -> dict[str, str]:
    return {name: entry[2] for name, entry in sorted(EMBEDDERS.items())}


def embedder_class(name: str) -> type[Embedder]:
    try:
        module_name, class_name, _ = EMBEDDERS[name]
    except KeyError:
        raise UnknownEmbedderError(
            f"unknown embedder {name!r}; choose one of: {', '.join(available_embedders())}"
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


def get_embedder(name: str, **options) -> Embedder:
    """Construct the embedder registered as ``name`` with keyword ``options``."""
    cls = embedder_class(name)
    params = inspect.signature(cls.__init__).parameters
    takes = [p for p in params if p != "self" and params[p].kind == inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise EmbedderOptionError(
            f"embedder {name!r} takes no option {', '.join(unknown)}; its options are: {', '.join(takes) or 'none'}"
        )
    return cls(**options)


def make_embedder(name: str, *, weights=None, device: str | None = None, options: dict | None = None) -> Embedder:
    """The one way audiosim builds an embedder from user input: ``options`` plus ``weights`` and ``device``.

    ``weights`` and ``device`` are merged into the options only when given, so embedders that
    take neither still accept ``weights=None``.
    """
    opts = {k: v for k, v in dict(options or {}).items() if v is not None}
    if weights is not None:
        opts["weights"] = str(weights)
    if device is not None:
        opts["device"] = device
    return get_embedder(name, **opts)


__all__ = ["Embedder", "EmbedderInfo", "EMBEDDERS", "available_embedders", "describe_embedders", "get_embedder", "make_embedder"]
