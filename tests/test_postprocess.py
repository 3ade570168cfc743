"""Label-free post-processing: golden transforms, whitening statistics, persistence, collection wiring."""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.errors import VectorIndexError
from audiosim.indexes.postprocess import Postprocessor, canonical_spec, parse_spec


@pytest.fixture
def X(rng):
    # correlated, off-centre, anisotropic data
    A = rng.standard_normal((6, 6))
    return (rng.standard_normal((300, 6)) @ A + 5.0).astype(np.float32)


def test_spec_parsing_and_canonical_text():
    assert canonical_spec("power") == "power:0.5"
    assert canonical_spec(" Center + WHITEN:4 + l2 ") == "center+whiten:4+l2"
    assert canonical_spec("whiten:8:0.5+pca:3") == "whiten:8:0.5+pca:3"
    assert canonical_spec("l2+abtt:2+whiten:256:0.3") == "l2+abtt:2+whiten:256:0.3"
    assert canonical_spec("none") is None and canonical_spec("") is None and canonical_spec(None) is None
    assert [s.op for s in parse_spec("power:0.3+center")] == ["power", "center"]
    for bad in ("whiten:0", "pca", "abtt", "abtt:0", "power:-1", "center:3", "zca", "whiten:4:2", "pca:x"):
        with pytest.raises(VectorIndexError):
            parse_spec(bad)
    with pytest.raises(VectorIndexError):
        Postprocessor("none")


def test_golden_power_center_l2():
    x = np.array([[4.0, -9.0, 0.25], [0.0, 1.0, -1.0]])
    np.testing.assert_allclose(Postprocessor("power").fit_transform(x), [[2, -3, 0.5], [0, 1, -1]])
    np.testing.assert_allclose(Postprocessor("power:1").fit_transform(x), x)
    np.testing.assert_allclose(Postprocessor("center").fit_transform(x), x - x.mean(axis=0), rtol=1e-6)
    y = Postprocessor("l2").fit_transform(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]])
    # steps apply left to right: power first, then centring of the powered values
    p = Postprocessor("power+center").fit_transform(x)
    powered = np.sign(x) * np.sqrt(np.abs(x))
    np.testing.assert_allclose(p, powered - powered.mean(axis=0), rtol=1e-6)


def test_whitening_gives_identity_covariance(X):
    pp = Postprocessor("whiten").fit(X)
    assert pp.transform(X).dtype == np.float32
    Z = pp.transform(X).astype(np.float64)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(6), atol=1e-3)
    Z3 = Postprocessor("whiten:3").fit_transform(X)
    assert Z3.shape == (300, 3) and Z3.dtype == np.float32
    np.testing.assert_allclose(np.cov(Z3.astype(np.float64), rowvar=False), np.eye(3), atol=1e-3)
    # beta = 0 is a plain PCA projection; variances then decrease along the axes
    P = Postprocessor("whiten:3:0").fit_transform(X)
    np.testing.assert_allclose(P, Postprocessor("pca:3").fit_transform(X), rtol=1e-5, atol=1e-4)
    v = P.var(axis=0)
    assert v[0] > v[1] > v[2]


def test_all_but_the_top_removes_the_dominant_directions(rng):
    # a shared direction u with a large varying weight on top of isotropic noise
    u = np.zeros(8)
    u[0] = 1.0
    X = rng.standard_normal((400, 8)) + rng.uniform(0, 20, (400, 1)) * u + 3.0
    Z = Postprocessor("abtt:1").fit_transform(X).astype(np.float64)
    assert Z.shape == (400, 8)
    Xc = X - X.mean(axis=0)
    top = np.linalg.svd(Xc, full_matrices=False)[2][0]
    assert abs(top @ u) > 0.99
    np.testing.assert_allclose(Z, Xc - np.outer(Xc @ top, top), atol=1e-4)
    np.testing.assert_allclose(Z @ top, 0, atol=1e-4)
    assert np.abs(Z[:, 0]).max() < 1.0  # the shared direction is gone, the noise stays
    np.testing.assert_allclose(Z.std(axis=0)[1:], Xc.std(axis=0)[1:], rtol=0.1)


def test_whitening_dimension_is_capped_by_the_data(rng):
    few = rng.standard_normal((5, 10))
    pp = Postprocessor("whiten:256").fit(few)
    assert pp.out_dim == 4 and pp.fitted_dims == [4]  # n - 1 axes carry variance


