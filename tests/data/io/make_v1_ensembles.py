"""Write the format-version-1 ensembles of this folder with the HDF5 writer latticekit had before checksums.

Version 1 (commit 255d763 and earlier) stored string attributes and per-configuration info as
variable-length strings in HDF5's global heap and carried no checksums. The tests read these files to
make sure older ensembles keep loading (and appending) after the format moved to version 2.

Run from the repository root (needs git history):

    python tests/data/io/make_v1_ensembles.py

It takes ``latticekit/io/hdf5.py`` of commit 255d763 (``git show``), runs it as a module of
``latticekit.io`` and writes ``v1_u1.h5`` and ``v1_su2.h5`` here. The tests compare what the
latticekit reader returns with what plain h5py reads from the same files, so they do not depend on
the random fields being reproducible.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import latticekit as lk

COMMIT = "255d763"
HERE = Path(__file__).resolve().parent


def v1_module() -> types.ModuleType:
    """The ensemble writer of format version 1, loaded from git history."""
    src = subprocess.check_output(["git", "show", f"{COMMIT}:latticekit/io/hdf5.py"], text=True,
                                  cwd=HERE.parents[2])
    mod = types.ModuleType("latticekit.io._hdf5_v1")
    mod.__package__ = "latticekit.io"
    sys.modules[mod.__name__] = mod
    exec(compile(src, "hdf5_v1.py", "exec"), mod.__dict__)
    assert mod.FORMAT_VERSION == 1
    return mod


def main() -> None:
    v1 = v1_module()
    rng = lk.backends.rng(2024)
    with v1.Ensemble.create(HERE / "v1_u1.h5", lattice=(4, 4), group=lk.U1, action="wilson",
                            action_params={"beta": 2.0}, sampler="hmc", sampler_params={"n_steps": 10},
                            seeds=[7], metadata={"note": "format version 1"}, overwrite=True) as ens:
        for k in range(3):
            obs = {"plaq": 0.5 + k} if k == 0 else {"plaq": 0.5 + k, "topo": float(k)}
            ens.append(lk.U1.random(rng, (2,), (4, 4)), observables=obs, info={"traj": k})
    with v1.Ensemble.create(HERE / "v1_su2.h5", lattice=(2, 2, 2, 2), group=lk.SU(2), precision="single",
                            action="wilson", action_params={"beta": 2.3}, overwrite=True) as ens:
        for k in range(2):
            ens.append(lk.SU(2).random(rng, (4,), (2, 2, 2, 2)), observables={"plaq": 0.25 * k}, info={"traj": k})


if __name__ == "__main__":
    main()
