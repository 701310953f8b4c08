"""The one progress display of latticekit's jobs and training loops.

tqdm (a dependency of latticekit) draws a bar on stderr; where it is missing, a plain line is printed
every ``log_every`` steps and at the end; with ``enabled=False`` nothing is shown.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A progress bar over ``total`` steps starting at ``initial``.

    Parameters
    ----------
    total, initial : int
        Number of steps, and how many are already done (a resumed job).
    desc : str
        Label shown before the bar.
    enabled : bool
        False: show nothing.
    unit : str
        Unit of a step.
    log_every : int
        Without tqdm: print a line every this many steps (and at the last).

    Examples
    --------
    >>> with Progress(10, 0, "demo", enabled=False) as bar:
    ...     bar.update(3, loss=1.5)
    >>> bar.n
    3
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True, unit: str = "step",
                 log_every: int = 50) -> None:
        self.total, self.n, self.desc = int(total), int(initial), desc
        self.enabled, self.log_every = bool(enabled), max(int(log_every), 1)
        self._bar: Any = None
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self._bar = None
            else:
                self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, leave=False)

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by ``n`` steps; ``postfix`` values (numbers formatted with 4 significant digits) are
        shown beside the bar."""
        self.n += n
        if not self.enabled:
            return
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}
        if self._bar is not None:
            self._bar.update(n)
            if shown:
                self._bar.set_postfix(shown, refresh=False)
        elif self.n % self.log_every == 0 or self.n >= self.total:
            extra = "".join(f"  {k} {v}" for k, v in shown.items())
            print(f"{self.desc} {self.n}/{self.total}{extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
