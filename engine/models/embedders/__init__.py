"""The embedder registry: ``get_embedder(name, **options)`` builds a model by name.

Entries are import paths, so listing embedders imports no framework; TensorFlow or torch is
imported only when the embedder that needs it is constructed.

**Plug-ins.** Any installed distribution can add embedders through the ``audiosim.embedders``
entry-point group (``name = "package.module:EmbedderClass"`` in its ``pyproject.toml``). They are
listed from the installed metadata without importing them (their one-line description is the
distribution's summary) and loaded only when built, like the built-in ones. A plug-in class
subclasses :class:`~audiosim.engine.models.embedders.base.Embedder`, sets ``info.name`` to its
entry-point name, builds with no options (weights from its own defaults), and honours the
contract that ``tests/test_embedder_contract.py`` checks for every installed plug-in. A
plug-in cannot replace a built-in name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from types import MappingProxyType

from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo
from audiosim.errors import EmbedderOptionError, EmbedderPluginError, UnknownEmbedderError

PLUGIN_GROUP = "audiosim.embedders"

EMBEDDERS = MappingProxyType(
    {
        "logmel": ("audiosim.engine.models.embedders.logmel", "LogMelEmbedder", "weight-free log-mel/MFCC statistics baseline"),
        "yamnet": ("audiosim.engine.models.embedders.yamnet", "YamnetEmbedder", "YAMNet (AudioSet), 1024-d, TF-Hub or TFLite"),
        "panns": ("audiosim.engine.models.embedders.panns", "PannsEmbedder", "PANNs Cnn14 (AudioSet), 2048-d, torch, 32 or 16 kHz"),
        "vggish": ("audiosim.engine.models.embedders.vggish", "VggishEmbedder", "VGGish (AudioSet), 128-d per 0.96 s, TF checkpoint or TF-Hub"),
        "vae": ("audiosim.engine.models.embedders.vae", "VaeEmbedder", "GLU-ConvVAE latent mean per window; needs a checkpoint from `audiosim vae train`"),
        "hf": ("audiosim.engine.models.embedders.hf", "HfEmbedder", "transformers snapshot (AST, wav2vec2/HuBERT/WavLM, CLAP audio+text); needs --weights DIR, nothing downloaded"),
        "voice": ("audiosim.engine.models.embedders.voice", "VoiceEmbedder", "GE2E speaker encoder (speaker similarity), 256-d per 1.6 s; needs the resemblyzer wheel (pip install --no-deps resemblyzer)"),
        "onnx": ("audiosim.engine.models.embedders.onnx", "OnnxEmbedder", "any ONNX audio model via onnxruntime; needs --weights MODEL.onnx and a MODEL.json sidecar"),
    }
)


def plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed plug-in embedders by name (entry points of :data:`PLUGIN_GROUP`; built-in names excluded)."""
    found = {}
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        if ep.name not in EMBEDDERS:
            found.setdefault(ep.name, ep)
    return found


def _plugin_text(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return f"plug-in {ep.value}"
    summary = (dist.metadata.get("Summary") or "").strip() or "no description"
    return f"plug-in {dist.metadata.get('Name')} {dist.version}: {summary}"


def available_embedders() -> list[str]:
    return sorted({*EMBEDDERS, *plugins()})


def describe_embedders() -> dict[str, str]:
    texts = {name: entry[2] for name, entry in EMBEDDERS.items()}
    texts.update({name: _plugin_text(ep) for name, ep in plugins().items()})
    return dict(sorted(texts.items()))


def embedder_class(name: str) -> type[Embedder]:
    if name in EMBEDDERS:
        module_name, class_name, _ = EMBEDDERS[name]
        return getattr(importlib.import_module(module_name), class_name)
    ep = plugins().get(name)
    if ep is None:
        raise UnknownEmbedderError(
            f"unknown embedder {name!r}; choose one of: {', '.join(available_embedders())}"
        ) from None
    try:
        cls = ep.load()
    except Exception as e:  # a broken plug-in must not take audiosim down with a traceback
        raise EmbedderPluginError(f"the plug-in embedder {name!r} ({ep.value}) does not load: {type(e).__name__}: {e}; "
                                  "reinstall or uninstall the package that provides it") from None
    if not (isinstance(cls, type) and issubclass(cls, Embedder)):
        raise EmbedderPluginError(f"the plug-in embedder {name!r} ({ep.value}) is not an audiosim Embedder subclass; "
                                  "fix or uninstall the package that provides it")
    return cls


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


__all__ = ["Embedder", "EmbedderInfo", "EMBEDDERS", "PLUGIN_GROUP", "available_embedders", "describe_embedders",
           "get_embedder", "make_embedder", "plugins"]
