"""Inverted-file indexes (FAISS IVF): k-means cells, ``nprobe`` of them visited per query.

Kinds, by how a vector is stored in its cell:

* ``ivf`` — IVF-Flat: the float vector (exact scores of what it visits);
* ``ivfsq8`` — IVF-SQ8: 8-bit scalar codes (``dim`` bytes, a quarter of the floats);
* ``ivfpq`` — IVF-PQ: ``m`` product-quantiser codes of ``nbits`` bits (``m`` bytes at 8 bits),
  optionally behind an OPQ rotation (``opq=True``) learnt so the sub-vectors quantise better.

``nlist`` cells (default: about 4 * sqrt(n) of the training vectors, at most n / 39 so every
cell gets enough training points); ``nprobe`` cells visited per query (the knob
:func:`audiosim.indexes.auto.tune` adjusts); ``niter`` k-means iterations (FAISS's default 25).
Compressed kinds return approximate scores; exact re-ranking (``rerank``, ``fetch``; see
base.py) re-scores the best candidates from the stored float vectors.

The IVF index stores the caller's ids in its lists (no id map): ``remove`` deletes them from
the lists; ``reconstruct`` builds a hash table from id to list entry on first use.

Lists on disk (ondisk.py): ``save(dir, ondisk=True)``, or :meth:`IvfIndex.add_to_disk` in a
streaming build, write them to ``lists.<hex>.ivfdata``; :func:`audiosim.indexes.kinds.load_index`
maps that file read-only. Adding to an index loaded that way puts the new vectors in an
in-memory delta (same trained structure, searched with the mapped lists, results merged);
removing ids from the mapped lists makes tombstones. The next ``save`` merges lists, delta and
tombstones into a new ``.ivfdata`` file (the loaded files are never modified) and maps it.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.indexes.base import INDEX_FILE, VectorIndex, file_meta, merge_topk, write_faiss_atomic
from audiosim.indexes.ondisk import list_ids, merge_lists, open_lists, read_shard

LISTS_SUFFIX = ".ivfdata"
SHARD_BYTES = 256 << 20


def default_nlist(n: int) -> int:
    """About 4 * sqrt(n) cells, at most n / 39 (FAISS's minimum of training points per cell)."""
    return int(min(max(1, round(4 * np.sqrt(n))), max(1, n // 39)))


class IvfIndex(VectorIndex):
    """IVF-Flat, and the base of the compressed IVF kinds (which override :meth:`_encoding`)."""

    KIND = "ivf"
    ID_MAP = False
    TRAINED = True
    KNOB = "nprobe"

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", rerank: int = 0,
                 nlist: int | None = None, nprobe: int = 8, seed: int = 0, niter: int | None = None) -> None:
        self.nlist = None if nlist is None else int(nlist)
        self.nprobe, self.seed = int(nprobe), int(seed)
        self.niter = None if niter is None else int(niter)
        if self.nprobe < 1 or (self.nlist is not None and self.nlist < 1):
            raise VectorIndexError("nlist and nprobe must be >= 1")
        self._trained_blob: bytes | None = None  # the trained, empty index (for deltas and shards)
        self._lists_path: Path | None = None  # the mapped .ivfdata file, when the lists live on disk
        self._delta = None  # in-memory additions to an index whose lists are on disk
        self._direct_lock = threading.Lock()  # the id -> entry table is built on the first reconstruct
        super().__init__(dim=dim, metric=metric, device=device, rerank=rerank)

    # ------------------------------------------------------------------ structure
    def _encoding(self, faiss, quantizer, nlist: int):
        return faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric(faiss))

    def _wrap(self, faiss, ivf):
        """The full FAISS index around the IVF (a pre-transform for OPQ)."""
        return ivf

    def _make_ivf(self, faiss, nlist: int):
        quantizer = faiss.IndexFlatIP(self.dim) if self.metric == "cosine" else faiss.IndexFlatL2(self.dim)
        ivf = self._encoding(faiss, quantizer, nlist)
        ivf.own_fields = True
        quantizer.this.disown()
        ivf.cp.seed = self.seed
        if self.niter:
            ivf.cp.niter = self.niter
        return self._wrap(faiss, ivf)

    def _make_base(self, faiss):
        # a placeholder: the real IVF is made in _train, when the number of training vectors is known
        return self._make_ivf(faiss, max(1, self.nlist or 1))

    def _ivf(self, index=None):
        import faiss

        return faiss.extract_index_ivf(self._index if index is None else index)

    def _train(self, x: np.ndarray) -> None:
        import faiss

        nlist = self.nlist or default_nlist(x.shape[0])
        if x.shape[0] < nlist:
            raise VectorIndexError(f"IVF training needs at least nlist={nlist} vectors, got {x.shape[0]}; "
                                   "train on a larger sample or pass a smaller nlist")
        index = self._make_ivf(faiss, nlist)
        index.train(x)
        self._index, self.nlist = index, nlist
        self._configure()
        self._trained_blob = faiss.serialize_index(index)

    def _adopt(self) -> None:
        """Record nlist and the trained empty structure of a loaded index (swapping in empty lists to serialise it)."""
        import faiss

        ivf = self._ivf()
        self.nlist = int(ivf.nlist)
        saved, own, ntotal = ivf.invlists, ivf.own_invlists, int(self._index.ntotal)
        empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
        ivf.own_invlists = False
        ivf.replace_invlists(empty, False)
        ivf.ntotal = self._index.ntotal = 0
        try:
            self._trained_blob = faiss.serialize_index(self._index)
        finally:
            ivf.replace_invlists(saved, own)
            ivf.ntotal = self._index.ntotal = ntotal

    def _empty(self):
        """A fresh in-memory copy of the trained, empty structure."""
        import faiss

        if self._trained_blob is None:
            raise VectorIndexError("the IVF index is not trained; train it on a sample first")
        reader = faiss.VectorIOReader()
        faiss.copy_array_to_vector(np.frombuffer(self._trained_blob, np.uint8), reader.data)
        index = faiss.read_index(reader, self._io_flags(faiss))
        self._ivf(index).nprobe = min(self.nprobe, self.nlist or self.nprobe)
        return index

    def _configure(self) -> None:
        probe = min(self.nprobe, self.nlist or self.nprobe)
        self._ivf().nprobe = probe
        if self._delta is not None:
            self._ivf(self._delta).nprobe = probe

    def _search_params(self, selector, knob: int | None = None):
        import faiss

        probe = int(knob or self.nprobe)
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(probe, self.nlist or probe))

    def params(self) -> dict:
        return {**super().params(), "nlist": self.nlist, "nprobe": self.nprobe, "seed": self.seed, "niter": self.niter}

    def knob_values(self, k: int) -> list[int]:
        nlist = self.nlist or 1
        return sorted({min(2 ** i, nlist) for i in range(int(np.log2(nlist)) + 2)})

    @property
    def ondisk(self) -> bool:
        """Whether the lists live in a memory-mapped ``.ivfdata`` file."""
        return self._lists_path is not None

    # ------------------------------------------------------------------ memory
    def _fixed_bytes(self) -> int:
        """Codebooks, rotations and tables beside the coarse centroids."""
        return 0

    def estimate_bytes(self, n: int, *, ondisk: bool = False) -> int:
        nlist = self.nlist or default_nlist(max(1, int(n)))
        return (0 if ondisk else int(n)) * (self.code_bytes() + 8) + nlist * (4 * self.dim + 48) + self._fixed_bytes()

    def memory_bytes(self) -> int:
        in_memory = (0 if self.ondisk else int(self._index.ntotal)) + self._delta_count()
        direct = 40 * self._ntotal() if int(self._ivf().direct_map.type) != 0 else 0
        return self.estimate_bytes(in_memory) + 8 * self.removed_count + direct

    # ------------------------------------------------------------------ adding, removing
    def _delta_count(self) -> int:
        return 0 if self._delta is None else int(self._delta.ntotal)

    def _ntotal(self) -> int:
        return int(self._index.ntotal) + self._delta_count()

    @property
    def is_trained(self) -> bool:
        return self._trained_blob is not None and bool(self._index.is_trained)

    def _add(self, ids: np.ndarray, x: np.ndarray) -> None:
        if self.ondisk:
            if self._delta is None:
                self._delta = self._empty()
            self._delta.add_with_ids(x, ids)
        else:
            self._index.add_with_ids(x, ids)

    def _remove_from(self, index, ids: np.ndarray) -> int:
        import faiss

        if int(self._ivf(index).direct_map.type) == int(faiss.DirectMap.Hashtable):
            return int(index.remove_ids(faiss.IDSelectorArray(ids)))
        return int(index.remove_ids(faiss.IDSelectorBatch(ids)))

    def _remove(self, ids: np.ndarray) -> int:
        if not self.ondisk:
            return self._remove_from(self._index, ids)
        removed = self._remove_from(self._delta, ids) if self._delta_count() else 0
        return removed + self._tombstone(ids)

    def _all_ids(self) -> np.ndarray:
        parts = list_ids(self._ivf().invlists)
        if self._delta_count():
            parts += list_ids(self._ivf(self._delta).invlists)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _reconstruct_one(self, i: int) -> np.ndarray:
        import faiss

        for index in ([self._delta] if self._delta_count() else []) + [self._index]:
            ivf = self._ivf(index)
            with self._direct_lock:
                if int(ivf.direct_map.type) != int(faiss.DirectMap.Hashtable):
                    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            try:
                return index.reconstruct(i)
            except RuntimeError:
                if index is self._index:
                    raise
        raise RuntimeError(f"id {i} not found")  # pragma: no cover - the loop raises first

    # ------------------------------------------------------------------ searching
    def _searcher(self):
        if self.device == "gpu" and self.ondisk:
            raise VectorIndexError("on-disk IVF lists are searched on the CPU; load the index with device='cpu'")
        return super()._searcher()

    def _search_raw(self, q: np.ndarray, k: int, allowed: np.ndarray | None, knob: int | None = None):
        scores, ids = super()._search_raw(q, k, allowed, knob)
        if not self._delta_count():
            return scores, ids
        import faiss

        sel = None if allowed is None else faiss.IDSelectorBatch(allowed)
        ds, di = self._delta.search(q, k, params=self._search_params(sel, knob))
        return merge_topk([scores, ds], [ids, di], k, higher_is_closer=self.metric == "cosine")

    # ------------------------------------------------------------------ on disk
    def _pending(self) -> bool:
        return bool(self._delta_count() or self.removed_count)

    def _sources(self) -> list:
        """The lists holding every vector now: the main lists, then the in-memory delta."""
        sources = [self._ivf().invlists] if self._index.ntotal else []
        if self._delta_count():
            sources.append(self._ivf(self._delta).invlists)
        return sources

    def _write_lists(self, d: Path, extra_sources: list = ()) -> dict:
        """Merge every list (plus ``extra_sources``) into a new ``.ivfdata`` in ``d``, apply the
        tombstones, write ``faiss.index``, and map the new files in place of the old ones."""
        import faiss


        name = f"lists.{uuid.uuid4().hex[:12]}{LISTS_SUFFIX}"
        merged = merge_lists(self._empty(), self._sources() + list(extra_sources), d / name)
        try:
            if self.removed_count:
                self._remove_from(merged, self._removed)
            write_faiss_atomic(merged, d / INDEX_FILE)
        except BaseException:
            del merged
            (d / name).unlink(missing_ok=True)
            raise
        del merged
        self._index = open_lists(d / INDEX_FILE, d / name, io_flags=self._io_flags(faiss))
        self._configure()
        old = self._lists_path
        self._lists_path, self._delta = d / name, None
        self._removed, self._removed_sel = np.zeros(0, np.int64), None
        if old is not None and old.parent.resolve() == d.resolve() and old.name != name:
            old.unlink(missing_ok=True)  # a process that still maps it keeps reading it
        return {INDEX_FILE: file_meta(d / INDEX_FILE), name: file_meta(d / name, sha256=False)}

    def _write_files(self, d: Path, *, ondisk: bool | None) -> dict:
        want_disk = self.ondisk if ondisk is None else bool(ondisk)
        if self.ondisk and not want_disk:
            raise VectorIndexError("this index keeps its lists on disk and they may not fit in memory; "
                                   "save it with ondisk=True (or None), or rebuild it in memory")
        if not want_disk or self._ntotal() == 0:
            return {INDEX_FILE: file_meta(write_faiss_atomic(self._for_writing(), d / INDEX_FILE))}
        if self.ondisk and not self._pending() and self._lists_path.parent.resolve() == d.resolve():
            return {INDEX_FILE: file_meta(d / INDEX_FILE), self._lists_path.name: file_meta(self._lists_path, sha256=False)}
        return self._write_lists(d)

    def _for_writing(self):
        """The in-memory index without its id hash table (rebuilt on demand after loading)."""
        import faiss

        ivf = self._ivf()
        if int(ivf.direct_map.type) != int(faiss.DirectMap.NoMap):
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        return self._index

    def add_to_disk(self, batches, directory: str | Path, *, shard_bytes: int = SHARD_BYTES, on_batch=None) -> None:
        """Add every ``(ids, vectors)`` batch, holding at most ``shard_bytes`` of codes in memory:
        full shards are written to ``directory`` as index files, then every list (this index's and
        the shards') is merged into one ``.ivfdata`` file there, mapped read-only. ``on_batch(ids,
        vectors)`` is called for each batch (ground truth accumulates there). Call :meth:`save` on
        the same directory afterwards to write the sidecar."""
        import faiss


        if not self.is_trained:
            raise VectorIndexError("train the IVF index on a sample before adding to disk")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        rows_per_shard = max(1, int(shard_bytes) // (self.code_bytes() + 8))
        shard_paths: list[Path] = []
        shard, tag = self._empty(), uuid.uuid4().hex[:8]

        def flush():
            nonlocal shard
            if shard.ntotal:
                p = d / f".shard-{tag}-{len(shard_paths):05d}.index"
                write_faiss_atomic(shard, p)
                shard_paths.append(p)
                shard = self._empty()

        try:
            for ids, x in batches:
                ids_arr = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())
                xp = self.prepare(x)
                if ids_arr.shape[0] != xp.shape[0]:
                    raise VectorIndexError(f"{ids_arr.shape[0]} ids for {xp.shape[0]} vectors")
                if self._removed.size and np.isin(ids_arr, self._removed).any():
                    raise VectorIndexError("some ids were removed from this index before; ids are never reused")
                if on_batch is not None:
                    on_batch(ids_arr, x)
                shard.add_with_ids(xp, ids_arr)
                if shard.ntotal >= rows_per_shard:
                    flush()
            flush()
            if not shard_paths and not self._ntotal():
                return
            opened = [read_shard(p, io_flags=self._io_flags(faiss)) for p in shard_paths]
            self._write_lists(d, [lists for _, lists in opened])
            del opened
        finally:
            for p in shard_paths:
                p.unlink(missing_ok=True)
        self._gpu_index = None

    @classmethod
    def load(cls, directory: Path, sidecar: dict, *, device: str = "cpu") -> IvfIndex:
        lists = [name for name in (sidecar.get("files") or {}) if name.endswith(LISTS_SUFFIX)]
        if not lists:
            return super().load(directory, sidecar, device=device)
        if device == "gpu":
            raise VectorIndexError("on-disk IVF lists are searched on the CPU; load the index with device='cpu'")
        d = Path(directory)
        import faiss

        raw = open_lists(d / INDEX_FILE, d / lists[0], io_flags=cls._io_flags(faiss))
        idx = cls.from_faiss(raw, sidecar, device=device)
        idx._lists_path = d / lists[0]
        idx._load_removed(d, sidecar)
        return idx


class IvfSq8Index(IvfIndex):
    """IVF over 8-bit scalar codes of the residuals (``dim`` bytes per vector)."""

    KIND = "ivfsq8"

    def _encoding(self, faiss, quantizer, nlist: int):
        return faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                             self._faiss_metric(faiss), True)

    def code_bytes(self) -> int:
        return self.dim

    def _fixed_bytes(self) -> int:
        return 8 * self.dim


