"""File order <-> library layout for 4D gauge fields.

Files (NERSC, ILDG/LIME): sites with ``t`` slowest, then ``z``, ``y``, ``x`` (``x`` fastest); per site
the four link directions in the order ``x, y, z, t``; each link an ``N x N`` matrix, row-major.
As an array: ``F[t, z, y, x, d, i, j]`` with ``d = 0, 1, 2, 3`` meaning ``x, y, z, t``.

Library (DESIGN.md): ``U[mu, i, j, x0, x1, x2, x3]`` with direction ``mu`` on lattice axis ``mu`` and
``mu = 0`` time. The library lattice axes are ``(t, x, y, z)``, so directions ``(0, 1, 2, 3) = (t, x, y, z)``:

* library direction 0 (t) = file direction 3; library directions 1, 2, 3 = file directions 0, 1, 2;
* library lattice shape ``(Lt, Lx, Ly, Lz)``; file dimensions ``(lx, ly, lz, lt)``.

openQCD files use the library order directly (x0 = time slowest, x3 fastest, directions 0..3).

Examples
--------
>>> import numpy as np
>>> F = np.zeros((4, 3, 2, 5, 4, 1, 1), dtype=complex)      # (Lt, Lz, Ly, Lx, dir, 1, 1)
>>> F[1, 2, 0, 3, 3] = 7.0                                  # t-link at t=1, z=2, y=0, x=3
>>> U = file_to_library(F)
>>> U.shape                                                 # (Nd, 1, 1, Lt, Lx, Ly, Lz)
(4, 1, 1, 4, 5, 2, 3)
>>> complex(U[0, 0, 0, 1, 3, 0, 2])
(7+0j)
>>> bool((library_to_file(U) == F).all())
True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "FILE_DIRECTIONS",
    "LIBRARY_FROM_FILE_DIRECTION",
    "file_dims_from_lattice",
    "file_to_library",
    "lattice_from_file_dims",
    "library_to_file",
]

#: names of the file's link directions, in file order
FILE_DIRECTIONS = ("x", "y", "z", "t")
#: library direction mu is stored as file direction LIBRARY_FROM_FILE_DIRECTION[mu]
LIBRARY_FROM_FILE_DIRECTION = (3, 0, 1, 2)


def lattice_from_file_dims(lx: int, ly: int, lz: int, lt: int) -> tuple[int, int, int, int]:
    """Library lattice shape ``(Lt, Lx, Ly, Lz)`` from file dimensions.

    Examples
    --------
    >>> lattice_from_file_dims(8, 8, 8, 4)
    (4, 8, 8, 8)
    """
    return (int(lt), int(lx), int(ly), int(lz))


def file_dims_from_lattice(lattice: Sequence[int]) -> tuple[int, int, int, int]:
    """File dimensions ``(lx, ly, lz, lt)`` from the library lattice shape ``(Lt, Lx, Ly, Lz)``.

    Examples
    --------
    >>> file_dims_from_lattice((4, 8, 8, 8))
    (8, 8, 8, 4)
    """
    lt, lx, ly, lz = (int(v) for v in lattice)
    return (lx, ly, lz, lt)


def file_to_library(F: np.ndarray) -> np.ndarray:
    """File-order array ``(Lt, Lz, Ly, Lx, 4, *G)`` -> library layout ``(4, *G, Lt, Lx, Ly, Lz)``.

    The result is a C-contiguous copy in native byte order. See the module docstring for an example.
    """
    if F.ndim < 5 or F.shape[4] != 4:
        raise ValueError(f"F has shape {F.shape}; expected (Lt, Lz, Ly, Lx, 4, *G)")
    ng = F.ndim - 5
    F = F[:, :, :, :, list(LIBRARY_FROM_FILE_DIRECTION)]
    # axes: t=0, z=1, y=2, x=3, mu=4, G=5.. -> (mu, G, t, x, y, z)
    perm = (4,) + tuple(range(5, 5 + ng)) + (0, 3, 2, 1)
    out = np.transpose(F, perm)
    return np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("="))


def library_to_file(U: np.ndarray) -> np.ndarray:
    """Library layout ``(4, *G, Lt, Lx, Ly, Lz)`` -> file order ``(Lt, Lz, Ly, Lx, 4, *G)`` (C-contiguous)."""
    if U.ndim < 5 or U.shape[0] != 4:
        raise ValueError(f"U has shape {U.shape}; expected (4, *G, Lt, Lx, Ly, Lz)")
    ng = U.ndim - 5
    # axes: mu=0, G=1..ng, t, x, y, z -> (t, z, y, x, mu, G)
    t, x, y, z = 1 + ng, 2 + ng, 3 + ng, 4 + ng
    F = np.transpose(U, (t, z, y, x, 0) + tuple(range(1, 1 + ng)))
    inv = [LIBRARY_FROM_FILE_DIRECTION.index(d) for d in range(4)]
    return np.ascontiguousarray(F[:, :, :, :, inv])
