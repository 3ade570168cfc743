"""The ``onnx`` embedder: small torch models exported to ONNX give torch's vectors; basic-pitch's real model runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from audiosim.engine.models.embedders import get_embedder
from audiosim.errors import AudiosimError, WeightsFormatError, WeightsNotFoundError

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'audiosim[models]')")
torch = pytest.importorskip("torch")
pytest.importorskip("onnx", reason="exporting test models needs the onnx package (pip install 'audiosim[test]')")

SR = 16000


class WaveNet(torch.nn.Module):
    """[B, 1, T] samples -> [B, T', 12] (strided convolutions)."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv1d(1, 8, 64, stride=32)
        self.c2 = torch.nn.Conv1d(8, 12, 8, stride=4)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x))).transpose(1, 2)


class MelNet(torch.nn.Module):
    """[B, F, M] log-mel -> [B, F, 6]."""

    def __init__(self, n_mels):
        super().__init__()
        self.lin = torch.nn.Linear(n_mels, 6)

    def forward(self, x):
        return torch.tanh(self.lin(x / 10.0))


def export(model, example, path: Path, *, dynamic_batch=True):
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["audio"], output_names=["emb"],
                      dynamic_axes={"audio": {0: "b"}, "emb": {0: "b"}} if dynamic_batch else None)
    return path


def write_sidecar(path: Path, **spec) -> Path:
    path.write_text(json.dumps(spec))
    return path


def _wave(seconds, seed=0, sr=SR):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def wave_model(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("onnx_wave")
    model = WaveNet().eval()
    path = export(model, torch.zeros(2, 1, 8000), d / "wave.onnx")
    write_sidecar(d / "wave.json", name="wavenet", sample_rate=SR, window_s=0.5, hop_s=0.25,
                  input={"name": "audio", "layout": "BCT"}, output={"name": "emb", "reduce": "mean"},
                  frontend={"type": "waveform"})
    return model, path


MEL = dict(n_fft=512, win_length=400, hop_length=160, n_mels=32, fmin=50.0, fmax=7000.0, mel_scale="slaney",
           norm="slaney", power=2.0, log="ln", log_offset=1e-6, center=True)


@pytest.fixture(scope="module")
def mel_model(tmp_path_factory):
    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("onnx_mel")
    model = MelNet(MEL["n_mels"]).eval()
    n_frames = 1 + 8000 // 160  # centred STFT of a 0.5 s window
    path = export(model, torch.zeros(2, n_frames, MEL["n_mels"]), d / "mel.onnx")
    write_sidecar(d / "mel.json", name="melnet", sample_rate=SR, window_samples=8000, hop_samples=4000,
                  input={"name": "audio", "layout": "BFM"}, output={"name": "emb", "reduce": "max"},
                  frontend={"type": "logmel", **MEL})
    return model, path


def _torch_log_mel(windows: np.ndarray) -> "torch.Tensor":
    """The reference front end, in torch: centred STFT (zero padding), periodic Hann, Slaney mel, ln."""
    import librosa

    x = torch.from_numpy(windows)
    win = torch.hann_window(MEL["win_length"], periodic=True)
    spec = torch.stft(x, n_fft=MEL["n_fft"], hop_length=MEL["hop_length"], win_length=MEL["win_length"], window=win,
                      center=True, pad_mode="constant", return_complex=True).abs() ** 2  # [B, bins, F]
    basis = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=MEL["n_fft"], n_mels=MEL["n_mels"], fmin=MEL["fmin"],
                                                 fmax=MEL["fmax"], htk=False, norm="slaney"))
    return torch.log(torch.einsum("mb,nbf->nfm", basis, spec) + MEL["log_offset"])


