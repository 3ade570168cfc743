"""audiosim: audio similarity search.

Index a folder of recordings, find the clips (or the moments inside long recordings) that
sound like an example, benchmark embedders on ESC-50 and score how anomalous a sound is.

The Python API (importing this package is cheap: no TensorFlow, torch, FAISS or pyarrow is
imported until a function needs it)::

    import audiosim

    report = audiosim.index_folder("recordings/", "idx/rec", embedder="logmel")
    coll = audiosim.open_collection("idx/rec")
    searcher = coll.searcher()
    for hit in searcher.search(clip="example.wav", k=5, label="dog"):
        print(hit.rank, hit.score, hit.path)
"""

__version__ = "0.2.0"

_EXPORTS = {
    "index_folder": ("audiosim.engine.ingest", "index_folder"),
    "IngestReport": ("audiosim.engine.ingest", "IngestReport"),
    "open_collection": ("audiosim.engine.library", "open_collection"),
    "Collection": ("audiosim.engine.library", "Collection"),
    "Rows": ("audiosim.engine.store", "Rows"),
    "Searcher": ("audiosim.engine.search", "Searcher"),
    "Hit": ("audiosim.engine.search", "Hit"),
    "Item": ("audiosim.engine.search", "Item"),
    "Timing": ("audiosim.engine.search", "Timing"),
    "make_embedder": ("audiosim.engine.embedders", "make_embedder"),
    "AudiosimError": ("audiosim.errors", "AudiosimError"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'audiosim' has no attribute {name!r}") from None
    import importlib

    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted(__all__)
