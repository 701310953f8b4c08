"""Test modules change no process-wide state at import.

Collection imports every test module before the first test runs, so a global change made at import
time (default dtype, seeds, environment variables, thread counts) holds for every test of the session,
in whatever order they run. Such changes belong in fixtures that restore the previous value (e.g. the
autouse ``_float32_default`` of tests/flows/test_layers.py). The one deliberate exception is the root
conftest.py, which sets the BLAS/OpenMP thread variables before numpy loads (a fixture would be too
late); it is outside tests/ and not scanned.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: Calls that change process-wide state, by the name of the called attribute or function.
GLOBAL_SETTERS = frozenset({
    "set_default_dtype", "set_default_tensor_type", "set_default_device", "set_num_threads",
    "set_num_interop_threads", "use_deterministic_algorithms", "set_printoptions", "set_flush_denormal",
    "configure_threads", "putenv", "unsetenv", "threadpool_limits", "seterr",
})
#: ``<owner>.<name>(...)`` calls that reseed a global generator (``torch.Generator().manual_seed`` is local).
GLOBAL_SEEDERS = {("torch", "manual_seed"), ("cuda", "manual_seed"), ("cuda", "manual_seed_all"),
                  ("random", "seed"), ("np.random", "seed"), ("numpy.random", "seed")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _module_level(tree: ast.Module) -> list[ast.AST]:
    """Statements that run at import: the module body, descending into if/try/with/for, not into
    function or class bodies."""
    out: list[ast.AST] = []
    todo = list(tree.body)
    while todo:
        s = todo.pop(0)
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        out.append(s)
        for field in ("body", "orelse", "finalbody"):
            todo += getattr(s, field, []) if isinstance(s, (ast.If, ast.Try, ast.With, ast.For, ast.While)) else []
        if isinstance(s, ast.Try):
            for h in s.handlers:
                todo += h.body
    return out


def import_time_changes(path: Path, base: Path = TESTS.parent) -> list[str]:
    """``file:line: call`` (file relative to ``base``) for each process-wide change made when ``path``
    is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad: list[tuple[int, str]] = []
    for stmt in _module_level(tree):
        if isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            nodes = [stmt.test] if isinstance(stmt, (ast.If, ast.While)) else []   # bodies are visited on their own
            if isinstance(stmt, ast.With):
                nodes = [i.context_expr for i in stmt.items]
        else:
            nodes = [stmt]
        for top in nodes:
            for node in ast.walk(top):
                hit = None
                if isinstance(node, ast.Call):
                    name = _dotted(node.func)
                    owner, _, attr = name.rpartition(".")
                    if attr in GLOBAL_SETTERS or (owner.rsplit(".", 1)[-1], attr) in GLOBAL_SEEDERS \
                            or (owner, attr) in GLOBAL_SEEDERS \
                            or (owner.endswith("environ") and attr in ("update", "setdefault", "pop", "clear")):
                        hit = name
                elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                    targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                    for t in targets:
                        if isinstance(t, ast.Subscript) and _dotted(t.value).endswith("environ"):
                            hit = f"{_dotted(t.value)}[...] assignment"
                if hit:
                    bad.append((node.lineno, f"{path.relative_to(base).as_posix()}:{node.lineno}: {hit}"))
    return [b for _, b in sorted(bad)]


def test_no_test_module_changes_global_state_at_import():
    bad = [b for p in sorted(TESTS.rglob("*.py")) if "__pycache__" not in p.parts for b in import_time_changes(p)]
    for b in bad:
        print(b)
    assert not bad, "process-wide changes at import (move them into a fixture that restores them):\n" + "\n".join(bad)


def test_checker_finds_import_time_changes(tmp_path):
    src = ("import os, torch, numpy as np, pytest\n"
           "torch.set_default_dtype(torch.float32)\n"
           "if True:\n"
           "    torch.manual_seed(0)\n"
           "os.environ['X'] = '1'\n"
           "np.random.seed(3)\n"
           "G = torch.Generator().manual_seed(1)\n"          # a local generator: fine
           "@pytest.fixture(autouse=True)\n"
           "def _ok():\n"
           "    torch.set_default_dtype(torch.float64)\n"     # inside a fixture: fine
           "    os.environ.setdefault('Y', '2')\n")
    path = tmp_path / "test_mod.py"
    path.write_text(src)
    found = import_time_changes(path, tmp_path)
    assert [b.split(": ")[0] for b in found] == ["test_mod.py:2", "test_mod.py:4", "test_mod.py:5", "test_mod.py:6"], found
