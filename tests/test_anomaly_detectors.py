"""The trained detectors on SYNTHETIC machine sounds: shapes and parameter counts, loss falls, save/load,
damaged files, too few clips, CUDA without a GPU, AUC on strong faults, frame-level vs pooled scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosim.anomaly.detectors import CLASSIFIERS, FeatureCache, load_detector, make_detector
from audiosim.engine.audio.machines import Fault, MachineProfile, SynthConfig, machine_clip, write_machine_dataset
from audiosim.errors import AnomalyModelError, DeviceError
from audiosim.eval.asd_stats import auc
from audiosim.eval.dcase_layout import read_dcase

FAST = {
    "ae": "ae:epochs=20,batch=64",
    "conv_ae": "conv_ae:epochs=8,batch=32",
    "gamma_vae": "gamma_vae:epochs=20,batch=64",
    "id_classifier": "id_classifier:epochs=4,batch=32",
    "metric": "metric:epochs=4,batch=32",
    "embedding": "embedding",
    "embedding_frames": "embedding:mode=frames,scorer=knn",
    "vae": "vae:epochs=4,channels=8-16-16-16,latent=8",
}


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    """A SYNTHETIC DCASE 2020 tree: pump, 3 IDs, 8 training clips each, 6 + 6 test clips, faults at strength 3."""
    root = tmp_path_factory.mktemp("synthetic_machines")
    write_machine_dataset(root, SynthConfig(machines=("pump",), ids=3, train=8, test_normal=6, test_anomaly=6, strength=3.0))
    return read_dcase(root)


@pytest.fixture(scope="module")
def cache():
    return FeatureCache()


def _fit(spec, ds, cache, section="00"):
    kind = spec.split(":")[0]
    train = [c for c in ds.train() if kind in CLASSIFIERS or c.section == section]
    labels = [c.section for c in train] if kind in CLASSIFIERS else None
    return make_detector(spec).fit([c.path for c in train], labels=labels, cache=cache)


def _auc(det, ds, cache, section="00"):
    test = [c for c in ds.test() if c.section == section]
    labels = [c.section for c in test] if det.needs_labels else None
    scores = [r.score for r in det.score([c.path for c in test], labels=labels, cache=cache)]
    return auc([c.anomalous for c in test], scores)


def test_ae_is_the_dcase_baseline():
    import torch

    from audiosim.anomaly.detectors.nets import DcaseAE

    net = DcaseAE()
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(640, 128)] + [(128, 128)] * 3 + [(128, 8), (8, 128)] + \
        [(128, 128)] * 3 + [(128, 640)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules()) == 9
    trainable = sum(p.numel() for p in net.parameters())
    # Dense: 640*128+128 + 3*(128*128+128) + 128*8+8 + 8*128+128 + 3*(128*128+128) + 128*640+640 = 265,864;
    # BatchNorm gamma/beta: 2*(8*128 + 8) = 2,064 -> 267,928 trainable; with the moving mean/variance 269,992,
    # the total the DCASE 2020 Keras baseline's summary prints.
    assert trainable == 267_928
    assert trainable + sum(b.numel() for n, b in net.named_buffers() if "running" in n) == 269_992
    d = make_detector("ae")
    assert (d.options["epochs"], d.options["batch"], d.options["lr"]) == (100, 512, 1e-3)
    assert net(torch.zeros(4, 640)).shape == (4, 640)


def test_network_shapes():
    import torch

    from audiosim.anomaly.detectors.nets import ConvAE, GammaVAE, IdClassifier, L2SoftmaxNet

    x = torch.randn(3, 1, 128, 32)
    assert ConvAE().eval()(x).shape == x.shape
    recon, q, zmean = GammaVAE().eval()(torch.randn(3, 640))
    assert recon.shape == (3, 640) and zmean.shape == (3, 8) and (q.concentration > 0).all() and (q.rate > 0).all()
    assert IdClassifier(4).eval()(x).shape == (3, 4)
    net = L2SoftmaxNet(3).eval()
    assert torch.allclose(net.embed(x).norm(dim=1), torch.ones(3), atol=1e-5)
    assert net(x).shape == (3, 3)


@pytest.mark.parametrize("kind", ["ae", "conv_ae", "gamma_vae", "id_classifier", "metric"])
def test_loss_falls(strong, cache, kind):
    det = _fit(FAST[kind], strong, cache)
    assert len(det.history_) >= 4 and det.history_[-1] < det.history_[0]


@pytest.mark.parametrize("kind", list(FAST))
def test_strong_faults_are_found_and_save_load_gives_identical_scores(strong, cache, kind, tmp_path):
    det = _fit(FAST[kind], strong, cache)
    assert det.threshold_ > 0 or kind == "id_classifier"
    assert _auc(det, strong, cache) >= 0.9, kind
    test = [c for c in strong.test() if c.section == "00"][:4]
    labels = [c.section for c in test] if det.needs_labels else None
    before = det.score([c.path for c in test], labels=labels, cache=cache)
    det.save(tmp_path / "m")
    again = load_detector(tmp_path / "m")
    after = again.score([c.path for c in test], labels=labels, cache=FeatureCache())
    assert again.threshold_ == det.threshold_ and again.spec == det.spec
    for a, b in zip(before, after):
        assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(a.frames, b.frames, rtol=1e-5, atol=1e-6)


def test_damaged_model_files_give_typed_errors(strong, cache, tmp_path):
    det = _fit(FAST["ae"].replace("epochs=20", "epochs=1"), strong, cache)
    det.save(tmp_path / "m")
    npz = (tmp_path / "m" / "detector.npz").read_bytes()
    meta = (tmp_path / "m" / "detector.json").read_text()
    (tmp_path / "m" / "detector.npz").write_bytes(npz[: len(npz) // 2])
    with pytest.raises(AnomalyModelError, match="checksum"):
        load_detector(tmp_path / "m")
    (tmp_path / "m" / "detector.npz").write_bytes(npz)
    (tmp_path / "m" / "detector.json").write_text(meta.replace('"threshold": ', '"threshold": 1', 1))
    with pytest.raises(AnomalyModelError, match="checksum"):
        load_detector(tmp_path / "m")
    (tmp_path / "m" / "detector.json").write_text("{not json")
    with pytest.raises(AnomalyModelError, match="not valid JSON"):
        load_detector(tmp_path / "m")
    # a consistent file whose weights do not fit the network it names
    d = json.loads(meta)
    d["options"]["bottleneck"] = 16
    from audiosim.anomaly.detectors.base import _digest

    d["meta_sha256"] = _digest(d)
    (tmp_path / "m" / "detector.json").write_text(json.dumps(d))
    with pytest.raises(AnomalyModelError, match="cannot be rebuilt"):
        load_detector(tmp_path / "m")
    with pytest.raises(AnomalyModelError, match="cannot read"):
        load_detector(tmp_path / "nothing")


def test_clear_errors(strong, cache):
    paths = [c.path for c in strong.train()]
    with pytest.raises(AnomalyModelError, match="at least 3 normal training clips"):
        make_detector("ae").fit(paths[:2], cache=cache)
    with pytest.raises(AnomalyModelError, match="at least 2 of them"):
        make_detector("id_classifier").fit(paths[:5], labels=["00"] * 5, cache=cache)
    with pytest.raises(AnomalyModelError, match="needs each clip's machine ID"):
        make_detector("metric").fit(paths, cache=cache)
    with pytest.raises(AnomalyModelError, match="unknown detector"):
        make_detector("nope")
    with pytest.raises(AnomalyModelError, match="takes no option"):
        make_detector("ae:lattent=3")
    with pytest.raises(AnomalyModelError, match="takes a int"):
        make_detector("ae:epochs=many")
    with pytest.raises(AnomalyModelError, match="cannot be tuned"):
        make_detector("embedding").fit(paths[:6], cache=cache, tune=2)


def test_cuda_without_a_gpu_is_a_clear_error(strong, cache):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present here")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        make_detector("ae", device="cuda").fit([c.path for c in strong.train()][:4], cache=cache)
    with pytest.raises(DeviceError, match="unknown device"):
        make_detector("ae", device="tpu").fit([c.path for c in strong.train()][:4], cache=cache)


def test_tune_records_the_search(strong, cache):
    det = make_detector("ae:epochs=2,batch=64")
    det.fit([c.path for c in strong.train() if c.section == "00"], cache=cache, tune=3)
    t = det.tuning_
    assert t["method"] == "random search" and len(t["trials"]) == 3
    assert all(det.options[k] == v for k, v in t["best"]["options"].items())
    assert t["best"]["val_loss"] == min(x["val_loss"] for x in t["trials"] if x["val_loss"] is not None)


def test_frame_level_scoring_beats_pooling_on_short_transients(tmp_path):
    """A single 40 ms knock in a 2 s clip: the pooled mean washes it out, the top frames keep it."""
    import soundfile as sf

    prof = MachineProfile.make("motor", 0)
    rng = np.random.default_rng(1)
    paths, y = [], []
    for i in range(36):
        x = machine_clip(prof, rng=rng)
        if i >= 20 and i % 2:
            at = int(rng.integers(2000, 28000))
            knock = np.hanning(640) * rng.standard_normal(640) * 0.6
            x = (x + np.pad(knock, (at, x.size - at - 640))).astype(np.float32)
        p = tmp_path / f"synthetic_{i:02d}.wav"
        sf.write(p, x, 16000)
        paths.append(str(p))
        y.append(int(i >= 20 and i % 2 == 1))
    cache = FeatureCache()
    train, test, yt = paths[:20], paths[20:], y[20:]
    pooled = make_detector("embedding").fit(train, cache=cache)
    frames = make_detector("embedding:mode=frames,scorer=knn,reduce=topk,topk=2").fit(train, cache=cache)
    a_pooled = auc(yt, [r.score for r in pooled.score(test, cache=cache)])
    a_frames = auc(yt, [r.score for r in frames.score(test, cache=cache)])
    assert a_frames >= 0.95 and a_frames > a_pooled + 0.1, (a_frames, a_pooled)


def test_generator_is_deterministic_and_faults_change_the_sound():
    prof = MachineProfile.make("fan", 1)
    a = machine_clip(prof, rng=np.random.default_rng(3))
    b = machine_clip(prof, rng=np.random.default_rng(3))
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.size == 32000 and np.abs(a).max() == pytest.approx(0.5)
    for fault in Fault:
        f = machine_clip(prof, fault=fault, strength=1.0, rng=np.random.default_rng(3))
        assert not np.allclose(f, a)
    assert MachineProfile.make("fan", 0).shaft_hz != MachineProfile.make("fan", 1).shaft_hz
