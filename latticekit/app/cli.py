"""The ``latticekit`` command: every sub-command is registered here.

Sub-commands::

    latticekit run [CONFIG.toml] [--out DIR]    generate an ensemble, measure, compare with exact results
    latticekit measure DIR                       re-measure the stored ensemble of a run
    latticekit scale FILE... --flow-t T          t0, w0 and observables of configuration files of other codes
    latticekit info FILE                         describe a gauge configuration file
    latticekit convert IN OUT --to FORMAT        convert between nersc, ildg, openqcd, hdf5
    latticekit train CONFIG.toml --out DIR       train a normalizing flow (torch); resumes after a kill
    latticekit sample DIR [--n N] [--n-pf K]     flow MCMC from a trained flow; ESS, acceptance, observables
    latticekit compare FLOW HMC [--bins N]       flow vs HMC histograms: ratios, residuals, chi^2 test

Global options (before the sub-command): ``--backend``, ``--device``. The command line uses argparse
from the standard library (no extra dependency). Each sub-command is one entry of :data:`COMMANDS`:
its arguments and the function that runs it (job modules are imported only when their command runs, so
``latticekit info`` never imports torch).

Exit status: 0 success; 2 bad input, one line naming the key or argument
(:class:`~latticekit.utils.ConfigError`, also for the configuration file itself: missing, a folder, not TOML; :class:`~latticekit.backends.BackendError`,
:class:`~latticekit.flows.CheckpointMismatchError`); 1 a problem with a file or the machine, one line
(:class:`~latticekit.io.IOFormatError`, an ``OSError`` such as a missing file or a folder where a file
was expected, ``MemoryError``), a stopped training (:class:`~latticekit.flows.NonFiniteLossError`) or a
solver that did not converge (:class:`~latticekit.linalg.cg.ConvergenceError`). Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, Callable, Mapping, Sequence

from latticekit import backends
from latticekit.app.interrupt import finaliser_safe_sigint
from latticekit.utils.schema import ConfigError

from .errors import user_error

__all__ = ["COMMANDS", "main", "sample_command", "train_command", "user_error"]


def _parse_lattice(text: str | None) -> tuple[int, ...] | None:
    """``--lattice 4,4,4,8`` (or ``4x4x4x8``) as extents; anything else is a ConfigError (exit status 2: bad input;
    a ``SystemExit`` with a message exited 1, the status of a file problem)."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--lattice {text!r}: expected extents such as 4,4,4,8") from None
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"--lattice {text!r}: expected positive extents")
    return shape


def _parse_group(text: str | None) -> str | None:
    """``--group``: a name :func:`latticekit.groups.group_from_name` knows, else a ConfigError (a ValueError's
    traceback and exit status 1 before)."""
    if text is not None:
        from latticekit.groups import group_from_name

        try:
            group_from_name(text)
        except ValueError:
            raise ConfigError(f"--group {text!r}: expected SU2, SU3 or U1 (any 'SU<N>' with N >= 2)") from None
    return text


def _check_backend(args: argparse.Namespace) -> None:
    """``info``/``convert`` read and write files with NumPy whatever ``--backend`` says, but a misspelt or
    unavailable backend or device is still an error (it was ignored silently)."""
    if args.backend is not None or args.device is not None:
        from .devices import resolve_backend

        resolve_backend(args.backend, args.device)