def test_transform_checks(X):
    with pytest.raises(VectorIndexError):
        Postprocessor("center").transform(X)
    pp = Postprocessor("center").fit(X)
    with pytest.raises(VectorIndexError):
        pp.transform(X[:, :3])
    with pytest.raises(VectorIndexError):
        Postprocessor("center").fit(X[:1])
    one = pp.transform(X[0])
    assert one.shape == (1, 6)


def test_save_load_round_trip(tmp_path, X):
    pp = Postprocessor("power+abtt:1+center+whiten:4:0.5+l2").fit(X)
    pp.save(tmp_path / "index")
    back = Postprocessor.load(tmp_path / "index")
    assert back.spec == pp.spec and back.out_dim == 4 and back.n_fit == 300
    np.testing.assert_array_equal(back.transform(X[:7]), pp.transform(X[:7]))
    with pytest.raises(VectorIndexError):
        Postprocessor.load(tmp_path / "missing")


def _collection(tmp_path, vectors):
    from audiosim.engine.search.library import Collection
    from audiosim.engine.store.store import Rows

    emb = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": vectors.shape[1], "window_s": 1.0, "hop_s": 0.5,
           "weights_sha256": None}
    c = Collection.create(tmp_path / "c", embedder=emb, embedder_options={},
                          pooling={"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"})
    n = len(vectors)
    c.append(Rows(path=[f"/x/{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                  offset_s=np.zeros(n), duration_s=np.ones(n), label=[None] * n, embedding=vectors))
    return c


def test_collection_records_and_search_applies_it(tmp_path, X):
    """The manifest records the spec; the saved index holds the fitted transform; searches run in that space."""
    from audiosim.engine.store.indexing import ensure_index, load_for_search
    from audiosim.engine.search.library import Collection

    coll = _collection(tmp_path, X)
    with coll.writer() as w:
        w.set_fields(postprocess="center+whiten:4")
        ensure_index(w)
    pp = Postprocessor("center+whiten:4").fit(X)
    si = load_for_search(Collection.open(coll.root))
    assert si.saved and coll.manifest.postprocess == "center+whiten:4" and si.index.dim == 4
    assert (coll.root / coll.manifest.index.dir / "postprocess.npz").is_file()
    np.testing.assert_allclose(si.transform(X[:5]), pp.transform(X[:5]), rtol=1e-5, atol=1e-5)
    # whitened cosine search: the reference neighbours computed by hand in the whitened space
    Z = pp.transform(X).astype(np.float64)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    want = np.argsort(-(Z[:3] @ Z.T), axis=1)[:, :3]
    hits = coll.searcher().search(vector=X[:3], k=3)
    assert [[h.id for h in row] for row in hits] == want.tolist()
    with coll.writer() as w:  # removing it: the index searches the raw vectors again
        w.set_fields(postprocess=None)
        ensure_index(w)
    si = load_for_search(Collection.open(coll.root))
    assert si.postprocessor is None and not (coll.root / coll.manifest.index.dir / "postprocess.npz").exists()
    np.testing.assert_array_equal(si.transform(X[:2]), X[:2])


def test_deleting_down_to_one_vector_with_postprocessing_keeps_the_collection_consistent(tmp_path, X):
    """Issue 18: the delete committed, then ensure_index raised VectorIndexError and left the index stale.
    ensure_index itself knows post-processing needs 2 vectors: it saves no index then, and says so."""
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.integrity import check_collection, repair_collection

    coll = _collection(tmp_path, X[:5])
    with coll.writer() as w:
        w.set_fields(postprocess="center")
        assert ensure_index(w) is not None
    assert coll.delete(ids=[0, 1, 2, 3]) == 4  # no error
    coll.refresh()
    assert len(coll) == 1 and coll.manifest.index is None
    report = check_collection(coll.root)
    assert report.ok and not any("stale" in p.problem or "older" in p.problem for p in report.problems), report.problems
    with coll.writer() as w:
        assert ensure_index(w, force=True) is None
    assert repair_collection(coll.root).ok
    with pytest.raises(VectorIndexError, match="at least 2"):  # a search says why, typed
        coll.searcher().search(vector=X[4], k=1)
