"""Exactness check of U(1) flow MCMC: train a small model briefly, then run long independence-Metropolis
chains and compare <Q> (exactly 0 by charge-conjugation symmetry) and the plaquette with the exact values.

Flow MCMC is exact for any proposal whose log q is correct, so a deviation here would point at the flow
stack (log-det, wrapping, float64 copy of a model trained with compiled splines), not at the training.
Run by hand (about 3 CPU minutes on one thread), e.g.

    python benchmarks/u1_flow_mcmc_check.py --out benchmarks/results/u1_flow_mcmc_check_L4.json

or, without training, on a model saved by ``bench_flows.py --save-model DIR`` (same --L, --layers,
--hidden as the saved model):

    python benchmarks/u1_flow_mcmc_check.py --L 8 --load DIR/u1_L8_seed3.pt --proposals 131072 --out OUT.json

Besides the chain estimate, each chain records the unweighted mean of Q over the proposals (the
model's own <Q>_q; a charge-conjugation asymmetry of q shows here) and the reweighted estimate
<w Q>_q / <w>_q with a jackknife error.

The JSON records the command and, per chain, acceptance, value, error, tau_int and deviation in sigma.
"""

import argparse
import copy
import json
import os
import sys

import torch

import latticekit as lk
from latticekit import exact
from latticekit import observables as obs
from latticekit.actions import WilsonGaugeAction
from latticekit.analysis import reweight
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, independence_metropolis, u1_gauge_flow
from latticekit.flows.legacy import convert_legacy_state_dict
from latticekit.utils import atomic_write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=4)
    p.add_argument("--beta", type=float, default=2.0)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--hidden", default="16")
    p.add_argument("--steps", type=int, default=600, help="training steps (float32, compiled splines)")
    p.add_argument("--proposals", type=int, default=65536, help="proposals per chain")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--chain-seed", type=int, default=11, help="seed of the first chain (then +1, +2, ...)")
    p.add_argument("--load", default="", help="state dict saved by bench_flows.py --save-model (skips training)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(3)
    lat = lk.Lattice((a.L, a.L))
    hidden = tuple(int(h) for h in a.hidden.split(",") if h)
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, a.layers, hidden=hidden))
    action = WilsonGaugeAction(lk.U1, lat, a.beta)
    if a.load:
        saved = torch.load(a.load, map_location="cpu")
        state = saved["state_dict"]
        if any(k.rsplit(".", 1)[-1].startswith("mask_") for k in state):
            # saved before the gauge masks were objects: the old layers stored their masks; check and drop them
            state, _ = convert_legacy_state_dict(model, state)
        model.load_state_dict(state)
        m64 = model.to(torch.float64)
        train_steps = int(saved.get("steps", -1))
    else:
        tr = Trainer(model, action, TrainConfig(steps=a.steps, batch_size=64, lr=2e-3, dtype="float32", seed=5,
                                                compile=True, schedule="cosine"))
        tr.train()
        m64 = copy.deepcopy(tr.model).to(torch.float64)
        train_steps = tr.step
    exact_values = {"topological_charge": 0.0, "plaquette": float(exact.u1_2d_plaquette(a.beta, lat.shape))}
    observables = {"topological_charge": lambda U: obs.topological_charge_u1_2d(U, lat),
                   "plaquette": lambda U: obs.average_plaquette(U, lk.U1, lat)}
    chains = []
    for c in range(a.chains):
        seed = a.chain_seed + c
        res = independence_metropolis(m64, action, a.proposals, lk.backends.rng(seed, backend="torch"),
                                      observables=observables, batch_size=4096)
        Qp = res.proposal_observables["topological_charge"]
        rw = reweight(Qp, res.proposal_log_w)
        chains.append({"seed": seed, "acceptance": float(res.acceptance.rate),
                       "Q_unweighted_proposals": {"value": float(Qp.mean()),
                                                  "error": float(Qp.std() / len(Qp) ** 0.5)},
                       "Q_reweighted": {"value": float(rw.value), "error": float(rw.error)},
                       "proposal_ess": float(res.proposal_ess),
                       "observables": {k: {"value": float(v.value), "error": float(v.error),
                                           "tau_int": float(v.tau_int), "exact": exact_values[k],
                                           "deviation_sigma": (float(v.value) - exact_values[k]) / float(v.error)}
                                       for k, v in res.analysis.items()}})
        print(json.dumps(chains[-1]), flush=True)
    out = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "args": vars(a),
           "train_steps": train_steps, "chains": chains}
    atomic_write(a.out, (json.dumps(out, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
