"""latticekit.backends: namespaces, default selection, devices, rngs, conversions, DLPack."""

import math
import subprocess
import sys

import numpy as np
import pytest

from latticekit import backends
from latticekit.backends import BackendError


def test_namespace_and_backend_name(bk):
    xp = bk.xp
    x = bk.asarray([1.0, 2.0])
    assert backends.array_namespace(x) is xp
    assert backends.backend_name(x) == bk.name
    assert backends.backend_name(xp) == bk.name
    assert bk.name in backends.available_backends()


def test_unknown_backend_name():
    with pytest.raises(BackendError, match=r"backend='jax'.*numpy, torch, cupy, array_api_strict"):
        backends.namespace("jax")
    with pytest.raises(BackendError, match="expected one of"):
        backends.rng(0, backend="tensorflow")
    with pytest.raises(BackendError):
        with backends.use("nope"):
            pass


def test_mixed_namespaces_raise():
    torch = pytest.importorskip("torch")
    a = np.ones(3)
    t = torch.ones(3, dtype=torch.float64)
    with pytest.raises(BackendError, match="different"):
        backends.array_namespace(a, t)
    # python scalars and None are ignored
    assert backends.array_namespace(a, 2.0, None) is backends.namespace("numpy")
    # the lookup is cached by array type: the same namespace before and after, mixing still refused every time
    # (in either order, after each library's arrays were looked up alone)
    for _ in range(2):
        assert backends.array_namespace(a) is backends.namespace("numpy")
        assert backends.array_namespace(t) is backends.namespace("torch")
        assert backends.array_namespace(np.float64(1.0)) is backends.namespace("numpy")
        for pair in ((a, t), (t, a), (a, a, t)):
            with pytest.raises(BackendError, match="different"):
                backends.array_namespace(*pair)
        with pytest.raises(BackendError, match="unsupported"):
            backends.array_namespace(2.0)


def test_device_of_arrays(bk):
    x = bk.asarray([1.0, 2.0])
    y = bk.asarray([3.0])
    d = backends.device(x, y)
    assert str(d) == str(backends.device(x))
    with pytest.raises(BackendError, match="no arrays"):
        backends.device()


def test_mixed_devices_raise():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("mixed-device check needs a CUDA device")
    with pytest.raises(BackendError, match="different devices"):
        backends.device(torch.ones(2), torch.ones(2, device="cuda"))


def test_numpy_device_spec():
    assert backends.normalize_device("numpy", "cpu") is None
    with pytest.raises(BackendError, match="device='cuda'"):
        backends.normalize_device("numpy", "cuda")


def test_bad_device_names_are_a_backend_error():
    """A misspelt torch device ('gpu', 'cuda:x', 'CPU') ended in torch's RuntimeError and a traceback of the
    command (exit status 1 instead of the one-line error, status 2); array_api_strict's ValueError likewise."""
    pytest.importorskip("torch")
    for dev, match in (("gpu", "device='gpu': not a torch device"), ("cuda:x", "device='cuda:x': not a torch device"),
                       ("CPU", "device='CPU': not a torch device"), ("meta", "device='meta': a meta tensor")):
        with pytest.raises(BackendError, match=match):
            backends.normalize_device("torch", dev)
        with pytest.raises(BackendError, match=match):
            backends.rng(0, backend="torch", device=dev)
    with pytest.raises(BackendError, match="device='cuda': array_api_strict arrays live on its CPU device"):
        backends.normalize_device("array_api_strict", "cuda")
    assert str(backends.normalize_device("torch", "cpu")) == "cpu"


def test_use_context_manager_nests_and_restores(monkeypatch):
    monkeypatch.delenv("LATTICEKIT_BACKEND", raising=False)
    assert backends.default_backend() == "numpy"
    with backends.use("array_api_strict") as name:
        assert name == "array_api_strict"
        assert backends.default_backend() == "array_api_strict"
        x = backends.rng(0).normal((2,))
        assert backends.backend_name(x) == "array_api_strict"
        with backends.use("numpy"):
            assert backends.default_backend() == "numpy"
        assert backends.default_backend() == "array_api_strict"
    assert backends.default_backend() == "numpy"
    # restored even when the body raises
    with pytest.raises(RuntimeError):
        with backends.use("array_api_strict"):
            raise RuntimeError("boom")
    assert backends.default_backend() == "numpy"


