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
