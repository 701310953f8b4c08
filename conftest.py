"""Root pytest configuration: docstring examples of the package are collected as tests
(``--doctest-modules`` in pyproject.toml); the torch-only folders are skipped, with the reason, when
torch is not installed (tests/test_fresh_install.py checks that collection then still succeeds)."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

# One BLAS/OpenMP thread per test process: the suite's matrices are small, and multi-threaded BLAS on a
# busy 2-core machine can be 100x slower (measured here: eigvals of a 128x128 matrix 5 s vs 0.03 s).
# setdefault: a caller's explicit choice wins. This must happen before any test module imports numpy or
# torch (their thread pools read the variables when they load), so it cannot be a fixture; it is the one
# process-wide setting of the suite, made here on purpose and inherited by the subprocess tests.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def pytest_configure(config: pytest.Config) -> None:
    """A pytest-xdist worker (``-n``, pyproject.toml) is one of several test processes on the machine: it
    runs numba and torch with one thread, or the parallel regions of the workers oversubscribe the cores
    and wait for each other (docs/architecture.md, "Thread counts"). Tests that set other counts put
    them back (``_restore_thread_counts`` below)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from latticekit.backends import configure_threads

        configure_threads(1)


_ROOT = Path(__file__).resolve().parent
#: Folders that are torch by design (the flow library and its tests): without torch each is reported as
#: one skipped collector with the reason, instead of failing to import.
TORCH_FOLDERS = ("latticekit/flows", "latticekit/app/flows", "tests/flows", "tests/app/flows")
_NO_TORCH = importlib.util.find_spec("torch") is None


class _TorchFolder(pytest.Directory):
    """A torch-only folder on a machine without torch: collecting it skips it, naming the reason."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        pytest.skip(f"torch is not installed: {self.path.relative_to(_ROOT).as_posix()}/ is torch by design "
                    "(pip install torch, or the test extra)")


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _NO_TORCH and path.resolve().relative_to(_ROOT).as_posix() in TORCH_FOLDERS:
        return _TorchFolder.from_parent(parent, path=path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without torch, docstring examples that use torch (outside the torch folders) are skipped."""
    if not _NO_TORCH:
        return
    skip = pytest.mark.skip(reason="torch is not installed: this docstring example uses torch")
    for item in items:
        dtest = getattr(item, "dtest", None)   # doctest items
        if dtest is not None and any("torch" in ex.source for ex in dtest.examples):
            item.add_marker(skip)


# Files whose tests (doctests included) call latticekit.backends.configure_threads: the thread counts,
# the exported variables and a pending numba request are put back after each of their tests.
_CONFIGURES_THREADS = ("_threads.py", "test_threads.py")


@pytest.fixture(autouse=True)
def _restore_thread_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.path.name not in _CONFIGURES_THREADS:
        yield
        return
    from latticekit.backends import _threads

    env = {v: os.environ.get(v) for v in _threads.THREAD_ENV_VARS}
    numba_request = _threads._NUMBA_REQUEST
    counts: dict[str, Any] = {m: sys.modules[m].get_num_threads() for m in ("numba", "torch") if m in sys.modules}
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    pools = {} if threadpoolctl is None else {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info()}
    try:
        yield
    finally:
        for v, old in env.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old
        if threadpoolctl is not None:
            for lib in threadpoolctl.ThreadpoolController().lib_controllers:
                # a library loaded during the test: the count its loading reads from the environment
                var = {"openblas": "OPENBLAS_NUM_THREADS", "mkl": "MKL_NUM_THREADS"}.get(lib.internal_api)
                n = pools.get(lib.filepath) or os.environ.get(var or "", os.environ.get("OMP_NUM_THREADS"))
                if n:
                    lib.set_num_threads(int(n))
        for m, n in counts.items():
            sys.modules[m].set_num_threads(n)
        if "numba" in sys.modules and "numba" not in counts:   # loaded during the test
            sys.modules["numba"].set_num_threads(sys.modules["numba"].config.NUMBA_NUM_THREADS)
        _threads._NUMBA_REQUEST = numba_request


@pytest.fixture(autouse=True)
def _doctest_temporaries_in_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Docstring examples make their folders with ``tempfile.mkdtemp()`` (what a user would write); under the
    suite those go into the test's ``tmp_path``, which pytest prunes, instead of piling up in /tmp."""
    if getattr(request.node, "dtest", None) is None:
        yield
        return
    old = tempfile.tempdir
    tempfile.tempdir = str(request.getfixturevalue("tmp_path"))
    try:
        yield
    finally:
        tempfile.tempdir = old
