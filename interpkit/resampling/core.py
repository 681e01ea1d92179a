"""Input resampling: the perturbations, the per-channel statistics and weight norms."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..capture import resolve_modules
from ..checks import check_images

SCHEMES = ("multiplicative", "additive", "occlusion")
OUTPUTS = ("probability", "logit")
METRICS = ("correlation", "precision", "mean_activation", "weight_norm")
METHODS = METRICS + ("random",)


# --------------------------------------------------------------------------------------------
# Perturbations
# --------------------------------------------------------------------------------------------
def _check_n_sigma(n: int, sigma: float) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n (the number of copies) must be an integer, got {type(n).__name__}.")
    if n < 3:
        raise ValueError(
            f"n = {n} copies is too few: a variance and a correlation over the copies need at "
            "least 3 (the paper uses n = 50)."
        )
    if (
        not isinstance(sigma, (int, float, np.floating, np.integer))
        or not math.isfinite(float(sigma))
        or float(sigma) <= 0
    ):
        raise ValueError(
            f"sigma must be a positive finite number, got {sigma!r}; the paper uses 0.1 "
            "(noise of standard deviation 0.1 * k on copy k)."
        )


def noise_scales(n: int = 50, sigma: float = 0.1, ramp: bool = True) -> torch.Tensor:
    """The noise level of each copy: ``sigma * k`` (``ramp=True``, the authors' schedule) or
    ``sigma`` for every copy but the clean copy 0 (``ramp=False``). Shape ``(n,)``, float64."""
    _check_n_sigma(n, sigma)
    k = torch.arange(n, dtype=torch.float64)
    return float(sigma) * (k if ramp else (k > 0).to(torch.float64))


def perturb(
    images: torch.Tensor,
    n: int = 50,
    sigma: float = 0.1,
    *,
    scheme: str = "multiplicative",
    ramp: bool = True,
    patch: int = 4,
    fill: float = 0.0,
    clip: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """Make ``n`` perturbed copies of each image; copy 0 is the clean image, noise grows with ``k``.

    With ``s_k`` from ``noise_scales`` and ``e ~ Normal(0, 1)`` drawn per element:

    * ``"multiplicative"`` (the paper): ``x_k = x * (1 + s_k * e)``;
    * ``"additive"``: ``x_k = x + s_k * e``;
    * ``"occlusion"``: the image is cut into ``patch`` x ``patch`` cells and each cell of copy ``k``
      is replaced by ``fill`` with probability ``min(1, s_k)`` (so ``sigma`` is the occlusion
      probability added per copy; use about ``1 / n``).

    ``images`` is ``(C, H, W)`` (returns ``(n, C, H, W)``) or ``(B, C, H, W)`` (returns
    ``(B, n, C, H, W)``). ``clip=True`` clamps the copies to ``[0, 1]`` (the authors do not).
    The noise is drawn on the CPU from ``seed``, so it is the same on every device.

    Args:
        images: one image (C, H, W) or a batch (B, C, H, W) in [0, 1].
        n: copies per image (the first is the clean image).
        sigma: noise level.
        scheme: ``"multiplicative"``, ``"additive"`` or ``"occlusion"``.
        ramp: noise scales ramp from 0 to ``sigma`` over the copies.
        patch: occlusion patch size.
        fill: occlusion value.
        clip: clip the copies to [0, 1].
        seed: the noise seed.

    Returns:
        The copies, (n, C, H, W) or (B * n, C, H, W).
    """
    single = isinstance(images, torch.Tensor) and images.ndim == 3
    x = images[None] if single else images
    check_images(x)
    _check_n_sigma(n, sigma)
    out = _perturb(x, n, sigma, scheme, ramp, patch, fill, clip, seed)
    return out[0] if single else out


def _perturb(
    x: torch.Tensor,
    n: int,
    sigma: float,
    scheme: str,
    ramp: bool,
    patch: int,
    fill: float,
    clip: bool,
    seed: int,
) -> torch.Tensor:
    """:func:`perturb` of a checked batch ``x`` (B, C, H, W) -> (B, n, C, H, W)."""
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown perturbation scheme {scheme!r}; choose one of {', '.join(SCHEMES)}."
        )
    k = torch.arange(n, dtype=torch.float32)
    s = float(sigma) * (k if ramp else (k > 0).to(torch.float32))
    b, c, h, w = x.shape
    gen = torch.Generator().manual_seed(int(seed))
    if scheme == "occlusion":
        if int(patch) < 1:
            raise ValueError(f"patch must be a positive number of pixels, got {patch}.")
        gh, gw = -(-h // patch), -(-w // patch)
        p = s.clamp(max=1.0).view(1, n, 1, 1, 1)
        cells = (torch.rand((b, n, 1, gh, gw), generator=gen) < p).to(x.dtype)
        mask = (
            cells.repeat_interleave(patch, 3).repeat_interleave(patch, 4)[..., :h, :w].to(x.device)
        )
        out = x[:, None] * (1 - mask) + float(fill) * mask
    else:
        e = torch.randn((b, n, c, h, w), generator=gen).to(device=x.device, dtype=x.dtype)
        noise = e.mul_(s.to(x.device).view(1, n, 1, 1, 1))
        out = (
            noise.add_(1).mul_(x[:, None]) if scheme == "multiplicative" else noise.add_(x[:, None])
        )
    if clip:
        out = out.clamp(0, 1)
    return out


# --------------------------------------------------------------------------------------------
# Channel statistics
# --------------------------------------------------------------------------------------------
#: The statistics of every channel, in the order of the last axis of ``_finish_stats``.
STAT_KEYS = (
    "correlation",
    "precision",
    "mean_activation",
    "signed_correlation",
    "mean_activation_copies",
    "mean_variance",
    "valid_positions",
)


def channel_scores(
    acts: torch.Tensor, outputs: torch.Tensor, *, min_activation: float = 0.1
) -> dict[str, torch.Tensor]:
    """The per-channel statistics of one layer from activations over the copies.

    ``acts``: ``(B, N, C, H, W)`` (or ``(N, C, H, W)`` for one image); ``outputs``: ``(B, N)`` (or
    ``(N,)``), the network output ``y_k`` on each copy. Returns tensors of shape ``(B, C)`` on the
    device of ``acts``:

    * ``correlation``: mean over positions of ``|Pearson_k(a, y)|``, skipping positions where the
      activation is constant over the copies (or varies by so little that its squares underflow);
      NaN when no position varies or ``y`` is constant;
    * ``precision``: ``1 / mean over positions of Var_k(a)`` (population variance), NaN for channels
      whose mean activation over positions and copies is below ``min_activation``, ``inf`` for an
      eligible channel that never changes;
    * ``mean_activation``: the mean over positions on the clean copy 0 (a baseline);
    * ``signed_correlation``: the mean of the signed Pearson coefficients (negative: the activation
      rises as the output falls);
    * ``mean_activation_copies``, ``mean_variance``, ``valid_positions`` (positions that vary).
    """
    single = acts.ndim == 4
    if single:
        acts, outputs = acts[None], outputs[None]
    if acts.ndim != 5:
        raise ValueError(
            f"acts must have shape (B, N, C, H, W) or (N, C, H, W), got {tuple(acts.shape)}; "
            "the layer needs a channel axis and a spatial map (a conv layer)."
        )
    b, n, c = acts.shape[:3]
    if outputs.shape != (b, n):
        raise ValueError(
            f"outputs must have shape {(b, n)} to match the activations, got "
            f"{tuple(outputs.shape)}."
        )
    ones_u, y_varies = _unit_outputs(outputs.detach().cpu().numpy())
    maps = acts.reshape(b, n, c, -1)
    sums = _position_sums([maps], ones_u)
    stats = _finish_stats(sums, (c,), (maps.shape[3],), n, y_varies, min_activation)  # (B, C, 7)
    dtype = acts.dtype if acts.is_floating_point() else torch.float32
    out = {
        k: torch.from_numpy(np.ascontiguousarray(stats[..., i])).to(acts.device, dtype)
        for i, k in enumerate(STAT_KEYS)
    }
    out["valid_positions"] = out["valid_positions"].long()
    return {k: v[0] for k, v in out.items()} if single else out


def _unit_outputs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B, 2, N)``: a row of ones and ``y`` (B, N) centred and scaled to unit norm per image
    (zeros
    where ``y`` is constant); and whether ``y`` varies, ``(B,)``. Done in float64: probabilities
    near 1 differ only in late digits, which float32 would erase before the centring."""
    y = np.asarray(y, dtype=np.float64)
    y_varies = y.max(1) > y.min(1)
    yc = y - y.mean(1, keepdims=True)
    norm = np.sqrt(np.einsum("bn,bn->b", yc, yc))
    # where y is constant its centred copy may still hold rounding residue: scale those rows by 0
    scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=y_varies)
    return np.stack([np.ones_like(yc), yc * scale[:, None]], 1), y_varies


