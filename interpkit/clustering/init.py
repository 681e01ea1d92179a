"""Initial factors: F uniform in [0, 1), each W by NNDSVD of its own matrix (as the authors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ._data import Matrix, _Data, _prepare


@dataclass
class Factors:
    """Initial factors: ``F`` (R x N), ``P[name]`` (pixels x R), ``O[name]`` (units x R)."""

    F: torch.Tensor
    P: dict[str, torch.Tensor] = field(default_factory=dict)
    O: dict[str, torch.Tensor] = field(default_factory=dict)

    def numpy(self) -> Factors:
        """The same factors as float64 NumPy arrays (for the reference implementation)."""
        cv = lambda t: np.asarray(
            t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else t, float
        )
        return Factors(
            cv(self.F), {k: cv(v) for k, v in self.P.items()}, {k: cv(v) for k, v in self.O.items()}
        )


def _randomized_svd(
    d: _Data, k: int, gen: torch.Generator, n_oversamples: int = 10, n_iter: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` SVD of a (possibly streamed) matrix, Halko et al. with power iterations
    (as scikit-learn's ``randomized_svd``, which the authors used: 7 iterations for small k, else
    4)."""
    dev, dt = d.device, d.dtype
    if n_iter is None:
        n_iter = 7 if k < 0.1 * min(d.rows, d.cols) else 4
    if d.full is not None and min(d.rows, d.cols) <= k + n_oversamples:
        u, s, vh = torch.linalg.svd(d.full.double(), full_matrices=False)
        return u[:, :k].to(dt), s[:k].to(dt), vh[:k].to(dt)
    ell = min(k + n_oversamples, d.rows, d.cols)
    omega = torch.randn(d.cols, ell, generator=gen, dtype=torch.float64).to(dev, dt)

    def x_times(m: torch.Tensor) -> torch.Tensor:  # X @ m, (rows x ell)
        return torch.cat([xc @ m for _, xc in d.chunks()], 0)

    def xt_times(q: torch.Tensor) -> torch.Tensor:  # X^T @ q, (cols x ell)
        acc = torch.zeros(d.cols, q.shape[1], dtype=dt, device=dev)
        for sl, xc in d.chunks():
            acc += xc.T @ q[sl]
        return acc

    q = torch.linalg.qr(x_times(omega)).Q
    for _ in range(n_iter):
        z = torch.linalg.qr(xt_times(q)).Q
        q = torch.linalg.qr(x_times(z)).Q
    b = xt_times(q).T  # (ell x cols) = Q^T X
    ub, s, vh = torch.linalg.svd(b.double(), full_matrices=False)
    u = q.double() @ ub
    return u[:, :k].to(dt), s[:k].to(dt), vh[:k].to(dt)


