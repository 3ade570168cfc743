"""The engine, one package per step of the data path; imports only go down this list.

1. :mod:`audiosim.engine.audio` -- finding, decoding, resampling and streaming audio files; the
   log-mel front end; synthetic test audio.
2. :mod:`audiosim.engine.models` -- embedders, pooling, weights (download and lookup), class maps
   and tags, the VAE network and its features.
3. :mod:`audiosim.engine.store` -- the collection on disk: manifest, immutable Parquet parts,
   writer lock, labels, the saved vector index, compaction, check and repair.
4. :mod:`audiosim.engine.ingest` -- folder -> pipeline (reader, mapper, sink) -> store, locally
   or on Ray.
5. :mod:`audiosim.engine.training` -- training data sets and trainers (the VAE).
6. :mod:`audiosim.engine.search` -- the searcher, regions, excerpt location and the library API.

``tests/test_architecture.py`` checks the order.
"""

LAYERS = ("audio", "models", "store", "ingest", ("training", "search"))
