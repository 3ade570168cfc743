"""Shared fixtures: synthetic audio, and the real models/datasets when their env vars point at them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SR = 16000


def _env_dir(var: str, sub: str, what: str) -> Path:
    base = os.environ.get(var)
    if not base:
        pytest.skip(f"{var} is not set: point it at {what} to run this test (.ci/run sets it from ../shared)")
    p = Path(base) / sub
    if not p.exists():
        pytest.skip(f"{p} does not exist ({var}={base})")
    return p


@pytest.fixture(scope="session")
def yamnet_tflite() -> Path:
    """The real YAMNet TFLite file under $AUDIOSIM_MODELS/yamnet/."""
    return _env_dir("AUDIOSIM_MODELS", "yamnet/yamnet.tflite", "a folder holding yamnet/yamnet.tflite")


@pytest.fixture(scope="session")
def vggish_pca_params() -> Path:
    """The official VGGish PCA parameters under $AUDIOSIM_MODELS/vggish/."""
    return _env_dir("AUDIOSIM_MODELS", "vggish/vggish_pca_params.npz", "a folder holding vggish/vggish_pca_params.npz")


@pytest.fixture(scope="session")
def esc50_root() -> Path:
    """The ESC-50 dataset root ($ESC50_ROOT, with meta/esc50.csv and audio/)."""
    return _env_dir("ESC50_ROOT", "", "the ESC-50 dataset root")


@pytest.fixture(scope="module")
def one_faiss_thread():
    """FAISS's OpenMP threads spin-wait; on a shared 2-core machine one thread runs small index cases fastest."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def sine() -> np.ndarray:
    t = np.arange(2 * SR) / SR
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture
def white_noise(rng) -> np.ndarray:
    return (0.3 * rng.standard_normal(3 * SR)).astype(np.float32).clip(-1, 1)


@pytest.fixture
def silence() -> np.ndarray:
    return np.zeros(SR, dtype=np.float32)


@pytest.fixture
def subframe_clip(rng) -> np.ndarray:
    """10 ms: far shorter than any embedder window."""
    return (0.3 * rng.standard_normal(SR // 100)).astype(np.float32)


@pytest.fixture
def demo_folder(tmp_path_factory) -> Path:
    """A folder of labelled synthetic sounds in mixed formats, rates and channel counts."""
    from audiosim.engine.audio.synth import write_demo_folder

    d = tmp_path_factory.mktemp("demo")
    write_demo_folder(d, per_kind=4, seed=7)
    return d
