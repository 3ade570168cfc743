"""The ESC-50 embedding cache: ESC-50 embedded once per embedder, every pooling and post-processing derived from it.

Cache layout (``--cache DIR``; default ``<audiosim cache>/bench``, i.e. ``$AUDIOSIM_CACHE/bench`` or
``~/.cache/audiosim/bench``; every run prints and records where it is)::

    <cache>/esc50-<root hash>/<embedder>-<version>-<weights sha256[:12]>/
        frames/                       a collection of frame embeddings: one row per model window
                                      (offset_s = window start), embedded once and resumable
        pooled/<pooling>[__<post>]/   one clip-level collection per pooling (and post-processing),
                                      built from the frames without re-embedding; its index/ holds
                                      the FAISS index and the fitted post-processing

Re-running with another pooling or post-processing reads the frames back (seconds); a
finished frames collection is trusted while the dataset's files keep their names, sizes and
modification times, otherwise clips are re-hashed and only changed ones re-embedded.
This is the one ``eval`` module that reads collections (pyarrow through ``engine.store``).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.ingest.indexer import IngestReport, ingest_items
from audiosim.engine.ingest.mappers import EmbedMapper, FramePooler, silence_frame
from audiosim.engine.ingest.pipeline import FileItem
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.models.embedders.base import Embedder
from audiosim.engine.models.pooling import MU_SIGMA_DELTA_SWEEP, PoolingSpec
from audiosim.engine.models.weights import cache_dir
from audiosim.engine.store.indexing import ensure_index, load_for_search
from audiosim.engine.store.lock import WriterLock
from audiosim.engine.store.store import CollectionStore, Rows, embedding_matrix
from audiosim.errors import DatasetError
from audiosim.eval.esc50 import Esc50, load_esc50
from audiosim.files import slug
from audiosim.indexes.postprocess import canonical_spec

BENCH_DIR = "bench"
FRAMES = "frames"
POOLED = "pooled"
FLUSH_EVERY = 64
LOCK_WAIT_S = 24 * 3600.0  # a second benchmark run waits for the first instead of failing


# --------------------------------------------------------------------------- cache keys
def bench_cache_root(cache: str | Path | None = None) -> Path:
    return Path(cache).expanduser() if cache is not None else cache_dir() / BENCH_DIR


def dataset_key(esc: Esc50) -> str:
    return "esc50-" + hashlib.sha256(str(Path(esc.root).resolve()).encode()).hexdigest()[:10]


def embedder_key(info) -> str:
    return slug(f"{info.name}-{info.version}-{(info.weights_sha256 or 'noweights')[:12]}")


def dataset_fingerprint(esc: Esc50) -> str:
    """sha256 over every clip's path, size and modification time (cheap: no file is read)."""
    h = hashlib.sha256()
    for c in esc.clips:
        st = Path(c.path).stat()
        h.update(f"{c.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def locked(directory: Path, *, purpose: str = "bench cache"):
    """An exclusive lock on ``directory`` (so two runs never write one cache at once); waits as long as it takes."""

    directory.mkdir(parents=True, exist_ok=True)
    return WriterLock(directory, wait=LOCK_WAIT_S, purpose=purpose)


# --------------------------------------------------------------------------- variants
SILENCE_KEPT = " [silence kept]"  # the name suffix of a variant that pools the digital-silence frames too


@dataclass(frozen=True)
class Variant:
    """A pooling plus optional label-free post-processing (canonical spec text).

    ``skip_silence``: the frames that are digital silence are left out of pooling, as a collection
    indexed with the default settings does (:class:`audiosim.engine.ingest.mappers.FramePooler`).
    """

    pooling: str
    postprocess: str | None = None
    skip_silence: bool = False

    @property
    def name(self) -> str:
        return (self.pooling + ("" if self.skip_silence else SILENCE_KEPT)
                + (f" | {self.postprocess}" if self.postprocess else ""))

    @property
    def slug(self) -> str:
        return slug(self.pooling + ("__skip-silence" if self.skip_silence else "")
                    + (f"__{self.postprocess}" if self.postprocess else ""))


def expand_poolings(poolings: Sequence[str]) -> list[str]:
    """Pooling names with ``all`` expanded to the seven mu/sigma/delta combinations, validated."""
    out: list[str] = []
    for p in poolings:
        for name in (MU_SIGMA_DELTA_SWEEP if p.strip() == "all" else [p]):
            canon = PoolingSpec.parse(name).name
            if canon not in out:
                out.append(canon)
    return out


def make_variants(poolings: Sequence[str], postprocess: Sequence[str | None],
                  skip_silence: Sequence[bool] = (True,)) -> list[Variant]:
    """Every pooling x post-processing x silence setting (``skip_silence``: True, False or both)."""
    posts: list[str | None] = []
    for p in postprocess or (None,):
        c = canonical_spec(p)
        if c not in posts:
            posts.append(c)
    silences = list(dict.fromkeys(bool(x) for x in skip_silence)) or [True]
    return [Variant(pooling=p, postprocess=q, skip_silence=sk) for p in expand_poolings(poolings) for sk in silences
            for q in posts]


# --------------------------------------------------------------------------- the cache
class BenchCache:
    """ESC-50 embedded by one embedder: the frames collection and the pooled collections built from it."""

    def __init__(self, esc: Esc50, info, embedder_options: dict, root: Path) -> None:
        self.esc, self.info, self.embedder_options, self.root = esc, info, embedder_options, root
        self.silence: np.ndarray | None = None  # the embedder's digital-silence frame (set by build)
        self._frames: list[np.ndarray] | None = None
        self._meta: dict[str, tuple[str, float]] | None = None

    @classmethod
    def build(cls, esc: Esc50, embedder: Embedder, *, cache: str | Path | None = None, progress: bool = True,
              workers: int = 2) -> "BenchCache":
        root = bench_cache_root(cache) / dataset_key(esc) / embedder_key(embedder.info)
        bc = cls(esc, embedder.info, embedder.options(), root)
        bc.silence = silence_frame(embedder)
        with locked(root):
            bc.ensure_frames(embedder, progress=progress, workers=workers)
        return bc

    @property
    def frames_root(self) -> Path:
        return self.root / FRAMES

    def frames_collection(self) -> CollectionStore:
        return CollectionStore.open(self.frames_root)

    # ------------------------------------------------------------------ embedding
    def ensure_frames(self, embedder: Embedder, *, progress: bool = True, workers: int = 2) -> CollectionStore:
        """Embed every clip not yet in the frames collection (resumable, incremental by content hash)."""

        info = embedder.info
        coll = (CollectionStore.open(self.frames_root) if CollectionStore.exists(self.frames_root) else
                CollectionStore.create(self.frames_root, embedder=info, embedder_options=embedder.options(),
                                  pooling=PoolingSpec.parse("mu"), metric="cosine",
                                  extra={"granularity": "frame", "dataset": {"name": "esc50", "root": str(self.esc.root)}}))
        coll.check_compatible(embedder=info, pooling=PoolingSpec.parse("mu"))
        fingerprint = dataset_fingerprint(self.esc)
        if coll.manifest.extra.get("bench_fingerprint") == fingerprint:
            return coll
        with coll.writer(wait=LOCK_WAIT_S, purpose="bench cache") as w:
            wanted = {c.path for c in self.esc.clips}
            stale = [i for p, f in w.collection.files().items() if p not in wanted for i in f.ids]
            if stale:
                w.delete(stale)
            report = IngestReport()
            ingest_items(w, [FileItem(path=c.path, label=c.category) for c in self.esc.clips],
                         EmbedMapper(embedder, PoolingSpec.parse("mu"), frames=True), report=report,
                         sample_rate=info.sample_rate, workers=workers, flush_every=FLUSH_EVERY, progress=progress,
                         desc=f"embedding ESC-50 ({info.name})")
            w.write_errors(report.failures)
            if report.failures:
                first = report.failures[0]
                raise DatasetError(
                    f"{len(report.failures)} ESC-50 clips could not be embedded (e.g. {first['path']}: {first['message']}); "
                    f"details in {coll.root / 'errors.jsonl'}; the clips embedded so far are kept, fix the files and re-run"
                )
            w.set_fields(extra={**w.manifest.extra, "bench_fingerprint": fingerprint})
        return coll

    # ------------------------------------------------------------------ reading frames
    def clip_frames(self) -> list[np.ndarray]:
        """Frame embeddings [T_i, D] of every clip, in metadata order (read once, then kept)."""
        if self._frames is None:
            coll = self.frames_collection()
            table = coll.read_table(["path", "content_sha256", "offset_s", "duration_s", "embedding"])

            X = embedding_matrix(table, coll.dim)
            paths = table["path"].to_pylist()
            offs = table["offset_s"].to_numpy()
            ends = offs + table["duration_s"].to_numpy()
            pos = {p: i for i, p in enumerate(self.esc.paths)}
            try:
                clip = np.array([pos[p] for p in paths], dtype=np.int64)
            except KeyError as e:
                raise DatasetError(f"{coll.root} holds a clip that is not in the dataset ({e}); delete it and re-run") from e
            order = np.lexsort((offs, clip))
            counts = np.bincount(clip, minlength=len(self.esc))
            if (counts == 0).any():
                missing = self.esc.paths[int(np.argmin(counts))]
                raise DatasetError(f"{coll.root} lacks frames for {missing}; re-run the benchmark to embed it")
            self._frames = np.split(X[order], np.cumsum(counts)[:-1])
            shas = table["content_sha256"].to_pylist()
            dur = np.zeros(len(self.esc))
            np.maximum.at(dur, clip, ends)
            self._meta = {p: (shas[i], float(dur[pos[p]])) for i, p in enumerate(paths)}
        return self._frames

    # ------------------------------------------------------------------ pooled collections
    def pooled_root(self, variant: Variant) -> Path:
        return self.root / POOLED / variant.slug

    def pooled(self, variant: Variant) -> CollectionStore:
        """The clip-level collection for ``variant`` (built from the frames when missing or stale)."""
        with locked(self.root):
            return self._pooled(variant)

    def _pooled(self, variant: Variant) -> CollectionStore:
        frames_rev = self.frames_collection().revision
        spec = PoolingSpec.parse(variant.pooling, skip_silence=variant.skip_silence)
        if spec.skip_silence and self.silence is None:
            raise DatasetError("leaving silence out needs the embedder's silence frame; open the cache with BenchCache.build")
        source = {"frames": str(self.frames_root), "frames_revision": frames_rev, "pooling": spec.name,
                  "postprocess": variant.postprocess, "clips": len(self.esc), "skip_silence": spec.skip_silence}
        root = self.pooled_root(variant)
        if CollectionStore.exists(root):
            c = CollectionStore.open(root)
            if c.manifest.extra.get("bench_source") == source and len(c) == len(self.esc) and c.manifest.index_fresh:
                return c
            shutil.rmtree(root)
        frames = self.clip_frames()
        # a clip that is silent throughout (none in ESC-50) is pooled over all its frames so every clip has a vector
        pooler = FramePooler(None, spec, silence=self.silence)
        vectors = np.stack([spec(f[pooler.members(f)]) for f in frames]).astype(np.float32)
        c = CollectionStore.create(root, embedder=self.info, embedder_options=self.embedder_options, pooling=spec,
                              metric="cosine", extra={"granularity": "clip", "bench_source": source})
        with c.writer(purpose="bench cache") as w:
            w.append(Rows(path=self.esc.paths, content_sha256=[self._meta[p][0] for p in self.esc.paths],
                          offset_s=np.zeros(len(self.esc)),
                          duration_s=np.array([self._meta[p][1] for p in self.esc.paths]),
                          label=[cl.category for cl in self.esc.clips], embedding=vectors))
            if variant.postprocess:
                w.set_fields(postprocess=variant.postprocess)
            ensure_index(w)
        return c

    def vectors(self, variant: Variant, *, postprocessed: bool = True) -> np.ndarray:
        """The variant's vectors in metadata order: as the index sees them (post-processed) or as stored."""

        c = self.pooled(variant)
        _, X = c.embeddings()  # appended in metadata order: ids 0..n-1
        return load_for_search(c).transform(X) if postprocessed and c.postprocess else X

    def postprocess_fit(self, variant: Variant) -> dict | None:
        """How the variant's post-processing was fitted (vectors, output dim; never labels), or None."""

        pp = load_for_search(self.pooled(variant)).postprocessor
        return None if pp is None else {"n": pp.n_fit, "out_dim": pp.out_dim, "labels_used": False}


def esc50_vectors(*, embedder: str, pooling: str, weights: str | None = None, esc50: str | None = None,
                  cache: str | None = None, progress: bool = True,
                  embedder_options: dict | None = None) -> tuple[Esc50, np.ndarray]:
    """One pooled vector per ESC-50 clip (metadata order), embedding only what is not cached yet."""
    esc = load_esc50(esc50)

    model = make_embedder(embedder, weights=weights, options=embedder_options)
    bc = BenchCache.build(esc, model, cache=cache, progress=progress)
    return esc, bc.vectors(Variant(pooling=PoolingSpec.parse(pooling).name), postprocessed=False)


