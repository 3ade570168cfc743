"""``panns``: PANNs Cnn14 (AudioSet), the 2048-d ``fc1`` embedding per analysis window.

Variants (the published checkpoints, Zenodo record 3987831):

* ``Cnn14`` -- 32 kHz, 1024-point window, 320 hop, 64 mel bands 50-14000 Hz
  (``Cnn14_mAP=0.431.pth``);
* ``Cnn14_16k`` -- 16 kHz, 512-point window, 160 hop, 64 mel bands 50-8000 Hz
  (``Cnn14_16k_mAP=0.438.pth``).

Cnn14 pools over time itself, so frame-level embeddings of a long recording come from running
it on windows of ``window_s`` seconds every ``hop_s`` seconds (full windows only); every
pooling then applies to those frames. A recording no longer than one window gives one frame
computed on the whole recording (zero-padded only up to the network's minimum input of 31
hops), which with ``window_s`` >= the clip length is exactly the reference clip embedding.
The windows of a recording go through the network ``batch_size`` at a time, on ``device``
(cpu or cuda); batched and single-window passes agree to float32 rounding (about 1e-5 relative).

Weights: ``weights=PATH`` > ``$AUDIOSIM_MODELS/panns/`` > ``~/.cache/audiosim/panns/`` >
download of the official checkpoint from Zenodo into that cache (checked against the MD5 the
record publishes). The checkpoint's sha256 is recorded in ``info.weights_sha256``. Without
``variant`` the variant is read from the checkpoint (``Cnn14`` when nothing is found locally).

Classifier head: :meth:`PannsEmbedder.embed_frames_with_scores` also returns ``fc_audioset``'s
527 sigmoid outputs for every window (the same forward pass). Their names are AudioSet's 527
display names in label-index order, built in
(:func:`audiosim.engine.models.embedders.audioset_classes.audioset_names`, the list PANNs ships as
``class_labels_indices.csv``); ``class_map=PATH`` replaces them with a file (a CSV with a
``display_name`` column, or one name per line) for checkpoints trained on other labels.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np

from audiosim.engine.models import weights as wts
from audiosim.engine.models.embedders.audioset_classes import audioset_names
from audiosim.engine.models.embedders.base import (Embedder, EmbedderInfo, check_waveform, checked_class_names,
                                            read_class_map, window_starts)
from audiosim.errors import InvalidOptionError, MissingDependencyError, WeightsFormatError

MODEL = "panns"
ZENODO = "https://zenodo.org/records/3987831/files/"
#: variant -> (checkpoint file name, official download).
CHECKPOINTS = {
    "Cnn14": ("Cnn14_mAP=0.431.pth", wts.Download(
        url=ZENODO + "Cnn14_mAP%3D0.431.pth?download=1", filename="Cnn14_mAP=0.431.pth",
        md5="541141fa2ee191a88f24a3219fff024e")),
    "Cnn14_16k": ("Cnn14_16k_mAP=0.438.pth", wts.Download(
        url=ZENODO + "Cnn14_16k_mAP%3D0.438.pth?download=1", filename="Cnn14_16k_mAP=0.438.pth",
        md5="362fc5ff18f1d6ad2f6d464b45893f2c")),
}
DEFAULT_VARIANT = "Cnn14"


def resolve_panns_weights(weights: str | Path | None, *, variant: str | None,
                          allow_download: bool | None = None) -> Path:
    """The checkpoint file: explicit path (or a folder holding the variant's file), else the search order."""
    if variant is not None and variant not in CHECKPOINTS:
        raise InvalidOptionError(f"unknown PANNs variant {variant!r}; choose one of {', '.join(CHECKPOINTS)}")
    names = [CHECKPOINTS[variant][0]] if variant else [name for name, _ in CHECKPOINTS.values()]
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            for name in names:
                if (p / name).is_file():
                    return p / name
            pths = sorted(p.glob("*.pth"))
            if len(pths) == 1:
                return pths[0]
        raise WeightsFormatError(
            f"--weights {weights}: expected a PANNs checkpoint file such as {names[0]} or a folder holding one"
        )
    wanted = variant or DEFAULT_VARIANT
    local = wts.find_local(MODEL, names if variant else [CHECKPOINTS[DEFAULT_VARIANT][0], *names])
    if local is not None:
        return local
    name, spec = CHECKPOINTS[wanted]
    return wts.resolve_or_download(MODEL, names=(name,), downloads=(spec,), allow_download=allow_download)


class PannsEmbedder(Embedder):
    """Cnn14 ``fc1`` embeddings (2048-d) of fixed-length windows."""

    def __init__(self, *, weights: str | Path | None = None, variant: str | None = None, window_s: float = 1.0,
                 hop_s: float = 0.5, device: str = "cpu", batch_size: int = 16,
                 allow_download: bool | None = None, class_map: str | Path | None = None) -> None:
        if device not in ("cpu", "cuda"):
            raise InvalidOptionError(f"panns device must be 'cpu' or 'cuda', got {device!r}")
        if not (window_s > 0 and 0 < hop_s <= window_s):
            raise InvalidOptionError(f"panns needs window_s > 0 and 0 < hop_s <= window_s, got {window_s}, {hop_s}")
        if batch_size < 1:
            raise InvalidOptionError("panns batch_size must be >= 1")
        try:
            import torch
        except ImportError as e:
            raise MissingDependencyError(
                "the panns embedder needs PyTorch: pip install 'audiosim[torch]', or use --embedder logmel"
            ) from e
        from audiosim.engine.models.embedders.panns_model import load_cnn14

        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
        path = resolve_panns_weights(weights, variant=variant, allow_download=allow_download)
        self._torch = torch
        self.device = torch.device(device)
        self.model = load_cnn14(path, variant=variant).to(self.device)
        self.config = self.model.config
        self.variant = self.config.variant
        self.path = path
        sr = self.config.sample_rate
        self.window = int(round(window_s * sr))
        self.hop = int(round(hop_s * sr))
        if self.window < self.config.min_samples:
            raise InvalidOptionError(
                f"panns window_s={window_s} is shorter than the network's minimum input "
                f"({self.config.min_samples / sr:.2f} s); use a longer window"
            )
        self.batch_size = int(batch_size)
        self._weights_arg = str(weights) if weights is not None else None
        self._class_map_arg = str(class_map) if class_map is not None else None
        self._class_names: list[str] | None = None
        self.info = EmbedderInfo(name=MODEL, version=f"{self.variant}/{self.window / sr:g}s", sample_rate=sr,
                                 dim=self.model.fc1.out_features, window_s=self.window / sr, hop_s=self.hop / sr,
                                 weights_sha256=wts.sha256_file(path))

    def options(self) -> dict:
        opts = {"weights": self._weights_arg, "variant": self.variant, "window_s": self.window / self.info.sample_rate,
                "hop_s": self.hop / self.info.sample_rate}
        if self._class_map_arg is not None:
            opts["class_map"] = self._class_map_arg
        return opts

    def _segments(self, waveform: np.ndarray) -> list[np.ndarray]:
        """The analysis windows of one waveform (one, possibly padded, when it fits in a window)."""
        x = check_waveform(waveform)
        if x.size <= self.window:
            return [np.pad(x, (0, max(0, self.config.min_samples - x.size)))]
        starts = window_starts(x.size, window=self.window, hop=self.hop)
        return list(np.lib.stride_tricks.sliding_window_view(x, self.window)[starts])

    def _run(self, segments: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [n, 2048] and fc_audioset scores [n, 527] of equal-length segments, ``batch_size`` per pass."""
        torch = self._torch
        embs, scores = [], []
        with torch.inference_mode():
            for i in range(0, len(segments), self.batch_size):
                batch = torch.from_numpy(np.stack(segments[i:i + self.batch_size])).to(self.device)
                emb, clipwise = self.model(batch)
                embs.append(emb.float().cpu().numpy())
                scores.append(clipwise.float().cpu().numpy())
        return (np.concatenate(embs, axis=0).astype(np.float32, copy=False),
                np.concatenate(scores, axis=0).astype(np.float32, copy=False))

    BATCHES_WINDOWS = True

    def embed_batch(self, waveforms, *, scores: bool = False) -> list[tuple]:
        """:meth:`embed_frames` of several waveforms with their windows batched together: ``batch_size`` windows per
        forward pass across the files (short clips fill a pass instead of running one or two windows each).
        Windows are batched with windows of their own length (a clip shorter than one window is one shorter
        window), so each file's frames equal a call of :meth:`embed_frames` on it (up to float rounding)."""
        segments = [self._segments(w) for w in waveforms]
        by_length: dict[int, list[tuple[int, int]]] = {}
        for f, per_file in enumerate(segments):
            for j, seg in enumerate(per_file):
                by_length.setdefault(seg.size, []).append((f, j))
        frames = [[None] * len(per_file) for per_file in segments]
        clip_scores = [[None] * len(per_file) for per_file in segments]
        for where in by_length.values():
            emb, sc = self._run([segments[f][j] for f, j in where])
            for row, (f, j) in enumerate(where):
                frames[f][j], clip_scores[f][j] = emb[row], sc[row]
        out = []
        for fr, sc in zip(frames, clip_scores):
            fr = np.stack(fr).astype(np.float32, copy=False)
            out.append((fr, self.frame_times(fr.shape[0]), np.stack(sc)) if scores else (fr, self.frame_times(fr.shape[0])))
        return out

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames, _ = self._run(self._segments(waveform))
        return frames, self.frame_times(frames.shape[0])

    def embed_frames_with_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings [T, 2048], window start times [T] and fc_audioset scores [T, 527] of each window."""
        frames, scores = self._run(self._segments(waveform))
        return frames, self.frame_times(frames.shape[0]), scores

    def class_names(self) -> list[str]:
        """The names of fc_audioset's outputs: ``class_map`` when given, else AudioSet's 527 names."""
        if self._class_names is None:
            n = self.model.fc_audioset.out_features
            if self._class_map_arg is not None:
                names = checked_class_names(read_class_map(self._class_map_arg), n, source=self._class_map_arg)
            else:
                names = checked_class_names(audioset_names(), n, source="built-in AudioSet (527 classes)")
            self._class_names = names
        return list(self._class_names)
