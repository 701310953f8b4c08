"""The application tier's import structure: no circles, every module importable alone (that physics never
imports the tier is part of the import lint, tests/test_imports.py)."""

from __future__ import annotations

import ast
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


@pytest.mark.parametrize("group", range(2))
def test_every_app_module_imports_alone_in_a_fresh_interpreter(group: int) -> None:
    pytest.importorskip("torch", reason="the flow-job modules import torch")
    mods = _app_modules()[group::2]

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
