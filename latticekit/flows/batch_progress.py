"""Resumable batched drawing: a killed ``latticekit sample`` continues where it stopped, with the same numbers.

Flow MCMC spends its time drawing proposals and their weights in batches (:func:`~.sampling.draw_weighted`,
:func:`~.pseudofermion.pf_weights`); the chain over them is cheap. :func:`draw_batches` runs such a loop with a
:class:`BatchProgress`: after every batch its outputs and the random state after it (:func:`.checkpoint.get_rng_state`)
go to one file in a folder, written atomically. A rerun with the same identity (checkpoint, seed, sizes) loads the
batches already there, restores the generator to the state after the last one, and draws only the rest: the result
is bit-identical to an uninterrupted run, and the generator continues the same stream for what follows (the
accept/reject uniforms). A folder of another identity is emptied first. The same idea as the run job's
``state.npz`` checkpoints, at batch granularity.

Examples
--------
>>> import tempfile, latticekit as lk
>>> folder = tempfile.mkdtemp() + "/progress"
>>> draw = lambda rng: (lambda b: rng.normal((b,)))
>>> rng = lk.backends.rng(0, backend="torch")
>>> full = draw_batches(10, 4, rng, draw(rng), BatchProgress(folder, {"seed": 0}))   # three batches, stored
>>> rng2 = lk.backends.rng(99, backend="torch")       # a rerun: everything is loaded, rng2 continues rng's stream
>>> again = draw_batches(10, 4, rng2, draw(rng2), BatchProgress(folder, {"seed": 0}))
>>> all(bool((a == b).all()) for a, b in zip(full, again)), bool((rng.normal((2,)) == rng2.normal((2,))).all())
(True, True)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from latticekit.backends import Generator
from latticekit.utils.files import atomic_path, atomic_write

from .checkpoint import get_rng_state, set_rng_state

__all__ = ["BatchProgress", "draw_batches"]

_IDENTITY = "identity.json"


class BatchProgress:
    """The finished batches of a batched draw, one file each in ``folder`` (module docstring).

    Parameters
    ----------
    folder : path
        Created when needed; emptied when it holds batches of another ``identity``.
    identity : mapping
        JSON-serialisable description of the draw (what makes two draws the same numbers: model checkpoint, seed,
        ``n``, batch size, ...).
    """

    def __init__(self, folder: str | os.PathLike[str], identity: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.identity = json.loads(json.dumps(dict(identity)))  # a plain copy, as it reads back
        #: the ``extra`` state stored with the last batch :meth:`resume` loaded (None: none, or none loaded)
        self.extra: Any = None

    def _batch(self, k: int) -> Path:
        return self.folder / f"batch_{k:06d}.pt"

    def resume(self, rng: Generator) -> list[Any]:
        """The outputs of the batches stored for this identity (``0, 1, ...`` up to the first missing), with ``rng``
        set to the state after the last of them; none (and a fresh folder) otherwise."""
        ident = self.folder / _IDENTITY
        same = False
        if ident.is_file():
            try:
                same = json.loads(ident.read_text()) == self.identity
            except (OSError, ValueError):
                same = False
        if not same:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(ident, (json.dumps(self.identity, indent=1) + "\n").encode())
            return []
        outs, state = [], None
        k = 0
        while self._batch(k).is_file():
            try:
                payload = torch.load(self._batch(k), weights_only=False)
            except Exception:  # unreadable (a damaged disk, not a kill: the files are written atomically)
                for later in self.folder.glob("batch_*.pt"):
                    if later.name >= self._batch(k).name:
                        later.unlink()
                break              # drawn again from the state after the last good batch
            outs.append(payload["outputs"])
            state = payload["rng"]
            self.extra = payload.get("extra")
            k += 1
        if state is not None:
            set_rng_state(rng, state)
        return outs

    def save(self, k: int, outputs: Any, rng: Generator, extra: Any = None) -> None:
        """Store batch ``k``'s ``outputs`` (tensors, or lists/tuples/dicts of them), the state of ``rng`` after it
        and ``extra``, a further state of the drawing after it (see :func:`draw_batches`)."""
        with atomic_path(self._batch(k)) as tmp:
            torch.save({"outputs": outputs, "rng": get_rng_state(rng), "extra": extra}, tmp)

    def clear(self) -> None:
        """Remove the folder (the draw is finished and its results are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def draw_batches(n: int, batch_size: int, rng: Generator, draw: Callable[[int], Any],
                 progress: BatchProgress | None = None,
                 state: tuple[Callable[[], Any], Callable[[Any], None]] | None = None) -> list[Any]:
    """``[draw(b) for the batches of n]``, batch sizes ``batch_size`` (the last one smaller); with ``progress``, the
    batches stored by a killed earlier run are loaded instead of drawn (``rng`` continues after them) and every new
    one is stored.

    ``state = (get, set)``: a state the drawing carries from batch to batch besides ``rng`` (the persistent Markov
    chains of a super-resolving prior, :meth:`~latticekit.flows.superres.CoarseTheoryPrior.get_extra_state`): stored
    with every batch, and restored from the last loaded one before drawing on."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n}, batch_size={batch_size}: expected positive numbers")
    outs = [] if progress is None else progress.resume(rng)
    if outs and state is not None and progress is not None:
        state[1](progress.extra)
    done = min(n, len(outs) * batch_size)
    while done < n:
        b = min(batch_size, n - done)
        out = draw(b)
        if progress is not None:
            progress.save(len(outs), out, rng, None if state is None else state[0]())
        outs.append(out)
        done += b
    return outs