def test_env_variable(monkeypatch):
    monkeypatch.setenv("LATTICEKIT_BACKEND", "array_api_strict")
    assert backends.default_backend() == "array_api_strict"
    assert backends.backend_name(backends.asarray([1.0])) == "array_api_strict"
    # use() overrides the environment
    with backends.use("numpy"):
        assert backends.default_backend() == "numpy"
    monkeypatch.setenv("LATTICEKIT_BACKEND", "bogus")
    with pytest.raises(BackendError, match="LATTICEKIT_BACKEND='bogus'"):
        backends.default_backend()


def test_no_import_time_side_effects():
    code = ("import sys, latticekit.backends as b; "
            "assert b.default_backend() == 'numpy'; "
            "assert 'torch' not in sys.modules and 'array_api_strict' not in sys.modules, sorted(sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "LATTICEKIT_BACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("method", ["uniform", "normal", "complex_normal", "integers"])
def test_rng_reproducible(bk, method):
    def draw(seed):
        g = bk.rng(seed)
        if method == "integers":
            return bk.to_numpy(g.integers(0, 1000, (50,)))
        return bk.to_numpy(getattr(g, method)((50,)))

    np.testing.assert_array_equal(draw(3), draw(3))
    assert not np.array_equal(draw(3), draw(4))
    g = bk.rng(3)  # successive draws of one generator differ
    a, b = bk.to_numpy(g.normal((20,))), bk.to_numpy(g.normal((20,)))
    assert not np.array_equal(a, b)


def test_rng_arrays_on_backend_and_dtypes(bk):
    g = bk.rng(0)
    xp = bk.xp
    assert g.normal((3,)).dtype == xp.float64
    assert g.normal((3,), dtype="float32").dtype == xp.float32
    assert g.uniform(4).shape == (4,)
    assert g.complex_normal((3,)).dtype == xp.complex128
    assert g.complex_normal((3,), dtype="complex64").dtype == xp.complex64
    assert backends.backend_name(g.integers(0, 5, (3,))) == bk.name
    u = bk.to_numpy(g.uniform((1000,), low=-2.0, high=3.0))
    assert u.min() >= -2.0 and u.max() < 3.0
    k = bk.to_numpy(g.integers(2, 5, (1000,)))
    assert set(np.unique(k)) == {2, 3, 4}


def test_rng_errors():
    with pytest.raises(ValueError, match="seed=-1"):
        backends.rng(-1)
    with pytest.raises(ValueError, match="low < high"):
        backends.rng(0).integers(3, 3, (2,))
    with pytest.raises(ValueError, match="complex_normal"):
        backends.rng(0).normal((2,), dtype="complex128")


def test_rng_of_another_kind_or_backend_is_refused_before_any_work(bk):
    """A NumPy/torch generator or an int where a latticekit generator belongs, or a generator of another backend
    than the field's, is a clear error at the entry points (groups, HMC, heatbath, pseudofermions; the test
    toolkit takes a generator of any backend) instead of an AttributeError or a mixed-type error deep inside."""
    import latticekit as lk
    from latticekit.actions import HasenbuschAction, PseudofermionAction, WilsonGaugeAction
    from latticekit.mc import HMC, Heatbath
    from latticekit.testing import random_gauge_transformation

    lat, G = lk.Lattice((4, 4)), lk.SU(2)
    U = lk.gauge.random_gauge_field(G, lat, bk.rng(0), (2,))
    for bad, got in ((np.random.default_rng(0), "a numpy.random.Generator"), (7, r"7 \(int\)")):
        with pytest.raises(TypeError, match=rf"rng: expected a latticekit generator.*; got {got}"):
            G.random(bad, (2,))
        with pytest.raises(TypeError, match="rng: expected a latticekit generator"):
            lk.U1.random_algebra(bad, (2,))
        with pytest.raises(TypeError, match="rng: expected a latticekit generator"):
            HMC(WilsonGaugeAction(G, lat, 2.0), rng=bad, step_size=0.1, n_steps=2)
    other = backends.rng(1, backend="array_api_strict" if bk.name == "numpy" else "numpy")
    msg = rf"rng makes {other.backend} arrays, but the field is a {bk.name} array: .*backend='{bk.name}'"
    hmc = HMC(WilsonGaugeAction(G, lat, 2.0), rng=other, step_size=0.1, n_steps=2)
    with pytest.raises(BackendError, match=msg):
        hmc.step(U)
    assert hmc.trajectories == 0
    with pytest.raises(BackendError, match=msg):
        Heatbath(G, lat, 2.0, rng=other).step(U)
    with pytest.raises(TypeError, match="rng: expected a latticekit generator"):
        random_gauge_transformation(U, G, lat, np.random.default_rng(0))
    V = lk.gauge.random_gauge_field(lk.U1, lat, bk.rng(0), (2,))
    with pytest.raises(BackendError, match=msg):
        PseudofermionAction(lk.U1, lat, kappa=0.2).sample(V, other)
    with pytest.raises(BackendError, match=msg):
        HasenbuschAction(lk.U1, lat, kappa=0.2, mus=[0.1]).sample(V, other)
    assert backends.check_rng(bk.rng(0), like=U).backend == bk.name


def test_rng_moments(bk):
    """Sample moments within 5 standard errors (false-alarm rate ~6e-7 per check)."""
    n = 100_000
    g = bk.rng(11)
    z = bk.to_numpy(g.complex_normal((n,)))
    a2 = np.abs(z) ** 2  # Exp(1): mean 1, sd 1
    assert abs(a2.mean() - 1.0) < 5 * a2.std() / math.sqrt(n)
    assert abs(z.mean()) < 5 * math.sqrt(1.0 / n)
    # independent real and imaginary parts of variance 1/2 each
    assert abs(np.mean(z.real**2) - 0.5) < 5 * math.sqrt(0.5 / n)
    assert abs(np.mean(z.real * z.imag)) < 5 * 0.5 / math.sqrt(n)
    x = bk.to_numpy(g.normal((n,), mean=1.5, std=2.0))
    assert abs(x.mean() - 1.5) < 5 * 2.0 / math.sqrt(n)
    assert abs(x.std() - 2.0) < 5 * 2.0 / math.sqrt(2 * n)
    u = bk.to_numpy(g.uniform((n,)))
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)


