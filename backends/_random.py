"""Explicit random number generators: same seed, same backend, same result; no global state."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ._namespace import _check_name, default_backend, default_device, namespace, normalize_device


class Generator:
    """A seeded random stream producing arrays of one backend on one device.

    Create it with :func:`rng`. Methods take a ``shape`` and an optional ``dtype`` (a dtype of the
    backend's namespace or a name such as ``"float32"``; default float64 / complex128).

    * numpy and array_api_strict: NumPy ``Generator(PCG64(seed))`` (array_api_strict gets a copy);
    * torch: ``torch.Generator(device).manual_seed(seed)``;
    * cupy: ``cupy.random.default_rng(seed)``.

    Examples
    --------
    >>> g = rng(0, backend="numpy")
    >>> g.uniform((2,), low=-1.0, high=1.0).shape
    (2,)
    """

    def __init__(self, seed: int, backend: str | None = None, device: Any = None) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            # torch's generators take seeds below 2^64 (larger ones failed with "Overflow when unpacking long long")
            raise ValueError(f"seed={seed!r}: expected an integer in [0, 2^64 - 1]")
        self.seed = int(seed)
        self.backend = _check_name(backend) if backend is not None else default_backend()
        self.xp = namespace(self.backend)
        self.device = normalize_device(self.backend, device if device is not None else default_device())
        if self.backend == "torch":
            import torch

            dev = self.device if self.device is not None else torch.device("cpu")
            self._gen = torch.Generator(device=dev)
            self._gen.manual_seed(self.seed)
            self._torch_device = dev
        elif self.backend == "cupy":
            import cupy

            if self.device is not None:
                with self.device:
                    self._gen = cupy.random.default_rng(self.seed)
            else:
                self._gen = cupy.random.default_rng(self.seed)
        else:
            self._gen = np.random.Generator(np.random.PCG64(self.seed))

    def __repr__(self) -> str:
        return f"Generator(seed={self.seed}, backend={self.backend!r}, device={self.device!r})"

    # -- helpers -------------------------------------------------------------------------------
    def _dtype(self, dtype: Any, default: str) -> Any:
        if dtype is None:
            dtype = default
        return getattr(self.xp, dtype) if isinstance(dtype, str) else dtype

    def _wrap(self, a: np.ndarray) -> Any:
        if self.backend == "numpy":
            return a
        if self.device is not None:
            return self.xp.asarray(a, device=self.device)
        return self.xp.asarray(a)

    @staticmethod
    def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
        return (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)

    def _np_name(self, dt: Any) -> str:
        for name in ("float32", "float64", "complex64", "complex128"):
            if dt == getattr(self.xp, name):
                return name
        raise ValueError(f"dtype={dt!r}: expected a floating dtype of backend {self.backend!r}")

    # -- distributions -------------------------------------------------------------------------
    def uniform(self, shape: int | Sequence[int], low: float = 0.0, high: float = 1.0, dtype: Any = None) -> Any:
        """Uniform numbers in ``[low, high)``."""
        shape = self._shape(shape)
        dt = self._dtype(dtype, "float64")
        name = self._np_name(dt)
        if self.backend == "torch":
            import torch

            u = torch.rand(shape, generator=self._gen, dtype=dt, device=self._torch_device)
            return low + (high - low) * u
        if self.backend == "cupy":
            return low + (high - low) * self._gen.random(shape, dtype=name)
        return self._wrap((low + (high - low) * self._gen.random(shape)).astype(name))

    def normal(self, shape: int | Sequence[int], dtype: Any = None, mean: float = 0.0, std: float = 1.0) -> Any:
        """Real Gaussian numbers with the given mean and standard deviation."""
        shape = self._shape(shape)
        dt = self._dtype(dtype, "float64")
        name = self._np_name(dt)
        if name.startswith("complex"):
            raise ValueError("normal(): use complex_normal() for complex dtypes")
        if self.backend == "torch":
            import torch

            z = torch.randn(shape, generator=self._gen, dtype=dt, device=self._torch_device)
            return mean + std * z
        if self.backend == "cupy":
            return mean + std * self._gen.standard_normal(shape, dtype=name)
        return self._wrap((mean + std * self._gen.standard_normal(shape)).astype(name))

    def complex_normal(self, shape: int | Sequence[int], dtype: Any = None) -> Any:
        """Complex Gaussian numbers with density ``exp(-|z|^2)/pi`` (so ``E|z|^2 = 1``)."""
        dt = self._dtype(dtype, "complex128")
        name = self._np_name(dt)
        real = {"complex64": "float32", "complex128": "float64"}.get(name)
        if real is None:
            raise ValueError(f"complex_normal(): dtype={dtype!r} is not complex")
        s = math.sqrt(0.5)
        re = self.normal(shape, dtype=real, std=s)
        im = self.normal(shape, dtype=real, std=s)
        return self.xp.astype(re, dt) + self.xp.astype(im, dt) * 1j

    def integers(self, low: int, high: int, shape: int | Sequence[int]) -> Any:
        """Integers uniform in ``[low, high)`` (int64)."""
        shape = self._shape(shape)
        if high <= low:
            raise ValueError(f"integers(): expected low < high, got low={low}, high={high}")
        if self.backend == "torch":
            import torch

            return torch.randint(low, high, shape, generator=self._gen, device=self._torch_device)
        if self.backend == "cupy":
            return self._gen.integers(low, high, size=shape)
        return self._wrap(self._gen.integers(low, high, size=shape, dtype=np.int64))

    # -- state ---------------------------------------------------------------------------------
    def get_state(self) -> Any:
        """A copy of the stream's state, to restore with :meth:`set_state` (checkpoints).

        torch: the generator's ``ByteTensor`` state; numpy/array_api_strict: the PCG64
        ``bit_generator.state`` dict. CuPy generators expose no serialisable state (TypeError).

        Examples
        --------
        >>> g = rng(3, backend="numpy"); st = g.get_state(); a = g.normal((2,))
        >>> g.set_state(st); bool((g.normal((2,)) == a).all())
        True
        """
        if self.backend == "torch":
            return self._gen.get_state()
        if self.backend == "cupy":
            raise TypeError("get_state(): CuPy generators have no serialisable state; checkpoint the seed instead")
        import copy

        return copy.deepcopy(self._gen.bit_generator.state)

    def set_state(self, state: Any) -> None:
        """Restore a state returned by :meth:`get_state` of a generator of the same backend."""
        if self.backend == "torch":
            import torch

            if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
                raise TypeError(f"state: expected the torch ByteTensor returned by get_state(), got {type(state).__name__}")
            self._gen.set_state(state.cpu() if state.device.type != "cpu" else state)
            return
        if self.backend == "cupy":
            raise TypeError("set_state(): CuPy generators have no serialisable state")
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise TypeError(f"state: expected the PCG64 state dict returned by get_state(), got {state!r:.80}")
        import copy

        self._gen.bit_generator.state = copy.deepcopy(state)

    def spawn(self, n: int) -> list["Generator"]:
        """``n`` independent generators derived deterministically from this one's seed."""
        seeds = np.random.SeedSequence(self.seed).spawn(n)
        return [Generator(int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)), self.backend, self.device) for s in seeds]


