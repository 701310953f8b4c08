"""Interoperability: NERSC, ILDG/LIME (+ SciDAC checksums), openQCD and HDF5 ensembles.

Bytes are decoded on the host with NumPy; :func:`load` hands the field to the requested backend and
device in the library layout ``(Nd, *G, L0, L1, L2, L3)`` with direction 0 = time and lattice axes
``(t, x, y, z)`` (see :mod:`latticekit.io.layout` and docs/io.md). Every problem with a file raises
:class:`IOFormatError` naming the file and the check that failed; ``meta.checks`` lists the checks
that ran and ``meta.absent`` those the file does not allow (``verify="require"`` refuses a file whose
payload no checksum covers).

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit import io
>>> U = lk.SU(3).random(lk.backends.rng(0), (4,), (4, 2, 2, 2))
>>> path = os.path.join(tempfile.mkdtemp(), "cfg.nersc")
>>> io.save(path, U, "SU3", format="nersc")
>>> V, meta = io.load(path, backend="numpy")
>>> meta.format, meta.checks_ok, bool((V == U).all())
('nersc', True, True)
"""

from __future__ import annotations

from ._common import Check, FieldMeta
from .errors import IOFormatError
from .hdf5 import Ensemble
from .hdf5_fields import read_hdf5, write_hdf5
from .ildg import infer_ildg_layout, read_ildg, scidac_checksum, write_ildg
from .layout import file_dims_from_lattice, file_to_library, lattice_from_file_dims, library_to_file
from .lime import LimeRecord, parse_lime, read_lime, write_lime
from .nersc import nersc_checksum, parse_nersc_header, read_nersc, write_nersc
from .openqcd import openqcd_plaquette, read_openqcd, write_openqcd
from .registry import FORMATS, load, save, sniff_format
from .state import load_state, save_state

__all__ = [
    "FORMATS",
    "Check",
    "Ensemble",
    "FieldMeta",
    "IOFormatError",
    "LimeRecord",
    "load_state",
    "save_state",
    "file_dims_from_lattice",
    "file_to_library",
    "infer_ildg_layout",
    "lattice_from_file_dims",
    "library_to_file",
    "load",
    "nersc_checksum",
    "openqcd_plaquette",
    "parse_lime",
    "parse_nersc_header",
    "read_hdf5",
    "read_ildg",
    "read_lime",
    "read_nersc",
    "read_openqcd",
    "save",
    "scidac_checksum",
    "sniff_format",
    "write_hdf5",
    "write_ildg",
    "write_lime",
    "write_nersc",
    "write_openqcd",
]
