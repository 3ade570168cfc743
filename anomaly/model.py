"""A collection's anomaly model: fit it on the collection's normal vectors, score new clips against it.

The model lives inside the collection (``DIR/anomaly/``: ``scorer.json`` + ``scorer.npz``, see
:mod:`audiosim.anomaly.scorers`) and is written under the collection's writer lock. It is fitted
on the vectors **as stored** (the collection's embedder and pooling, without the optional index
post-processing), and :func:`score_clips` embeds clips the same way (same embedder, weights,
pooling and segment length), so both sides live in one space. A clip's score is the highest
score of its vectors (one per segment in a segmented collection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from audiosim.anomaly.scorers import ScorerConfig, load_scorer, make_scorer
from audiosim.engine.search.searcher import embed_file, embedder_for
from audiosim.errors import AnomalyModelError, AudiosimError

MODEL_DIR = "anomaly"


@dataclass(frozen=True)
class FitSummary:
    collection: str
    model: str
    scorer: str
    n_train: int
    percentile: float
    threshold: float
    train_score_median: float
    labels: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["where"] = {"label": list(self.labels)} if self.labels else {}
        d["labels"], d["warnings"] = list(self.labels), list(self.warnings)
        return d


@dataclass(frozen=True)
class ClipScore:
    clip: str
    score: float | None = None
    verdict: str | None = None
    offset_s: float | None = None
    segments: tuple[dict, ...] = ()
    error: str | None = None
    message: str | None = None

    def to_dict(self, threshold: float) -> dict:
        if self.error is not None:
            return {"clip": self.clip, "error": self.error, "message": self.message}
        d = {"clip": self.clip, "score": self.score, "threshold": threshold, "verdict": self.verdict}
        if self.segments:
            d["offset_s"] = self.offset_s
            d["segments"] = list(self.segments)
        return d


@dataclass(frozen=True)
class ScoreReport:
    collection: str
    scorer: str
    threshold: float
    model_stale: bool
    results: tuple[ClipScore, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> int:
        return sum(r.error is not None for r in self.results)

    def to_dict(self) -> dict:
        return {"collection": self.collection, "scorer": self.scorer, "threshold": self.threshold,
                "model_stale": self.model_stale, "results": [r.to_dict(self.threshold) for r in self.results]}


def fit_collection_model(collection, scorer, *, labels: Iterable[str] | None = None, wait: float | None = None) -> FitSummary:
    """Fit ``scorer`` (a :class:`ScorerConfig` or spec text) on the collection's vectors (optionally only these labels)."""

    config = scorer if isinstance(scorer, ScorerConfig) else ScorerConfig.parse(scorer)
    wanted = tuple(sorted(set(labels or ())))
    ids, X = collection.embeddings()
    if wanted:
        items = collection.items()
        allowed = [i for i, name in enumerate(items.labels) if name in wanted]
        keep = np.isin(items.label_code[items.positions(ids)], allowed)
        ids, X = ids[keep], X[keep]
    model = make_scorer(config)
    if len(ids) < model.min_train:
        have = sorted(collection.items().label_counts())
        raise AnomalyModelError(f"{len(ids)} vectors match {('label in ' + ', '.join(wanted)) if wanted else 'the collection'}; "
                                f"the {config.scorer} scorer needs at least {model.min_train} normal vectors "
                                f"(labels here: {', '.join(have) or 'none'})")
    model.fit(X)
    extra = {"collection_revision": collection.revision, "where": {"label": list(wanted)} if wanted else {},
             "n_vectors": int(len(ids)), "space": "stored", "embedder": collection.embedder.to_dict(),
             "pooling": collection.pooling.to_dict(), "segment_s": collection.segment_s,
             "segment_hop_s": collection.segment_hop_s}
    with collection.writer(wait=wait, purpose="anomaly fit"):
        model.save(collection.root / MODEL_DIR, extra=extra)
    return FitSummary(collection=str(collection.root), model=str(collection.root / MODEL_DIR), scorer=config.spec,
                      n_train=int(len(ids)), percentile=config.percentile, threshold=float(model.threshold_),
                      train_score_median=float(np.median(model.train_scores_)), labels=wanted,
                      warnings=tuple(getattr(model, "warnings_", ())))


def load_collection_model(collection):
    """(scorer, its saved metadata), checked against the collection's embedder and pooling."""

    d = collection.root / MODEL_DIR
    if not d.is_dir():
        raise AnomalyModelError(f"{collection.root} has no anomaly model; fit one with "
                                f"`audiosim anomaly fit --collection {collection.root}`")
    model, meta = load_scorer(d)
    extra = meta.get("extra", {}) if isinstance(meta.get("extra"), dict) else {}
    emb = extra.get("embedder") if isinstance(extra.get("embedder"), dict) else {}
    if extra.get("pooling") not in (None, collection.pooling.to_dict()) or \
            emb.get("weights_sha256") != collection.embedder.weights_sha256:
        raise AnomalyModelError(f"the anomaly model in {d} was fitted on another embedder or pooling; "
                                "fit it again with `audiosim anomaly fit`")
    return model, meta


def score_clips(collection, clips: Sequence[str | Path], *, weights=None) -> ScoreReport:
    """Score each clip with the collection's anomaly model; a clip that cannot be read is reported, not fatal."""

    model, meta = load_collection_model(collection)
    stale = meta.get("extra", {}).get("collection_revision") != collection.revision
    embedder = embedder_for(collection, weights=weights)
    out = []
    for clip in clips:
        try:
            segs = embed_file(embedder, clip, collection.pooling, segment_s=collection.segment_s,
                              segment_hop_s=collection.segment_hop_s)
        except AudiosimError as e:
            out.append(ClipScore(clip=str(clip), error=type(e).__name__, message=str(e)))
            continue
        scores = model.anomaly_score(np.stack([v for _, _, v in segs]))
        top = int(np.argmax(scores))
        segments = tuple({"offset_s": float(o), "duration_s": float(d), "score": float(s)}
                         for (o, d, _), s in zip(segs, scores)) if len(segs) > 1 else ()
        out.append(ClipScore(clip=str(clip), score=float(scores[top]),
                             verdict="anomalous" if scores[top] > model.threshold_ else "normal",
                             offset_s=float(segs[top][0]) if segments else None, segments=segments))
    return ScoreReport(collection=str(collection.root), scorer=meta["spec"], threshold=float(model.threshold_),
                       model_stale=stale, results=tuple(out))
