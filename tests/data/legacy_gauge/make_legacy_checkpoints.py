"""Old gauge coupling classes vs the mask-based ones: in-process parity, and the format-1 checkpoints of tests.

The four gauge coupling classes of latticekit before the masks became objects (``U1PlaquetteCoupling``,
``U1NdPlaquetteCoupling``, ``SUPlaquetteCoupling``, ``SUNdPlaquetteCoupling`` and their stack
builders) are read from git at ``--commit`` (the last commit that had them) into a temporary package,
together with that commit's ``checkpoint.py`` (format 1). Then

1. ``parity``: for many layer configurations, an old layer with random parameters and the new layer
   with its mask get the same parameters (the old state dict through
   :func:`latticekit.flows.legacy.convert_legacy_state_dict`, the converter of ``load_checkpoint``);
   forward and inverse outputs and log-dets on random fields are compared in float64, and the old
   ``repr`` must equal :func:`~latticekit.flows.legacy.legacy_modules_repr` of the new layer. The largest
   differences are printed per class.
2. ``--write``: four small models of the old stack builders are saved with the old ``save_checkpoint``
   (format 1) into this folder, each with a ``*.ref.pt`` file holding the recipe of the equivalent new
   model, input fields and the old model's forward/inverse outputs (tests/flows/test_legacy.py).

Run from the repository root (the files in this folder were written with this command)::

    python tests/data/legacy_gauge/make_legacy_checkpoints.py --commit 255d763 --write
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import types
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
OLD_MODULES = ("u1_couplings", "u1_nd_couplings", "sun_couplings", "sun_nd_couplings", "checkpoint")


def load_old(commit: str) -> types.SimpleNamespace:
    """The old flow modules of ``commit`` as a temporary package ``lk_legacy_flows``."""
    import importlib

    root = tempfile.mkdtemp(prefix="lk_legacy_")
    pkg = os.path.join(root, "lk_legacy_flows")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in OLD_MODULES:
        src = subprocess.run(["git", "show", f"{commit}:latticekit/flows/{name}.py"], check=True,
                             capture_output=True, text=True).stdout
        # shared modules come from the current library; the four old coupling modules from the package
        src = re.sub(r"^from \.(base|nets|splines|spectral) import", r"from latticekit.flows.\1 import", src,
                     flags=re.M)
        with open(os.path.join(pkg, f"{name}.py"), "w") as f:
            f.write(src)
    sys.path.insert(0, root)
    return types.SimpleNamespace(**{n: importlib.import_module(f"lk_legacy_flows.{n}") for n in OLD_MODULES})


def _angle(d: Any) -> Any:
    import torch

    return torch.remainder(d + math.pi, 2 * math.pi) - math.pi


def _compare(old: Any, new: Any, U: Any, ctx: Any, u1: bool) -> tuple[float, float]:
    """Largest differences of the outputs and of the log-dets (forward and inverse).

    For a stack, every new layer gets the input of the corresponding old layer on the old model's
    trajectory (forward and inverse), so that the differences are those of single layers: a deep
    stack of layers with random parameters amplifies rounding differences (the old stack alone
    changes by up to 1e-6 when its input changes by 1e-15).
    """
    import torch

    pairs = list(zip(old.layers, new.layers)) if hasattr(old, "layers") else [(old, new)]
    dx = dl = 0.0
    with torch.no_grad():
        for inverse in (False, True):
            x = U
            for lo, ln in (reversed(pairs) if inverse else pairs):
                a, la = (lo.inverse if inverse else lo)(x, context=ctx)
                b, lb = (ln.inverse if inverse else ln)(x, context=ctx)
                d = _angle(a - b) if u1 else a - b
                dx, dl = max(dx, float(d.abs().max())), max(dl, float((la - lb).abs().max()))
                x = a
    return dx, dl


def parity(old: types.SimpleNamespace) -> dict[str, tuple[float, float, int]]:
    """Max differences (fields, log-dets) and number of configurations per old class."""
    import itertools

    import torch

    import latticekit as lk
    from latticekit.flows import SUPlaquetteCoupling, U1PlaquetteCoupling, sun_gauge_flow, u1_gauge_flow
    from latticekit.flows.legacy import convert_legacy_state_dict, legacy_modules_repr
    from latticekit.flows.masks import CheckerboardMask, StripeMask
    from latticekit.testing import randomize_parameters

    results: dict[str, list[tuple[float, float]]] = {}
    seed = [0]

    def check(name: str, old_layer: Any, new_layer: Any, group: Any, lat: lk.Lattice, ctx_ch: int) -> None:
        seed[0] += 1
        randomize_parameters(old_layer, seed[0], scale=0.3)
        new_layer = new_layer.to(torch.float64)
        assert legacy_modules_repr(new_layer) == repr(old_layer), (name, repr(old_layer))
        state, _ = convert_legacy_state_dict(new_layer, old_layer.state_dict())
        new_layer.load_state_dict(state)
        rng = lk.backends.rng(seed[0], backend="torch")
        U = group.random(rng, (3, lat.nd), lat.shape)
        ctx = rng.normal((3, ctx_ch) + lat.shape) if ctx_ch else None
        results.setdefault(name, []).append(_compare(old_layer, new_layer, U, ctx, group is lk.U1))

    small = dict(bins=3, hidden=(3,))
    # U1PlaquetteCoupling (2D stripes)
    for shape, mu, off, rect, ctx in itertools.product([(4, 8), (8, 4)], (0, 1), range(4), (True, False), (0, 2)):
        lat = lk.Lattice(shape)
        torch.manual_seed(seed[0])
        o = old.u1_couplings.U1PlaquetteCoupling(lat, mu, off, context_channels=ctx, rectangle_context=rect, **small)
        n = U1PlaquetteCoupling(lat, StripeMask(lat, mu, off), context_channels=ctx, loop_context=rect, **small)
        check("U1PlaquetteCoupling", o, n, lk.U1, lat, ctx)
    # U1NdPlaquetteCoupling (checkerboard)
    for shape in [(4, 4), (2, 2, 4), (4, 2, 2), (2, 2, 2, 2)]:
        lat = lk.Lattice(shape)
        nd = lat.nd
        for (mu, nu), parity_, rect in itertools.product(itertools.permutations(range(nd), 2), (0, 1), (True, False)):
            ctx = 1 if (mu + nu + parity_) % 3 == 0 else 0
            o = old.u1_nd_couplings.U1NdPlaquetteCoupling(lat, mu, nu, parity_, context_channels=ctx,
                                                          rectangle_context=rect, **small)
            n = U1PlaquetteCoupling(lat, CheckerboardMask(lat, mu, nu, parity_), context_channels=ctx,
                                    loop_context=rect, **small)
            check("U1NdPlaquetteCoupling", o, n, lk.U1, lat, ctx)
    su = dict(bins=3, hidden=(3,), embed=3, head_hidden=(4,))
    # SUPlaquetteCoupling (2D stripes)
    for N, shape, mu, off, loop, rect in itertools.product((2, 3), [(4, 4), (8, 4)], (0, 1), (0, 3),
                                                            ("plaquette", "staples"), (True, False)):
        lat, G = lk.Lattice(shape), lk.SU(N)
        ctx = 1 if off == 3 and not rect else 0
        kw: dict[str, Any] = dict(loop=loop, context_channels=ctx, **su)
        a = (0.8, 0.4) if loop == "staples" else None
        o = old.sun_couplings.SUPlaquetteCoupling(G, lat, mu, off, rectangle_context=rect,
                                                  **(kw | ({"alpha": a} if a else {})))
        n = SUPlaquetteCoupling(G, lat, StripeMask(lat, mu, off), loop_context=rect, alpha=a, **kw)
        check("SUPlaquetteCoupling", o, n, G, lat, ctx)
    # SUNdPlaquetteCoupling (checkerboard)
    for N, shape in itertools.product((2, 3), [(2, 2, 2), (2, 4, 2), (2, 2, 2, 2)]):
        lat, G = lk.Lattice(shape), lk.SU(N)
        nd = lat.nd
        for i, ((mu, nu), parity_) in enumerate(itertools.product(itertools.permutations(range(nd), 2), (0, 1))):
            if N == 3 and nd == 4 and i % 3:
                continue                                             # SU(3) eigen-decompositions are slow
            loop = "staples" if i % 4 == 1 else "plaquette"
            kw = dict(loop=loop, loop_context=i % 5 != 2, context_channels=int(i % 7 == 3), **su)
            a = tuple(0.1 * j - 0.2 for j in range(2 * (nd - 1))) if loop == "staples" and i % 8 == 1 else None
            o = old.sun_nd_couplings.SUNdPlaquetteCoupling(G, lat, mu, nu, parity_, alpha=a, **kw)
            n = SUPlaquetteCoupling(G, lat, CheckerboardMask(lat, mu, nu, parity_), alpha=a, **kw)
            check("SUNdPlaquetteCoupling", o, n, G, lat, int(kw["context_channels"]))
    # the stack builders
    torch.manual_seed(0)
    lat = lk.Lattice((4, 8))
    check("u1_gauge_flow", old.u1_couplings.u1_gauge_flow(lat, bins=3, hidden=(3,)),
          u1_gauge_flow(lat, bins=3, hidden=(3,)), lk.U1, lat, 0)
    lat = lk.Lattice((2, 4, 2))
    check("u1_nd_gauge_flow", old.u1_nd_couplings.u1_nd_gauge_flow(lat, 14, bins=3, hidden=(3,)),
          u1_gauge_flow(lat, 14, masks="checkerboard", bins=3, hidden=(3,)), lk.U1, lat, 0)
    lat = lk.Lattice((4, 4))
    check("sun_gauge_flow", old.sun_couplings.sun_gauge_flow(lk.SU(3), lat, 6, loop="staples", **su),
          sun_gauge_flow(lk.SU(3), lat, 6, loop="staples", alpha=(1.0, 0.0), **su), lk.SU(3), lat, 0)
    lat = lk.Lattice((2, 2, 2))
    check("sun_nd_gauge_flow", old.sun_nd_couplings.sun_nd_gauge_flow(lk.SU(2), lat, 12, **su),
          sun_gauge_flow(lk.SU(2), lat, 12, masks="checkerboard", **su), lk.SU(2), lat, 0)
    return {k: (max(a for a, _ in v), max(b for _, b in v), len(v)) for k, v in results.items()}


# -- the checkpoints of tests/flows/test_legacy.py ---------------------------------------------------------
RECIPES: dict[str, dict[str, Any]] = {
    "u1_stripes_4x8": {"group": "U1", "lattice": (4, 8), "n_layers": 8, "masks": "stripes",
                       "old": ("u1_couplings", "u1_gauge_flow"), "kwargs": {"bins": 4, "hidden": (4,)}},
    "u1_checkerboard_2x2x4": {"group": "U1", "lattice": (2, 2, 4), "n_layers": 12, "masks": "checkerboard",
                              "old": ("u1_nd_couplings", "u1_nd_gauge_flow"), "kwargs": {"bins": 3, "hidden": (3,)}},
    "u1_checkerboard_4d": {"group": "U1", "lattice": (2, 2, 2, 2), "n_layers": 24, "masks": "checkerboard",
                           "old": ("u1_nd_couplings", "u1_nd_gauge_flow"), "kwargs": {"bins": 2, "hidden": (2,)}},
    "su3_stripes_4x4": {"group": "SU3", "lattice": (4, 4), "n_layers": 4, "masks": "stripes",
                        "old": ("sun_couplings", "sun_gauge_flow"),
                        "kwargs": {"bins": 3, "hidden": (3,), "embed": 3, "head_hidden": (4,), "loop": "staples"}},
    "su2_checkerboard_2x2x2": {"group": "SU2", "lattice": (2, 2, 2), "n_layers": 6, "masks": "checkerboard",
                               "old": ("sun_nd_couplings", "sun_nd_gauge_flow"),
                               "kwargs": {"bins": 3, "hidden": (3,), "embed": 3, "head_hidden": (4,)}},
}


def write(old: types.SimpleNamespace) -> None:
    import torch

    import latticekit as lk
    from latticekit.flows import HaarPrior, Model
    from latticekit.testing import randomize_parameters

    for i, (name, r) in enumerate(RECIPES.items()):
        lat = lk.Lattice(r["lattice"])
        G = lk.U1 if r["group"] == "U1" else lk.SU(int(r["group"][2:]))
        torch.manual_seed(100 + i)
        mod, fn = r["old"]
        args = (lat, r["n_layers"]) if G is lk.U1 else (G, lat, r["n_layers"])
        model = randomize_parameters(Model(HaarPrior(G, lat), getattr(getattr(old, mod), fn)(*args, **r["kwargs"])),
                                     200 + i, scale=0.3)
        path = os.path.join(HERE, f"{name}.pt")
        old.checkpoint.save_checkpoint(path, model=model, step=7, extra={"action": f"Wilson {G.name}"})
        U = G.random(lk.backends.rng(300 + i, backend="torch"), (2, lat.nd), lat.shape)
        # per-layer references on the old model's trajectory: (input, output, logdet) of every layer,
        # forward from U and inverse from U (a deep random stack amplifies rounding; single layers do not)
        ref: dict[str, list[Any]] = {"forward": [], "inverse": []}
        with torch.no_grad():
            x = U
            for layer in model.flow.layers:
                y, ld = layer(x)
                ref["forward"].append((x, y, ld))
                x = y
            x = U
            for layer in reversed(model.flow.layers):
                y, ld = layer.inverse(x)
                ref["inverse"].append((x, y, ld))
                x = y
        recipe = {k: v for k, v in r.items() if k != "old"}
        torch.save({"recipe": recipe, "extra": {"action": f"Wilson {G.name}"}, **ref},
                   os.path.join(HERE, f"{name}.ref.pt"))
        print(f"wrote {name}.pt ({os.path.getsize(path)} bytes)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default="255d763", help="git commit with the old gauge classes")
    ap.add_argument("--write", action="store_true", help="also write the format-1 checkpoints of the tests")
    a = ap.parse_args(argv)
    old = load_old(a.commit)
    for name, (dx, dl, n) in parity(old).items():
        print(f"{name:24s} configurations {n:4d}  max |output difference| {dx:.2e}  max |logdet difference| {dl:.2e}")
    if a.write:
        write(old)


if __name__ == "__main__":
    main()
