"""The embedder interface: every model maps a waveform to frame embeddings with timestamps.

Optional classifier head: an embedder trained with a classifier (YAMNet: 521 AudioSet classes,
PANNs: 527) also gives one score per class for every frame. Such an embedder returns its class
names from :meth:`Embedder.class_names` (``None`` for embedders without a head) and implements
:meth:`Embedder.embed_frames_with_scores`, which returns ``(frames[T, D], times_s[T],
scores[T, C])`` from one forward pass, ``scores[:, c]`` being the score of ``class_names()[c]``
for the same windows as ``frames``. :meth:`Embedder.class_map_sha256` identifies the class map
(the sha256 of the names, see :func:`class_names_sha256`) so that a collection can record which
classes its stored tags refer to. Without a head, ``embed_frames_with_scores`` raises
:class:`NoClassifierHeadError`.
"""

from __future__ import annotations

import abc
import csv
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.audio.waveform import check_waveform, pad_to_min_length  # noqa: F401  (part of the embedder API)

from audiosim.errors import NoClassifierHeadError, NoTextEncoderError, WeightsFormatError


@dataclass(frozen=True)
class EmbedderInfo:
    """What a collection records about the model that made its vectors."""

    name: str
    version: str
    sample_rate: int
    dim: int
    window_s: float
    hop_s: float
    weights_sha256: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Embedder(abc.ABC):
    """Base class. Subclasses set ``self.info`` and implement :meth:`embed_frames`.

    ``embed_frames(waveform)`` takes mono float32 samples at ``info.sample_rate`` and returns
    ``(frames[T, D] float32, times_s[T])`` where ``times_s[i]`` is the start of window ``i``
    (``i * info.hop_s``). A clip shorter than one window is padded and yields one frame.
    """

    info: EmbedderInfo
    # True when :meth:`embed_batch` runs the windows of several waveforms through one forward pass (ingest then hands
    # it the decoded files in groups: :class:`audiosim.engine.ingest.pipeline.ThreadStage`)
    BATCHES_WINDOWS = False

    @abc.abstractmethod
    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame embeddings and their start times for one waveform."""

    def embed_batch(self, waveforms: Sequence[np.ndarray], *, scores: bool = False) -> list[tuple]:
        """Embed several waveforms; equals calling :meth:`embed_frames` (``scores``: :meth:`embed_frames_with_scores`)
        on each."""
        return [self.embed_frames_with_scores(w) if scores else self.embed_frames(w) for w in waveforms]

    def options(self) -> dict:
        """The construction options needed to rebuild an equivalent embedder (stored in a collection)."""
        return {}

    def frame_times(self, n_frames: int) -> np.ndarray:
        return (np.arange(n_frames, dtype=np.float64) * self.info.hop_s).astype(np.float64)

    def class_names(self) -> list[str] | None:
        """Display names of the classifier head's classes (index = score column); ``None`` without a head."""
        return None

    def class_map_sha256(self) -> str | None:
        """sha256 of :meth:`class_names` (see :func:`class_names_sha256`); ``None`` without a head."""
        names = self.class_names()
        return None if names is None else class_names_sha256(names)

    #: True for embedders that also embed text into their audio space (CLAP through ``hf``).
    has_text_encoder: bool = False

    def embed_text(self, texts) -> np.ndarray:
        """``[n, D]`` embeddings of text queries in the audio frames' space; only embedders with a text encoder."""
        raise NoTextEncoderError(
            f"the {self.info.name} embedder has no text encoder, so it cannot search by text; text search needs a "
            "collection indexed with CLAP's audio tower (--embedder hf --weights CLAP_SNAPSHOT_DIR, see docs/models.md)"
        )

    def embed_frames_with_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(frames[T, D], times_s[T], scores[T, C])``: :meth:`embed_frames` plus the class scores per frame."""
        raise NoClassifierHeadError(
            f"the {self.info.name} embedder has no classifier head, so it gives no class scores or tags; "
            "use an embedder with an AudioSet head (yamnet or panns) for tags"
        )


def window_starts(n_samples: int, *, window: int, hop: int) -> np.ndarray:
    """Start sample of each full window; a signal shorter than one window gets one (padded) window."""
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, hop, dtype=np.int64)


def class_names_sha256(names: Sequence[str]) -> str:
    """sha256 of a class map: the UTF-8 names, each followed by a newline, in index order.

    It depends on the names and their order only, not on the file they were read from.
    """
    h = hashlib.sha256()
    for name in names:
        h.update(str(name).encode("utf-8") + b"\n")
    return h.hexdigest()


def read_class_map(path: str | Path) -> list[str]:
    """Class names from a class map file, in index order.

    Accepted: a CSV with a ``display_name`` column (YAMNet's ``yamnet_class_map.csv``, AudioSet's
    ``class_labels_indices.csv``), or a plain text file with one name per line.
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsFormatError(f"class map {p} cannot be read ({e}); pass a CSV with a display_name column "
                                 "or a text file with one class name per line") from e
    lines = text.splitlines()
    first = next(iter(csv.reader(lines[:1])), [])
    if "display_name" in [c.strip() for c in first]:
        names = [row["display_name"].strip() for row in csv.DictReader(lines) if row]
    else:
        names = [ln.strip() for ln in lines if ln.strip()]
    if not names or any(not n for n in names):
        raise WeightsFormatError(f"class map {p} holds no class names (or an empty one); pass a CSV with a "
                                 "display_name column or a text file with one class name per line")
    return names


def checked_class_names(names: list[str], n_classes: int, *, source: str) -> list[str]:
    """``names`` when there is one per classifier output, else a :class:`WeightsFormatError`."""
    if len(names) != n_classes:
        raise WeightsFormatError(
            f"class map {source} names {len(names)} classes but the model's classifier has {n_classes} outputs; "
            "pass the class map that belongs to these weights (option class_map=PATH)"
        )
    return names
