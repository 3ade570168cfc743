"""A neighbour graph of a whole vector set: every pair at or above a cosine similarity, and its connected components.

:func:`similar_pairs` searches every vector's ``k`` nearest neighbours (inner product of the
L2-normalised vectors = cosine) with FAISS, ``block`` queries at a time, so memory beyond the
vectors themselves stays that of one block's results (``block x k``); it keeps the pairs whose
similarity reaches ``threshold``. Up to :data:`EXACT_MAX` vectors the search is exact (flat);
above, an inverted file of about sqrt(n) lists with :data:`IVF_NPROBE` probed (near duplicates lie
in the same or a neighbouring list; the cost grows as n^1.5 instead of n^2). ``device="cuda"`` (or ``"auto"`` when a FAISS GPU build sees a
GPU) searches on the GPU (``faiss-gpu``, the ``gpu`` extra); otherwise FAISS uses the CPU's BLAS.
:func:`components` groups the pairs (scipy's connected components). numpy in, numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiosim.errors import DeviceError, InvalidOptionError

DEFAULT_K = 10
DEFAULT_BLOCK = 4096
EXACT_MAX = 20_000  # above this many vectors the graph is searched with an inverted file (IVF) index
IVF_NPROBE = 16


@dataclass(frozen=True)
class Pairs:
    """Pairs ``(i[m], j[m])`` with ``i < j`` and their cosine similarity; ``device``: where they were searched."""

    i: np.ndarray
    j: np.ndarray
    similarity: np.ndarray
    device: str


def _gpu_available(faiss) -> bool:
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def similar_pairs(X: np.ndarray, *, threshold: float, k: int = DEFAULT_K, block: int = DEFAULT_BLOCK,
                  device: str = "auto", mutual: int | None = None) -> Pairs:
    """Every pair of rows of ``X`` among each other's ``k`` nearest neighbours with cosine >= ``threshold``.

    ``mutual=M``: keep a pair only when each is among the other's ``M`` nearest neighbours (M <= k),
    which stops dense regions (many similar but distinct sounds) from chaining into one group.
    """
    if mutual is not None and not 1 <= int(mutual) <= int(k):
        raise InvalidOptionError(f"mutual must be in [1, k={k}], got {mutual}")
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    if X.ndim != 2:
        raise InvalidOptionError(f"the neighbour graph needs vectors shaped [n, d], got {X.shape}")
    if n < 2:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), "cpu")
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    if n > EXACT_MAX:  # ~sqrt(n) lists, IVF_NPROBE probed: near duplicates share a list; O(n^1.5) not O(n^2)
        nlist = int(np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(X.shape[1]), X.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(X[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
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
    elif device not in ("auto", "cpu"):
        raise InvalidOptionError(f"device must be auto, cpu or cuda, got {device!r}")
    index.add(X)
    kk = min(int(k) + 1, n)
    I_, J_, S_ = [], [], []
    for a in range(0, n, int(block)):
        S, J = index.search(X[a:a + int(block)], kk)
        rows = np.repeat(np.arange(a, a + S.shape[0]), kk)
        if mutual is not None:  # rank among the row's neighbours, the row itself left out
            notself = J != np.arange(a, a + S.shape[0])[:, None]
            rank = np.cumsum(notself, axis=1) - 1
            S = np.where(notself & (rank < int(mutual)), S, -np.inf)
        J, S = J.reshape(-1), S.reshape(-1)
        keep = (J >= 0) & (J != rows) & (S >= threshold)
        I_.append(rows[keep])
        J_.append(J[keep])
        S_.append(S[keep])
    i, j, s = np.concatenate(I_), np.concatenate(J_), np.concatenate(S_)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo * n + hi
    uniq, first, count = np.unique(key, return_index=True, return_counts=True)  # each pair once
    if mutual is not None:
        first = first[count == 2]  # found from both ends: each among the other's M nearest
    return Pairs(lo[first].astype(np.int64), hi[first].astype(np.int64), s[first].astype(np.float32), used)


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
