"""A neighbour graph of a whole vector set: every pair at or above a cosine similarity, and its connected components.

:func:`similar_pairs` searches every vector's ``k`` nearest neighbours (inner product of the
L2-normalised vectors = cosine) with FAISS, ``block`` queries at a time, so memory beyond the
vectors themselves stays that of one block's results (``block x k``); it keeps the pairs whose
similarity reaches ``threshold``. Up to :data:`EXACT_MAX` vectors the search is exact (flat);
above, an inverted file of about sqrt(n) lists with :data:`IVF_NPROBE` probed (near duplicates lie
in the same or a neighbouring list; the cost grows as n^1.5 instead of n^2), built on the vectors'
first :data:`PCA_DIM` principal components (FAISS's PCA; the scan then reads 128 floats per
vector instead of, say, 1,024, and runs from the CPU's cache instead of its memory: see
docs/dedup.md for the timing), and each row's ``RERANK_FACTOR x (k + 1)`` candidates are re-ranked
by the exact cosine of the full vectors, so every similarity returned is exact. ``device="cuda"``
(or ``"auto"`` when a FAISS GPU build sees a GPU) searches on the GPU (``faiss-gpu``, the ``gpu``
extra); otherwise FAISS uses the CPU. Another searcher (the exact torch block search of
:mod:`audiosim.engine.search.neighbours_torch`) hands its blocks of neighbours to
:func:`pairs_from_blocks`, which turns them into pairs exactly as the FAISS path does.
:func:`components` groups the pairs (scipy's connected components). numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from audiosim.errors import DeviceError, InvalidOptionError

DEFAULT_K = 10
DEFAULT_BLOCK = 4096
EXACT_MAX = 20_000  # above this many vectors the graph is searched with an inverted file (IVF) index
IVF_NPROBE = 16
PCA_DIM = 128  # above EXACT_MAX the IVF index holds the vectors' first PCA_DIM principal components ...
PCA_SAMPLE = 20_000  # ... (the projection trained on this many of them)
RERANK_FACTOR = 2  # ... and each row's RERANK_FACTOR x (k + 1) candidates are re-ranked by their exact cosine


@dataclass(frozen=True)
class Pairs:
    """Pairs ``(i[m], j[m])`` with ``i < j`` and their cosine similarity; ``device``: where they were searched.

    ``rank_ij[m]``: j's rank among i's neighbours (1: i's nearest, the row itself left out), and
    ``rank_ji[m]`` i's among j's; 0 where the other end's search did not return the pair.
    """

    i: np.ndarray
    j: np.ndarray
    similarity: np.ndarray
    device: str
    rank_ij: np.ndarray | None = None
    rank_ji: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.i.size)

    def mutual(self, m: int) -> np.ndarray:
        """Boolean: the pairs whose two ends are each among the other's ``m`` nearest neighbours."""
        if self.rank_ij is None or self.rank_ji is None:
            raise InvalidOptionError("these pairs carry no neighbour ranks")
        return (self.rank_ij >= 1) & (self.rank_ij <= m) & (self.rank_ji >= 1) & (self.rank_ji <= m)


def normalised(X: np.ndarray) -> np.ndarray:
    """``X`` as contiguous float32 rows of unit length (zero rows stay zero); checks the shape."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise InvalidOptionError(f"the neighbour graph needs vectors shaped [n, d], got {X.shape}")
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def check_options(*, k: int, mutual: int | None) -> None:
    if int(k) < 1:
        raise InvalidOptionError(f"k must be at least 1, got {k}")
    if mutual is not None and not 1 <= int(mutual) <= int(k):
        raise InvalidOptionError(f"mutual must be in [1, k={k}], got {mutual}")


def empty_pairs(device: str = "cpu") -> Pairs:
    z = np.zeros(0, np.int64)
    return Pairs(z, z, np.zeros(0, np.float32), device, z, z)


def pairs_from_blocks(blocks: Iterable[tuple[int, np.ndarray, np.ndarray]], *, n: int, threshold: float,
                      mutual: int | None, device: str) -> Pairs:
    """Pairs from blocks of neighbour lists: ``(first row, S [b, kk] similarities, J [b, kk] neighbour rows)``.

    Each row's neighbours come best first (the row itself may be among them; -1: none). A pair is
    kept when its similarity reaches ``threshold`` and, with ``mutual=M``, each end is among the
    other's ``M`` nearest (the row itself left out).
    """
    I_, J_, S_, R_ = [], [], [], []
    for a, S, J in blocks:
        S, J = np.asarray(S, np.float32), np.asarray(J, np.int64)
        b = J.shape[0]
        own = np.arange(a, a + b)
        notself = (J != own[:, None]) & (J >= 0)
        rank = np.cumsum(notself, axis=1)  # 1 = the nearest other row
        keep = notself & (S >= threshold)
        I_.append(np.broadcast_to(own[:, None], J.shape)[keep])
        J_.append(J[keep])
        S_.append(S[keep])
        R_.append(rank[keep])
    if not I_ or not sum(x.size for x in I_):
        return empty_pairs(device)
    i, j, s, r = (np.concatenate(x) for x in (I_, J_, S_, R_))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo * np.int64(n) + hi
    order = np.argsort(key, kind="stable")
    key, i, lo, hi, s, r = key[order], i[order], lo[order], hi[order], s[order], r[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])  # each pair once
    group = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1
    rank_ij = np.zeros(first.size, np.int64)  # rank of hi among lo's neighbours
    rank_ji = np.zeros(first.size, np.int64)
    from_lo = i == lo
    rank_ij[group[from_lo]] = r[from_lo]
    rank_ji[group[~from_lo]] = r[~from_lo]
    sim = np.zeros(first.size, np.float32)
    np.maximum.at(sim, group, s)  # the same pair from both ends: the same cosine up to rounding
    out = Pairs(lo[first].astype(np.int64), hi[first].astype(np.int64), sim, device, rank_ij, rank_ji)
    if mutual is not None:
        keep = out.mutual(int(mutual))
        out = Pairs(out.i[keep], out.j[keep], out.similarity[keep], device, out.rank_ij[keep], out.rank_ji[keep])
    return out


def _gpu_available(faiss) -> bool:
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def faiss_has_gpu() -> bool:
    """Whether the installed FAISS is a GPU build that sees a GPU."""
    import faiss

    return _gpu_available(faiss)


def similar_pairs(X: np.ndarray, *, threshold: float, k: int = DEFAULT_K, block: int = DEFAULT_BLOCK,
                  device: str = "auto", mutual: int | None = None) -> Pairs:
    """Every pair of rows of ``X`` among each other's ``k`` nearest neighbours with cosine >= ``threshold``.

    ``mutual=M``: keep a pair only when each is among the other's ``M`` nearest neighbours (M <= k),
    which stops dense regions (many similar but distinct sounds) from chaining into one group.
    """
    check_options(k=k, mutual=mutual)
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidOptionError(f"device must be auto, cpu or cuda, got {device!r}")
    import faiss

    X = normalised(X)
    n = X.shape[0]
    if n < 2:
        return empty_pairs()
    approximate = n > EXACT_MAX
    Y = _projected(X) if approximate else X
    if approximate:  # ~sqrt(n) lists, IVF_NPROBE probed: near duplicates share a list; O(n^1.5) not O(n^2)
        nlist = int(np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(Y.shape[1]), Y.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(Y[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
        index.nprobe = IVF_NPROBE
    else:
        index = faiss.IndexFlatIP(X.shape[1])
    used = "cpu"
    if device == "cuda" or (device == "auto" and _gpu_available(faiss)):
        if not _gpu_available(faiss):
            raise DeviceError("--device cuda needs a FAISS GPU build and a GPU (pip install 'audiosim[gpu]'); "
                              "omit --device to use the CPU")
        index = faiss.index_cpu_to_all_gpus(index)
        used = "cuda"
    index.add(Y)
    kk = min(int(k) + 1, n)
    wide = min(RERANK_FACTOR * kk, n) if approximate else kk
    step = max(int(block), 1)

    def blocks():
        for a in range(0, n, step):
            S, J = index.search(Y[a:a + step], wide)
            if approximate:
                S, J = _reranked(X, a, J, kk)
            yield a, S, J

    return pairs_from_blocks(blocks(), n=n, threshold=float(threshold), mutual=mutual, device=used)


def _projected(X: np.ndarray) -> np.ndarray:
    """``X`` on its first :data:`PCA_DIM` principal components (trained on a sample), rows re-normalised."""
    import faiss

    if X.shape[1] <= PCA_DIM:
        return X
    pca = faiss.PCAMatrix(X.shape[1], PCA_DIM)
    pca.train(X[np.random.default_rng(0).choice(X.shape[0], min(X.shape[0], PCA_SAMPLE), replace=False)])
    return normalised(pca.apply_py(X))


def _reranked(X: np.ndarray, a: int, J: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` best of each row's candidates ``J`` by the exact cosine of the full vectors, best first."""
    Q = X[a:a + J.shape[0]]
    S = np.full(J.shape, -np.inf, dtype=np.float32)
    for c in range(J.shape[1]):  # one column at a time: memory of one block of vectors
        ok = J[:, c] >= 0
        S[ok, c] = np.einsum("ij,ij->i", Q[ok], X[J[ok, c]])
    order = np.argsort(-S, axis=1, kind="stable")[:, :kk]
    return np.take_along_axis(S, order, 1), np.where(np.isfinite(np.take_along_axis(S, order, 1)),
                                                     np.take_along_axis(J, order, 1), -1)


def components(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
    """The connected components with at least two members of the graph on ``n`` nodes with edges ``(i, j)``."""
    if n == 0 or len(i) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(i)), (np.asarray(i), np.asarray(j))), shape=(n, n))
    _, label = connected_components(g, directed=False)
    order = np.argsort(label, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(label[order])) + 1)
    return [g for g in groups if g.size >= 2]
