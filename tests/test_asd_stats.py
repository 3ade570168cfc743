"""AUC, DCASE pAUC, DeLong, Holm and each year's official score against hand-computed values; the layout readers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audiosim.errors import AudiosimError, DatasetError
from audiosim.eval.asd_stats import TestClip as Clip
from audiosim.eval.asd_stats import (auc, bootstrap_official, delong, delong_test, holm, official_score, pauc,
                                     roc_points)
from audiosim.eval.dcase_layout import read_dcase, section_of


def test_delong_golden():
    # positives P = (a: 0.9, 0.4 | b: 0.8, 0.7), negatives N = (a: 0.6, 0.1 | b: 0.3, 0.2)
    # a: V10 = [1, 0.5], V01 = [0.5, 1] -> AUC 0.75, var = var(V10)/2 + var(V01)/2 = 0.125/2 + 0.125/2 = 0.125
    # b: every positive above every negative -> AUC 1, no variance
    y = [1, 1, 0, 0]
    a = [0.9, 0.4, 0.6, 0.1]
    b = [0.8, 0.7, 0.3, 0.2]
    aucs, cov = delong(y, [a, b])
    assert aucs == pytest.approx([0.75, 1.0])
    assert cov == pytest.approx(np.array([[0.125, 0.0], [0.0, 0.0]]))
    t = delong_test(y, a, b)
    assert t["z"] == pytest.approx(-0.25 / math.sqrt(0.125))
    assert t["p"] == pytest.approx(0.4795001, abs=1e-6)  # 2 * Phi(-0.7071068)
    assert delong_test(y, a, a)["p"] == 1.0


def test_auc_and_dcase_pauc_golden():
    # 10 normals at 0.1..1.0, anomalies at 2.0 and 0.55: AUC = (10 + 5) / 20;
    # over FPR in [0, 0.1] the ROC stays at TPR 0.5 (the next anomaly comes after 5 normals): pAUC = 0.5
    y = [0] * 10 + [1, 1]
    s = [round(0.1 * i, 1) for i in range(1, 11)] + [2.0, 0.55]
    assert auc(y, s) == pytest.approx(0.75)
    assert pauc(y, s, max_fpr=0.1) == pytest.approx(0.5)
    # ties count one half
    assert auc([0, 1], [1.0, 1.0]) == pytest.approx(0.5)
    fpr, tpr = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1.0] and tpr.tolist() == [0, 0.5, 0.5, 1.0, 1.0]
    with pytest.raises(AudiosimError, match="both normal and anomalous"):
        auc([0, 0], [0.1, 0.2])


def test_pauc_matches_a_dense_integral(rng):
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    fpr, tpr = roc_points(y, s)
    grid = np.linspace(0, 0.1, 200001)
    dense = np.trapezoid(np.interp(grid, fpr, tpr), grid) / 0.1
    assert pauc(y, s) == pytest.approx(dense, abs=1e-4)


def test_holm_golden():
    # sorted p: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5 * 2 = 1, then max(1, 0.9)


def _clips(spec):
    return [Clip(machine="m", section="00", domain=d, anomalous=bool(a)) for d, a, _ in spec], [s for *_, s in spec]


SPEC = [("source", 0, 0.1), ("source", 0, 0.2), ("source", 1, 0.9),
        ("target", 0, 0.5), ("target", 0, 0.85), ("target", 1, 0.3)]


def test_official_score_2022_golden():
    # AUC source: source normals {0.1, 0.2} vs anomalies of both domains {0.9, 0.3} -> 1.0
    # AUC target: target normals {0.5, 0.85} vs {0.9, 0.3} -> 2 / 4 = 0.5
    # pAUC (section, both domains): 0.9 first (TPR 0.5), the next is a normal at FPR 0.25 -> 0.5
    clips, s = _clips(SPEC)
    for year in (2022, 2023, 2024):
        o = official_score(clips, s, year=year)
        assert o["score"] == pytest.approx(3 / (1 / 1.0 + 1 / 0.5 + 1 / 0.5))
        assert o["auc_hmean"] == pytest.approx(2 / 3)
        assert o["pauc_hmean"] == pytest.approx(0.5)


def test_official_score_2021_and_2020_golden():
    spec = SPEC[:5] + [("target", 1, 0.7)]
    clips, s = _clips(spec)
    o = official_score(clips, s, year=2021)
    # source: AUC 1, pAUC 1; target: normals {0.5, 0.85} vs anomaly 0.7 -> AUC 0.5, pAUC 0 (a normal ranks first)
    assert o["auc_hmean"] == pytest.approx(2 / 3)
    assert o["pauc_hmean"] == 0.0 and o["score"] == 0.0
    c20 = [Clip("m", sec, "source", bool(a)) for sec, a in [("00", 0), ("00", 1), ("01", 0), ("01", 1), ("01", 0)]]
    o = official_score(c20, [0.1, 0.9, 0.5, 0.4, 0.3], year=2020)
    # ID 00: AUC 1, pAUC 1; ID 01: anomaly 0.4 above 0.3, below 0.5 -> AUC 0.5, pAUC 0
    assert o["auc_mean"] == pytest.approx(0.75) and o["pauc_mean"] == pytest.approx(0.5)
    assert o["score"] == pytest.approx(0.625)


def test_bootstrap_interval_holds_the_estimate(rng):
    clips = [Clip("m", "00", "source", bool(i % 2)) for i in range(40)]
    s = rng.normal(size=40) + np.array([i % 2 for i in range(40)])
    point = official_score(clips, s, year=2020)["score"]
    b = bootstrap_official(clips, s, year=2020, n_boot=100)
    assert b["score"][0] <= point <= b["score"][1] and b["score"][0] < b["score"][1]


def _touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"RIFF")


def test_read_2020_layout(tmp_path):
    for n in ("train/normal_id_00_00000000.wav", "train/normal_id_02_00000001.wav", "test/anomaly_id_00_00000003.wav",
              "test/normal_id_02_00000004.wav", "train/notes.txt"):
        _touch(tmp_path / "fan" / n)
    ds = read_dcase(tmp_path)
    assert ds.style == "2020" and ds.guessed_year == 2020
    assert sorted((c.split, c.section, c.anomalous, c.domain) for c in ds.clips) == [
        ("test", "00", True, "source"), ("test", "02", False, "source"), ("train", "00", False, "source"),
        ("train", "02", False, "source")]
    assert section_of("normal_id_04_000.wav") == "04"


def test_read_2021_and_2023_layouts(tmp_path):
    r21 = tmp_path / "d21"
    for n in ("train/section_00_source_train_normal_0000.wav", "train/section_01_target_train_normal_0001.wav",
              "test/section_01_target_test_anomaly_0000.wav"):
        _touch(r21 / "pump" / n)
    ds = read_dcase(r21)
    assert ds.style == "sections" and ds.guessed_year == 2021
    assert sorted((c.section, c.domain, c.split, c.anomalous) for c in ds.clips) == [
        ("00", "source", "train", False), ("01", "target", "test", True), ("01", "target", "train", False)]
    r23 = tmp_path / "d23"
    name = "section_00_source_train_normal_0000_speed_1.00_noise_quiet.wav"
    _touch(r23 / "fan" / "train" / name)
    _touch(r23 / "fan" / "test" / "section_00_target_test_normal_0000_speed_1.12_noise_loud.wav")
    (r23 / "fan" / "attributes_00.csv").write_text(f"file_name,d1p,d1v,d2p,d2v\nfan/train/{name},load,3,mic,b\n")
    ds = read_dcase(r23)
    assert ds.guessed_year == 2022
    attrs = {c.split: c.attributes for c in ds.clips}
    assert attrs == {"train": {"load": "3", "mic": "b"}, "test": {"speed": "1.12", "noise": "loud"}}
    assert section_of(name) == "00"


def test_layout_errors(tmp_path):
    _touch(tmp_path / "fan" / "train" / "anomaly_id_00_0.wav")
    with pytest.raises(DatasetError, match="anomalous clip in train"):
        read_dcase(tmp_path)
    (tmp_path / "fan" / "train" / "anomaly_id_00_0.wav").unlink()
    _touch(tmp_path / "fan" / "train" / "normal_id_00_0.wav")
    _touch(tmp_path / "fan" / "test" / "section_00_source_test_normal_0000.wav")
    with pytest.raises(DatasetError, match="mixes"):
        read_dcase(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no DCASE clips"):
        read_dcase(tmp_path / "empty")
