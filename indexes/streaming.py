"""Streaming builds: train on a sample, then add batch by batch; the float vectors are never all in memory.

A *batch source* is an iterable of ``(ids int64[n], vectors float32[n, dim])`` — the engine
feeds Parquet record batches. The build is two passes at most:

1. :func:`sample_rows` draws a uniform sample without replacement in one pass (each row gets a
   random key; the rows with the smallest keys are kept, so memory is the sample only). Skip it
   when a sample is at hand.
2. :func:`build` adds every batch to a trained index. With ``ondisk=True`` (IVF kinds) the codes
   go to shard files of at most ``shard_bytes`` each and are merged into one memory-mapped
   ``.ivfdata`` file in ``directory`` (``IvfIndex.add_to_disk``), so an index larger than RAM can
   be built. ``truth`` (an :class:`~audiosim.indexes.groundtruth.ExactTopK`) sees the same
   batches, which gives exact ground truth for tuning without another pass.

For the same trained index, a streaming build holds exactly what adding all vectors at once
holds (same lists in the same order), so their searches are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.base import VectorIndex

Batches = Iterable[tuple[np.ndarray, np.ndarray]]


def sample_rows(batches: Batches, size: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random sample of ``size`` rows (all rows if fewer) from one pass over ``batches``; (ids, vectors)
    sorted by id. Memory: the sample plus one batch (rows that enter the sample replace leavers in place)."""
    size = int(size)
    if size < 1:
        raise VectorIndexError(f"sample size must be >= 1, got {size}")
    rng = np.random.default_rng(seed)
    keys = np.full(size, np.inf)
    ids = np.zeros(size, np.int64)
    x = None
    filled = 0
    for b_ids, b_x in batches:
        b_ids = np.asarray(b_ids, dtype=np.int64).ravel()
        b_x = np.atleast_2d(np.asarray(b_x, dtype=np.float32))
        if b_ids.size != b_x.shape[0]:
            raise VectorIndexError(f"batch of {b_ids.size} ids for {b_x.shape[0]} vectors")
        if x is None:
            x = np.empty((size, b_x.shape[1]), np.float32)
        b_keys = rng.random(b_ids.size)
        if filled < size:  # the first rows fill the sample
            take = min(size - filled, b_ids.size)
            x[filled:filled + take], ids[filled:filled + take] = b_x[:take], b_ids[:take]
            keys[filled:filled + take] = b_keys[:take]
            filled += take
            b_ids, b_x, b_keys = b_ids[take:], b_x[take:], b_keys[take:]
        enter = b_keys < keys.max()
        if not enter.any():
            continue
        c_keys, c_ids, c_x = b_keys[enter], b_ids[enter], b_x[enter]
        merged = np.concatenate([keys, c_keys])
        kept = np.zeros(merged.size, bool)
        kept[np.argpartition(merged, size - 1)[:size]] = True
        leave, come = np.flatnonzero(~kept[:size]), np.flatnonzero(kept[size:])
        x[leave], ids[leave], keys[leave] = c_x[come], c_ids[come], c_keys[come]
    if x is None:
        raise VectorIndexError("no vectors to sample: the batch source is empty")
    order = np.argsort(ids[:filled], kind="stable")
    return ids[order], x[order]


def build(index: VectorIndex, batches: Batches, *, directory: str | Path | None = None, ondisk: bool = False,
          shard_bytes: int | None = None, truth=None,
          progress: Callable[[int], None] | None = None) -> VectorIndex:
    """Add every batch to ``index`` (trained first: see :meth:`VectorIndex.train`) and return it.

    ``ondisk=True`` (IVF kinds, needs ``directory``) writes the lists to ``directory``; save the
    index there afterwards to write its sidecar. ``truth.update(ids, vectors)`` and
    ``progress(rows_so_far)`` are called per batch.
    """
    if index.TRAINED and not index.is_trained:
        raise VectorIndexError(f"train the {index.KIND} index on a sample first "
                               "(index.train(sample_rows(batches, n)[1]))")
    added = 0

    def seen(ids, x) -> None:
        nonlocal added
        if truth is not None:
            truth.update(ids, x)
        added += len(ids)
        if progress is not None:
            progress(added)

    if ondisk:
        if directory is None:
            raise VectorIndexError("an on-disk build needs the directory the index will live in")
        if not hasattr(index, "add_to_disk"):
            raise VectorIndexError(f"only IVF kinds keep their lists on disk, not {index.KIND}")
        kw = {} if shard_bytes is None else {"shard_bytes": int(shard_bytes)}
        index.add_to_disk(batches, directory, on_batch=seen, **kw)
        return index
    for ids, x in batches:
        index.add(ids, x)
        seen(np.asarray(ids), x)
    return index
