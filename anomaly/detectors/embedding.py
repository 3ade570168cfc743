"""``embedding``: pretrained-embedder (or log-mel) frames + a vector scorer, pooled per clip or frame by frame.

* ``mode=pooled`` (today's embedding scorers): each clip's frames pooled to one vector (``pooling=mu``), a
  scorer of :mod:`audiosim.anomaly.scorers` (``scorer=mahalanobis|knn|lof``) fitted on the normal clips'
  vectors; one "frame" per clip.
* ``mode=frames``: every frame is scored against all normal training frames (the same scorers), and the
  clip score is the ``reduce`` of its frame scores: ``mean``, ``max`` or ``topk`` (mean of the ``topk``
  highest). Pooling washes out short or narrow faults; frames keep them.

``embedder=features`` (default) uses the shared DCASE log-mel frames (128 bands, computed once per clip);
any registered embedder name (``logmel``, ``yamnet``, ``panns``, ...) embeds the audio with it instead.
Training clip scores are held out: pooled mode uses the scorer's held-out training scores; frames mode
scores each half of the training clips against a model fitted on the other half.
"""

from __future__ import annotations

import warnings

import numpy as np

from audiosim.anomaly.detectors.base import Detector
from audiosim.anomaly.scorers import ScorerConfig, make_scorer
from audiosim.engine.audio.decode import load_audio
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.errors import AnomalyModelError, AudiosimError, DatasetError


class EmbeddingDetector(Detector):
    kind = "embedding"
    defaults = {"embedder": "features", "weights": "", "pooling": "mu", "mode": "pooled", "scorer": "mahalanobis",
                "covariance": "ledoitwolf", "k": 5, "metric": "euclidean", "reduce": "mean", "topk": 3}
    choices = {"mode": ("pooled", "frames"), "reduce": ("mean", "max", "topk")}

    def _check_options(self) -> None:
        self.config_ = ScorerConfig(scorer=self.options["scorer"], covariance=self.options["covariance"],
                                    k=self.options["k"], metric=self.options["metric"])
        PoolingSpec.parse(self.options["pooling"])
        if self.options["topk"] < 1:
            raise AnomalyModelError("embedding: topk must be >= 1")

    def _inputs(self, paths, cache):
        name = self.options["embedder"]
        if name == "features":
            return [cache.logmel(p) for p in paths]
        from audiosim.engine.models.embedders import make_embedder

        device = None if self.device == "cpu" else self.device
        emb = make_embedder(name, weights=self.options["weights"] or None, device=device)
        sr = emb.info.sample_rate

        def compute(p):
            try:
                return np.asarray(emb.embed_frames(load_audio(p, sample_rate=sr))[0], dtype=np.float32)
            except AudiosimError as e:
                raise DatasetError(f"{p}: {e}") from None

        key = f"embed:{name}:{emb.info.to_dict().get('weights_sha256', '')}"
        return [cache.get(p, key, compute) for p in paths]

    def _vectors(self, inputs):
        if self.options["mode"] == "pooled":
            pool = PoolingSpec.parse(self.options["pooling"])
            return [np.asarray(pool(f), dtype=np.float64)[None] for f in inputs]
        return [np.asarray(f, dtype=np.float64) for f in inputs]

    def _new_scorer(self, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make_scorer(self.config_).fit(X)

    def _fit(self, inputs, labels):
        vecs = self._vectors(inputs)
        self.train_ = np.concatenate(vecs).astype(np.float32)
        self.counts_ = np.array([v.shape[0] for v in vecs])
        self.scorer_ = self._new_scorer(self.train_.astype(np.float64))

    def _reduce(self, frames):
        f = np.asarray(frames, dtype=np.float64)
        if self.options["reduce"] == "max":
            return float(f.max())
        if self.options["reduce"] == "topk":
            return float(np.sort(f)[-self.options["topk"]:].mean())
        return float(f.mean())

    def _train_clip_scores(self, inputs, labels):
        if self.options["mode"] == "pooled":
            return np.asarray(self.scorer_.train_scores_)
        vecs = self._vectors(inputs)
        n = len(vecs)
        half = np.arange(n) % 2
        out = np.empty(n)
        for h in (0, 1):
            other = self._new_scorer(np.concatenate([vecs[i] for i in range(n) if half[i] != h]))
            for i in np.flatnonzero(half == h):
                out[i] = self._reduce(other.anomaly_score(vecs[i]))
        return out

    def _frame_scores(self, inputs, labels):
        return [self.scorer_.anomaly_score(v) for v in self._vectors(inputs)]

    def _state(self):
        return {}, {"train": self.train_, "counts": self.counts_}

    def _restore(self, state, arrays):
        self.train_, self.counts_ = arrays["train"], arrays["counts"]
        if self.train_.ndim != 2 or int(self.counts_.sum()) != self.train_.shape[0]:
            raise ValueError("training vectors and their counts disagree")
        self.scorer_ = self._new_scorer(self.train_.astype(np.float64))
