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
    "index_folder": ("audiosim.engine.ingest.indexer", "index_folder"),
    "IngestReport": ("audiosim.engine.ingest.indexer", "IngestReport"),
    "IndexOptions": ("audiosim.engine.ingest.options", "IndexOptions"),
    "open_collection": ("audiosim.engine.search.library", "open_collection"),
    "Collection": ("audiosim.engine.search.library", "Collection"),
    "Rows": ("audiosim.engine.store.store", "Rows"),
    "Searcher": ("audiosim.engine.search.searcher", "Searcher"),
    "Hit": ("audiosim.engine.search.searcher", "Hit"),
    "Item": ("audiosim.engine.search.searcher", "Item"),
    "Timing": ("audiosim.engine.search.searcher", "Timing"),
    "Query": ("audiosim.engine.search.query", "Query"),
    "Filters": ("audiosim.engine.search.query", "Filters"),
    "SearchResult": ("audiosim.engine.search.query", "SearchResult"),
    "Region": ("audiosim.engine.search.regions", "Region"),
    "make_embedder": ("audiosim.engine.models.embedders", "make_embedder"),
    "write_demo_folder": ("audiosim.engine.audio.synth", "write_demo_folder"),  # labelled synthetic clips
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
