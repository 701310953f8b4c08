"""The ``latticekit`` command.

Sub-commands::

    latticekit run [CONFIG.toml] [--out DIR]    generate an ensemble, measure, compare with exact results
    latticekit measure DIR                       re-measure the stored ensemble of a run
    latticekit info FILE                         describe a gauge configuration file
    latticekit convert IN OUT --to FORMAT        convert between nersc, ildg, openqcd, hdf5
    latticekit train CONFIG.toml --out DIR       train a normalizing flow (torch); resumes after a kill
    latticekit sample DIR [--n N]                flow MCMC from a trained flow; ESS, acceptance, observables

Global options (before the sub-command): ``--backend``, ``--device``; ``run`` also takes ``--seed``.
The command line uses argparse from the standard library (no extra dependency).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def _parse_lattice(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise SystemExit(f"latticekit: --lattice {text!r}: expected extents such as 4,4,4,8") from None
    if not shape or any(s < 1 for s in shape):
        raise SystemExit(f"latticekit: --lattice {text!r}: expected positive extents")
    return shape


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latticekit", description="Lattice field theory on NumPy, torch and CuPy.")
    p.add_argument("--backend", default=None, help="numpy (default), torch, cupy or array_api_strict")
    p.add_argument("--device", default=None, help="device of the backend, e.g. cpu, cuda, cuda:1")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="the main job: ensemble generation, measurements, comparison with exact results")
    r.add_argument("config", nargs="?", default=None, help="TOML configuration (default: 2D U(1), L=16, beta=2)")
    r.add_argument("--out", default="latticekit-run", help="output folder (default: ./latticekit-run)")
    r.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    r.add_argument("--fresh", action="store_true", help="ignore a saved state in --out and start over")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    m = sub.add_parser("measure", help="re-measure the ensemble stored by `latticekit run` in DIR")
    m.add_argument("dir", help="output folder of a run")

    i = sub.add_parser("info", help="describe a gauge configuration file (NERSC, ILDG/LIME, openQCD, HDF5)")
    i.add_argument("file")
    i.add_argument("--lattice", default=None, help="extents t,x,y,z for files without a format record")
    i.add_argument("--group", default=None, help="SU2, SU3 or U1 for files without a format record")
    i.add_argument("--no-verify", action="store_true", help="skip checksum, header and unitarity checks")

    c = sub.add_parser("convert", help="convert a gauge configuration between formats")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", required=True, choices=["nersc", "ildg", "openqcd", "hdf5"])
    c.add_argument("--lattice", default=None, help="extents t,x,y,z for files without a format record")
    c.add_argument("--group", default=None, help="SU2, SU3 or U1 for files without a format record")
    t = sub.add_parser("train", help="train a normalizing flow (torch) described by a TOML file; resumes after a kill")
    t.add_argument("config", help="TOML configuration, e.g. examples/u1_2d_flow.toml")
    t.add_argument("--out", default="latticekit-flow", help="output folder (default: ./latticekit-flow)")
    t.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out and start over")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--nprocs", type=int, default=1, help="data-parallel processes (torch.distributed, gloo on CPU)")

    sm = sub.add_parser("sample", help="flow MCMC (independence Metropolis) from a flow trained by `latticekit train`")
    sm.add_argument("dir", help="output folder of `latticekit train` (or its checkpoint file)")
    sm.add_argument("--n", type=int, default=None, help="chain length (default: sample.n of the configuration)")
    sm.add_argument("--seed", type=int, default=None, help="random seed")
    sm.add_argument("--out-file", default=None, help="where to write the chain (HDF5 for gauge fields)")
    sm.add_argument("--compare", default=None,
                    help="results.json of a `latticekit run` of the same theory: show HMC values beside the flow's")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latticekit`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    from .io import IOFormatError

    try:
        if args.command == "info":
            from .io.cli import info_command

            print(info_command(args.file, lattice=_parse_lattice(args.lattice), group=args.group,
                               verify=not args.no_verify))
            return 0
        if args.command == "convert":
            from .io.cli import convert_command

            print(convert_command(args.src, args.dst, args.to, lattice=_parse_lattice(args.lattice),
                                  group=args.group))
            return 0
        from .config import ConfigError

        if args.command in ("train", "sample"):
            if args.backend not in (None, "torch"):
                print(f"latticekit: --backend {args.backend}: flows are torch only", file=sys.stderr)
                return 2
            from .flows import NonFiniteLossError
            from .flows.job import sample_command, train_command

            try:
                if args.command == "train":
                    print(train_command(args.config, out=args.out, device=args.device, fresh=args.fresh,
                                        quiet=args.quiet, nprocs=args.nprocs))
                else:
                    print(sample_command(args.dir, n=args.n, seed=args.seed, out_file=args.out_file,
                                         device=args.device, hmc=args.compare))
            except ConfigError as exc:
                print(f"latticekit: invalid configuration: {exc}", file=sys.stderr)
                return 2
            except NonFiniteLossError as exc:
                print(f"latticekit: training stopped: {exc}", file=sys.stderr)
                return 1
            return 0
        from .job import measure_job, run_job

        if args.command == "run":
            try:
                run_job(args.config, out=args.out, seed=args.seed, backend=args.backend, device=args.device,
                        fresh=args.fresh, progress=not args.quiet)
            except ConfigError as exc:
                print(f"latticekit: invalid configuration: {exc}", file=sys.stderr)
                return 2
            return 0
        if args.command == "measure":
            measure_job(args.dir, backend=args.backend, device=args.device)
            return 0
    except (IOFormatError, FileNotFoundError) as exc:
        print(f"latticekit: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"latticekit: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
