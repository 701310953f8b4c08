"""The README's test command on a fresh machine: ``pip install -e ".[test]" && python -m pytest -q``.

Two ways it broke before: a test folder imported torch at collection although the README promises
that torch tests are skipped without torch, and the suite used packages that the ``test`` extra did
not bring. Both are checked here, cheaply, in the normal suite: collection in a subprocess with torch
hidden, and the suite's third-party imports against the dependencies plus the ``test`` extra.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Imported by the suite but deliberately not in the test extra, each skipped with its reason when absent.
OPTIONAL = {
    "cupy": "needs a CUDA GPU (the cupy extra); the cupy backend cases are skipped without it",
    "pyerrors": "an external cross-check of the Gamma method, skipped when not installed",
}


# Python started with torch hidden, as on a machine without it: the path finder does not see ``torch``,
# so ``import torch`` raises ModuleNotFoundError and ``importlib.util.find_spec("torch")`` is None (a
# ``sys.modules["torch"] = None`` entry would not do: libraries that look into sys.modules trip on it).
WITHOUT_TORCH = """
import sys
from importlib.machinery import PathFinder


class _PathFinderWithoutTorch(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [_PathFinderWithoutTorch if f is PathFinder else f for f in sys.meta_path]
"""


def test_collection_without_torch_skips_the_torch_folders_with_a_reason():
    code = WITHOUT_TORCH + ("import importlib.util, pytest\n"
                            "assert importlib.util.find_spec('torch') is None\n"
                            "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    text = out.stdout + out.stderr
    tail = "\n".join(text.splitlines()[-15:])
    assert out.returncode == 0, tail
    assert not re.search(r"\berrors?\b", text.splitlines()[-1]), tail
    for folder in ("tests/flows/", "latticekit/flows/"):
        assert f"torch is not installed: {folder} is torch by design" in text, tail
    assert "tests/test_backends.py::" in text   # the rest of the suite is collected


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party modules imported by the tests and conftest files (import statements and
    ``pytest.importorskip("name")``), with the files that import them."""
    files = sorted((ROOT / "tests").rglob("*.py")) + [ROOT / "conftest.py"]
    out: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                names = [node.args[0].value]
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("latticekit", "_pytest"):
                    out.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return out


def test_test_extra_brings_what_the_suite_imports():
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    have = _requirement_names(project["dependencies"]) | _requirement_names(project["optional-dependencies"]["test"])
    imports = _third_party_imports()
    assert {"torch", "numba", "hypothesis", "pytest"} <= set(imports)
    missing = {m: sorted(f) for m, f in imports.items() if m.replace("_", "-") not in have and m not in OPTIONAL}
    assert not missing, f"imported by the suite but neither a dependency nor in the test extra: {missing}"
    assert "torch" in _requirement_names(project["optional-dependencies"]["test"])
