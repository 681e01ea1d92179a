"""The ICNN filter loss, its templates and the mask layer (Zhang, Wu and Zhu, CVPR 2018).

ICNN filter loss of one filter over a batch ``X`` of its n x n post-ReLU maps::

    Loss_f = -MI(X; T),  T in {T_mu : mu = each of the n^2 positions} + {T-}
    T_mu[i, j] = tau * max(1 - beta * (|i - mu_i| + |j - mu_j|) / n, -1),   T-[i, j] = -tau
    tau = 0.5 / n^2, beta = 4, p(T_mu) = alpha / n^2, p(T-) = 1 - alpha, alpha = n^2 / (1 + n^2)
    p(x | T) = exp(tr(x . T)) / Z_T,  Z_T = sum over the batch of exp(tr(x' . T))
    MI = sum_T p(T) sum_x p(x | T) log(p(x | T) / p(x)),   p(x) = sum_T p(T) p(x | T)

computed with log-sum-exp, so any activation scale (and all-zero maps) is finite. The mask layer
keeps the part of each map near its peak: ``relu(x * T_mu_hat / tau)`` with ``mu_hat = argmax x``
(dividing by the positive constant tau only keeps the map at its input scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_number, check_square_maps

DEFAULT_BETA = 4.0

__all__: list[str] = []


_SMALL_MAP = (
    "the ICNN templates cannot tell a part's position from its neighbours' on a smaller map; "
    "explain an earlier, larger layer of the performer or feed larger images"
)
_BETA = "beta (the templates' fall-off)"
_BETA_HINT = f"the paper uses {DEFAULT_BETA}"


def map_side(x: torch.Tensor | Sequence[int], name: str = "feature map") -> int:
    """The side n of square maps ``x`` (a tensor (B, C, n, n) or a shape) large enough for the
    ICNN templates (n >= 3); a clear error otherwise."""
    return check_square_maps(x, name, min_size=3, hint=_SMALL_MAP)


def icnn_templates(
    n: int,
    *,
    beta: float = DEFAULT_BETA,
    tau: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The ``n*n`` positive templates (row-major order of ``mu``) and the negative one, ``(n*n + 1,
    n, n)``.

    ``T_mu[i, j] = tau * max(1 - beta * ||(i, j) - mu||_1 / n, -1)``, ``T-[i, j] = -tau``,
    ``tau = 0.5 / n**2`` unless given.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(
            f"n must be an int (the side of a square feature map), got {type(n).__name__}."
        )
    map_side((n, n))
    beta = check_number(_BETA, beta, hint=_BETA_HINT)
    tau = (
        0.5 / n**2
        if tau is None
        else check_number("tau", tau, positive=True, hint="leave it None for the paper's 0.5 / n^2")
    )
    ar = torch.arange(n, dtype=torch.float64)
    ii, jj = torch.meshgrid(ar, ar, indexing="ij")
    mu_i, mu_j = ii.reshape(-1, 1, 1), jj.reshape(-1, 1, 1)
    dist = (ii[None] - mu_i).abs() + (jj[None] - mu_j).abs()  # (n*n, n, n)
    pos = tau * torch.clamp(1.0 - beta * dist / n, min=-1.0)
    neg = torch.full((1, n, n), -tau, dtype=torch.float64)
    return torch.cat([pos, neg]).to(dtype=dtype, device=device)


def template_log_priors(n: int, alpha: float | None = None) -> torch.Tensor:
    """``log p(T)`` for the ``n*n`` positive templates and the negative one (float64, ``(n*n +
    1,)``).

    ``p(T_mu) = alpha / n^2`` and ``p(T-) = 1 - alpha``, with ``alpha = n^2 / (1 + n^2)`` by
    default.
    """
    map_side((n, n))
    alpha = n * n / (1.0 + n * n) if alpha is None else float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}.")
    return torch.cat(
        [
            torch.full((n * n,), math.log(alpha / (n * n)), dtype=torch.float64),
            torch.tensor([math.log(1.0 - alpha)], dtype=torch.float64),
        ]
    )


def filter_loss(
    x: torch.Tensor,
    *,
    beta: float = DEFAULT_BETA,
    tau: float | None = None,
    alpha: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """ICNN filter loss ``-MI(X; T)`` of every filter over a batch of post-ReLU maps ``x`` (B, C,
    n, n).

    ``Z_T`` runs over the B images of the batch, so the loss of a single image is 0. Computed in
    log space (log-sum-exp over images and over templates): finite for any scale, 0 for all-zero
    maps.
    ``reduction``: ``"mean"`` over filters (a scalar), ``"sum"``, or ``"none"`` (one value per
    filter).
    """
    n = map_side(x, "filter_loss input")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    B, C = x.shape[:2]
    T = icnn_templates(n, beta=beta, tau=tau, dtype=x.dtype, device=x.device)  # (M, n, n)
    M = T.shape[0]
    scores = x.reshape(B, C, n * n) @ T.reshape(M, n * n).t()  # tr(x . T): (B, C, M)
    log_px_t = scores - torch.logsumexp(scores, dim=0, keepdim=True)  # log p(x|T), over images
    log_prior = template_log_priors(n, alpha).to(dtype=x.dtype, device=x.device)
    log_px = torch.logsumexp(log_px_t + log_prior, dim=-1, keepdim=True)  # log p(x): (B, C, 1)
    # MI = sum_T p(T) sum_x p(x|T) (log p(x|T) - log p(x))
    mi = (log_prior.exp() * (log_px_t.exp() * (log_px_t - log_px)).sum(0)).sum(-1)  # (C,)
    loss = -mi
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def grouped_filter_loss(
    x: torch.Tensor, groups: torch.Tensor | None, *, beta: float = DEFAULT_BETA
) -> torch.Tensor:
    """``Loss_f`` (mean over filters) with ``Z_T`` over the images of each group (category) on its
    own.

    ICNN normalises ``p(x | T)`` over the images of one category; in a batch that mixes categories,
    the loss of each category's images is computed separately and the results are averaged,
    weighted by the number of images. Groups with a single image (whose loss is 0) are skipped.
    ``groups=None``: one group, the whole batch (:func:`filter_loss`).
    """
    if groups is None:
        return filter_loss(x, beta=beta)
    if groups.shape != x.shape[:1]:
        raise ValueError(f"groups must be (batch,) = ({x.shape[0]},), got {tuple(groups.shape)}.")
    total, count = x.new_zeros(()), 0
    for g in torch.unique(groups):
        sel = groups == g
        k = int(sel.sum())
        if k >= 2:
            total = total + k * filter_loss(x[sel], beta=beta)
            count += k
    return total / count if count else total


def icnn_mask(x: torch.Tensor, *, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """Keep each map near its peak: ``relu(x * T_mu_hat / tau)``, ``mu_hat = argmax x`` per image
    and filter.

    The mask is a constant (no gradient flows into the peak position), as in ICNN.
    """
    n = map_side(x, "icnn_mask input")
    shapes = icnn_templates(n, beta=beta, tau=1.0, dtype=x.dtype, device=x.device)[: n * n]
    peak = x.detach().flatten(2).argmax(-1)  # (B, C)
    return F.relu(x * shapes[peak])


class FilterMask(nn.Module):
    """The ICNN mask layer (see :func:`icnn_mask`)."""

    def __init__(self, beta: float = DEFAULT_BETA) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return icnn_mask(x, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


def rescale_maps(x: torch.Tensor, peak: float) -> torch.Tensor:
    """Rescale every filter's maps so that their mean per-image peak over the batch is ``peak``.

    ``Loss_f`` is not scale-invariant: with ``tau = 0.5 / n^2`` a part-shaped response separates the
    templates only when its peak is of order ``n^2`` (as in the VGG-16 conv5 maps ICNN was made
    for). The explainer's decoder sees the interpretable track through a scale normalisation, so
    its scale is arbitrary; evaluating ``Loss_f`` on maps brought to a fixed scale makes the loss
    judge the *shape* and the *selectivity* of a filter (which images fire, where), never its
    magnitude. The division is differentiated through; silent filters stay zero.

    Args:
        x: maps (B, C, n, n).
        peak: the mean per-image peak each filter is brought to.

    Returns:
        The rescaled maps, same shape as ``x``.
    """
    ref = x.flatten(2).amax(-1).mean(0)  # (C,)
    return x * (peak / (ref + 1e-6))[None, :, None, None]