def test_spawn_independent_and_reproducible(bk):
    a = [bk.to_numpy(g.normal((5,))) for g in bk.rng(1).spawn(3)]
    b = [bk.to_numpy(g.normal((5,))) for g in bk.rng(1).spawn(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])


def test_round_trips(bk):
    host = np.arange(12.0).reshape(3, 4) + 1j * np.ones((3, 4))
    x = backends.from_numpy(host, backend=bk.name, device=bk.device)
    assert backends.backend_name(x) == bk.name
    np.testing.assert_array_equal(backends.to_numpy(x), host)
    y = backends.asarray(host.tolist(), backend=bk.name, device=bk.device)
    np.testing.assert_array_equal(bk.to_numpy(y), host)
    z = backends.asarray(x, backend="numpy")
    assert isinstance(z, np.ndarray)
    np.testing.assert_array_equal(z, host)
    w = backends.to_backend(z, bk.name, bk.device)
    assert backends.backend_name(w) == bk.name
    np.testing.assert_array_equal(bk.to_numpy(w), host)
    f32 = backends.asarray(np.ones(3), backend=bk.name, device=bk.device, dtype="float32")
    assert f32.dtype == bk.xp.float32
    assert backends.asarray(2.5, backend=bk.name).shape == ()


def test_to_numpy_of_torch_with_grad_and_conj():
    torch = pytest.importorskip("torch")
    t = torch.ones(3, dtype=torch.float64, requires_grad=True) * 2
    np.testing.assert_array_equal(backends.to_numpy(t), 2.0)
    c = torch.tensor([1 + 2j, 3 - 1j]).conj()
    np.testing.assert_array_equal(backends.to_numpy(c), np.array([1 - 2j, 3 + 1j]))


