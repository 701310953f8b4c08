"""The ``latticekit`` command.

Sub-commands::

    latticekit run [CONFIG.toml] [--out DIR]    generate an ensemble, measure, compare with exact results
    latticekit measure DIR                       re-measure the stored ensemble of a run
    latticekit info FILE                         describe a gauge configuration file
    latticekit convert IN OUT --to FORMAT        convert between nersc, ildg, openqcd, hdf5

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