def _nndsvd_from_svd(
    u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(u.shape[0], rank, dtype=u.dtype, device=u.device)
    h = torch.zeros(rank, vh.shape[1], dtype=u.dtype, device=u.device)
    w[:, 0] = torch.sqrt(s[0]) * u[:, 0].abs()
    h[0] = torch.sqrt(s[0]) * vh[0].abs()
    for j in range(1, rank):
        x, y = u[:, j], vh[j]
        xp, yp, xn, yn = x.clamp(min=0), y.clamp(min=0), (-x).clamp(min=0), (-y).clamp(min=0)
        xpn, ypn, xnn, ynn = xp.norm(), yp.norm(), xn.norm(), yn.norm()
        mp, mn = xpn * ypn, xnn * ynn
        if mp > mn:
            uu, vv, sigma = xp / xpn, yp / ypn, mp
        else:
            uu, vv, sigma = xn / xnn, yn / ynn, mn
        lbd = torch.sqrt(s[j] * sigma)
        w[:, j], h[j] = lbd * uu, lbd * vv
    w[w < eps] = 0
    h[h < eps] = 0
    return w, h


def nndsvd(
    x: Matrix,
    rank: int,
    *,
    seed: int = 0,
    fill: Literal["zeros", "mean"] = "zeros",
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation ``x ~ W H`` (Boutsidis and Gallopoulos 2008), as in the authors' code.

    ``fill="zeros"`` keeps the zero entries (the authors' variant; multiplicative updates never
    change them), ``"mean"`` replaces them by the mean of ``x`` (scikit-learn's 'nndsvda').
    """
    d = _prepare({"x": x}, None, rank, device, torch.float32, None)[0][0]
    return _nndsvd(d, rank, torch.Generator().manual_seed(seed), fill)


def _nndsvd(
    d: _Data, rank: int, gen: torch.Generator, fill: str
) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = _randomized_svd(d, rank, gen)
    w, h = _nndsvd_from_svd(u, s, vh, rank)
    if fill == "mean":
        avg = sum(float(xc.double().sum()) for _, xc in d.chunks()) / (d.rows * d.cols)
        w[w == 0], h[h == 0] = avg, avg
    elif fill != "zeros":
        raise ValueError(f"fill must be 'zeros' or 'mean', got {fill!r}.")
    return w, h


def _init(
    data: list[_Data], pix_names: list[str], act_names: list[str], rank: int, method: str, seed: int
) -> Factors:
    gen = torch.Generator().manual_seed(seed)
    dev, dt = data[0].device, data[0].dtype
    n = data[0].cols
    f = torch.rand(rank, n, generator=gen, dtype=torch.float64).to(dev, dt)
    ws: dict[str, torch.Tensor] = {}
    for d in data:
        if method == "random":
            ws[d.key] = torch.rand(d.rows, rank, generator=gen, dtype=torch.float64).to(dev, dt)
        elif method in ("nndsvd", "nndsvda"):
            ws[d.key] = _nndsvd(d, rank, gen, "zeros" if method == "nndsvd" else "mean")[0]
        else:
            raise ValueError(
                f"init must be 'nndsvd', 'nndsvda', 'random' or a Factors object, got {method!r}."
            )
    return Factors(
        f, {k: ws[f"pixel:{k}"] for k in pix_names}, {k: ws[f"activation:{k}"] for k in act_names}
    )


def init_factors(
    activations: Mapping[str, Matrix] | Sequence[Matrix] | None,
    pixels: Mapping[str, Matrix] | Sequence[Matrix] | None = None,
    rank: int = 20,
    *,
    method: str = "nndsvd",
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    chunk_rows: int | None = None,
    normalize: str | None = None,
) -> Factors:
    """The initial factors :func:`coupled_nmf` would use (F uniform in [0,1), W by NNDSVD per
    matrix).

    Pass the result back as ``coupled_nmf(..., init=factors)`` (or ``.numpy()`` to the NumPy
    reference) to compare implementations from the same starting point; use the same
    ``normalize`` for both (the NNDSVD factors are those of the normalised matrices).

    Args:
        activations, pixels, rank: as for :func:`coupled_nmf`.
        method: ``"nndsvd"``, ``"nndsvda"`` or ``"random"``.
        seed: seed of F (and of the randomized SVD).
        device, dtype, chunk_rows, normalize: as in :class:`NMFOptions`.

    Returns:
        A :class:`~interpkit.clustering.init.Factors` (``F``, ``P``, ``O``) on ``device`` in
        ``dtype``.
    """
    data, pn, an = _prepare(activations, pixels, rank, device, dtype, chunk_rows, normalize)
    return _init(data, pn, an, rank, method, seed)


def _check_init(
    init: Factors, data: list[_Data], pn: list[str], an: list[str], rank: int
) -> Factors:
    dev, dt = data[0].device, data[0].dtype

    def cv(t, shape, what):
        t = torch.as_tensor(np.asarray(t) if isinstance(t, np.ndarray) else t).to(dev, dt).clone()
        if tuple(t.shape) != shape:
            raise ValueError(f"initial {what} has shape {tuple(t.shape)}, expected {shape}.")
        if not torch.isfinite(t).all() or (t < 0).any():
            raise ValueError(f"initial {what} must be finite and non-negative.")
        return t

    if set(init.P) != set(pn) or set(init.O) != set(an):
        raise KeyError(
            f"init factors are for pixels {sorted(init.P)} and layers {sorted(init.O)}, but the "
            f"data "
            f"has pixels {pn} and layers {an}; build them with init_factors on the same matrices."
        )
    by = {d.key: d for d in data}
    return Factors(
        cv(init.F, (rank, data[0].cols), "F"),
        {k: cv(init.P[k], (by[f"pixel:{k}"].rows, rank), f"P[{k!r}]") for k in pn},
        {k: cv(init.O[k], (by[f"activation:{k}"].rows, rank), f"O[{k!r}]") for k in an},
    )
