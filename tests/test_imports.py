"""The public import surface and the import rules of the house.

* ``import latticekit`` is light (no torch, h5py, numba) and every subpackage the docs use as
  ``lk.<name>`` is an attribute of ``latticekit`` in a fresh interpreter (loaded on first use).
* Import lint (AST, every .py file in latticekit/): only backends/ and the host-side folders that
  DESIGN.md names (flows/ torch by design; io/, exact/, analysis/, testing/, app/ host-side) import an array
  library; physics and libraries never import the application tier ``latticekit.app``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import latticekit

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "latticekit"

# -- lazy subpackages ----------------------------------------------------------------------------------


def _present(name: str) -> bool:
    return (PKG / name / "__init__.py").is_file() or (PKG / f"{name}.py").is_file()


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_gauge_and_utils_are_attributes_in_a_fresh_interpreter():
    out = _run("import latticekit as lk; lk.gauge; lk.utils; print(lk.gauge.__name__, lk.utils.__name__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["latticekit.gauge", "latticekit.utils"]


def test_import_latticekit_leaves_heavy_libraries_out():
    out = _run("import sys, latticekit; print(sorted(m for m in ('torch', 'h5py', 'numba', 'cupy', 'matplotlib') "
               "if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_analysis_imports_scipy_submodules_only_when_used():
    """scipy.fft, scipy.stats and scipy.special cost 1.1 s of every command's start (latticekit.analysis is imported
    by the jobs) and are imported inside the functions that use them."""
    loaded = "print(sorted(m for m in ('scipy.fft', 'scipy.stats', 'scipy.special') if m in sys.modules))"
    out = _run(f"import sys, numpy as np, latticekit.analysis as a; {loaded}; "
               f"a.gamma_method(np.sin(np.arange(200.0))); a.ess(np.zeros(4)); {loaded}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "['scipy.fft', 'scipy.special']"]


def _doc_attributes() -> dict[str, list[str]]:
    """``lk.<name>`` attribute uses in README.md and docs/*.md: name -> files that use it."""
    uses: dict[str, list[str]] = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in set(re.findall(r"\blk\.([A-Za-z_]\w*)", doc.read_text(encoding="utf-8"))):
            uses.setdefault(name, []).append(doc.name)
    return uses


def test_every_name_the_docs_use_is_an_attribute_in_a_fresh_interpreter():
    uses = _doc_attributes()
    assert "gauge" in uses                      # README.md and docs use lk.gauge
    names = sorted(n for n in uses if n != "flows" or _torch_installed())
    code = ("import latticekit as lk\nbad = []\n"
            f"for n in {names!r}:\n"
            "    try:\n        getattr(lk, n)\n    except AttributeError as e:\n        bad.append(f'{n}: {e}')\n"
            "print(bad)")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"used as lk.<name> in the docs but missing: {out.stdout} ({uses})"


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_lazy_list_matches_the_folders():
    """Every subpackage folder and module named in SUBMODULES exists and is reachable as ``lk.<name>``,
    and no folder is missing from SUBMODULES."""
    folders = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert folders <= set(latticekit.SUBMODULES), f"add to latticekit.SUBMODULES: {sorted(folders - set(latticekit.SUBMODULES))}"
    for name in latticekit.SUBMODULES:
        assert _present(name), f"latticekit.SUBMODULES names {name!r}, which does not exist"
        assert name in latticekit.__all__ and name in dir(latticekit)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        latticekit.nonexistent  # noqa: B018


@pytest.mark.parametrize("name", ["theories", "app"])
def test_new_subpackages_are_lazy_attributes(name):
    out = _run(f"import sys, latticekit as lk; m = lk.{name}; print(m.__name__, 'torch' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"latticekit.{name}", "False"]


# -- import lint -----------------------------------------------------------------------------------------

#: Array libraries (and array compilers); scipy counts as host-side numpy.
ARRAY_LIBRARIES = frozenset({"numpy", "scipy", "torch", "cupy", "cupyx", "array_api_strict", "array_api_compat",
                             "jax", "numba"})
#: Folders of latticekit/ that may name an array library (DESIGN.md): flows/ is torch by design, the
#: others are host-side (io/ byte decoding, exact/ scipy scalars, analysis/ time series, testing/
#: numpy reference values, app/ files, tables and plots of measurement results; its flow jobs are torch
#: by design). backends/ -- the one place that names them -- is a folder of its own.
ARRAY_ALLOWED = ("flows/", "io/", "exact/", "analysis/", "testing/", "app/")
#: The application tier: latticekit/app/ (jobs, config, the command); everything else -- physics,
#: theories, the flows library, io, utils, backends -- never imports latticekit.app.
APP_TIER = ("app/",)


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute dotted module) of every import in ``path``: import statements at any depth,
    relative ones resolved against ``package``, ``from X import name`` also as ``X.name``, and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if fname in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
    return out


def lint(root: Path, backends_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """Offences ``file:line: message`` against the two rules, for the package folder ``root``
    (``latticekit``) and optionally the backends folder (checked for the app rule only)."""
    array_bad: list[str] = []
    app_bad: list[str] = []
    trees = [(root, root.name)] + ([(backends_dir, f"{root.name}.backends")] if backends_dir else [])
    for base, dotted in trees:
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).as_posix()
            parts = path.relative_to(base).with_suffix("").parts
            package = ".".join((dotted,) + parts[:-1])   # the package a relative import starts from
            shown = f"{base.name}/{rel}"
            in_backends = base is backends_dir
            may_name_arrays = in_backends or rel.startswith(ARRAY_ALLOWED)
            app_tier = not in_backends and (rel.startswith("app/") or rel in APP_TIER)
            seen: set[tuple[str, int]] = set()   # one offence per rule and line
            for line, mod in _imports(path, package):
                if not may_name_arrays and mod.split(".")[0] in ARRAY_LIBRARIES and ("array", line) not in seen:
                    seen.add(("array", line))
                    array_bad.append(f"{shown}:{line}: imports {mod} (only backends/ and "
                                     f"{', '.join(ARRAY_ALLOWED)} may name an array library; "
                                     "ask latticekit.backends)")
                if not app_tier and (mod == f"{root.name}.app" or mod.startswith(f"{root.name}.app.")) \
                        and ("app", line) not in seen:
                    seen.add(("app", line))
                    app_bad.append(f"{shown}:{line}: imports {mod} (physics and libraries never import the "
                                   "application tier)")
    return array_bad, app_bad


def _report(offences: list[str]) -> str:
    for o in offences:
        print(o)
    return "\n".join(offences)


def test_only_backends_and_host_side_folders_import_array_libraries():
    array_bad, _ = lint(PKG, ROOT / "backends")
    assert not array_bad, "\n" + _report(array_bad)


def test_nothing_outside_the_application_tier_imports_app():
    assert (PKG / "app").is_dir()
    _, app_bad = lint(PKG, ROOT / "backends")
    assert not app_bad, "\n" + _report(app_bad)


def test_lint_finds_offences(tmp_path, capsys):
    """The checker itself, on a made-up package: every import form is caught, with file:line."""
    pkg = tmp_path / "latticekit"
    for folder in ("actions", "io", "app", "flows"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "actions" / "bad.py").write_text(
        "import math\n"
        "import numpy as np\n"
        "def f():\n"
        "    from scipy.special import i0\n"
        "    import importlib\n"
        "    return importlib.import_module('torch')\n"
        "from ..app import jobs\n"
        "from latticekit import app\n"
        "import latticekit.app.cli\n"
        "from .. import app as a2\n")
    (pkg / "io" / "ok.py").write_text("import numpy\nfrom latticekit.backends import to_numpy\n")
    (pkg / "app" / "run.py").write_text("import latticekit.app.cli\nfrom ..actions import bad\n")
    (pkg / "flows" / "job.py").write_text("import torch\nfrom latticekit.app import config\n")
    (pkg / "flows" / "nets.py").write_text("import torch\nfrom latticekit.app.config import x\n")
    backends_dir = tmp_path / "backends"
    backends_dir.mkdir()
    (backends_dir / "__init__.py").write_text("import numpy\nfrom latticekit.app import run\n")
    array_bad, app_bad = lint(pkg, backends_dir)
    assert [o.split(": ")[0] for o in array_bad] == ["latticekit/actions/bad.py:2", "latticekit/actions/bad.py:4",
                                                      "latticekit/actions/bad.py:6"]
    assert [o.split(": ")[0] for o in app_bad] == [
        "latticekit/actions/bad.py:7", "latticekit/actions/bad.py:8", "latticekit/actions/bad.py:9",
        "latticekit/actions/bad.py:10", "latticekit/flows/job.py:2", "latticekit/flows/nets.py:2",
        "backends/__init__.py:2"]
    assert all("imports latticekit.app" in o for o in app_bad)
    _report(array_bad)
    assert "latticekit/actions/bad.py:2: imports numpy" in capsys.readouterr().out