def _position_sums(acts: Sequence[torch.Tensor], ones_u: np.ndarray) -> np.ndarray:
    """Per-channel sums over positions of the per-position statistics, for several layers at once.

    ``acts``: one ``(B, N, C_l, P_l)`` tensor per layer; ``ones_u`` from ``_unit_outputs``.
    All layers are flattened into one ``(B, N, T)`` tensor, so every step runs once whatever the
    number of layers, on the tensors' device. Returns a float64 ``(B, 6, sum_l C_l)`` array on the
    CPU: the sums over the positions of each channel of the Pearson coefficient, its absolute
    value, the number of positions that vary, the sum of squared deviations over the copies, the
    clean activation, and the summed shift of the copies from the clean one.
    """
    b, n = acts[0].shape[:2]
    dtype = torch.float64 if any(a.dtype == torch.float64 for a in acts) else torch.float32
    if len(acts) > 1:
        flat = torch.cat([a.reshape(b, n, -1) for a in acts], 2).to(dtype)
    else:
        flat = acts[0].reshape(b, n, -1).to(dtype)
        if flat.data_ptr() == acts[0].data_ptr():
            flat = flat.clone()  # the caller's tensor is not changed
    parts = torch.empty((b, 7, flat.shape[2]), dtype=dtype, device=flat.device)
    r, abs_r, varies, ss, a0, s1, cov = parts.unbind(1)
    # Shift by the clean copy: d is exactly 0 where an activation never changes (an exact test,
    # free of the rounding of a mean), and the shift keeps the one-pass variance accurate
    # (its relative error is at most about n * float eps, since copy 0 lies within sqrt(n) sd).
    a0.copy_(flat[:, 0])
    d = flat.sub_(a0[:, None])  # (B, N, T), in place: one large buffer in all
    torch.bmm(
        torch.from_numpy(ones_u).to(flat.device, dtype), d, out=parts[:, 5:7]
    )  # sum_k d_k, sum_k d_k u_k
    torch.sum(d.square_(), 1, out=ss)  # sum_k d_k^2 (d is not needed any more)
    ss.addcmul_(s1, s1, value=-1.0 / n).clamp_min_(0)  # sum of squared deviations over the copies
    # A position varies when ss > 0: exactly 0 where the activation never changes (d = 0), and at
    # least about sum_k d_k^2 / n otherwise (d_0 = 0), unless the squares underflow (|d| < 1e-19 in
    # float32), when no variance can be measured either.
    torch.gt(ss, 0, out=varies)
    # Pearson (cov uses the centred, unit-norm y). Where ss = 0, cov * inf is NaN or +-inf: set to
    # 0 here, and left out of the mean by `varies`.
    torch.rsqrt(ss, out=r).mul_(cov).nan_to_num_(0.0, 0.0, 0.0)
    torch.abs(r, out=abs_r)
    # sums over the positions of each channel: every layer is a contiguous (C_l, P_l) block, and
    # consecutive layers with the same number of positions are summed in one operation
    sums, off = [], 0
    for c, p in _groups(tuple(int(a.shape[2]) for a in acts), tuple(int(a.shape[3]) for a in acts)):
        block = parts[:, :6, off : off + c * p]
        sums.append(block.reshape(b, 6, c, p).sum(-1) if p > 1 else block)
        off += c * p
    sums = torch.cat(sums, 2) if len(sums) > 1 else sums[0]
    return sums.to("cpu", torch.float64).numpy()