def _positive_int(text: str) -> int:
    """argparse type of a count: a positive integer, else a usage error (exit 2) naming the value."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _torch_only(args: argparse.Namespace) -> None:
    if args.backend not in (None, "torch"):
        raise ConfigError(f"--backend {args.backend}: flows are torch only")


# -- run / measure ---------------------------------------------------------------------------------
def _args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None, help="TOML configuration (default: 2D U(1), L=16, beta=2)")
    p.add_argument("--out", default="latticekit-run", help="output folder (default: ./latticekit-run)")
    p.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    p.add_argument("--fresh", action="store_true", help="ignore a saved state in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _do_run(args: argparse.Namespace) -> int:
    from .run import run_job

    run_job(args.config, out=args.out, seed=args.seed, backend=args.backend, device=args.device, fresh=args.fresh,
            progress=not args.quiet)
    return 0


def _args_measure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="output folder of a run")


def _do_measure(args: argparse.Namespace) -> int:
    from .measure import measure_job

    measure_job(args.dir, backend=args.backend, device=args.device)
    return 0


def _args_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="configuration files of one ensemble, in Monte Carlo order")
    p.add_argument("--out", default="latticekit-scale", help="output folder (default: ./latticekit-scale)")
    p.add_argument("--flow-t", type=float, default=0.0,
                   help="flow every configuration to this t/a^2 (0: no flow); t0 and w0 need t^2 E to pass "
                        "--reference before it")
    p.add_argument("--eps", type=float, default=0.02, help="largest RK3 flow step (default 0.02)")
    p.add_argument("--reference", type=float, default=0.3, help="defining value of t0 and w0 (default 0.3: SU(3))")
    p.add_argument("--no-verify", action="store_true",
                   help="read the files without checksum, header and unitarity checks (e.g. openQCD files whose "
                        "header plaquette has another normalisation)")


def _do_scale(args: argparse.Namespace) -> int:
    from .scale import scale_job

    scale_job(args.files, args.out, flow_t=args.flow_t, eps=args.eps, reference=args.reference,
              backend=args.backend, device=args.device, verify=not args.no_verify)
    return 0


# -- info / convert --------------------------------------------------------------------------------
def _args_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    p.add_argument("--lattice", default=None, help="extents t,x,y,z for files without a format record")
    p.add_argument("--group", default=None, help="SU2, SU3 or U1 for files without a format record")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--no-verify", action="store_true", help="skip checksum, header and unitarity checks")
    check.add_argument("--require-checksum", action="store_true",
                       help="also fail a file that carries no checksum (verify='require')")


def _do_info(args: argparse.Namespace) -> int:
    from .io_commands import info_command

    verify: bool | str = False if args.no_verify else ("require" if args.require_checksum else True)
    _check_backend(args)
    report = info_command(args.file, lattice=_parse_lattice(args.lattice), group=_parse_group(args.group),
                          verify=verify)
    print(report)
    return 0 if report.ok else 1  # a file that reads but fails a check is not a success


def _args_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--to", required=True, choices=["nersc", "ildg", "openqcd", "hdf5"])
    p.add_argument("--lattice", default=None, help="extents t,x,y,z for files without a format record")
    p.add_argument("--group", default=None, help="SU2, SU3 or U1 for files without a format record")
    p.add_argument("--no-verify", action="store_true",
                   help="read SRC without checksum, header and unitarity checks (DST is still read back and compared)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never SRC itself)")


def _do_convert(args: argparse.Namespace) -> int:
    from .io_commands import convert_command

    _check_backend(args)
    print(convert_command(args.src, args.dst, args.to, lattice=_parse_lattice(args.lattice),
                          group=_parse_group(args.group), verify=not args.no_verify, overwrite=args.overwrite))
    return 0


# -- train / sample --------------------------------------------------------------------------------
def train_command(config: str | os.PathLike[str], *, out: str | os.PathLike[str], device: Any = None,
                  fresh: bool = False, quiet: bool = False, nprocs: int = 1) -> str:
    """``latticekit train CONFIG.toml --out DIR [--fresh] [--quiet] [--nprocs N]``: train, return the text to print.

    ``nprocs > 1`` trains with :func:`latticekit.app.flows.distributed.train_distributed`; ``nprocs``
    must be a positive integer (:class:`ConfigError` otherwise, before any work). The ESS is the Kish
    ESS/N of the final evaluation, printed with its N.
    """
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ConfigError(f"--nprocs {nprocs!r}: expected a positive number of processes")
    if nprocs > 1:
        from .flows.distributed import train_distributed

        res = train_distributed(config, out=out, nprocs=nprocs, device=device, fresh=fresh, progress=not quiet)
    else:
        from .flows.train import train_job

        res = train_job(config, out=out, device=device, fresh=fresh, progress=not quiet)
    from .flows.train import summary_line

    return summary_line(res, out)


def sample_command(out: str | os.PathLike[str], *, n: int | None = None, seed: int | None = None,
                   out_file: str | os.PathLike[str] | None = None, device: Any = None,
                   hmc: "Mapping[str, Any] | str | os.PathLike[str] | None" = None, n_pf: int | None = None) -> str:
    """``latticekit sample DIR [--n N] [--seed S] [--out-file F] [--compare RESULTS.json]``: flow MCMC,
    return the summary table (with the values of the run ``hmc`` beside the flow's when given)."""
    from .flows.sample import resolve_checkpoint, sample_job
    from .flows.summary import flow_summary

    s = sample_job(out, n=n, seed=seed, out_file=out_file, device=device, reference=hmc, n_pf=n_pf)
    folder = resolve_checkpoint(out)[1]
    text = flow_summary(folder, sample=s, hmc=hmc)["text"]
    plot = "" if not s.get("plot") else f", histograms {os.path.join(os.path.dirname(s['output']), s['plot'])}"
    return f"{text}\nchain written to {s['output']}{plot}"


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML configuration, e.g. examples/u1_2d_flow.toml")
    p.add_argument("--out", default="latticekit-flow", help="output folder (default: ./latticekit-flow)")
    p.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nprocs", type=_positive_int, default=1,
                   help="data-parallel processes (torch.distributed, gloo on CPU); a positive integer")


