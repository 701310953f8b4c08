"""The dense Wilson-Dirac matrix built from its blocks (actions/dirac_dense.py) against the operator applied to
every unit vector (``linalg.dense_matrix``): the same matrix on every backend, for U(1)/SU(2)/SU(3), 2D and 4D,
periodic and antiperiodic, full and even/odd, and the same gauge-field gradient under autograd."""

import pytest

import latticekit as lk
from latticekit.actions import EvenOddDirac, WilsonDirac, dirac_dense_matrix, wilson_hopping_matrix
from latticekit.gauge import random_gauge_field
from latticekit.linalg import dense_matrix
from latticekit.testing import assert_close

# 2x2x2x2 included on purpose: with L = 2 the forward and backward hops reach the same site (the blocks add up)
CASES = [("U1", (4, 4)), ("SU2", (2, 4)), ("SU3", (4, 2)), ("U1", (2, 2, 2, 2)), ("SU3", (2, 2, 2, 2)),
         ("SU2", (4, 2, 2, 2))]


@pytest.mark.parametrize("antiperiodic", [True, False], ids=["anti", "periodic"])
@pytest.mark.parametrize("name,shape", CASES)
def test_dense_dirac_matrix_equals_the_operator(bk, name, shape, antiperiodic):
    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    rng = bk.rng(3)
    U = random_gauge_field(G, lat, rng, (2,))
    D = WilsonDirac(U, G, lat, kappa=0.17, antiperiodic=antiperiodic)
    E = EvenOddDirac(D)
    n = D.ndof
    A = dirac_dense_matrix(D)
    assert tuple(A.shape) == (2, n, n)
    # the same entries: products of one link element and one gamma entry (|.| <= 2 kappa), summed over <= 2 hops
    assert_close(bk.to_numpy(A), bk.to_numpy(dense_matrix(D)), rtol=0, atol=1e-15)
    H = wilson_hopping_matrix(D)
    assert_close(bk.to_numpy(bk.xp.eye(n, dtype=H.dtype) - 0.17 * H), bk.to_numpy(A), rtol=0, atol=1e-15)
    Asc = dirac_dense_matrix(E)
    assert tuple(Asc.shape) == (2, n // 2, n // 2)
    # D_sc: sums of up to 4 Nd products of two hops (1e-16 each)
    assert_close(bk.to_numpy(Asc), bk.to_numpy(dense_matrix(E)), rtol=0, atol=1e-14)


def test_dense_dirac_matrix_gradient(torch_backends):
    import torch

    for b in torch_backends:
        G, lat = lk.SU(3), lk.Lattice((4, 4))
        U = random_gauge_field(G, lat, b.rng(5), (2,))
        grads = []
        for build in (dirac_dense_matrix, dense_matrix):
            Ug = U.clone().requires_grad_(True)
            A = build(EvenOddDirac(WilsonDirac(Ug, G, lat, kappa=0.2)))
            M = A @ A.conj().transpose(-1, -2)
            ld = torch.linalg.slogdet(M)[1].sum()  # a scalar that depends on every entry
            grads.append(torch.autograd.grad(ld, Ug)[0])
        assert float(grads[1].abs().max()) > 0.1  # not trivially zero
        assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


def test_dense_dirac_matrix_refuses_other_operators():
    with pytest.raises(TypeError, match="op: expected a WilsonDirac or EvenOddDirac"):
        dirac_dense_matrix(object())
    with pytest.raises(TypeError, match="D: expected a WilsonDirac operator"):
        wilson_hopping_matrix("D")
