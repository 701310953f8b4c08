"""The examples of README.md and docs/*.md work as written.

* Every ```python block runs in a fresh interpreter, in an empty folder (the blocks write files), with one
  thread. A block whose info string is ``python notest`` is a listing of signatures or of a call-site pattern
  and is not run; the convention is pytest-markdown-docs'. That plugin is not used: it runs the blocks with
  ``exec`` inside the test process and in its working folder, where the blocks' files and global settings
  (backend, fast-path switch) would leak into the suite.
* Every ``latticekit ...`` line of a ```bash block parses with the command's own argument parser (so an option
  renamed or removed in the code fails here), and the example configurations it names exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[tuple[str, str, str]]:
    """``(id, info string, code)`` of the fenced blocks whose language is ``lang``."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            info = m.group(1).split()
            if info and info[0] == lang:
                line = text.count("\n", 0, m.start()) + 1
                out.append((f"{doc.relative_to(ROOT)}:{line}", " ".join(info), m.group(2)))
    return out


PYTHON = [b for b in _blocks("python") if "notest" not in b[1].split()]
COMMANDS = [(f"{bid}:{k}", line) for bid, _, code in _blocks("bash")
            for k, line in enumerate(code.splitlines()) if line.lstrip().startswith("latticekit ")]


def test_the_docs_have_examples() -> None:
    assert len(PYTHON) >= 5 and len(COMMANDS) >= 20, (len(PYTHON), len(COMMANDS))


@pytest.mark.parametrize("code", [b[2] for b in PYTHON], ids=[b[0] for b in PYTHON])
def test_python_example_runs(code: str, tmp_path: Path) -> None:
    needs = {m for m in ("torch", "h5py", "torchdiffeq", "hypothesis") if re.search(rf"\b{m}\b", code)}
    if "latticekit.flows" in code or "lk.flows" in code:
        needs.add("torch")
    missing = sorted(m for m in needs if find_spec(m) is None)
    if missing:
        pytest.skip(f"the example needs {', '.join(missing)}, which is not installed")
    # TMPDIR: the examples' tempfile.mkdtemp() folders go under pytest's tmp_path (which pytest prunes), not /tmp
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"the example failed:\n{code}\n--- stderr ---\n{r.stderr[-3000:]}"


@pytest.mark.parametrize("line", [c[1] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_documented_command_parses(line: str) -> None:
    from latticekit.app.cli import _build_parser

    words = [a for a in shlex.split(line.split(" #")[0]) if a not in ("\\", "...")]
    commands: list[list[str]] = [[]]
    for a in words:                # `latticekit sample x && latticekit compare ...`: one command each
        if a in ("&&", ";", "||"):
            commands.append([])
        else:
            commands[-1].append(a)
    for argv in commands:
        assert argv[0] == "latticekit", f"`{line.strip()}`: expected latticekit commands only"
        argv = argv[1:]
        try:
            args = _build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code:
                pytest.fail(f"`{line.strip()}` does not parse: argv {argv}")
            continue   # --help
        config = str(getattr(args, "config", None) or "")
        # a placeholder such as examples/validation/<name>.toml stands for any of its files
        if config.startswith("examples/") and "<" not in config:
            assert (ROOT / config).is_file(), f"`{line.strip()}` names {config}, which does not exist"
