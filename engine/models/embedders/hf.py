"""``hf``: audio encoders from Hugging Face ``transformers`` snapshots on disk (``--weights DIR``).

A snapshot folder holds ``config.json``, the weights (``model.safetensors`` or
``pytorch_model.bin``) and ``preprocessor_config.json`` (plus the tokenizer's files for CLAP),
as ``save_pretrained`` or a hub download writes them. Nothing is downloaded: the folder is
read with ``local_files_only=True`` unless ``allow_download=True`` is given, in which case
``weights`` may also name a hub model id. The model family comes from ``config.json``:

* **AST** (``audio-spectrogram-transformer``): the pooled output per window of the feature
  extractor's ``max_length`` frames (10 ms each: 10.24 s for the published checkpoints);
* **wav2vec2-style encoders** (``wav2vec2``, ``hubert``, ``wavlm``, ``data2vec-audio``, ...):
  the mean over time of one layer's hidden states (``layer``: index into the hidden states,
  default the last) per window of ``window_s`` (default 1 s);
* **CLAP** (``clap``): the audio tower's projected, L2-normalised embedding per window of the
  feature extractor's ``max_length_s`` (10 s published). CLAP also embeds text into the same
  space (:meth:`HfEmbedder.embed_text`), which is what text-to-audio search uses.

Windows of ``window_s`` every ``hop_s`` (default: half a window); a recording no longer than
one window is one window (AST and CLAP's feature extractors pad it their own way; wav2vec2
models see it as is, padded only up to their convolutional receptive field). The collection
records ``version`` ``<model_type>/<window>s[/layer]`` and the sha256 of the snapshot's config
and weight files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo, check_waveform, window_starts
from audiosim.errors import InvalidOptionError, MissingDependencyError, WeightsFormatError, WeightsNotFoundError
from audiosim.files import sha256_file

MODEL = "hf"
AST = "audio-spectrogram-transformer"
CLAP = "clap"
ENCODERS = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d",
            "wav2vec2-conformer")
WEIGHT_FILES = ("config.json", "*.safetensors", "pytorch_model*.bin")


def import_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise MissingDependencyError("the hf embedder needs transformers and torch: pip install 'audiosim[models,torch]'") from e
    # loading a local snapshot takes milliseconds: its progress bars would only clutter audiosim's output
    transformers.utils.logging.disable_progress_bar()
    return transformers


def snapshot_sha256(folder: Path) -> str:
    """sha256 over the snapshot's config and weight files (names and contents), in name order."""
    h = hashlib.sha256()
    found = False
    for pattern in WEIGHT_FILES:
        for f in sorted(folder.glob(pattern)):
            h.update(f.name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
            found = True
    if not found:
        raise WeightsFormatError(f"{folder} holds no config.json or weights; give a transformers snapshot folder")
    return h.hexdigest()


class HfEmbedder(Embedder):
    """A transformers audio encoder's embedding per window (see the module docstring)."""

    def __init__(self, *, weights: str | Path | None = None, window_s: float | None = None, hop_s: float | None = None,
                 layer: int | None = None, device: str = "cpu", batch_size: int = 8,
                 allow_download: bool = False) -> None:
        if weights is None:
            raise WeightsNotFoundError("the hf embedder needs a local transformers snapshot: --weights DIR (a folder "
                                       "with config.json, the weights and preprocessor_config.json); see docs/models.md")
        if device not in ("cpu", "cuda"):
            raise InvalidOptionError(f"hf device must be 'cpu' or 'cuda', got {device!r}")
        if int(batch_size) < 1:
            raise InvalidOptionError("hf batch_size must be >= 1")
        tr = import_transformers()
        import torch

        folder = Path(weights).expanduser()
        local = folder.is_dir()
        if not local and not allow_download:
            raise WeightsNotFoundError(f"--weights {weights}: no such snapshot folder; give the folder holding "
                                       "config.json and the weights (downloads are off; allow_download=true permits them)")
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
        source = str(folder) if local else str(weights)
        kw = {"local_files_only": not allow_download}
        try:
            config = tr.AutoConfig.from_pretrained(source, **kw)
            self.feature_extractor = tr.AutoFeatureExtractor.from_pretrained(source, **kw)
        except (OSError, ValueError, KeyError) as e:
            raise WeightsFormatError(f"{source} is not a readable transformers audio snapshot ({e}); it needs config.json "
                                     "and preprocessor_config.json") from None
        self.model_type = config.model_type
        self._torch = torch
        self.device = torch.device(device)
        try:
            if self.model_type == CLAP:
                self.model = tr.ClapModel.from_pretrained(source, **kw)
            elif self.model_type == AST:
                self.model = tr.ASTModel.from_pretrained(source, **kw)
            elif self.model_type in ENCODERS:
                self.model = tr.AutoModel.from_pretrained(source, **kw)
            else:
                raise WeightsFormatError(f"{source} is a {self.model_type!r} model; the hf embedder runs AST "
                                         f"({AST}), CLAP ({CLAP}) and wav2vec2-style encoders ({', '.join(ENCODERS)})")
        except OSError as e:
            raise WeightsFormatError(f"{source}: the weights cannot be loaded ({e})") from None
        self.model = self.model.to(self.device).eval()
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        native = self._native_window_s()
        if layer is not None and self.model_type not in ENCODERS:
            raise InvalidOptionError(f"layer= applies to wav2vec2-style encoders, not to {self.model_type}")
        if native is not None and window_s is not None and window_s > native + 1e-9:
            raise InvalidOptionError(f"{self.model_type} takes at most {native:g} s per window; use window_s <= {native:g}")
        window_s = float(window_s if window_s is not None else (native or 1.0))
        hop_s = float(hop_s if hop_s is not None else window_s / 2)
        if not (window_s > 0 and 0 < hop_s <= window_s):
            raise InvalidOptionError(f"hf needs window_s > 0 and 0 < hop_s <= window_s, got {window_s}, {hop_s}")
        self.window = int(round(window_s * self.sample_rate))
        self.hop = int(round(hop_s * self.sample_rate))
        self.layer = None if layer is None else int(layer)
        self.batch_size = int(batch_size)
        self._min_samples = self._receptive_field() if self.model_type in ENCODERS else 1
        self._args = {"weights": str(weights), "window_s": window_s, "hop_s": hop_s, "layer": self.layer}
        if allow_download:
            self._args["allow_download"] = True
        self._tokenizer = None
        self._source, self._kw = source, kw
        version = f"{self.model_type}/{self.window / self.sample_rate:g}s" + (f"/layer{self.layer}" if self.layer is not None else "")
        dim = int(self._run([np.zeros(self.window, dtype=np.float32)]).shape[1])
        self.info = EmbedderInfo(name=MODEL, version=version, sample_rate=self.sample_rate, dim=dim,
                                 window_s=self.window / self.sample_rate, hop_s=self.hop / self.sample_rate,
                                 weights_sha256=snapshot_sha256(folder) if local else None)

    def _native_window_s(self) -> float | None:
        fe = self.feature_extractor
        if self.model_type == AST:
            return fe.max_length * 0.01  # Kaldi fbank frames every 10 ms
        if self.model_type == CLAP:
            return float(fe.nb_max_samples) / fe.sampling_rate
        return None

    def _receptive_field(self) -> int:
        cfg = self.model.config
        field, jump = 1, 1
        for k, s in zip(getattr(cfg, "conv_kernel", ()), getattr(cfg, "conv_stride", ())):
            field += (k - 1) * jump
            jump *= s
        return field

    def options(self) -> dict:
        return {k: v for k, v in self._args.items() if v is not None}

    # ------------------------------------------------------------------ audio
    def _windows(self, waveform: np.ndarray) -> list[np.ndarray]:
        x = check_waveform(waveform)
        if x.size <= self.window:
            return [np.pad(x, (0, max(0, self._min_samples - x.size)))]
        starts = window_starts(x.size, window=self.window, hop=self.hop)
        return list(np.lib.stride_tricks.sliding_window_view(x, self.window)[starts])

    def _forward(self, batch: list[np.ndarray]):
        torch = self._torch
        fe, sr = self.feature_extractor, self.sample_rate
        if self.model_type == CLAP:
            fusion = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
            inp = fe([w for w in batch], sampling_rate=sr, return_tensors="pt",
                     truncation="fusion" if fusion else "rand_trunc")  # windows never exceed max length: no randomness
            inp = {k: v.to(self.device) for k, v in inp.items()}
            out = self.model.get_audio_features(**inp)
            return out if torch.is_tensor(out) else out.pooler_output
        if self.model_type == AST:
            inp = fe([w for w in batch], sampling_rate=sr, return_tensors="pt")
            return self.model(**{k: v.to(self.device) for k, v in inp.items()}).pooler_output
        inp = fe([w for w in batch], sampling_rate=sr, return_tensors="pt")
        out = self.model(inp["input_values"].to(self.device), output_hidden_states=self.layer is not None)
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        return hidden.mean(dim=1)

    def _run(self, windows: list[np.ndarray]) -> np.ndarray:
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                out.append(self._forward(windows[i:i + self.batch_size]).float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = self._run(self._windows(waveform))
        return frames, self.frame_times(frames.shape[0])

    # ------------------------------------------------------------------ text (CLAP)
    @property
    def has_text_encoder(self) -> bool:
        return self.model_type == CLAP

    def embed_text(self, texts) -> np.ndarray:
        """``[n, dim]`` CLAP text embeddings (L2-normalised), in the same space as the audio frames."""
        if not self.has_text_encoder:
            return super().embed_text(texts)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self._tokenizer is None:
            tr = import_transformers()
            try:
                self._tokenizer = tr.AutoTokenizer.from_pretrained(self._source, **self._kw)
            except (OSError, ValueError) as e:
                raise WeightsFormatError(f"{self._source}: CLAP's tokenizer cannot be loaded ({e}); the snapshot "
                                         "needs its tokenizer files for text search") from None
        torch = self._torch
        tok = self._tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()
                                                  if k in ("input_ids", "attention_mask")})
            out = out if torch.is_tensor(out) else out.pooler_output
        return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)
