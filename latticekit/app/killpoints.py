"""Named points at which a test can kill a job for real: ``LATTICEKIT_KILL_AT=<point>[:<k>]``.

The resumption tests of the jobs start a job in a subprocess with this environment variable; when the
job reaches ``<point>`` for the ``k``-th time (default the first) it sends itself SIGKILL, so nothing
after that moment runs: no ``finally`` block, no ``atexit`` handler, no buffered write. What the job
left on disk is then exactly what a ``kill -9`` (or a power cut after the kernel wrote the data) at that
moment leaves. Without the variable :func:`kill_point` does nothing.

Points (``latticekit run``): ``run:ensemble-created`` (``ensemble.h5`` exists, no checkpoint written
yet), ``run:measurement`` (after each measurement, before the segment's checkpoint). ``latticekit
train``: ``train:step`` (after each step's metrics line). ``latticekit sample``: ``sample:batch`` (after each
batch of proposals stored for resumption), ``sample:store`` (after each chunk of configurations appended to the chain's
temporary HDF5 file). ``latticekit scale``: ``scale:file`` (after each file's record).

Examples
--------
>>> import os
>>> os.environ.pop(ENV, None) is None or True
True
>>> kill_point("run:measurement")   # the variable is not set: nothing happens
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "kill_point"]

#: the environment variable naming the point (and optionally the count) at which to die
ENV = "LATTICEKIT_KILL_AT"

_reached: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Send this process SIGKILL if ``LATTICEKIT_KILL_AT`` names ``name`` and this is its ``k``-th call."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    # point names contain one colon ("run:measurement"); a second one separates the count
    point, _, count = spec.rpartition(":") if spec.count(":") >= 2 else (spec, "", "")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(count or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
