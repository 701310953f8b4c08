#!/usr/bin/env python
"""Print a Markdown table of a results file written by bench_core.py.

    python benchmarks/summarize.py benchmarks/results/core_<host>.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["main", "table"]


def table(res: dict[str, Any]) -> str:
    """The Markdown summary (bandwidth probe, then one line per kernel row)."""
    meta, bw = res["meta"], res["bandwidth"]
    lines = [
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}, host {meta['host']} ({meta.get('cpu_model', meta['processor'])}), "
        f"os.cpu_count {meta['os_cpu_count']}, torch threads {meta['torch_num_threads']}, "
        f"load average at start/end {meta.get('loadavg_at_start')} / {meta.get('loadavg_at_end')}  ",
        f"numpy {meta['numpy']}, torch {meta['torch']}, python {meta['python']}, wall {meta.get('wall_s', 0):.0f} s",
        "",
        "Bandwidth probe (GB/s, best of N): " + ", ".join(f"{k} {v:.1f}" for k, v in bw["GBps"].items())
        + f". Reference = {bw['reference_GBps']:.1f} GB/s ({bw['reference_kernel']}).",
        "",
        "| suite | kernel | backend | L | batch | ms/call (median) | ns/site | GB/s (median) | % of ref BW | "
        "GB/s (best) | % (best) | in LLC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = bw["reference_GBps"]
    for r in res["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['suite']} | {r['kernel']} | {r['backend']} | {r['L']} | {r['batch']} | "
                         f"{r['status']}: {r.get('reason', '')[:60]} | | | | | | |")
            continue
        lines.append(
            f"| {r['suite']} | {r['kernel']} | {r['backend']} | {r['L']} | {r['batch']} | {r['median_s'] * 1e3:.3g} | "
            f"{r['ns_per_site']:.3g} | {r['GBps']:.2f} | {100 * r['fraction_of_bandwidth']:.1f} | "
            f"{r['GBps_best']:.2f} | {100 * r['GBps_best'] / ref:.1f} | {'yes' if r.get('fits_in_llc') else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(table(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
