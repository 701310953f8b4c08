"""The library's user-facing errors as the commands report them: one line and an exit status.

One mapping for ``latticekit`` (:mod:`latticekit.app.cli`) and the ``torchrun`` entry of data-parallel training
(:mod:`latticekit.app.flows.distributed`), which the command imports (so the mapping lives here, importing
neither).
"""

from __future__ import annotations

from latticekit.utils.schema import ConfigError

__all__ = ["user_error"]


def user_error(exc: BaseException) -> tuple[str | None, int]:
    """``(one line, exit status)`` for the library's user-facing errors; ``(None, 0)`` for anything else
    (a bug, whose traceback the command keeps).

    Examples
    --------
    >>> user_error(ConfigError("sampler.step_size: expected a finite number, got inf"))
    ('invalid configuration: sampler.step_size: expected a finite number, got inf', 2)
    >>> user_error(IsADirectoryError(21, "Is a directory", "runs"))
    ("[Errno 21] Is a directory: 'runs'", 1)
    >>> user_error(ValueError("an internal inconsistency"))
    (None, 0)
    """
    from latticekit.backends import BackendError
    from latticekit.io.errors import IOFormatError
    from latticekit.linalg.cg import ConvergenceError

    # checked by name: importing latticekit.flows (torch) for isinstance would slow `latticekit info`
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, ConfigError):
        return f"invalid configuration: {exc}", 2
    if isinstance(exc, BackendError) or "CheckpointMismatchError" in names:
        return str(exc), 2
    if isinstance(exc, (IOFormatError, OSError)):
        return str(exc), 1
    if "NonFiniteLossError" in names:  # training stopped, the last checkpoint is kept
        return f"training stopped: {exc}", 1
    if isinstance(exc, ConvergenceError):
        return f"solver did not converge: {exc}", 1
    if "ODESolverError" in names:  # a flow too stiff for its ODE tolerances or step bound; checkpoints are kept
        return f"ODE solve failed: {exc}", 1
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + str(exc) if str(exc) else ''}; use a smaller lattice or fewer chains/samples", 1
    return None, 0

