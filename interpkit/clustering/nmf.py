"""The coupled multiplicative updates (see the package docstring for the maths)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
import torch

from ..checks import check_number, check_positive_int
from ._data import Matrix, Mode, _as_named, _Data, _prepare
from .init import Factors, _check_init, _init
from .matrices import ActivationMatrices


@dataclass
class CoupledNMF:
    """Result of :func:`coupled_nmf`: the shared space and the per-iteration record.

    ``F`` (R x N): example ``n`` -> ``F[:, n]``; ``P[channel]`` (pixels x R): pixel ``p`` ->
    ``P[c][p]``; ``O[layer]`` (units x R): unit ``m`` -> ``O[l][m]``. Latent dimension ``r`` is
    concept ``r``. ``history`` has one row per iteration (0 = the initial factors) with the
    penalised ``objective``, ``reconstruction`` (sum of squared errors), ``penalty`` and
    ``relative_error``. All tensors are on the CPU, in the dtype of the run.

    With ``normalize="rms"`` the run factorises ``c_k X_k`` (``scales[k] = c_k``), and the history
    is in those units; ``P`` and ``O`` are returned in the units of the data (divided by ``c_k``),
    so ``W_k F`` approximates ``X_k`` itself in either case.
    """

    F: torch.Tensor
    P: dict[str, torch.Tensor]
    O: dict[str, torch.Tensor]
    history: pd.DataFrame
    mode: str
    rank: int
    lambda_f: float
    converged: bool
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    normalize: str | None = None
    scales: dict[str, float] = field(
        default_factory=dict
    )  # "pixel:<name>" / "activation:<name>" -> c_k

    @property
    def n_iter(self) -> int:
        """Number of iterations run."""
        return int(self.history["iteration"].iloc[-1])

    @property
    def objective(self) -> float:
        """Penalised objective after the last iteration (before the final normalisation)."""
        return float(self.history["objective"].iloc[-1])

    @property
    def relative_error(self) -> float:
        """``sum ||X - W F||^2 / sum ||X||^2`` of the returned factors."""
        return float(self.history["relative_error"].iloc[-1])

    @property
    def factors(self) -> dict[str, torch.Tensor]:
        """``{name: W}`` for every data matrix, pixels first."""
        return {**self.P, **self.O}

    def embedding(self) -> np.ndarray:
        """Examples in the shared space, ``F^T`` as an (N x R) float64 array."""
        return self.F.T.double().numpy()


@dataclass(frozen=True)
class NMFOptions:
    """Settings of :func:`coupled_nmf` (each may also be passed to it as a keyword).

    Args:
        n_iter: largest number of iterations.
        lambda_f: strength of the penalty ``sum F + ||F||^2 / 2`` (the paper uses 1).
        mode: ``"monotone"`` (objective never increases) or ``"faithful"`` (the authors'
            per-iteration column normalisation; see the package docstring).
        init: ``"nndsvd"`` (authors), ``"nndsvda"``, ``"random"`` or a
            :class:`~interpkit.clustering.init.Factors`.
        tol: stop when the relative error changes by less than this between iterations.
        eps: guards the divisions against zero.
        seed: seed of the initialisation.
        device: where to compute (None: the default device).
        dtype: float32 (default) or float64.
        chunk_rows: stream the matrices to the device in blocks of this many rows.
        normalize: None (the paper) or ``"rms"`` (every matrix scaled to mean square entry 1).
        progress: show a progress bar.
    """

    n_iter: int = 50
    lambda_f: float = 1.0
    mode: Mode = "monotone"
    init: str | Factors = "nndsvd"
    tol: float = 1e-8
    eps: float = 1e-9
    seed: int = 0
    device: str | torch.device | None = None
    dtype: torch.dtype = torch.float32
    chunk_rows: int | None = None
    normalize: str | None = None
    progress: bool = False


def _options(options: NMFOptions | None, overrides: dict) -> NMFOptions:
    known = {f.name for f in fields(NMFOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"coupled_nmf got unknown option(s) {unknown}; the options are {sorted(known)}."
        )
    o = replace(options or NMFOptions(), **overrides)
    if o.mode not in ("monotone", "faithful"):
        raise ValueError(f"mode must be 'monotone' or 'faithful', got {o.mode!r}.")
    check_positive_int("n_iter", o.n_iter)
    check_number("lambda_f", o.lambda_f, hint="the paper uses 1")
    check_number("eps", o.eps, positive=True, hint="it only guards divisions by zero")
    return o


def _wt_x(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``W^T X``. On the CPU in float64, NumPy's BLAS does this (R x rows) @ (rows x N) product
    1.3-1.4x faster than torch's (issue 23; the tensors share memory, nothing is copied); float32
    and other devices use torch, whose kernel is as fast there."""
    if w.device.type == "cpu" and w.dtype == torch.float64:
        return torch.from_numpy(w.numpy().T @ x.detach().numpy())
    return w.T @ x


