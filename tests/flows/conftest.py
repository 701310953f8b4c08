"""Fixtures of the flow tests: the torch device of the core property tests.

The property tests (log-det against autograd, inverse, translation and gauge equivariance) run on
the CPU and, when torch sees one, on a CUDA device; without a GPU the CUDA parameter is skipped
with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch


def _cuda_reason() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA device visible to torch"


@pytest.fixture(params=[pytest.param("cpu", id="cpu"),
                        pytest.param("cuda", id="cuda",
                                     marks=pytest.mark.skipif(_cuda_reason() is not None,
                                                              reason=str(_cuda_reason())))])
def device(request: Any) -> str:
    """Torch device name of a property test: ``"cpu"``, or ``"cuda"`` when a GPU is present."""
    return request.param
