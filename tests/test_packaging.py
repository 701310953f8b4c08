"""Packaging: every package folder is declared, imports are light, __all__ is honest."""

import importlib
import importlib.util
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _package_dirs():
    """Dotted names of every folder with an __init__.py under latticekit/ and backends/."""
    out = {}
    for base, prefix in (("latticekit", "latticekit"), ("backends", "latticekit.backends")):
        for init in (ROOT / base).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / base)
            if "__pycache__" in rel.parts:
                continue
            name = ".".join((prefix,) + rel.parts)
            out[name] = init.parent
    return out


def test_every_package_is_listed():
    cfg = _pyproject()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set(_package_dirs())
    assert found - listed == set(), f"package folders missing from pyproject [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"packages listed in pyproject but without __init__.py: {sorted(listed - found)}"
    assert cfg["package-dir"]["latticekit.backends"] == "backends"


def test_import_latticekit_is_light():
    code = (
        "import sys, latticekit; "
        "heavy = [m for m in ('torch', 'cupy', 'h5py', 'hypothesis', 'array_api_strict', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "import latticekit.testing; "
        "assert 'torch' not in sys.modules and 'hypothesis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("name", sorted(_package_dirs()))
def test_all_names_exist(name):
    if importlib.util.find_spec("torch") is None and name.split(".")[:2] == ["latticekit", "flows"]:
        pytest.skip("torch is not installed: latticekit.flows is torch by design")
    mod = importlib.import_module(name)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{name} has no __all__ (the house rule: public API re-exported with __all__)"
    assert len(set(names)) == len(names), f"{name}.__all__ has duplicates"
    # the lazy subpackages of latticekit are checked by their spec (tests/test_imports.py imports them),
    # so that this test does not import torch through latticekit.flows
    lazy = set(getattr(mod, "SUBMODULES", ())) if name == "latticekit" else set()
    missing = [n for n in names if not (importlib.util.find_spec(f"{name}.{n}") if n in lazy else hasattr(mod, n))]
    assert not missing, f"{name}.__all__ names that do not exist: {missing}"


def test_version_matches():
    import latticekit

    assert latticekit.__version__ == _pyproject()["project"]["version"]