def _do_train(args: argparse.Namespace) -> int:
    _torch_only(args)
    print(train_command(args.config, out=args.out, device=args.device, fresh=args.fresh, quiet=args.quiet,
                        nprocs=args.nprocs))
    return 0


def _args_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="output folder of `latticekit train` (or its checkpoint file)")
    p.add_argument("--n", type=int, default=None, help="chain length (default: sample.n of the configuration)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--out-file", default=None, help="where to write the chain (HDF5 for gauge fields)")
    p.add_argument("--compare", default=None,
                   help="results.json of a `latticekit run` of the same theory: show its values beside the flow's")
    p.add_argument("--n-pf", type=_positive_int, default=None, dest="n_pf",
                   help="pseudofermion flows: pseudofermion draws per gauge field (default: model.n_pf)")


def _do_sample(args: argparse.Namespace) -> int:
    _torch_only(args)
    print(sample_command(args.dir, n=args.n, seed=args.seed, out_file=args.out_file, device=args.device,
                         hmc=args.compare, n_pf=args.n_pf))
    return 0


# -- compare ---------------------------------------------------------------------------------------
def _args_compare(p: argparse.ArgumentParser) -> None:
    p.description = ("Compare the distributions of the observables of a flow ensemble and an HMC ensemble of the same "
                     "theory (Figs. 2-3 of arXiv:2208.03832): per observable, density histograms on common bins, "
                     "errors from a blocked bootstrap (blocks of ceil(10 tau_int) configurations), the ratio "
                     "flow/HMC per bin, residuals r = (h_flow - h_HMC)/sqrt(s_flow^2 + s_HMC^2) and the test "
                     "chi^2 = sum r^2 with dof = bins used. The residuals of one histogram are correlated, so the "
                     "p-value is p = P(g chi2_h >= chi^2) (Satterthwaite: the chi^2 law with mean dof and the "
                     "variance 2 tr(M^2) of the bootstrap correlation matrix M of the residuals; h = dof_effective = "
                     "dof^2/tr(M^2), g = dof/h), which is chi2.sf(chi^2, dof) only for uncorrelated residuals; the "
                     "total over observables includes their correlation the same way. Writes compare.json, "
                     "compare.png and compare_residuals.png to --out and prints the table.")
    p.add_argument("flow", help="folder of `latticekit sample` (flow_ensemble.h5) or an ensemble file")
    p.add_argument("hmc", help="folder of `latticekit run` (ensemble.h5) or an ensemble file")
    p.add_argument("--observables", default=None,
                   help="comma-separated names (default: those stored in both ensembles; with --measure, all the "
                        "HMC run measures)")
    p.add_argument("--bins", type=int, default=20, help="bins per histogram, equal widths over the pooled range "
                                                        "(default 20, at least 2)")
    p.add_argument("--n-boot", type=int, default=1000, dest="n_boot",
                   help="bootstrap resamples per ensemble (default 1000 as in the paper, at least 10)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the bootstraps (default 1234)")
    p.add_argument("--out", default="latticekit-compare", help="output folder (default: ./latticekit-compare)")
    p.add_argument("--measure", action="store_true",
                   help="measure observables an ensemble does not store on its configurations, with the theory and "
                        "[measure] options of the HMC run (results.json beside its ensemble)")
    p.add_argument("--quiet", action="store_true", help="no progress bar while measuring")