class _Run:
    """The state of one run: data, factors ``F`` and ``W[key]``, and the history rows."""

    def __init__(self, data: list[_Data], fac: Factors, rank: int, o: NMFOptions) -> None:
        self.data, self.rank, self.o = data, rank, o
        self.F = fac.F
        self.W = {
            **{f"pixel:{k}": v for k, v in fac.P.items()},
            **{f"activation:{k}": v for k, v in fac.O.items()},
        }
        self.sq = {d.key: d.sq_norm for d in data}
        self.total_sq = sum(self.sq.values())
        self.rows: list[dict] = []
        self.wtw: dict[str, torch.Tensor] = {}  # W^T W of the current W, from the last W step

    def record(self, it: int, err: dict[str, float]) -> float:
        """Append the history row of iteration ``it``; returns its relative error."""
        F64 = self.F.double()
        recon = sum(err.values())
        pen = self.o.lambda_f * (float(F64.sum()) + 0.5 * float((F64**2).sum()))
        rel = recon / self.total_sq
        self.rows.append(
            {
                "iteration": it,
                "objective": 0.5 * recon + pen,
                "reconstruction": recon,
                "penalty": pen,
                "relative_error": rel,
                **{f"error[{k}]": v / self.sq[k] for k, v in err.items()},
            }
        )
        return rel

    def f_step(self, first: bool) -> None:
        """F <- F * sum W^T X / (sum W^T W F + lambda (1 + F) + eps), with the old W; on the
        first iteration the same pass records the error of the initial factors."""
        F, rank = self.F, self.rank
        num = torch.zeros_like(F)
        gram = torch.zeros(rank, rank, dtype=F.dtype, device=F.device)
        fft_old = (F @ F.T).double() if first else None
        err0: dict[str, float] = {}
        for d in self.data:
            w = self.W[d.key]
            wtx = torch.zeros_like(F)
            for sl, xc in d.chunks():
                wtx += _wt_x(w[sl], xc)
            wtw = self.wtw.get(d.key)
            if wtw is None:
                wtw = w.T @ w
            num += wtx
            gram += wtw
            if fft_old is not None:
                err0[d.key] = (
                    self.sq[d.key]
                    - 2 * float((wtx.double() * F.double()).sum())
                    + float((wtw.double() * fft_old).sum())
                )
        if first:
            self.record(0, err0)
        self.F = F * num / (gram @ F + self.o.lambda_f * (1 + F) + self.o.eps)

    def w_step(self) -> dict[str, float]:
        """Every W <- W * X F^T / (W F F^T + eps) with the new F (pixels first); returns the
        squared error per matrix."""
        F, eps = self.F, self.o.eps
        fft = F @ F.T
        fft64 = fft.double()
        err: dict[str, float] = {}
        for d in self.data:
            w = self.W[d.key]
            cross = torch.zeros(self.rank, dtype=torch.float64, device=F.device)
            for sl, xc in d.chunks():
                # = xc @ F.T: 2-3x faster on CPU BLAS (issue 23); contiguous for the elementwise ops
                xft = torch.mm(F, xc.T).T.contiguous()
                wc = w[sl]
                wc = wc * xft / (wc @ fft + eps)
                if d.full is not None:  # one block: the new tensor is W (no copy)
                    self.W[d.key] = w = wc
                else:
                    w[sl] = wc
                cross += (wc * xft).double().sum(0)
            if self.o.mode == "faithful":
                norms = w.norm(dim=0)
                scale = torch.where(norms > 0, 1 / norms, torch.ones_like(norms))
                w *= scale
                cross *= scale.double()
            self.wtw[d.key] = wtw = w.T @ w  # reused by the next F step (the same product)
            err[d.key] = (
                self.sq[d.key] - 2 * float(cross.sum()) + float((wtw.double() * fft64).sum())
            )
        return err

    def iterate(self) -> bool:
        """Run the updates; returns whether the relative error settled (``tol``)."""
        its = range(1, self.o.n_iter + 1)
        if self.o.progress:
            from tqdm.auto import tqdm

            its = tqdm(its, desc=f"coupled NMF ({self.o.mode})", leave=False)
        prev = None
        for it in its:
            self.f_step(it == 1)
            rel = self.record(it, self.w_step())
            if prev is not None and abs(prev - rel) < self.o.tol:
                return True
            prev = rel
        return False

    def finish(self) -> None:
        """Monotone mode: one joint normalisation (the products W_k F are unchanged); then the
        factors are checked for overflow."""
        W = self.W
        if self.o.mode == "monotone":
            norms = torch.sqrt(sum((w**2).sum(0) for w in W.values()))
            scale = torch.where(norms > 0, norms, torch.ones_like(norms))
            for k in W:
                W[k] = W[k] / scale
            self.F = self.F * scale[:, None]
        if not (torch.isfinite(self.F).all() and all(torch.isfinite(w).all() for w in W.values())):
            dt = str(self.F.dtype).replace("torch.", "")
            raise FloatingPointError(
                f"coupled NMF produced NaN/inf factors in {dt} "
                "(an overflow); pass normalize='rms' or dtype=torch.float64."
            )


