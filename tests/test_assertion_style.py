"""One assertion helper: numerical closeness in tests goes through ``latticekit.testing.assert_close``.

``assert_close(actual, desired, rtol=..., atol=...)`` checks ``|actual - desired| <= atol + rtol |desired|``
across backends and devices and names the worst element when it fails. Other closeness helpers each have
their own defaults and formula (``np.testing.assert_allclose``: rtol 1e-7; ``np.allclose``: rtol 1e-5,
atol 1e-8; ``pytest.approx``: max(rel 1e-6, abs 1e-12); ``torch.testing.assert_close``: by dtype), so a
test suite that mixes them hides what each check asserts. This lint keeps them out of the test files.
Exact equality (``==``, ``np.testing.assert_array_equal``) and bounds (``x < 1e-3``, statistical
``abs(dev) < k * sigma``) are not closeness checks and are not flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: the helper's own tests compare against the other helpers on purpose
EXEMPT = {"testing/test_assert_close.py"}

#: forbidden anywhere in a test file (fully qualified names after resolving imports)
FORBIDDEN_CALLS = frozenset({
    "numpy.testing.assert_allclose", "numpy.testing.assert_almost_equal", "numpy.testing.assert_approx_equal",
    "numpy.testing.assert_array_almost_equal", "numpy.testing.assert_array_almost_equal_nulp",
    "numpy.testing.assert_array_max_ulp", "torch.testing.assert_close", "torch.testing.assert_allclose",
    "pytest.approx",
})
#: forbidden inside an ``assert`` statement (elsewhere, e.g. to build a mask, they are plain functions)
FORBIDDEN_IN_ASSERT = frozenset({
    "numpy.allclose", "numpy.isclose", "torch.allclose", "torch.isclose", "math.isclose",
})
_ROOTS = {"np": "numpy", "npt": "numpy.testing"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> fully qualified name, from every import in the file."""
    out = dict(_ROOTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str:
    name = _dotted(node)
    if not name:
        return ""
    head, _, rest = name.partition(".")
    head = aliases.get(head, head)
    return f"{head}.{rest}" if rest else head


def violations(source: str, filename: str = "<test>") -> list[str]:
    """``'file:line: name'`` for every closeness helper other than assert_close used in ``source``."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    in_assert: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            in_assert.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Attribute, ast.Name)):
            continue
        name = _qualified(node, aliases)
        if name in FORBIDDEN_CALLS or (name in FORBIDDEN_IN_ASSERT and id(node) in in_assert):
            found.append(f"{filename}:{node.lineno}: {name}")
    return sorted(set(found))


def _test_files() -> list[Path]:
    out = []
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        if rel in EXEMPT:
            continue
        out.append(path)
    return out


def test_tests_use_the_one_assertion_helper() -> None:
    files = _test_files()
    assert len(files) > 50  # the scan sees the suite
    bad = [v for f in files for v in violations(f.read_text(), f.relative_to(TESTS).as_posix())]
    assert not bad, ("use latticekit.testing.assert_close(actual, desired, rtol=..., atol=...) for numerical "
                     "closeness:\n" + "\n".join(bad))


@pytest.mark.parametrize("source", [
    "import numpy as np\nnp.testing.assert_allclose(a, b)",
    "import numpy\nnumpy.testing.assert_allclose(a, b, rtol=1e-3)",
    "from numpy.testing import assert_allclose\nassert_allclose(a, b)",
    "import numpy.testing as npt\nnpt.assert_array_almost_equal(a, b)",
    "import torch\ntorch.testing.assert_close(a, b)",
    "from torch.testing import assert_close\nassert_close(a, b)",
    "import pytest\nassert x == pytest.approx(1.0)",
    "from pytest import approx\nassert approx(1.0) == x",
    "import numpy as np\nassert np.allclose(a, b)",
    "import numpy as np\nassert ok and np.isclose(a, b)",
    "import torch\nassert all(torch.allclose(a, b) for a, b in pairs)",
    "import math\nassert math.isclose(a, b)",
])
def test_lint_flags_other_closeness_helpers(source: str) -> None:
    assert violations(source), source


@pytest.mark.parametrize("source", [
    "from latticekit.testing import assert_close\nassert_close(a, b, rtol=1e-7, atol=0)",
    "import numpy as np\nmask = np.isclose(a, b)\nnp.testing.assert_array_equal(x, y)",
    "import numpy as np\nassert np.max(np.abs(x)) <= 1.0",
    "import math\nassert abs(m - 1.0) < 4 * err  # statistical: 4 standard errors",
])
def test_lint_allows_assert_close_equality_and_bounds(source: str) -> None:
    assert violations(source) == []
