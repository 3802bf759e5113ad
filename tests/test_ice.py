"""ICE against sklearn NMF's objective; out-of-core equals in-memory; transform/Z semantics; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import NMF, non_negative_factorization

from actstore.interpret import ICE, InterpretError


def class_maps(seed: int, n: int = 60, hw: int = 4, d: int = 48, k: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.gamma(0.4, 1.0, (n * hw * hw, k))
    parts = rng.gamma(0.4, 1.0, (k, d))
    A = np.maximum(codes @ parts + 0.2 * rng.standard_normal((n * hw * hw, d)), 0)
    return A.reshape(n, hw, hw, d).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [3, 10])
def test_objective_within_one_percent_of_sklearn(seed, k):
    A = class_maps(seed)
    flat = A.reshape(-1, A.shape[-1])
    sk = NMF(k, init="nndsvda", solver="cd", beta_loss="frobenius", tol=1e-4, max_iter=200, random_state=0).fit(flat)
    ours = ICE(k).fit(A)
    assert ours.components_.shape == (k, 48) and (ours.components_ >= 0).all()
    assert ours.reconstruction_err_ <= 1.01 * sk.reconstruction_err_
    direct = np.linalg.norm(flat - ours.transform(flat) @ ours.components_)  # the reported error is real
    assert direct <= 1.001 * ours.reconstruction_err_ + 1e-3


def test_out_of_core_equals_in_memory():
    A = class_maps(3, n=80)
    flat = A.reshape(-1, A.shape[-1])
    mem = ICE(5, random_state=0).fit(A)
    blocks = lambda: (flat[i:i + 97] for i in range(0, len(flat), 97))  # noqa: E731 - tiny, uneven blocks
    ooc = ICE(5).fit_blocks(blocks, len(flat), flat.shape[1])
    assert abs(ooc.reconstruction_err_ - mem.reconstruction_err_) <= 0.01 * mem.reconstruction_err_
    sk = NMF(5, init="nndsvda", solver="cd", tol=1e-4, max_iter=200, random_state=0).fit(flat)
    assert ooc.reconstruction_err_ <= 1.01 * sk.reconstruction_err_


def test_transform_is_nnls_with_fixed_components_and_z_has_a_shape():
    A = class_maps(4)
    ice = ICE(6).fit(A)
    S = ice.transform(A)
    assert S.shape == (60, 4, 4, 6) and (S >= 0).all()
    ref, _, _ = non_negative_factorization(A.reshape(-1, 48), H=ice.components_, n_components=6,
                                           update_H=False, solver="cd", tol=1e-4, max_iter=200)
    flat = A.reshape(-1, 48)
    ours_err = np.linalg.norm(flat - S.reshape(-1, 6) @ ice.components_)
    ref_err = np.linalg.norm(flat - ref @ ice.components_)
    assert ours_err <= 1.001 * ref_err + 1e-4
    Z = ice.reconstruct(A)
    assert Z.shape == A.shape
    np.testing.assert_allclose(Z, ice.inverse_transform(S), rtol=1e-5)
    perm = np.random.default_rng(0).permutation(6)  # Z does not depend on the components' order
    swapped = ICE(6)
    swapped.components_ = ice.components_[perm]
    np.testing.assert_allclose(swapped.reconstruct(A), Z, rtol=1e-3, atol=1e-3)


def test_bad_input():
    A = class_maps(5, n=2, hw=1)
    with pytest.raises(InterpretError, match="at least n_components=10 rows"):
        ICE(10).fit(A)
    with pytest.raises(InterpretError, match="non-negative"):
        ICE(2).fit(A - 1.0)
    bad = A.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InterpretError, match="NaN"):
        ICE(1).fit(bad)
    with pytest.raises(InterpretError, match="'n_components' parameter of ICE must be an int in the range"):
        ICE(0).fit(A)
    with pytest.raises(InterpretError, match="not fitted"):
        ICE(2).transform(A)


def test_out_of_core_w_can_live_in_a_scratch_file(monkeypatch):
    import actstore.interpret.ice as ice_module

    A = class_maps(6, n=40).reshape(-1, 48)
    blocks = lambda: (A[i:i + 100] for i in range(0, len(A), 100))  # noqa: E731
    in_memory = ICE(4).fit_blocks(blocks, len(A), 48)
    monkeypatch.setattr(ice_module, "IN_MEMORY_W_BYTES", 16)
    scratch = ICE(4).fit_blocks(blocks, len(A), 48)
    np.testing.assert_array_equal(scratch.components_, in_memory.components_)


# -- the fused kernels and the fitted flags (issue 14) ---------------------------------------------------------


def test_w_step_kernel_equals_sklearns_coordinate_descent():
    """One W-step of the fused kernel = sklearn's ``_update_cdnmf_fast`` (W, violation), plus WᵀA, WᵀW."""
    from sklearn.decomposition._cdnmf_fast import _update_cdnmf_fast

    from actstore.interpret.hals import w_pass

    rng = np.random.default_rng(0)
    # the last four are wide rows (>= hals.WIDE_ROWS: 4 x 5 product tiles where numba compiles for AVX-512; on
    # other CPUs they run the 4 x 2 tiles): k of 7 and 11 leave 2 and 1 components to the narrower tiles, 5 and
    # 10 none, 37 and 41 rows leave a ragged last row group
    for m, d, k, tile in [(203, 48, 6, 16), (64, 7, 3, 4), (50, 130, 10, 512), (37, 1030, 7, 8), (41, 1024, 11, 16),
                          (29, 1024, 5, 8), (36, 2048, 10, 12)]:
        X = rng.gamma(0.5, 1.0, (m, d)).astype(np.float32)
        X[rng.random((m, d)) < 0.3] = 0
        H = rng.gamma(0.5, 1.0, (k, d))
        W = rng.gamma(0.5, 1.0, (m, k))
        W[rng.random((m, k)) < 0.2] = 0  # projected gradients at the bound
        H32 = H.astype(np.float32)
        HHt = H @ H.T
        ref = W.copy()
        ref_violation = _update_cdnmf_fast(ref, HHt, (X @ H32.T).astype(np.float64), np.arange(k, dtype=np.intp))
        WT = np.ascontiguousarray(W.T)
        WtA, WtW = np.zeros((k, d)), np.zeros((k, k))
        violation = w_pass(X, WT, H32, HHt, WtA, WtW, tile)
        np.testing.assert_allclose(WT.T, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
        assert violation == pytest.approx(ref_violation, rel=1e-5)
        np.testing.assert_allclose(WtA, WT @ X.astype(np.float64), rtol=1e-5)
        np.testing.assert_allclose(WtW, WT @ WT.T, rtol=1e-10)


def test_cd_sweep_equals_sklearn_on_a_transposed_layout():
    from sklearn.decomposition._cdnmf_fast import _update_cdnmf_fast

    from actstore.interpret.hals import cd_sweep

    rng = np.random.default_rng(1)
    m, k = 1100, 7  # several tiles, a ragged last one
    F = rng.gamma(0.5, 1.0, (k, 30))
    C = rng.gamma(0.5, 1.0, (m, 30)) @ F.T
    gram = F @ F.T
    M = rng.gamma(0.5, 1.0, (m, k))
    ref = M.copy()
    ref_violation = _update_cdnmf_fast(ref, gram, C, np.arange(k, dtype=np.intp))
    MT = np.ascontiguousarray(M.T)
    assert cd_sweep(MT, np.ascontiguousarray(C.T), gram) == pytest.approx(ref_violation, rel=1e-12)
    np.testing.assert_allclose(MT.T, ref, rtol=1e-12, atol=1e-12)


def test_converged_and_n_iter_are_recorded():
    A = class_maps(7)
    done = ICE(4).fit(A)
    assert done.converged_ and 1 <= done.n_iter_ < 200
    capped = ICE(4, max_iter=2).fit(A)
    assert capped.n_iter_ == 2 and not capped.converged_
    flat = A.reshape(-1, A.shape[-1])
    ooc = ICE(4, max_iter=2).fit_blocks(lambda: iter([flat]), len(flat), flat.shape[1])
    assert ooc.n_iter_ == 2 and not ooc.converged_


def test_sklearns_stopping_rule_gives_sklearns_iteration_count():
    """Same init (the exact SVD, which sklearn also gets when its randomized SVD has converged), same
    stopping rule: the fit stops within a couple of iterations of sklearn's."""
    A = class_maps(8, n=30).reshape(-1, 48)
    ours = ICE(5).fit(A)
    from actstore.interpret.ice import _top_svd, nndsvda

    U, S, V = _top_svd(A, 5)
    W0, H0 = nndsvda(U, S, V, float(A.mean()))
    sk = NMF(5, init="custom", solver="cd", tol=1e-4, max_iter=200).fit(
        A.astype(np.float64), W=W0.astype(np.float64), H=H0.astype(np.float64))
    assert abs(ours.n_iter_ - sk.n_iter_) <= 2
    assert ours.reconstruction_err_ == pytest.approx(sk.reconstruction_err_, rel=1e-4)


def test_rows_split_over_threads_give_the_same_fit(monkeypatch):
    import actstore.interpret.ice as ice_module

    A = class_maps(9, n=100).reshape(-1, 48)
    one = ICE(5).fit(A)
    monkeypatch.setattr(ice_module, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(ice_module, "_blas_threads", lambda: 3)
    three = ICE(5).fit(A)
    assert three.n_iter_ == one.n_iter_
    np.testing.assert_allclose(three.components_, one.components_, rtol=1e-4, atol=1e-5)


def test_randomized_init_is_sklearns_randomized_svd():
    """For D > EXACT_SVD_MAX_D the init is sklearn's randomized SVD (same start, same subspace
    iteration), its two products per power iteration fused."""
    from sklearn.utils.extmath import randomized_svd

    from actstore.interpret.ice import _randomized_svd

    rng = np.random.default_rng(2)
    A = np.maximum(rng.gamma(0.3, 1.0, (1500, 12)) @ rng.gamma(0.3, 1.0, (12, 1100))
                   + 0.3 * rng.standard_normal((1500, 1100)), 0).astype(np.float32)
    U, S, V = _randomized_svd(A, 6, random_state=0)
    U2, S2, V2 = randomized_svd(A, 6, random_state=0)
    np.testing.assert_allclose(S, S2, rtol=1e-5)
    np.testing.assert_allclose(V, V2, atol=1e-3)
    np.testing.assert_allclose(U, U2, atol=1e-3)


def test_randomized_init_split_over_threads_is_the_same(monkeypatch):
    import actstore.interpret.ice as ice_module

    rng = np.random.default_rng(5)
    A = np.maximum(rng.gamma(0.3, 1.0, (900, 8)) @ rng.gamma(0.3, 1.0, (8, 1030))
                   + 0.3 * rng.standard_normal((900, 1030)), 0).astype(np.float32)
    U, S, V = ice_module._randomized_svd(A, 5, random_state=0)
    monkeypatch.setattr(ice_module, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(ice_module, "_blas_threads", lambda: 3)
    U3, S3, V3 = ice_module._randomized_svd(A, 5, random_state=0)
    np.testing.assert_allclose(S3, S, rtol=1e-6)
    np.testing.assert_allclose(V3, V, atol=1e-4)
