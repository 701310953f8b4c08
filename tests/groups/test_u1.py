"""U(1) in the angle representation: wrapping, matrix form, projection, coordinates."""

import math

import numpy as np
import pytest

from latticekit import U1
from latticekit.groups import wrap_angle
from latticekit.testing import assert_close


def test_wrap_angle(bk):
    th = bk.asarray(np.array([0.0, math.pi, -math.pi, 3 * math.pi, -3 * math.pi, 7.0, -7.0, 1e-3, 2 * math.pi]))
    w = bk.to_numpy(wrap_angle(th))
    assert np.all(w > -math.pi) and np.all(w <= math.pi)
    assert_close(np.exp(1j * w), np.exp(1j * bk.to_numpy(th)), rtol=1e-7, atol=1e-14)
    assert_close(w[:5], [0.0, math.pi, math.pi, math.pi, math.pi], rtol=1e-7, atol=1e-14)
    assert_close(U1.normalize(th, nd=1), w)
    assert_close(U1.log(th, nd=1), w)


def test_products_add_angles_without_wrapping(bk):
    a = bk.asarray(np.array([3.0, -3.0]))
    b = bk.asarray(np.array([3.0, 0.5]))
    assert_close(U1.mul(a, b, nd=1), np.array([6.0, -2.5]))
    assert_close(U1.mul_adj(a, b, nd=1), np.array([0.0, -3.5]))
    assert_close(U1.adj_mul(a, b, nd=1), np.array([0.0, 3.5]))
    assert_close(U1.re_trace_mul_adj(a, b, nd=1), np.cos([0.0, -3.5]))


def test_matrix_form_and_projection(bk):
    th = U1.random(bk.rng(0), (3,), (4, 4))
    z = U1.to_matrix(th, nd=2)
    assert z.dtype == bk.xp.complex128
    assert_close(z, np.exp(1j * bk.to_numpy(th)))
    assert_close(U1.trace(th, nd=2), np.exp(1j * bk.to_numpy(th)))
    assert_close(U1.project(2.5 * z, nd=2), th)  # z / |z| -> angle
    assert_close(U1.project_algebra(z, nd=2), np.sin(bk.to_numpy(th)))
    assert_close(U1.project_algebra(th, nd=2), th)  # already real: identity
    with pytest.raises(TypeError, match="complex numbers"):
        U1.project(th, nd=2)
    with pytest.raises(TypeError, match="real angles"):
        U1.defect(z, nd=2)
    f32 = U1.random(bk.rng(0), (2,), (), precision="single")
    assert U1.to_matrix(f32, nd=0).dtype == bk.xp.complex64


def test_coords_and_eigen_angles(bk):
    th = U1.random(bk.rng(1), (2,), (3,))
    c = U1.to_coords(th, nd=1)
    assert c.shape == (2, 1, 3)
    assert_close(U1.from_coords(c, nd=1), th)
    assert_close(U1.algebra_norm2(th, nd=1), bk.to_numpy(th) ** 2)
    assert U1.algebra_dim == 1 and U1.element_shape == () and U1.N == 1
    e = U1.eigen_angles(th + 2 * math.pi, nd=1)
    assert e.shape == (2, 1, 3)
    assert_close(e[:, 0, :], th, atol=1e-12)
    assert_close(U1.exp(th, nd=1), th)


def test_act_on_matter(bk):
    th = U1.random(bk.rng(2), (2,), (4,))
    v = bk.rng(3).complex_normal((2, 1, 4))
    out = bk.to_numpy(U1.act(th, v, nd=1))
    assert_close(out, np.exp(1j * bk.to_numpy(th))[:, None, :] * bk.to_numpy(v), rtol=1e-7, atol=1e-14)
    assert_close(U1.act_adj(th, U1.act(th, v, nd=1), nd=1), v)
