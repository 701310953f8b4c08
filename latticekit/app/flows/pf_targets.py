"""The pseudofermion monomials of a ``wilson_nf2`` theory, shared by the pseudofermion flow families.

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson_nf2", "kappa": 0.2,
...                             "even_odd": True, "hasenbusch_mus": [0.1]}})
>>> [(t.mu_lo, t.mu_hi) for t in theory_targets(cfg.theory, mu0=1e-5)]
[(1e-05, 0.10001), (0.10001, None)]
"""

from __future__ import annotations

from typing import Any

__all__ = ["theory_targets"]


def theory_targets(theory: Any, mu0: float = 0.0) -> list[Any]:
    """The monomials of a ``wilson_nf2`` theory (``even_odd``, ``hasenbusch_mus``, CG settings) with regulator ``mu0``
    (eq. 38 of arXiv:2207.08945: their determinants multiply to ``det(M + mu0)``)."""
    from latticekit.flows.pseudofermion import monomial_targets

    a = theory.params
    return monomial_targets(theory.group, theory.lattice, a.kappa, even_odd=a.even_odd,
                            hasenbusch_mus=list(a.hasenbusch_mus), mu0=mu0, tol=a.cg_tol, maxiter=a.cg_maxiter)
