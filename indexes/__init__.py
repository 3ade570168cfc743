"""Vector indexes (FAISS); numpy in, numpy out (no TensorFlow, torch or pyarrow).

* ``base`` — :class:`~audiosim.indexes.base.VectorIndex` (train, add, search with filters and
  exact re-ranking, remove, save) and the on-disk layout;
* ``flat``, ``sq``, ``hnsw``, ``ivf`` — the kinds; ``kinds`` — the registry, ``make_index``,
  ``load_index``;
* ``ondisk`` — IVF inverted lists in a memory-mapped file;
* ``streaming`` — train on a sample, add batch by batch;
* ``groundtruth`` — exact neighbours over streamed batches, tie-aware recall@k;
* ``auto`` — choose a kind from size and memory budget, build, tune to a target recall;
* ``maintenance`` — when an updated index should be rebuilt;
* ``vectors`` — the distance vocabulary; ``postprocess`` — label-free vector post-processing.
"""
