"""Fixtures of the flow tests: the torch device of the core property tests.

The property tests (log-det against autograd, inverse, translation and gauge equivariance) run on
the CPU and, when torch sees one, on a CUDA device; without a GPU the CUDA parameter is skipped
with the reason.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

# Without torch the root conftest.py skips this whole folder (one skip, with the reason) before any
# test module is imported; this file is still loaded, so it must import without torch too.


def _cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device visible to torch"


@pytest.fixture(params=[pytest.param("cpu", id="cpu"),
                        pytest.param("cuda", id="cuda",
                                     marks=pytest.mark.skipif(_cuda_reason() is not None,
                                                              reason=str(_cuda_reason())))])
def device(request: Any) -> str:
    """Torch device name of a property test: ``"cpu"``, or ``"cuda"`` when a GPU is present."""
    return request.param