def test_from_numpy_torch_non_contiguous_and_readonly():
    torch = pytest.importorskip("torch")
    a = np.arange(6.0)
    rev = backends.from_numpy(a[::-1], backend="torch")
    np.testing.assert_array_equal(rev.numpy(), a[::-1])
    ro = np.arange(3.0)
    ro.flags.writeable = False
    t = backends.from_numpy(ro, backend="torch")
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), ro)


def test_dlpack_zero_copy_numpy_torch():
    torch = pytest.importorskip("torch")
    a = np.zeros(4)
    t = backends.to_backend(a, "torch")
    assert isinstance(t, torch.Tensor)
    t[1] = 5.0  # write through torch, see it in numpy
    assert a[1] == 5.0
    b = backends.from_dlpack(t, "numpy")
    b[2] = 7.0  # write through numpy, see it in torch
    assert float(t[2]) == 7.0
    # from_numpy shares memory on the CPU unless copy=True
    s = backends.from_numpy(a, backend="torch")
    s[0] = -1.0
    assert a[0] == -1.0
    c = backends.from_numpy(a, backend="torch", copy=True)
    c[0] = 9.0
    assert a[0] == -1.0


def test_dtype_helpers(bk):
    xp = bk.xp
    assert backends.real_dtype(xp) == xp.float64
    assert backends.real_dtype(xp, "single") == xp.float32
    assert backends.complex_dtype(xp, 32) == xp.complex64
    assert backends.real_dtype_for(xp.complex64, xp) == xp.float32
    assert backends.complex_dtype_for(xp.float64, xp) == xp.complex128
    assert backends.is_complex(bk.asarray([1j]))
    assert not backends.is_complex(bk.asarray([1.0]))
    with pytest.raises(ValueError, match="precision='half'"):
        backends.real_dtype(xp, "half")
    with pytest.raises(ValueError, match="no complex partner"):
        backends.complex_dtype_for(xp.int64, xp)


def test_fast_path_registry():
    from latticekit.backends import _fast

    x = np.ones(2)
    assert backends.fast_path("__test_op__", x) is None
    backends.register_fast_path("__test_op__", "numpy", lambda a: a + 1)
    try:
        fn = backends.fast_path("__test_op__", x)
        np.testing.assert_array_equal(fn(x), 2.0)
    finally:
        _fast._REGISTRY.pop(("__test_op__", "numpy"))


def test_numpy_scalars_count_as_numpy():
    """0-d indexing of NumPy arrays yields np.float64/np.complex128 (subclasses of float/complex)."""
    xp = backends.namespace("numpy")
    assert backends.array_namespace(np.float64(1.0), np.complex128(1j)) is xp
    assert backends.array_namespace(np.ones(2)[0]) is xp
    torch = pytest.importorskip("torch")
    # next to real arrays, NumPy scalars are treated like Python scalars
    assert backends.array_namespace(torch.ones(2), np.float64(2.0)) is backends.namespace("torch")
    with pytest.raises(BackendError):
        backends.array_namespace(2.0, None)


