"""Pooling: golden values for every component, concatenation and short-clip behaviour."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from scipy.signal import savgol_filter

from audiosim.engine.models.pooling import MU_SIGMA_DELTA_SWEEP, PoolingSpec, pool, savgol_delta
from audiosim.errors import PoolingError

FRAMES = np.array([[1.0, 0.0], [3.0, 4.0], [5.0, 8.0]], dtype=np.float32)


def test_mu_sigma_max_by_hand():
    np.testing.assert_allclose(pool(FRAMES, "mu"), [3.0, 4.0])
    np.testing.assert_allclose(pool(FRAMES, "sigma"), [np.sqrt(8 / 3), np.sqrt(32 / 3)], rtol=1e-6)
    np.testing.assert_allclose(pool(FRAMES, "max"), [5.0, 8.0])


def test_l2mean_by_hand():
    # unit rows: [1,0], [0.6,0.8], [0.52999894, 0.8479983]
    n3 = np.array([5.0, 8.0]) / np.sqrt(89)
    np.testing.assert_allclose(pool(FRAMES, "l2mean"), (np.array([1, 0]) + np.array([0.6, 0.8]) + n3) / 3, rtol=1e-6)


def test_delta_linear_ramp_has_constant_slope():
    # frames grow by (2, 4) per step: the SG first derivative is exactly that everywhere
    ramp = np.stack([np.arange(12) * 2.0, np.arange(12) * 4.0], axis=1)
    np.testing.assert_allclose(pool(ramp, PoolingSpec.parse("delta", delta_reduce="mean")), [2.0, 4.0], atol=1e-5)
    np.testing.assert_allclose(pool(ramp, "delta"), [2.0, 4.0], atol=1e-5)  # absmean
    np.testing.assert_allclose(pool(ramp, PoolingSpec.parse("delta", delta_reduce="std")), [0.0, 0.0], atol=1e-5)


def test_delta_matches_scipy_savgol_on_long_input(rng):
    x = rng.standard_normal((30, 5))
    ref = np.abs(savgol_filter(x, 9, 2, deriv=1, axis=0, mode="interp")).mean(axis=0)
    np.testing.assert_allclose(pool(x, "delta"), ref, rtol=1e-5)


def test_delta_window_shrinks_for_short_clips():
    x = np.stack([np.arange(4) * 1.0, np.arange(4) * -1.0], axis=1)  # T=4 < window 9 -> window 3
    np.testing.assert_allclose(savgol_delta(x, window=9, order=2, axis=0), [[1, -1]] * 4, atol=1e-6)
    np.testing.assert_allclose(savgol_delta(x[:2], window=9, order=2, axis=0), [[1, -1]] * 2)  # gradient
    np.testing.assert_array_equal(savgol_delta(x[:1], window=9, order=2, axis=0), [[0, 0]])


def test_delta_feat_matches_librosa_feature_delta(rng):
    x = rng.standard_normal((7, 40))
    mu = x.mean(axis=0)
    # librosa.feature.delta: savgol, deriv=1, width 9, order 1 by default, along the last axis, mode interp
    ref = librosa.feature.delta(mu, width=9, order=1)
    np.testing.assert_allclose(pool(x, PoolingSpec.parse("delta_feat", sg_window=9, sg_order=1)), ref, rtol=1e-5, atol=1e-6)


def test_concatenation_order_and_dim():
    spec = PoolingSpec.parse("mu+sigma+delta")
    v = pool(FRAMES, spec)
    assert v.shape == (6,) and spec.dim(2) == 6 and v.dtype == np.float32
    np.testing.assert_allclose(v[:2], pool(FRAMES, "mu"))
    np.testing.assert_allclose(v[2:4], pool(FRAMES, "sigma"))
    assert len(MU_SIGMA_DELTA_SWEEP) == 7


def test_single_frame_every_pooling_is_finite():
    one = FRAMES[:1]
    for name in ("mu", "sigma", "delta", "l2mean", "max", "delta_feat"):
        assert np.isfinite(pool(one, name)).all()


def test_spec_round_trip_and_errors():
    s = PoolingSpec.parse("mu+delta", sg_window=7, sg_order=3, delta_reduce="std")
    assert PoolingSpec.from_dict(s.to_dict()) == s and s.name == "mu+delta"
    for bad in ("", "mean", "mu+", "+mu", "mu++sigma", "mu+foo"):  # issue 18: "mu+" was accepted as "mu"
        with pytest.raises(PoolingError):
            PoolingSpec.parse(bad)
    with pytest.raises(PoolingError):
        PoolingSpec.parse("delta", sg_window=4)
    with pytest.raises(PoolingError):
        pool(np.zeros((0, 3)), "mu")
