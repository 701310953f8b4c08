"""Helpers shared by the flow benchmark scripts: the machine record, atomic JSON output, Gamma-method entries."""

from __future__ import annotations

import json
import os
import platform
import socket
from typing import Any

import numpy as np
import torch

from latticekit.analysis import gamma_method
from latticekit.utils import atomic_write

__all__ = ["finish", "gamma", "machine", "write_json"]


def machine() -> dict[str, Any]:
    """CPU model, logical CPUs, load average now, torch version and threads, Python version."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"host": socket.gethostname(), "cpu_model": model, "logical_cpus": os.cpu_count(),
            "load_avg": list(os.getloadavg()), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def finish(path: str, data: dict[str, Any]) -> None:
    """Record the load average at the end under ``data["machine"]["load_avg_end"]`` and write ``data`` (atomic)."""
    data.setdefault("machine", {})["load_avg_end"] = list(os.getloadavg())
    write_json(path, data)


def gamma(values: Any) -> dict[str, float]:
    """Gamma-method value, error and tau_int of a scalar time series."""
    r = gamma_method(np.asarray(values, dtype=np.float64))
    return {"value": float(r.value), "error": float(r.error), "tau_int": float(r.tau_int),
            "tau_int_error": float(r.tau_int_error)}