# -- LU-based linear algebra (backends/_lu.py) -------------------------------------------------------
def _lu_reference(A: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    s, l = np.linalg.slogdet(A)
    return {"det": np.linalg.det(A), "sign": s, "logabsdet": l, "inv": np.linalg.inv(A),
            "solve": np.linalg.solve(A, b)}


@pytest.mark.parametrize("n", [3, 40])
def test_lu_linalg_matches_numpy(bk, monkeypatch, n):
    """Every backend, a batch (2, 2) against NumPy's LAPACK. The suite runs torch with one thread
    (conftest.py), so torch reports two here: n = 40 > 14 then takes the one-at-a-time path on torch CPU,
    n = 3 the direct call."""
    from latticekit.backends import lu_linalg

    if bk.name == "torch":
        import torch

        monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    from latticekit.testing import assert_close

    g = np.random.default_rng(3)
    A = g.normal(size=(2, 2, n, n)) + 1j * g.normal(size=(2, 2, n, n)) + 4 * np.eye(n)
    b = g.normal(size=(2, 2, n, 2)) + 1j * g.normal(size=(2, 2, n, 2))
    ref = _lu_reference(A, b)
    At, bt = bk.asarray(A), bk.asarray(b)
    from latticekit.backends import _lu

    assert _lu._per_matrix(At) == (bk.name == "torch" and At.device.type == "cpu" and n > 14)
    s, l = lu_linalg("slogdet", At)
    assert_close(bk.to_numpy(l), ref["logabsdet"], rtol=1e-12, atol=1e-12)
    assert_close(bk.to_numpy(s), ref["sign"], rtol=1e-10, atol=1e-12)
    assert_close(bk.to_numpy(lu_linalg("det", At)), ref["det"], rtol=1e-10, atol=0)
    assert_close(bk.to_numpy(lu_linalg("inv", At)), ref["inv"], rtol=1e-10, atol=1e-13)
    assert_close(bk.to_numpy(lu_linalg("solve", At, bt)), ref["solve"], rtol=1e-10, atol=1e-13)


def test_lu_linalg_autograd_through_the_per_matrix_path(monkeypatch):
    """d log|det A| / dA = A^{-H} (for complex A, torch's conjugate Wirtinger convention) through the loop."""
    torch = pytest.importorskip("torch")
    from latticekit.backends import lu_linalg
    from latticekit.testing import assert_close

    from latticekit.backends import _lu

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)   # the suite's torch has one thread
    g = np.random.default_rng(5)
    A0 = g.normal(size=(3, 20, 20)) + 4 * np.eye(20)
    assert _lu._per_matrix(torch.tensor(A0))
    A = torch.tensor(A0, requires_grad=True)
    lu_linalg("slogdet", A)[1].sum().backward()
    assert_close(A.grad.numpy(), np.linalg.inv(A0).transpose(0, 2, 1), rtol=1e-10, atol=1e-13)


def test_lu_linalg_bad_input():
    from latticekit.backends import lu_linalg

    with pytest.raises(ValueError, match="name='eig'"):
        lu_linalg("eig", np.eye(3))
    with pytest.raises(ValueError, match="square"):
        lu_linalg("det", np.ones((2, 3)))


def test_lu_linalg_right_after_torch_set_num_threads():
    """The bug itself (backends/_lu.py): after ``torch.set_num_threads(2)`` torch's batched CPU LU of
    matrices from about 160 x 160 is wrong (measured with torch 2.13.0+cpu: log|det| off by 5-15 for
    192 x 192, ``solve``/``inv`` raise). ``lu_linalg`` must match NumPy there. A fresh interpreter,
    because ``set_num_threads`` changes the process for good (about 3 s)."""
    pytest.importorskip("torch")
    code = """
import numpy as np, torch
torch.set_num_threads(2)
from latticekit.backends import lu_linalg
g = np.random.default_rng(0)
n = 192
A = g.normal(size=(3, n, n)) + 1j * g.normal(size=(3, n, n))
b = g.normal(size=(3, n, 2)) + 0j
At, bt = torch.from_numpy(A), torch.from_numpy(b)
s, l = lu_linalg("slogdet", At)
assert np.allclose(l.numpy(), np.linalg.slogdet(A)[1], rtol=1e-12, atol=1e-10), (l, np.linalg.slogdet(A)[1])
assert np.allclose(s.numpy(), np.linalg.slogdet(A)[0], rtol=1e-9, atol=1e-12)
assert np.allclose(lu_linalg("solve", At, bt).numpy(), np.linalg.solve(A, b), rtol=1e-9, atol=1e-12)
assert np.allclose(lu_linalg("inv", At).numpy(), np.linalg.inv(A), rtol=1e-9, atol=1e-12)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-2000:] + out.stderr[-2000:]