def coupled_nmf(
    activations: Mapping[str, Matrix] | Sequence[Matrix] | None,
    pixels: Mapping[str, Matrix] | Sequence[Matrix] | None = None,
    rank: int = 20,
    *,
    options: NMFOptions | None = None,
    **overrides: object,
) -> CoupledNMF:
    """Coupled NMF of activation matrices ``A_j`` and pixel matrices ``D_i`` with a shared F.

    ``normalize=None`` (the paper) factorises the matrices as given, so each matrix weighs in
    proportion to its squared norm and the penalty's strength depends on the data's units (a
    layer whose activations are 100 times smaller counts 10,000 times less, and small data lose
    concepts to the L1 term: a ``RuntimeWarning`` says so when a concept dies). ``"rms"`` scales
    every matrix to mean square entry 1 first (``c_k = 1 / rms(X_k)``), so every entry of every
    matrix counts alike whatever its units, and the result does not change when a matrix is
    multiplied by a constant.

    Args:
        activations: dict (or list) of non-negative (units x N) matrices, e.g. from
            :func:`activation_matrices`; None for pixels only.
        pixels: dict (or list) of (pixels x N) matrices, e.g. from :func:`pixel_matrices`.
        rank: number of concepts R.
        options: an :class:`NMFOptions` (defaults when None).
        **overrides: any field of :class:`NMFOptions` (``n_iter``, ``lambda_f``, ``mode``,
            ``init``, ``tol``, ``eps``, ``seed``, ``device``, ``dtype``, ``chunk_rows``,
            ``normalize``, ``progress``), replacing the one in ``options``.

    Returns:
        A :class:`CoupledNMF` with ``F``, ``P``, ``O`` on the CPU and the per-iteration history.
    """
    o = _options(options, overrides)
    data, pn, an = _prepare(activations, pixels, rank, o.device, o.dtype, o.chunk_rows, o.normalize)
    fac = (
        _init(data, pn, an, rank, o.init, o.seed)
        if isinstance(o.init, str)
        else _check_init(o.init, data, pn, an, rank)
    )
    run = _Run(data, fac, rank, o)
    converged = run.iterate()
    run.finish()
    by = {d.key: d for d in data}
    _warn_dead_concepts(run.F, o.lambda_f, o.normalize, data, run.rows[-1]["relative_error"])
    out_w = {  # in data units
        k: (w / by[k].scale if by[k].scale != 1.0 else w).detach().cpu() for k, w in run.W.items()
    }
    return CoupledNMF(
        F=run.F.detach().cpu(),
        P={k: out_w[f"pixel:{k}"] for k in pn},
        O={k: out_w[f"activation:{k}"] for k in an},
        history=pd.DataFrame(run.rows),
        mode=o.mode,
        rank=int(rank),
        lambda_f=float(o.lambda_f),
        converged=converged,
        shapes=dict(getattr(activations, "shapes", {}) or {}),
        normalize=o.normalize,
        scales={d.key: d.scale for d in data},
    )


def _warn_dead_concepts(
    F: torch.Tensor,
    lambda_f: float,
    normalize: str | None,
    data: list[_Data],
    relative_error: float,
) -> None:
    """A RuntimeWarning when concepts ended with (almost) none of F's mass, or nothing is
    reconstructed
    at all (every concept shrunk alike): the L1 penalty won."""
    mass = F.double().sum(1)
    total = float(mass.sum())
    dead = int((mass <= 1e-6 * total / len(mass)).sum()) if total > 0 else len(mass)
    if relative_error > 0.99:  # F shrunk towards 0 as a whole (its shares can still look even)
        dead = len(mass)
    if dead == 0 or lambda_f == 0:
        return
    hint = (
        "pass normalize='rms' (each matrix scaled to mean square 1) or a smaller lambda_f"
        if normalize is None
        else "use a smaller rank or lambda_f"
    )
    warnings.warn(
        f"{dead} of {len(mass)} concepts ended with almost no weight in F: the penalty lambda_f="
        f"{lambda_f:g} * (sum F + ||F||^2 / 2) outweighs what they would reconstruct "
        f"(root-mean-square entry of each matrix{' after scaling' if normalize else ''}: "
        f"{', '.join(f'{d.name} {d.rms * d.scale:.3g}' for d in data)}); {hint}.",
        RuntimeWarning,
        stacklevel=3,
    )


def layer_nmf(
    activations: Mapping[str, Matrix] | Sequence[Matrix], rank: int = 20, **kwargs
) -> dict[str, CoupledNMF]:
    """Per-layer NMF (no pixel matrices): one :func:`coupled_nmf` per activation matrix.

    Args:
        activations: dict (or list) of (units x N) matrices.
        rank: number of concepts per layer.
        **kwargs: options of :func:`coupled_nmf`.

    Returns:
        ``{layer: CoupledNMF}``.
    """
    acts = _as_named(activations, "layer")
    shapes = getattr(activations, "shapes", {})
    out = {}
    for name, x in acts.items():
        one = ActivationMatrices()
        one[name] = x
        if name in shapes:
            one.shapes[name] = shapes[name]
        out[name] = coupled_nmf(one, None, rank, **kwargs)
    return out
