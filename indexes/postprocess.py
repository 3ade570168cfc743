"""Label-free post-processing an index learns from its own vectors.

A spec is a ``+``-joined chain of steps, applied left to right; each step that learns
something is fitted on the output of the steps before it:

* ``center``        -- subtract the mean vector of the collection.
* ``whiten[:D]``    -- PCA whitening fitted on the collection: centre, project onto the top
  ``D`` principal axes (default: all that the data supports, at most ``n - 1``) and divide
  each axis by the square root of its variance (``sklearn.decomposition.PCA(whiten=True)``).
  ``whiten:D:B`` whitens partially: each axis is divided by ``variance ** (B / 2)``
  (``B = 1`` full whitening, ``B = 0`` plain PCA projection).
* ``pca:D``         -- centre and project onto the top ``D`` principal axes (no scaling).
* ``abtt:K``        -- "all-but-the-top" (Mu & Viswanath, 2018): centre and remove the
  projections onto the top ``K`` principal directions (the dimension is kept). Directions
  shared by many vectors, such as the frames of digital silence that pad short clips, dominate
  the top of the spectrum and carry little about what a clip sounds like.
* ``power[:A]``     -- signed power normalisation ``sign(x) * |x| ** A`` (default ``A = 0.5``,
  the signed square root).
* ``l2``            -- scale every vector to unit length.

Example: ``power+center+whiten:256``. No labels are used anywhere. A fitted post-processor is
saved as ``postprocess.json`` (spec and shapes) plus ``postprocess.npz`` (the learned arrays)
in a directory, normally beside a collection's saved index; the collection's manifest records
the spec under ``postprocess`` and :mod:`audiosim.engine.store.indexing` fits and applies it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.errors import VectorIndexError
from audiosim.files import write_json_atomic, write_npz_atomic
from audiosim.indexes.vectors import l2_normalize

SPEC_FILE = "postprocess.json"
ARRAYS_FILE = "postprocess.npz"
FORMAT_VERSION = 1
OPS = ("center", "whiten", "pca", "abtt", "power", "l2")
NONE_SPECS = ("", "none")
GRAMMAR = ("steps joined by '+': center, whiten[:DIM[:BETA]], pca:DIM, abtt:K, power[:ALPHA], l2 "
           "(e.g. l2+abtt:2+whiten:256:0.3)")


@dataclass(frozen=True)
class Step:
    """One parsed step: its operation and numeric arguments (``None`` = default)."""

    op: str
    dim: int | None = None
    value: float | None = None

    @property
    def text(self) -> str:
        if self.op == "abtt":
            return f"abtt:{self.dim}"
        if self.op in ("whiten", "pca"):
            out = self.op + (f":{self.dim}" if self.dim is not None else "")
            return out + (f":{_num(self.value)}" if self.value is not None else "")
        if self.op == "power":
            return f"power:{_num(self.value if self.value is not None else 0.5)}"
        return self.op


def _num(v: float) -> str:
    return f"{v:g}"


def parse_spec(spec: str) -> tuple[Step, ...]:
    """Parse a spec into steps; ``""``/``"none"`` gives no steps."""
    text = (spec or "").strip().lower()
    if text in NONE_SPECS:
        return ()
    steps = []
    for token in text.split("+"):
        parts = [p.strip() for p in token.strip().split(":")]
        op, args = parts[0], parts[1:]
        try:
            if op in ("center", "l2") and not args:
                steps.append(Step(op))
            elif op == "whiten" and len(args) <= 2:
                dim = int(args[0]) if args and args[0] else None
                beta = float(args[1]) if len(args) == 2 else None
                if (dim is not None and dim < 1) or (beta is not None and not 0.0 <= beta <= 1.0):
                    raise ValueError
                steps.append(Step(op, dim=dim, value=beta))
            elif op in ("pca", "abtt") and len(args) == 1 and int(args[0]) >= 1:
                steps.append(Step(op, dim=int(args[0])))
            elif op == "power" and len(args) <= 1:
                alpha = float(args[0]) if args else 0.5
                if not 0.0 < alpha <= 2.0:
                    raise ValueError
                steps.append(Step(op, value=alpha))
            else:
                raise ValueError
        except ValueError:
            raise VectorIndexError(f"bad post-processing step {token!r} in {spec!r}; use {GRAMMAR}") from None
    return tuple(steps)


def canonical_spec(spec: str | None) -> str | None:
    """The normalised spec text (``power`` -> ``power:0.5``), or ``None`` for no post-processing."""
    steps = parse_spec(spec or "")
    return "+".join(s.text for s in steps) if steps else None


def _signed_power(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** alpha


class Postprocessor:
    """A fitted (or to-be-fitted) chain of label-free vector transforms."""

    def __init__(self, spec: str) -> None:
        self.steps = parse_spec(spec)
        if not self.steps:
            raise VectorIndexError(f"empty post-processing spec {spec!r}; use {GRAMMAR}")
        self.spec = "+".join(s.text for s in self.steps)
        self._params: list[dict[str, np.ndarray]] | None = None
        self.in_dim: int | None = None
        self.out_dim: int | None = None
        self.n_fit: int | None = None
        self.fitted_dims: list[int | None] = []

    @property
    def fitted(self) -> bool:
        return self._params is not None

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray) -> "Postprocessor":
        """Learn every step's parameters from ``X`` [n, d] (the collection's own vectors)."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise VectorIndexError(f"post-processing is fitted on at least 2 vectors shaped [n, d], got {x.shape}")
        if not np.isfinite(x).all():
            raise VectorIndexError("cannot fit post-processing on non-finite vectors")
        self.in_dim, self.n_fit = int(x.shape[1]), int(x.shape[0])
        params, dims = [], []
        for step in self.steps:
            p = self._fit_step(step, x)
            params.append(p)
            dims.append(int(p["components"].shape[0]) if "components" in p and step.op != "abtt" else None)
            x = self._apply(step, p, x)
        self._params, self.fitted_dims = params, dims
        self.out_dim = int(x.shape[1])
        return self

    @staticmethod
    def _fit_step(step: Step, x: np.ndarray) -> dict[str, np.ndarray]:
        if step.op == "center":
            return {"mean": x.mean(axis=0)}
        if step.op in ("whiten", "pca"):
            from sklearn.decomposition import PCA

            limit = min(x.shape[0] - 1, x.shape[1])
            dim = limit if step.dim is None else min(step.dim, limit)
            pca = PCA(n_components=dim, svd_solver="full").fit(x)
            var = np.asarray(pca.explained_variance_, dtype=np.float64)
            keep = var > var[0] * 1e-10  # axes the data does not span would be amplified noise
            components, var = pca.components_[keep], var[keep]
            if step.op == "pca":
                scale = np.ones_like(var)
            else:
                beta = 1.0 if step.value is None else step.value
                scale = var ** (-beta / 2.0)
            return {"mean": np.asarray(pca.mean_, dtype=np.float64), "components": components, "scale": scale}
        if step.op == "abtt":
            from sklearn.decomposition import PCA

            k = min(step.dim, x.shape[0] - 1, x.shape[1])
            pca = PCA(n_components=k, svd_solver="full").fit(x)
            return {"mean": np.asarray(pca.mean_, dtype=np.float64), "components": pca.components_}
        return {}

    @staticmethod
    def _apply(step: Step, p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        if step.op == "center":
            return x - p["mean"]
        if step.op in ("whiten", "pca"):
            return ((x - p["mean"]) @ p["components"].T) * p["scale"]
        if step.op == "abtt":
            xc = x - p["mean"]
            return xc - (xc @ p["components"].T) @ p["components"]
        if step.op == "power":
            return _signed_power(x, step.value if step.value is not None else 0.5)
        if step.op == "l2":
            return l2_normalize(x, dtype=np.float64)
        raise VectorIndexError(f"unknown post-processing step {step.op!r}")

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the fitted chain to ``X`` [n, d] (or one vector [d]); float32 [n, out_dim]."""
        if self._params is None:
            raise VectorIndexError(f"post-processing {self.spec!r} is not fitted; call fit() on the collection's vectors first")
        x = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if x.shape[1] != self.in_dim:
            raise VectorIndexError(f"post-processing {self.spec!r} was fitted on {self.in_dim}-d vectors, got {x.shape[1]}-d")
        for step, p in zip(self.steps, self._params):
            x = self._apply(step, p, x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict:
        return {"format": FORMAT_VERSION, "spec": self.spec, "in_dim": self.in_dim, "out_dim": self.out_dim,
                "n_fit": self.n_fit, "fitted_dims": self.fitted_dims}

    def save(self, directory: str | Path) -> None:
        """Write ``postprocess.json`` and ``postprocess.npz`` into ``directory`` (atomically, arrays first)."""
        if self._params is None:
            raise VectorIndexError(f"post-processing {self.spec!r} is not fitted; nothing to save")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {f"s{i}_{k}": v for i, p in enumerate(self._params) for k, v in p.items()}
        write_npz_atomic(d / ARRAYS_FILE, **arrays)
        write_json_atomic(d / SPEC_FILE, self.describe())

    @classmethod
    def load(cls, directory: str | Path) -> "Postprocessor":
        d = Path(directory)
        try:
            meta = json.loads((d / SPEC_FILE).read_text())
            with np.load(d / ARRAYS_FILE) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise VectorIndexError(
                f"cannot read the post-processing saved in {d}: {e}; rebuild it with `audiosim repair` or "
                "`audiosim index ... --postprocess SPEC`"
            ) from None
        if meta.get("format") != FORMAT_VERSION:
            raise VectorIndexError(f"{d / SPEC_FILE}: unsupported post-processing format {meta.get('format')!r}")
        pp = cls(meta["spec"])
        pp._params = [{k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(f"s{i}_")}
                      for i in range(len(pp.steps))]
        pp.in_dim, pp.out_dim, pp.n_fit = meta["in_dim"], meta["out_dim"], meta["n_fit"]
        pp.fitted_dims = list(meta.get("fitted_dims", []))
        return pp
