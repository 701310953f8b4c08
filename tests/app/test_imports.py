"""The application tier's import structure: no circles, every module importable alone (that physics never
imports the tier is part of the import lint, tests/test_imports.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "latticekit"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, mod: str | None = None) -> set[str]:
    """Absolute names of every latticekit module ``path`` (module ``mod``) imports, at module level and
    inside functions."""
    mod = _module_name(path) if mod is None else mod
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)   # `from pkg import module`
    return {n for n in out if n == "latticekit" or n.startswith("latticekit.")}


def _app_modules() -> list[str]:
    return sorted(_module_name(p) for p in (PKG / "app").rglob("*.py"))


# The rule "nothing outside latticekit/app imports the application tier" is checked, with the array-library
# rule and a negative control of every import form, by the one import lint in tests/test_imports.py.


def _cycles(graph: dict[str, set[str]], roots: list[str]) -> list[str]:
    """Import circles reachable from ``roots`` that pass through an app module."""
    cycles = []

    def visit(node: str, stack: list[str], seen: set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cyc = stack[stack.index(nxt):] + [nxt]
                if any(c.startswith("latticekit.app") for c in cyc):
                    cycles.append(" -> ".join(cyc))
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt], seen)

    for m in roots:
        visit(m, [m], {m})
    return sorted(set(cycles))


def test_no_import_circles_in_the_application_tier() -> None:
    # every import counts, also those inside functions (the old flows/job.py <-> flows/distributed.py
    # circle was made of function-level imports)
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: {n for n in _imports(p) if n in files and n != m} for m, p in files.items()}
    assert _cycles({"latticekit.app.a": {"latticekit.app.b"}, "latticekit.app.b": {"latticekit.app.a"}},
                   ["latticekit.app.a"])  # the detector detects
    cycles = _cycles(graph, _app_modules())
    assert not cycles, "import circles:\n" + "\n".join(cycles)


# One interpreter per module cost about 40 s of CPU (torch's import, 2 s, in most of them). Where fork exists, one
# interpreter imports the third-party libraries (never latticekit) and forks a child per module, which imports that
# module alone: what the check is about -- the order of latticekit's own imports -- is the same as in a fresh
# interpreter. The parent asserts that latticekit was not imported before it forks.
_FORKING = r"""
import importlib, json, os, sys, traceback
for lib in ("numpy", "scipy", "scipy.special", "scipy.linalg", "h5py", "torch", "tqdm", "matplotlib", "numba"):
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
assert not any(m == "latticekit" or m.startswith("latticekit.") for m in sys.modules), "latticekit preloaded"
failed = []
for m in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(m)
            code = 0
        except BaseException:
            os.write(w, traceback.format_exc()[-2000:].encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        err = fh.read().decode()
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(m + ": " + (err or "(killed)"))
print(json.dumps(failed))
"""


@pytest.mark.parametrize("group", range(2))
def test_every_app_module_imports_alone_in_a_fresh_interpreter(group: int) -> None:
    pytest.importorskip("torch", reason="the flow-job modules import torch")
    mods = _app_modules()[group::2]
    if hasattr(os, "fork"):
        r = subprocess.run([sys.executable, "-c", _FORKING, *mods], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        failed = json.loads(r.stdout.strip().splitlines()[-1])
        assert not failed, "\n".join(failed)
        return

    def run(m: str) -> tuple[str, int, str]:
        r = subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True, text=True, cwd=ROOT)
        return m, r.returncode, r.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=2) as ex:
        failed = [f"{m}: {err}" for m, rc, err in ex.map(run, mods) if rc]
    assert not failed, "\n".join(failed)


def test_cli_and_run_job_do_not_import_torch() -> None:
    code = ("import sys, latticekit.app, latticekit.app.cli, latticekit.app.run, latticekit.app.measure; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
