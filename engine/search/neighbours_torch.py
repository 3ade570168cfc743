"""The neighbour graph searched with torch (on CUDA when FAISS has no GPU build): exact block k-nearest-neighbours.

:func:`similar_pairs_torch` returns what :func:`audiosim.indexes.graph.similar_pairs` returns (the
same pairs, ranks and similarities, up to float rounding) from an exact search: the unit vectors
go to the device once; ``block`` queries at a time are scored against ``chunk`` database rows at
a time (one ``block x chunk`` score matrix on the device) and the running top ``k + 1`` is merged
per chunk, so the memory beyond the vectors stays ``block x (chunk + k)`` scores whatever n is.
Each block's neighbours come back to the host and are turned into pairs by
:func:`audiosim.indexes.graph.pairs_from_blocks`, as the FAISS path's are. Used by
:mod:`audiosim.engine.search.dedup` for ``device="cuda"`` (and ``"auto"`` on a CUDA machine)
when the installed FAISS is a CPU build; on the CPU it runs too (the tests compare it with FAISS).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from audiosim.errors import DeviceError, MissingDependencyError
from audiosim.indexes.graph import DEFAULT_BLOCK, DEFAULT_K, Pairs, check_options, empty_pairs, normalised, pairs_from_blocks

DEFAULT_CHUNK = 16_384  # database rows scored at once per query block


def cuda_present() -> bool:
    """Whether torch is installed and sees a CUDA device (torch is imported only where an NVIDIA driver is)."""
    if importlib.util.find_spec("torch") is None or not Path("/dev/nvidiactl").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


def similar_pairs_torch(X: np.ndarray, *, threshold: float, k: int = DEFAULT_K, block: int = DEFAULT_BLOCK,
                        chunk: int = DEFAULT_CHUNK, device: str = "cuda", mutual: int | None = None) -> Pairs:
    """Every pair of rows of ``X`` among each other's ``k`` nearest (exact cosine) with similarity >= ``threshold``."""
    check_options(k=k, mutual=mutual)
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError("the torch neighbour search needs torch (pip install torch)") from e
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda needs a GPU that torch sees (or a FAISS GPU build); omit --device to use the CPU")
    X = normalised(X)
    n = X.shape[0]
    if n < 2:
        return empty_pairs(device)
    kk = min(int(k) + 1, n)
    step, width = max(int(block), 1), max(int(chunk), 1)
    with torch.no_grad():
        D = torch.from_numpy(X).to(device)

        def blocks():
            for a in range(0, n, step):
                Q = D[a:a + step]
                best_s = torch.full((Q.shape[0], kk), -float("inf"), device=device)
                best_j = torch.full((Q.shape[0], kk), -1, dtype=torch.int64, device=device)
                for c in range(0, n, width):
                    S = Q @ D[c:c + width].T
                    s, j = torch.topk(S, min(kk, S.shape[1]), dim=1)
                    both_s = torch.cat([best_s, s], dim=1)
                    both_j = torch.cat([best_j, j + c], dim=1)
                    best_s, pick = torch.topk(both_s, kk, dim=1)
                    best_j = torch.gather(both_j, 1, pick)
                yield a, best_s.cpu().numpy(), best_j.cpu().numpy()

        return pairs_from_blocks(blocks(), n=n, threshold=float(threshold), mutual=mutual,
                                 device="cuda" if str(device).startswith("cuda") else "cpu")
