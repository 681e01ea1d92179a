"""Test-only: a plain NumPy (float64) transcription of the coupled NMF updates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reference_coupled_nmf(
    D: Sequence[np.ndarray],
    A: Sequence[np.ndarray],
    F: np.ndarray,
    P: Sequence[np.ndarray],
    O: Sequence[np.ndarray],
    *,
    n_iter: int = 50,
    lambda_f: float = 1.0,
    mode: str = "monotone",
    tol: float = 1e-8,
    eps: float = 1e-9,
    record: bool = True,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[dict]]:
    """Test/benchmark-only: a plain NumPy (float64) transcription of the updates, from given
    factors.

    Returns ``F, P, O, history`` (history rows: iteration, objective, relative_error), with the
    residuals computed directly as ``||X - W F||^2``. ``record=False`` skips the history (and
    with it the early stop), for timing. Not for analysis: no validation, no streaming.
    """
    F = np.array(F, dtype=float)
    P = [np.array(p, dtype=float) for p in P]
    O = [np.array(o, dtype=float) for o in O]
    X = [np.asarray(x, dtype=float) for x in list(D) + list(A)]
    total = sum(float((x**2).sum()) for x in X)

    def state():
        recon = sum(float(((x - w @ F) ** 2).sum()) for x, w in zip(X, P + O))
        obj = 0.5 * recon + lambda_f * (F.sum() + 0.5 * (F**2).sum())
        return {"objective": float(obj), "relative_error": recon / total}

    hist = [{"iteration": 0, **state()}] if record else []
    for it in range(1, n_iter + 1):
        num = sum(w.T @ x for w, x in zip(P + O, X))
        den = sum(w.T @ w @ F for w in P + O) + lambda_f * (1 + F) + eps
        F = F * num / den
        for group, data in ((P, X[: len(P)]), (O, X[len(P) :])):
            for i, x in enumerate(data):
                w = group[i]
                w = w * (x @ F.T) / (w @ (F @ F.T) + eps)
                if mode == "faithful":
                    nrm = np.linalg.norm(w, axis=0)
                    nrm[nrm == 0] = 1
                    w = w / nrm
                group[i] = w
        if not record:
            continue
        hist.append({"iteration": it, **state()})
        if it > 1 and abs(hist[-1]["relative_error"] - hist[-2]["relative_error"]) < tol:
            break
    if mode == "monotone":
        nrm = np.sqrt(sum((w**2).sum(0) for w in P + O))
        nrm[nrm == 0] = 1
        P, O, F = [p / nrm for p in P], [o / nrm for o in O], F * nrm[:, None]
    return F, P, O, hist