def default_pq_m(dim: int) -> int:
    """Sub-quantisers for IVF-PQ: dim / 8 (8 dimensions each), at most 64, dividing dim."""
    for m in range(min(64, max(1, dim // 8)), 0, -1):
        if dim % m == 0:
            return m
    return 1  # pragma: no cover - m=1 always divides


class IvfPqIndex(IvfIndex):
    """IVF-PQ: ``m`` sub-quantisers of ``nbits`` bits on the residuals, optionally after an OPQ rotation."""

    KIND = "ivfpq"

    def __init__(self, *, dim: int, metric: str = "cosine", device: str = "cpu", rerank: int = 0,
                 nlist: int | None = None, nprobe: int = 8, seed: int = 0, niter: int | None = None,
                 m: int | None = None, nbits: int = 8, opq: bool = False) -> None:
        self.m = default_pq_m(int(dim)) if m is None else int(m)
        self.nbits, self.opq = int(nbits), bool(opq)
        if self.m < 1 or int(dim) % self.m:
            raise VectorIndexError(f"IVF-PQ needs m dividing dim: m={self.m}, dim={dim}")
        if not 1 <= self.nbits <= 16:
            raise VectorIndexError(f"nbits must be in 1..16, got {nbits}")
        super().__init__(dim=dim, metric=metric, device=device, rerank=rerank, nlist=nlist, nprobe=nprobe,
                         seed=seed, niter=niter)

    def _encoding(self, faiss, quantizer, nlist: int):
        ivf = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.m, self.nbits, self._faiss_metric(faiss))
        ivf.pq.cp.seed = self.seed
        ivf.use_precomputed_table = -1  # euclidean: no nlist x m x 2^nbits table (it can outweigh the codes)
        return ivf

    @staticmethod
    def _io_flags(faiss) -> int:
        return faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE

    def _wrap(self, faiss, ivf):
        if not self.opq:
            return ivf
        opq = faiss.OPQMatrix(self.dim, self.m)
        index = faiss.IndexPreTransform(opq, ivf)
        index.own_fields = True
        opq.this.disown()
        ivf.this.disown()
        return index

    def code_bytes(self) -> int:
        return (self.m * self.nbits + 7) // 8

    def _fixed_bytes(self) -> int:
        ksub = 2 ** self.nbits
        codebooks = ksub * self.dim * 4
        rotation = self.dim * self.dim * 4 if self.opq else 0
        return codebooks + rotation

    def params(self) -> dict:
        return {**super().params(), "m": self.m, "nbits": self.nbits, "opq": self.opq}