def _groups(chans: tuple[int, ...], positions: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Runs of consecutive layers with the same number of positions: ``((channels, positions),
    ...)``."""
    runs: list[list[int]] = []
    for c, p in zip(chans, positions):
        if runs and runs[-1][1] == p:
            runs[-1][0] += c
        else:
            runs.append([c, p])
    return tuple((c, p) for c, p in runs)


def _finish_stats(
    sums: np.ndarray,
    chans: Sequence[int],
    positions: Sequence[int],
    n: int,
    y_varies: np.ndarray,
    min_activation: float,
) -> np.ndarray:
    """The statistics ``STAT_KEYS`` (last axis) of every channel, ``(B, C, 7)`` float64, from
    the
    sums of ``_position_sums`` of layers with ``chans[l]`` channels of ``positions[l]``
    positions."""
    signed, absolute, count, sq_dev, clean, shift = sums.transpose(1, 0, 2)
    inv_pos = np.repeat(1.0 / np.asarray(positions, dtype=np.float64), chans)
    out = np.empty((sums.shape[0], sums.shape[2], len(STAT_KEYS)))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_count = 1.0 / count  # inf where no position varies: 0 * inf = NaN
        np.multiply(absolute, inv_count, out=out[..., 0])
        np.multiply(signed, inv_count, out=out[..., 3])
        out[~y_varies, :, 0] = np.nan  # no correlation with a constant output
        out[~y_varies, :, 3] = np.nan
        np.multiply(clean, inv_pos, out=out[..., 2])  # mean activation on the clean copy
        np.multiply(shift, inv_pos / n, out=out[..., 4])
        out[..., 4] += out[..., 2]  # mean activation over all copies
        np.multiply(sq_dev, inv_pos / n, out=out[..., 5])  # mean variance
        np.divide(
            1.0, out[..., 5], out=out[..., 1]
        )  # precision: inf for a channel that never changes
        out[..., 1][out[..., 4] < float(min_activation)] = np.nan
    out[..., 6] = count
    return out


def weight_norms(
    model: nn.Module,
    layer: str | nn.Module,
    num_channels: int | None = None,
    fold_batchnorm: bool = True,
) -> np.ndarray:
    """L2 norm of the filter of each output channel of the convolution that produces ``layer``.

    ``layer`` may be a ``Conv2d`` or a block holding one (the last ``Conv2d`` inside is used). With
    ``fold_batchnorm`` a ``BatchNorm2d`` registered after that convolution inside the block scales
    each norm by ``|gamma| / sqrt(running_var + eps)``, the factor it applies in evaluation mode
    (without it, norms of batch-normalised convolutions are meaningless). Returns NaNs when the
    layer holds no convolution with ``num_channels`` outputs (for example a bare BatchNorm).
    """
    module = next(iter(resolve_modules(model, [layer]).values()))
    return _weight_norms_of(module, num_channels, fold_batchnorm)


def _conv_and_bn(
    module: nn.Module, fold_batchnorm: bool
) -> tuple[nn.Conv2d | None, nn.BatchNorm2d | None]:
    subs = list(module.modules())
    convs = [i for i, m in enumerate(subs) if isinstance(m, nn.Conv2d)]
    if not convs:
        return None, None
    i = convs[-1]
    conv = subs[i]
    bn = (
        next(
            (
                m
                for m in subs[i + 1 :]
                if isinstance(m, nn.BatchNorm2d) and m.num_features == conv.out_channels
            ),
            None,
        )
        if fold_batchnorm
        else None
    )
    return conv, bn


def _weight_norms_of(
    module: nn.Module, num_channels: int | None, fold_batchnorm: bool = True
) -> np.ndarray:
    conv, bn = _conv_and_bn(module, fold_batchnorm)
    norms = None if conv is None else _filter_norms(conv, bn)
    if norms is None or (num_channels is not None and len(norms) != num_channels):
        return np.full(num_channels or 0, np.nan)
    return norms.copy()


def _filter_norms(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> np.ndarray:
    as_numpy = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
    norms = as_numpy(torch.linalg.vector_norm(conv.weight.detach().flatten(1), dim=1))
    if bn is not None:
        if bn.weight is not None:
            norms = norms * np.abs(as_numpy(bn.weight))
        if bn.running_var is not None:
            norms = norms / np.sqrt(as_numpy(bn.running_var) + bn.eps)
    return norms
