"""Storing a run's configurations (latticekit/app/run_state.py): once each, after a kill mid-segment too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit.app.run_state import store_configurations
from latticekit.io import Ensemble

pytest.importorskip("h5py")


class _CountingEnsemble:
    """An Ensemble whose info() reads are counted."""

    def __init__(self, ens: Ensemble) -> None:
        self.ens, self.reads = ens, 0

    def info(self, i: int) -> dict:
        self.reads += 1
        return self.ens.info(i)

    def __len__(self) -> int:
        return len(self.ens)

    def extend(self, *a, **kw) -> range:
        return self.ens.extend(*a, **kw)


def _segment(first: int, n: int, chains: int, seed: int) -> list:
    out = []
    for k in range(first, first + n):
        x = lk.U1.random(lk.backends.rng(seed + k), (chains, 2), (4, 4))
        out.append((k, x, {"plaquette": [0.1 * k + c for c in range(chains)]}))
    return out


def test_a_resumed_segment_stores_the_rest_once_and_reads_only_its_own_entries(tmp_path: Path) -> None:
    chains = 3
    with Ensemble.create(tmp_path / "e.h5", lattice=(4, 4), group=lk.U1) as ens:
        counted = _CountingEnsemble(ens)
        store_configurations(counted, _segment(0, 4, chains, 0), chains)          # a whole earlier segment
        assert len(ens) == 12
        seg = _segment(4, 3, chains, 0)
        # killed after measurement 4 and chain 0 of measurement 5 were stored, before the checkpoint
        ens.extend(seg[0][1], observables={"plaquette": seg[0][2]["plaquette"]},
                   infos=[{"measurement": 4, "chain": c} for c in range(chains)])
        ens.extend(seg[1][1][:1], observables={"plaquette": seg[1][2]["plaquette"][:1]},
                   infos=[{"measurement": 5, "chain": 0}])
        counted.reads = 0
        store_configurations(counted, seg, chains)                                  # the resumed segment
        # read back: the 4 entries of this segment and the one before it, which ends the scan
        assert counted.reads == 5
        keys = [(ens.info(i)["measurement"], ens.info(i)["chain"]) for i in range(len(ens))]
        assert keys == [(k, c) for k in range(7) for c in range(chains)]
        for i, (k, c) in enumerate(keys):
            x = dict((m, f) for m, f, _ in _segment(0, 7, chains, 0))[k]
            assert np.array_equal(ens[i], x[c])
        np.testing.assert_array_equal(ens.observable("plaquette"), [0.1 * k + c for k, c in keys])
