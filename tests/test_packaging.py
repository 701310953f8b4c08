"""Packaging: every package folder is declared, imports are light, __all__ is honest."""

import importlib
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
    mod = importlib.import_module(name)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{name} has no __all__ (the house rule: public API re-exported with __all__)"
    assert len(set(names)) == len(names), f"{name}.__all__ has duplicates"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names that do not exist: {missing}"


def test_version_matches():
    import latticekit

    assert latticekit.__version__ == _pyproject()["project"]["version"]