def test_waveform_model_gives_torchs_vectors_per_window(wave_model):
    model, path = wave_model
    emb = get_embedder("onnx", weights=str(path))
    assert (emb.info.sample_rate, emb.info.dim, emb.info.window_s, emb.info.hop_s) == (SR, 12, 0.5, 0.25)
    x = _wave(1.6)
    frames, times = emb.embed_frames(x)
    starts = np.arange(0, x.size - 8000 + 1, 4000)  # full windows only: 0, 0.25, ..., 1.0 s
    assert frames.shape == (len(starts), 12) and np.allclose(times, starts / SR)
    with torch.no_grad():
        ref = model(torch.from_numpy(np.stack([x[s:s + 8000] for s in starts]))[:, None]).mean(dim=1).numpy()
    np.testing.assert_allclose(frames, ref, rtol=1e-4, atol=1e-5)


def test_short_clip_is_zero_padded_to_one_window(wave_model):
    model, path = wave_model
    emb = get_embedder("onnx", weights=str(path))
    x = _wave(0.2)
    frames, times = emb.embed_frames(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(np.pad(x, (0, 8000 - x.size)))[None, None]).mean(dim=1).numpy()
    assert times.tolist() == [0.0]
    np.testing.assert_allclose(frames, ref, rtol=1e-4, atol=1e-5)


def test_logmel_front_end_and_max_reduce_match_torch(mel_model):
    model, path = mel_model
    emb = get_embedder("onnx", weights=str(path), batch_size=2)  # batches of 2: 3 windows -> a partial batch
    x = _wave(1.0, seed=3)
    frames, _ = emb.embed_frames(x)
    starts = np.arange(0, x.size - 8000 + 1, 4000)
    with torch.no_grad():
        ref = model(_torch_log_mel(np.stack([x[s:s + 8000] for s in starts]))).amax(dim=1).numpy()
    assert frames.shape == (3, 6)
    np.testing.assert_allclose(frames, ref, rtol=1e-3, atol=1e-4)


def test_fixed_batch_and_channel_last_layout(tmp_path):
    """A model exported with batch fixed at 1 and [1, T, 1] input runs one window at a time."""
    torch.manual_seed(2)

    class Net(torch.nn.Module):
        def forward(self, x):  # [1, T, 1] -> [1, 4]
            return torch.stack([x.mean(dim=(1, 2)), x.abs().amax(dim=(1, 2)), (x ** 2).mean(dim=(1, 2)),
                                x[:, :100].sum(dim=(1, 2))], dim=1)

    path = export(Net(), torch.zeros(1, 4000, 1), tmp_path / "fixed.onnx", dynamic_batch=False)
    write_sidecar(tmp_path / "fixed.json", sample_rate=8000, window_s=0.5, hop_s=0.5, input={"layout": "BTC"})
    emb = get_embedder("onnx", weights=str(path))
    assert emb.batch_size == 1 and emb.info.name == "onnx" and emb.info.version.startswith("fixed/")
    x = _wave(1.5, sr=8000)
    frames, _ = emb.embed_frames(x)
    w = x[:12000].reshape(3, 4000)
    ref = np.stack([w.mean(1), np.abs(w).max(1), (w ** 2).mean(1), w[:, :100].sum(1)], axis=1)
    np.testing.assert_allclose(frames, ref, rtol=1e-4, atol=1e-5)


