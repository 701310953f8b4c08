"""``configure_malloc``: large temporaries reuse heap memory instead of a fresh ``mmap`` (page faults) each time.

Each case runs in a fresh interpreter (the setting is process-wide and cannot be undone), loops over torch
elementwise operations whose results are 64 MB float64 tensors (above glibc's 32 MB ceiling of the dynamic
mmap threshold) and counts the minor page faults of the loop. Without the setting every temporary is mapped
anew: 16384 faults per 64 MB block, hundreds of thousands in the loop; with it the blocks are faulted in once
and then reused. (torch, not NumPy: NumPy asks for transparent huge pages on large arrays, which hides most of
the faults; torch's CPU allocator is plain ``malloc``.) The negative control (``LATTICEKIT_MALLOC=default``) shows the faults the setting removes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the child process allocates torch tensors")

_CHILD = r"""
import json, resource, sys
import torch
from latticekit.backends import configure_malloc
on = configure_malloc()
torch.set_num_threads(1)
x = torch.ones(8 << 20, dtype=torch.float64)     # 64 MB
y = torch.sin(x) + x                    # warm-up: the first blocks are faulted in either way
del y
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y = torch.sin(x) + x                # two 64 MB temporaries per pass
    del y
print(json.dumps({"on": on, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0}))
"""


def _faults(env_value: str | None) -> dict:
    env = dict(os.environ)
    env.pop("LATTICEKIT_MALLOC", None)
    if env_value is not None:
        env["LATTICEKIT_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only (a no-op elsewhere)")
def test_configure_malloc_removes_page_faults_of_large_temporaries() -> None:
    on = _faults(None)
    off = _faults("default")
    assert off["on"] is False
    if not on["on"]:
        pytest.skip("not glibc: configure_malloc does nothing here")
    # without: 2 temporaries x 16384 pages x 20 passes ~ 6.5e5 faults; with: the blocks are reused (a few
    # hundred faults for the interpreter's own small allocations). 1/20 leaves a wide margin either way.
    assert off["faults"] > 100_000, off
    assert on["faults"] * 20 < off["faults"], (on, off)