def rng(seed: int, backend: str | None = None, device: Any = None) -> Generator:
    """An explicit random generator for ``backend`` on ``device`` (see :class:`Generator`).

    Examples
    --------
    >>> from latticekit.backends import rng
    >>> a = rng(5).normal((3,)); b = rng(5).normal((3,))
    >>> bool((a == b).all())
    True
    """
    return Generator(seed, backend=backend, device=device)


def check_rng(rng: Any, like: Any = None, name: str = "rng") -> Generator:
    """Check that ``rng`` is a latticekit :class:`Generator` and, with ``like``, that it makes arrays of the
    backend (and, for torch, the device type) of the array ``like``; returns ``rng``.

    The random streams of the library are explicit and per backend: a NumPy or torch generator, or one made
    for another backend than the field's, is refused here with the fix, before any work.

    Raises
    ------
    TypeError
        ``rng`` is not a :class:`Generator`.
    BackendError
        It makes arrays of another backend or device type than ``like``.

    Examples
    --------
    >>> import numpy as np
    >>> check_rng(rng(0, backend="numpy"), like=np.zeros(2)).backend
    'numpy'
    >>> check_rng(np.random.default_rng(0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: rng: expected a latticekit generator, latticekit.backends.rng(...); got a numpy.random.Generator
    """
    if not isinstance(rng, Generator):
        cls = type(rng)
        got = (f"{rng!r} ({cls.__name__})" if cls.__module__ == "builtins" else
               f"a {cls.__module__}.{cls.__qualname__}".replace("numpy.random._generator.", "numpy.random."))
        raise TypeError(f"{name}: expected a latticekit generator, latticekit.backends.rng(seed, backend=..., "
                        f"device=...); got {got}")
    if like is None:
        return rng
    from ._namespace import BackendError, backend_name

    b = backend_name(like)
    if b != rng.backend:
        raise BackendError(f"{name} makes {rng.backend} arrays, but the field is a {b} array: use "
                           f"latticekit.backends.rng(seed, backend={b!r}) (and device= of the field)")
    if b == "torch" and like.device.type != rng._torch_device.type:
        raise BackendError(f"{name} makes arrays on {rng._torch_device}, but the field is on {like.device}: use "
                           f"latticekit.backends.rng(seed, backend='torch', device={str(like.device)!r})")
    return rng
