"""When an index that is updated in place (``add``, ``remove``) should be rebuilt from scratch.

Adding to a trained index never retrains it: new vectors are assigned to the cells and
codebooks learnt from the first sample. That stays valid while the data keeps its shape; the
policy (autofaiss and FAISS practice) is to retrain once the collection has grown or shrunk by
``factor`` (default 4x) since the structure was trained — ``nlist`` and the codebooks were sized
for ``trained_for`` vectors, and an ``auto`` index may deserve another kind. Kinds without a
trained structure (flat, hnsw) need no retraining for growth unless ``auto`` chose them.
Tombstones (removals from HNSW graphs or on-disk lists) cost memory and, past a fraction
(default 25 %), recall: rebuild then too.

The engine calls :func:`needs_retrain` with the sidecar (or the index) and the collection's
size after an update: ``None`` means add/remove in place; a string is the reason to rebuild.
"""

from __future__ import annotations

from audiosim.indexes.base import VectorIndex

RETRAIN_FACTOR = 4.0
MAX_REMOVED_FRACTION = 0.25
UNTRAINED_KINDS = ("flat", "hnsw", "hnswlib")


def needs_retrain(index_or_sidecar: VectorIndex | dict, now: int, *, factor: float = RETRAIN_FACTOR,
                  max_removed_fraction: float = MAX_REMOVED_FRACTION) -> str | None:
    """The reason to rebuild the index for a collection of ``now`` vectors, or ``None``."""
    if isinstance(index_or_sidecar, VectorIndex):
        kind = index_or_sidecar.KIND
        trained_for = index_or_sidecar.trained_for
        removed = index_or_sidecar.removed_count
        count = len(index_or_sidecar)
        auto = bool(index_or_sidecar.build_info.get("requested") == "auto")
    else:
        kind = index_or_sidecar.get("kind")
        trained_for = index_or_sidecar.get("trained_for")
        removed = int(index_or_sidecar.get("removed") or 0)
        count = int(index_or_sidecar.get("count") or 0)
        auto = (index_or_sidecar.get("build") or {}).get("requested") == "auto"
    now = int(now)
    if removed and removed > max_removed_fraction * max(1, count + removed):
        return f"{removed} removed vectors still occupy the index (> {max_removed_fraction:.0%} of it): rebuild to reclaim them"
    if (kind in UNTRAINED_KINDS and not auto) or not trained_for:
        return None
    if now > factor * trained_for:
        return f"the collection grew from {trained_for} to {now} vectors (> {factor:g}x) since the {kind} index was trained"
    if now * factor < trained_for:
        return f"the collection shrank from {trained_for} to {now} vectors (< 1/{factor:g}) since the {kind} index was trained"
    return None