def _do_compare(args: argparse.Namespace) -> int:
    from .compare import compare_job

    compare_job(args.flow, args.hmc, observables=args.observables, bins=args.bins, n_boot=args.n_boot, seed=args.seed,
                out=args.out, measure=args.measure, backend=args.backend, device=args.device,
                progress=not args.quiet)
    return 0


#: sub-commands that compute (and so set the thread counts first)
_JOBS = ("run", "measure", "scale", "train", "sample", "compare")
#: the jobs that resume after an interruption from what they wrote (each has kill-point tests)
RESUMABLE = ("run", "scale", "train", "sample")

#: sub-command -> (help, add its arguments, run it)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "run": ("the run job: ensemble generation, measurements, comparison with exact results", _args_run, _do_run),
    "measure": ("re-measure the ensemble stored by `latticekit run` in DIR", _args_measure, _do_measure),
    "scale": ("gradient-flow scale setting (t0, w0) and observables of configuration files of other codes",
              _args_scale, _do_scale),
    "info": ("describe a gauge configuration file (NERSC, ILDG/LIME, openQCD, HDF5)", _args_info, _do_info),
    "convert": ("convert a gauge configuration between formats", _args_convert, _do_convert),
    "train": ("train a normalizing flow (torch) described by a TOML file; resumes after a kill", _args_train, _do_train),
    "sample": ("flow MCMC (independence Metropolis) from a flow trained by `latticekit train`", _args_sample,
               _do_sample),
    "compare": ("compare a flow ensemble with an HMC ensemble: histograms, ratios, residuals, chi^2 test",
                _args_compare, _do_compare),
}


def _global_args(p: argparse.ArgumentParser, default: Any) -> None:
    """``--backend``, ``--device`` and ``--threads`` with ``default`` (the sub-commands': SUPPRESS, so that a value
    given after the sub-command overrides one given before it, and none leaves it)."""
    p.add_argument("--backend", default=default, help="numpy (default), torch, cupy or array_api_strict")
    p.add_argument("--device", default=default, help="device of the backend, e.g. cpu, cuda, cuda:1")
    p.add_argument("--threads", type=_positive_int, default=default,
                   help="threads of numba, torch and BLAS (default: OMP_NUM_THREADS, else the CPUs this process "
                        "may run on); set before the job starts")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latticekit", description="Lattice field theory on NumPy, torch and CuPy.")
    _global_args(p, None)
    # the global options are accepted after the sub-command too (`latticekit run x.toml --backend torch`)
    common = argparse.ArgumentParser(add_help=False)
    _global_args(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    for name, (text, add_args, _run) in COMMANDS.items():
        add_args(sub.add_parser(name, help=text, parents=[common]))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latticekit`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command in _JOBS:
            # deliberate thread counts: more threads than free cores slowed shared-machine runs 10-20x
            backends.configure_threads(args.threads)
            # large temporaries from the heap, not a fresh mmap each (2.8x on 42 MB tensors; backends/_malloc.py)
            backends.configure_malloc()
        # Ctrl-C that lands in a finaliser is deferred, not lost ("Exception ignored in ..."): app/interrupt.py
        with finaliser_safe_sigint():
            return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        # Ctrl-C is the user's, not a bug: no traceback. The jobs write atomically, so what is on disk is whole.
        # A second Ctrl-C from here on is ignored: raised while this is printed, or during the interpreter's exit
        # (torch and tqdm clean up), it ended the process by SIGINT instead of status 130 (seen under load). The
        # command line (argv None) keeps it ignored until the process exits; a caller of main(argv) gets its
        # handler back
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            resume = "; what was written is kept: the same command resumes" if args.command in RESUMABLE else ""
            # on a line of its own: a progress bar may have left the cursor mid-line
            print(f"\nlatticekit {args.command}: interrupted{resume}", file=sys.stderr)
        finally:
            if argv is not None:
                signal.signal(signal.SIGINT, previous)
        return 130   # 128 + SIGINT, the shell's convention
    except Exception as exc:
        line, status = user_error(exc)
        if line is None:
            raise  # an internal error: keep the traceback
        print(f"latticekit: {line}", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