def test_bad_sidecars_name_the_fix(wave_model, tmp_path):
    _, path = wave_model
    with pytest.raises(WeightsNotFoundError, match="--weights"):
        get_embedder("onnx")
    with pytest.raises(WeightsNotFoundError, match="sidecar"):
        get_embedder("onnx", weights=str(path), sidecar=str(tmp_path / "missing.json"))
    cases = {
        "layout": ({"input": {"layout": "BT"}}, "layout"),
        "axis size": ({"window_samples": 7000}, "axis T has size|fix the sidecar"),
        "output": ({"output": {"name": "nope"}}, "no output"),
        "frontend": ({"frontend": {"type": "cqt"}}, "frontend type"),
        "key": ({"windwo_s": 1.0}, "unknown sidecar keys"),
        "mel param": ({"input": {"layout": "BFM"}, "frontend": {"type": "logmel", "n_ffts": 3}}, "takes no n_ffts"),
    }
    base = dict(sample_rate=SR, window_s=0.5, hop_s=0.25, input={"layout": "BCT"})
    for name, (change, msg) in cases.items():
        side = write_sidecar(tmp_path / f"{name}.json", **{**base, **change})
        with pytest.raises(WeightsFormatError, match=msg):
            get_embedder("onnx", weights=str(path), sidecar=str(side))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    write_sidecar(tmp_path / "junk.json", **base)
    with pytest.raises(WeightsFormatError, match="not an ONNX model"):
        get_embedder("onnx", weights=str(tmp_path / "junk.onnx"))
    with pytest.raises(AudiosimError, match="device"):
        get_embedder("onnx", weights=str(path), device="tpu")


# ---------------------------------------------------------------- a real published model: basic-pitch's nmp.onnx

def _basic_pitch_onnx() -> Path:
    spec = importlib.util.find_spec("basic_pitch")  # finds the package without importing it (it imports TF)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("basic-pitch is not installed: pip install --no-deps basic-pitch (make install-test does)")
    path = Path(list(spec.submodule_search_locations)[0]) / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is missing from the basic-pitch package")
    return path


BASIC_PITCH_SIDECAR = dict(
    name="basic-pitch-contour", sample_rate=22050, window_samples=43844, hop_samples=43844 // 2,
    input={"name": "serving_default_input_2:0", "layout": "BTC"},
    output={"name": "StatefulPartitionedCall:0", "reduce": "mean"},  # the pitch contour, 264 bins
    frontend={"type": "waveform"})


@pytest.fixture(scope="module")
def basic_pitch(tmp_path_factory):
    side = write_sidecar(tmp_path_factory.mktemp("bp") / "basic_pitch.json", **BASIC_PITCH_SIDECAR)
    return get_embedder("onnx", weights=str(_basic_pitch_onnx()), sidecar=str(side), threads=1)


def test_basic_pitch_contour_peaks_at_the_played_note(basic_pitch):
    """Its contour has 3 bins per semitone from A0 (27.5 Hz): a 440 Hz tone (A4, 48 semitones up) peaks at bin 144."""
    assert basic_pitch.info.dim == 264 and basic_pitch.info.sample_rate == 22050
    t = np.arange(3 * 22050) / 22050
    for hz, semitones in ((440.0, 48), (220.0, 36)):
        frames, _ = basic_pitch.embed_frames((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
        assert frames.shape == (2, 264)
        assert abs(int(frames.mean(0).argmax()) - 3 * semitones) <= 1


def test_basic_pitch_on_esc50_clips(basic_pitch, esc50_root):
    """Real recordings decode, resample to 22.05 kHz and run: finite 264-bin contours per 1 s hop that change over time."""
    import csv

    from audiosim.engine.audio.decode import load_audio

    rows = list(csv.DictReader(open(esc50_root / "meta" / "esc50.csv")))
    wanted = {}
    for r in rows:
        if r["category"] in ("crying_baby", "church_bells", "rooster") and r["category"] not in wanted:
            wanted[r["category"]] = r["filename"]
    vecs = {}
    for cat, name in wanted.items():
        path = next((esc50_root / "audio").glob(Path(name).stem + ".*"))  # the shared copy holds .ogg files
        frames, times = basic_pitch.embed_frames(load_audio(path, sample_rate=22050))
        assert frames.shape[1] == 264 and np.isfinite(frames).all() and frames.shape[0] >= 3
        np.testing.assert_allclose(np.diff(times), basic_pitch.info.hop_s)
        vecs[cat] = frames
    assert len(vecs) == 3
    assert any(v.std(axis=0).max() > 1e-3 for v in vecs.values())  # the contour changes with the audio
