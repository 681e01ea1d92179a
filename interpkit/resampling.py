"""Choosing influential and general neurons by resampling the input.

Lengerich, Konam, Xing, Rosenthal and Veloso, "Towards Visual Explanations for Convolutional
Neural Networks via Input Resampling", ICML 2017 Workshop on Visualization for Deep Learning
(arXiv:1707.09641).

For one test image ``x`` the method makes ``N`` perturbed copies (copy 0 is the clean image and
the noise grows with the copy index ``k``), runs them through the network once, and scores every
channel ``c`` of every chosen conv layer by two statistics over the copies:

* activation-output correlation: the mean over positions ``(h, w)`` of
  ``|Pearson_k(a_c(h, w, k), y_k)|``, where ``y_k`` is the network's probability of the class it
  predicts on the clean image; positions whose activation does not change over the copies are
  skipped (the authors' ``nanmean``);
* activation precision: ``1 / mean_(h, w) Var_k(a_c(h, w, k))``; channels whose mean activation
  (over positions and copies) is below ``min_activation`` (0.1 in the authors' code) are not ranked.

The top ``k`` channels per layer by each statistic are compared with set-overlap measures; the
authors' "similarity" ``sum_l |A_l & B_l| / sum_l (|A_l| + |B_l|)`` is half the Dice coefficient.

Everything here returns tidy pandas tables or a small dataclass; nothing prints or plots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .capture import capture, resolve_modules
from .checks import check_images, check_positive_int, require_eval
from .device import model_device, resolve_device

SCHEMES = ("multiplicative", "additive", "occlusion")
OUTPUTS = ("probability", "logit")
#: Statistics a channel can be ranked by: the paper's two, and two baselines that need no
#: resampling.
METRICS = ("correlation", "precision", "mean_activation", "weight_norm")
#: Ways of choosing channels in :func:`ablation_study` (the metrics plus uniform random choice).
METHODS = METRICS + ("random",)

__all__ = [
    "SCHEMES",
    "METRICS",
    "METHODS",
    "ResamplingResult",
    "perturb",
    "noise_scales",
    "analyze",
    "channel_scores",
    "weight_norms",
    "top_k",
    "set_overlap",
    "chance_overlap",
    "zero_channels",
    "ablation_study",
    "summarize_ablation",
    "overlap_over_training",
]


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

    With ``s_k`` from :func:`noise_scales` and ``e ~ Normal(0, 1)`` drawn per element:

    * ``"multiplicative"`` (the paper): ``x_k = x * (1 + s_k * e)``;
    * ``"additive"``: ``x_k = x + s_k * e``;
    * ``"occlusion"``: the image is cut into ``patch`` x ``patch`` cells and each cell of copy ``k``
      is replaced by ``fill`` with probability ``min(1, s_k)`` (so ``sigma`` is the occlusion
      probability added per copy; use about ``1 / n``).

    ``images`` is ``(C, H, W)`` (returns ``(n, C, H, W)``) or ``(B, C, H, W)`` (returns
    ``(B, n, C, H, W)``). ``clip=True`` clamps the copies to ``[0, 1]`` (the authors do not).
    The noise is drawn on the CPU from ``seed``, so it is the same on every device.
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
#: The statistics of every channel, in the order of the last axis of :func:`_finish_stats`.
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

    ``acts``: one ``(B, N, C_l, P_l)`` tensor per layer; ``ones_u`` from :func:`_unit_outputs`.
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
    """The statistics :data:`STAT_KEYS` (last axis) of every channel, ``(B, C, 7)`` float64, from
    the
    sums of :func:`_position_sums` of layers with ``chans[l]`` channels of ``positions[l]``
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


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class ResamplingResult:
    """What :func:`analyze` measured.

    ``scores``: one row per (image, layer, channel) with the columns of :data:`METRICS` and the
    helper statistics of :func:`channel_scores`. ``outputs``: one row per (image, copy): the noise
    level, ``output`` (``y_k``) and the class predicted on that copy. ``images``: one row per image:
    ``target`` (the explained class), ``probability`` on the clean image, ``output_constant``
    (``y`` did not change over the copies, so no correlation is defined). ``maps``: the clean-image
    activation maps, ``{layer: (B, C, H, W)}`` on the CPU (when ``keep_maps``). ``outputs`` and
    ``images`` are built from stored arrays when first used.
    """

    scores: pd.DataFrame
    layers: list[str]
    num_channels: dict[str, int]
    params: dict[str, Any]
    maps: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    raw: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return len(self.raw["target"])

    @property
    def targets(self) -> np.ndarray:
        """The explained class of each image (predicted on the clean image unless given)."""
        return self.raw["target"]

    @property
    def outputs(self) -> pd.DataFrame:
        if "outputs" not in self._tables:
            b, n = self.raw["output"].shape
            self._tables["outputs"] = pd.DataFrame(
                {
                    "image": np.repeat(np.arange(b), n),
                    "copy": np.tile(np.arange(n), b),
                    "noise_scale": np.tile(self.raw["noise_scale"], b),
                    "output": self.raw["output"].reshape(-1),
                    "predicted": self.raw["predicted"].reshape(-1),
                }
            )
        return self._tables["outputs"]

    @property
    def images(self) -> pd.DataFrame:
        if "images" not in self._tables:
            y = self.raw["output"]
            self._tables["images"] = pd.DataFrame(
                {
                    "image": np.arange(len(y)),
                    "target": self.raw["target"],
                    "probability": self.raw["probability"],
                    "output_constant": y.max(1) == y.min(1),
                }
            )
        return self._tables["images"]

    def top_k(self, metric: str = "correlation", k: int = 5) -> pd.DataFrame:
        """The ``k`` highest-scoring channels per (image, layer); see :func:`top_k`."""
        return top_k(self.scores, metric, k)

    def selected(
        self, metric: str = "correlation", k: int = 5, image: int = 0
    ) -> dict[str, list[int]]:
        """``{layer: [channels]}`` chosen by ``metric`` for one image (best first)."""
        if not 0 <= image < self.n_images:
            raise KeyError(f"no image {image}; this result holds images 0 to {self.n_images - 1}.")
        t = self.top_k(metric, k)
        t = t[t["image"] == image]
        return {layer: t.loc[t["layer"] == layer, "channel"].tolist() for layer in self.layers}

    def overlap(
        self, k: int = 5, a: str = "correlation", b: str = "precision", per_layer: bool = False
    ) -> pd.DataFrame:
        """Overlap of the top-``k`` sets chosen by metrics ``a`` and ``b``, one row per image
        (pooled
        over layers as the authors do) or per (image, layer) with ``per_layer=True``.

        Columns: ``intersection``, ``size_a``, ``size_b``, ``union``, ``authors_similarity``
        (``|A & B| / (|A| + |B|)``, half the Dice coefficient, at most 0.5), ``dice``, ``jaccard``,
        and ``chance_dice``: the Dice coefficient expected for random sets of the same sizes.
        """
        ta, tb = self.top_k(a, k), self.top_k(b, k)
        keys = ["image", "layer"]
        idx = pd.MultiIndex.from_product([np.arange(self.n_images), self.layers], names=keys)

        def count(t: pd.DataFrame) -> pd.Series:
            t = t.assign(layer=t["layer"].astype(str))
            return t.groupby(keys).size().reindex(idx, fill_value=0)

        size_a, size_b = count(ta), count(tb)
        inter = count(ta.merge(tb, on=["image", "layer", "channel"]))
        channels = np.array([self.num_channels[layer] for layer in idx.get_level_values("layer")])
        df = pd.DataFrame(
            {
                "intersection": inter,
                "size_a": size_a,
                "size_b": size_b,
                "union": size_a + size_b - inter,
                "expected_intersection": size_a * size_b / channels,
            }
        )
        if not per_layer:
            df = df.groupby(level="image").sum()
        total = (df["size_a"] + df["size_b"]).astype(float).replace(0, np.nan)
        df["authors_similarity"] = df["intersection"] / total
        df["dice"] = 2 * df["authors_similarity"]
        df["jaccard"] = df["intersection"] / df["union"].astype(float).replace(0, np.nan)
        df["chance_dice"] = 2 * df["expected_intersection"] / total
        cols = [
            "intersection",
            "size_a",
            "size_b",
            "union",
            "authors_similarity",
            "dice",
            "jaccard",
            "expected_intersection",
            "chance_dice",
        ]
        return df[cols].reset_index()


def top_k(scores: pd.DataFrame, metric: str = "correlation", k: int = 5) -> pd.DataFrame:
    """The ``k`` highest-scoring channels per (image, layer) of a ``scores`` table.

    Channels whose score is NaN (undefined or not eligible) are never chosen, so fewer than ``k``
    may come back; ties go to the lower channel index. Columns: image, layer, rank (0 = best),
    channel, score.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    check_positive_int("k", k)
    s = scores.loc[scores[metric].notna(), ["image", "layer", "channel", metric]]
    s = s.sort_values(
        ["image", "layer", metric, "channel"], ascending=[True, True, False, True], kind="stable"
    )
    s = s.groupby(["image", "layer"], sort=False).head(int(k)).copy()
    s["rank"] = s.groupby(["image", "layer"], sort=False).cumcount()
    return s.rename(columns={metric: "score"})[
        ["image", "layer", "rank", "channel", "score"]
    ].reset_index(drop=True)


def _as_layer_sets(sel: Mapping[str, Iterable[int]] | Iterable[Any]) -> dict[Any, set]:
    if isinstance(sel, Mapping):
        return {layer: set(int(c) for c in chans) for layer, chans in sel.items()}
    return {None: set(sel)}


def set_overlap(
    a: Mapping[str, Iterable[int]] | Iterable[Any], b: Mapping[str, Iterable[int]] | Iterable[Any]
) -> dict[str, float]:
    """Overlap of two selections, pooled over layers: ``{layer: channels}`` mappings or plain sets.

    Returns ``intersection`` (``sum_l |A_l & B_l|``), ``size_a``, ``size_b``, ``union``,
    ``authors_similarity`` = intersection / (size_a + size_b) (the authors' ``calc_overlap``, half
    the Dice coefficient), ``dice`` = twice that, and ``jaccard`` = intersection / union. Layers
    present in only one mapping count as empty in the other. Two empty selections give NaN.
    """
    sa, sb = _as_layer_sets(a), _as_layer_sets(b)
    if (None in sa) != (None in sb):
        raise TypeError("pass both selections as {layer: channels} mappings or both as plain sets.")
    inter = size_a = size_b = union = 0
    for layer in set(sa) | set(sb):
        x, y = sa.get(layer, set()), sb.get(layer, set())
        inter += len(x & y)
        size_a += len(x)
        size_b += len(y)
        union += len(x | y)
    total = size_a + size_b
    half = inter / total if total else math.nan
    return {
        "intersection": inter,
        "size_a": size_a,
        "size_b": size_b,
        "union": union,
        "authors_similarity": half,
        "dice": 2 * half,
        "jaccard": inter / union if union else math.nan,
    }


def chance_overlap(
    a: Mapping[str, Iterable[int]], b: Mapping[str, Iterable[int]], num_channels: Mapping[str, int]
) -> dict[str, float]:
    """Expected overlap of two *random* selections with the sizes of ``a`` and ``b`` per layer
    (uniform subsets of the layer's ``num_channels``): ``expected_intersection`` and
    ``chance_dice`` = ``2 E|A & B| / (|A| + |B|)`` (exact, as the sizes are fixed)."""
    sa, sb = _as_layer_sets(a), _as_layer_sets(b)
    e = sum(
        len(sa.get(layer, ())) * len(sb.get(layer, ())) / num_channels[layer]
        for layer in set(sa) | set(sb)
    )
    total = sum(len(v) for v in sa.values()) + sum(len(v) for v in sb.values())
    return {"expected_intersection": e, "chance_dice": 2 * e / total if total else math.nan}


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------
def _index_columns(names: tuple[str, ...], chans: tuple[int, ...], b: int) -> dict[str, Any]:
    """The ``image``, ``layer`` and ``channel`` columns of a scores table (``pd.DataFrame`` copies
    them, so the cached arrays are never changed)."""
    total = sum(chans)
    return {
        "image": np.repeat(np.arange(b), total),
        "layer": pd.Categorical.from_codes(
            np.tile(np.repeat(np.arange(len(names)), chans), b),
            dtype=pd.CategoricalDtype(list(names)),
        ),
        "channel": np.tile(np.concatenate([np.arange(c) for c in chans]), b),
    }


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        return images[None]
    return images


def _targets(
    target: int | Sequence[int] | torch.Tensor | None, b: int, classes: int
) -> np.ndarray | None:
    """The explained class of each of ``b`` images as an int64 array (``None``: the predicted
    class)."""
    if target is None:
        return None
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1).cpu().numpy()
    if t.size == 1:
        t = np.repeat(t, b)
    if t.size != b:
        raise ValueError(f"target must be one class or one per image ({b}), got {t.size} values.")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target classes must lie in [0, {classes - 1}], got {t.tolist()}.")
    return t


def analyze(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] | str | None = None,
    *,
    n: int = 50,
    sigma: float = 0.1,
    scheme: str = "multiplicative",
    ramp: bool = True,
    patch: int = 4,
    clip: bool = False,
    target: int | Sequence[int] | None = None,
    output: str = "probability",
    min_activation: float = 0.1,
    seed: int = 0,
    batch_size: int = 1024,
    keep_maps: bool = True,
    device: str | torch.device | None = None,
) -> ResamplingResult:
    """Score every channel of ``layers`` for each image by resampling the input (see the module
    doc).

    ``images``: one image ``(C, H, W)`` or a batch ``(B, C, H, W)``; each gets ``n`` copies made by
    :func:`perturb` (``scheme``, ``sigma``, ``ramp``, ``patch``, ``clip``; image ``i`` uses noise
    seed ``seed + i``). All copies go through the model in as few passes as fit in ``batch_size``
    copies, recording every layer at once with forward hooks (as :func:`interpkit.capture` does,
    but without copying outputs the model leaves alone). ``layers`` defaults to
    :func:`interpkit.models.conv_layer_names`; each must output a ``(N, C, H, W)`` map.
    ``target``: the class whose output ``y`` is correlated, default the class predicted on the
    clean image; ``output="probability"`` (softmax, the paper) or ``"logit"``. The model must be in
    evaluation mode; it is moved to ``device``.
    """
    from .models import conv_layer_names

    _check_n_sigma(n, sigma)
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive number of copies, got {batch_size}.")
    require_eval(model, "analyze")
    dev = resolve_device(device)
    if model_device(model) != dev:
        model = model.to(dev)
    x = _as_batch(images)
    check_images(x)
    x = x.to(dev)
    check_images(x, model)
    modules = resolve_modules(model, conv_layer_names(model) if layers is None else layers)
    return _analyze(
        model,
        x,
        modules,
        n,
        sigma,
        scheme,
        ramp,
        patch,
        clip,
        target,
        output,
        min_activation,
        seed,
        batch_size,
        keep_maps,
    )


def _record(
    model: nn.Module, modules: Mapping[str, nn.Module], copies: torch.Tensor
) -> tuple[Any, dict[str, Any]]:
    """One forward pass of ``copies`` (under ``no_grad``) keeping a copy of every module's output
    (:func:`interpkit.capture`)."""
    with torch.no_grad(), capture(model, list(modules)) as acts:
        logits = model(copies)
    return logits, acts


def _analyze(
    model: nn.Module,
    x: torch.Tensor,
    modules: dict[str, nn.Module],
    n: int,
    sigma: float,
    scheme: str,
    ramp: bool,
    patch: int,
    clip: bool,
    target: Any,
    output: str,
    min_activation: float,
    seed: int,
    batch_size: int,
    keep_maps: bool,
) -> ResamplingResult:
    names = list(modules)
    b = len(x)
    per_pass = max(1, int(batch_size) // n)
    stats: list[np.ndarray] = []
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    logits_all: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    targets = None
    for start in range(0, b, per_pass):
        xb = x[start : start + per_pass]
        nb = len(xb)
        with torch.no_grad():
            copies = [
                _perturb(xb[i : i + 1], n, sigma, scheme, ramp, patch, 0.0, clip, seed + start + i)[
                    0
                ]
                for i in range(nb)
            ]
        logits, acts = _record(model, modules, copies[0] if nb == 1 else torch.cat(copies))
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError(
                "the model must return class scores of shape (N, classes); got "
                f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}."
            )
        for name in names:
            a = acts.get(name)
            if not isinstance(a, torch.Tensor) or a.ndim != 4:
                raise ValueError(
                    f"layer {name!r} outputs shape {tuple(getattr(a, 'shape', ()))}, not a conv "
                    f"map "
                    "(N, C, H, W) with a channel axis; choose conv layers, for example "
                    "interpkit.models.conv_layer_names(model)."
                )
            if keep_maps:
                maps[name].append(
                    a.view(nb, n, *a.shape[1:])[:, 0]
                )  # a view; copied once, at the end
        if start == 0:
            targets = _targets(target, b, logits.shape[1])
        # the outputs are a few numbers per copy: worked on in float64 NumPy on the CPU, where small
        # arrays cost microseconds (and float64 keeps probabilities near 1 apart)
        lg = logits.detach().to("cpu", torch.float64).numpy().reshape(nb, n, -1)
        t = lg[:, 0].argmax(1) if targets is None else targets[start : start + nb]
        y = lg if output == "logit" else _softmax(lg)
        y = np.take_along_axis(y, np.broadcast_to(t[:, None, None], (nb, n, 1)), 2)[
            ..., 0
        ]  # (nb, n)
        ones_u, y_varies = _unit_outputs(y)
        with torch.no_grad():
            sums = _position_sums(
                [acts[name].view(nb, n, acts[name].shape[1], -1) for name in names], ones_u
            )
        num_channels = {name: int(acts[name].shape[1]) for name in names}
        positions = tuple(int(acts[name][0, 0].numel()) for name in names)
        stats.append(
            _finish_stats(
                sums, tuple(num_channels.values()), positions, n, y_varies, min_activation
            )
        )
        logits_all.append(lg)
        ys.append(y)
        ts.append(t)
    # the tidy table: one row per (image, layer, channel), built from whole arrays in one call
    block = (np.concatenate(stats) if len(stats) > 1 else stats[0]).reshape(-1, len(STAT_KEYS))
    cols: dict[str, Any] = dict(zip(STAT_KEYS, block.T))
    cols["valid_positions"] = cols["valid_positions"].astype(np.int64)
    cols.update(_index_columns(tuple(names), tuple(num_channels[name] for name in names), b))
    cols["weight_norm"] = np.tile(
        np.concatenate([_weight_norms_of(modules[nm], num_channels[nm]) for nm in names]), b
    )
    scores = pd.DataFrame(
        {k: cols[k] for k in ("image", "layer", "channel") + METRICS + STAT_KEYS[3:]}, copy=False
    )
    joined = lambda parts: np.concatenate(parts) if len(parts) > 1 else parts[0]  # noqa: E731
    lg, targets = joined(logits_all), joined(ts)  # (B, n, classes), (B,)
    raw_y = joined(ys)
    raw = {
        "output": raw_y,
        "predicted": lg.argmax(-1),
        "target": targets,
        "probability": (
            raw_y[:, 0] if output == "probability" else _softmax(lg[:, 0])[np.arange(b), targets]
        ),
        "noise_scale": noise_scales(n, float(sigma), ramp).numpy(),
    }
    params = dict(
        n=n,
        sigma=float(sigma),
        scheme=scheme,
        ramp=ramp,
        patch=patch,
        clip=clip,
        output=output,
        min_activation=float(min_activation),
        seed=seed,
    )
    # the clean maps get their own compact memory (a view would hold every copy's activations)
    kept = (
        {
            name: torch.cat(maps[name]).cpu()
            if len(maps[name]) > 1
            else maps[name][0].to("cpu", copy=True)
            for name in names
        }
        if keep_maps
        else None
    )
    return ResamplingResult(scores, names, num_channels, params, kept, raw)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in the dtype of ``logits`` (float64 here)."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Causal check: ablation
# --------------------------------------------------------------------------------------------
@contextmanager
def zero_channels(
    model: nn.Module, channels: Mapping[str, Sequence[int] | torch.Tensor]
) -> Iterator[dict]:
    """Zero channels of layer outputs during every forward pass inside the block (forward hooks).

    ``channels``: ``{layer: [channel indices]}`` (the same channels for every image) or
    ``{layer: mask}`` with a boolean ``(B, C)`` tensor, ``True`` = zero, one row per image of the
    batch. The yielded dict can be updated inside the block to change the masks between passes.
    Hooks are removed when the block ends, also on error.
    """
    state = dict(channels)

    def make_edit(name: str):
        def edit(out):
            if not isinstance(out, torch.Tensor) or out.ndim < 2:
                raise ValueError(
                    f"layer {name!r} outputs {type(out).__name__} without a channel axis; "
                    "zero_channels needs conv-like outputs (N, C, ...)."
                )
            sel = state[name]
            c = out.shape[1]
            if isinstance(sel, torch.Tensor) and sel.dtype == torch.bool:
                if sel.shape != (out.shape[0], c):
                    raise ValueError(
                        f"mask for {name!r} has shape {tuple(sel.shape)}, expected "
                        f"{(out.shape[0], c)} (batch, channels)."
                    )
                keep = (~sel).to(device=out.device, dtype=out.dtype)
            else:
                idx = torch.as_tensor(
                    list(sel) if not isinstance(sel, torch.Tensor) else sel, dtype=torch.long
                )
                if idx.numel() and (idx.min() < 0 or idx.max() >= c):
                    raise ValueError(
                        f"channel indices for {name!r} must lie in [0, {c - 1}], got "
                        f"{idx.tolist()}."
                    )
                keep = torch.ones(c, device=out.device, dtype=out.dtype)
                keep[idx.to(out.device)] = 0
                keep = keep.expand(out.shape[0], c)
            return out * keep.reshape(*keep.shape, *([1] * (out.ndim - 2)))

        return edit

    with capture(model, (), edit={name: make_edit(name) for name in state}):
        yield state


def _masks_from_table(
    sel: pd.DataFrame, layers: Sequence[str], b: int, num_channels: Mapping[str, int]
) -> dict:
    masks = {layer: torch.zeros(b, num_channels[layer], dtype=torch.bool) for layer in layers}
    for layer in layers:
        s = sel[sel["layer"] == layer]
        masks[layer][
            torch.tensor(s["image"].to_numpy(), dtype=torch.long),
            torch.tensor(s["channel"].to_numpy(), dtype=torch.long),
        ] = True
    return masks


@torch.no_grad()
def ablation_study(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | None = None,
    *,
    result: ResamplingResult | None = None,
    layers: Sequence[str] | None = None,
    k: int = 5,
    methods: Sequence[str] = METHODS,
    n_random: int = 10,
    all_layers: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    **analyze_kwargs: Any,
) -> pd.DataFrame:
    """Zero the top-``k`` channels each method chooses *for each image* and measure what changes.

    For every image, scope (each layer on its own, and with ``all_layers`` every layer at once,
    scope ``"all"``) and method in ``methods`` (:data:`METHODS`; ``"random"`` draws ``k`` channels
    per layer uniformly, ``n_random`` times, seeded), the chosen channels are zeroed with
    :func:`zero_channels` and the image is classified again. ``result`` is a previous
    :func:`analyze` of these images (else it is computed here with ``analyze_kwargs``).
    Returns one row per (image, scope, method, draw): ``n_zeroed`` channels, ``p_clean`` and
    ``p_ablated`` (probability of the class predicted on the clean image), ``drop`` = their
    difference, ``flipped`` (the prediction changed), and with ``labels`` ``correct_clean`` and
    ``correct_ablated``. Summarise with :func:`summarize_ablation`.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}.")
    check_positive_int("n_random", n_random)
    require_eval(model, "ablation_study")
    dev = resolve_device(device)
    model = model.to(dev)
    x = _as_batch(images)
    check_images(x)
    x = x.to(dev)
    check_images(x, model)
    b = len(x)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() != b:
            raise ValueError(f"{b} images but {labels.numel()} labels; pass one label per image.")
    if result is None:
        result = analyze(model, x, layers, device=dev, keep_maps=False, **analyze_kwargs)
    elif result.n_images != b:
        raise ValueError(
            f"result holds {result.n_images} images but {b} were passed; analyze these images."
        )
    layers = list(result.layers if layers is None else resolve_modules(model, layers))
    missing = [layer for layer in layers if layer not in result.num_channels]
    if missing:
        raise KeyError(f"layers {missing} were not analysed in `result`; analyze them first.")
    target = torch.tensor(result.targets, dtype=torch.long)

    def probs(masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Softmax outputs of all images, zeroing ``masks`` (``{layer: (B, C) bool}``) if given; in
        float64 on the CPU (MPS has no float64)."""
        out = []
        if masks is None:
            for i in range(0, b, batch_size):
                out.append(F.softmax(model(x[i : i + batch_size]).to("cpu", torch.float64), -1))
            return torch.cat(out)
        with zero_channels(model, {layer: m[:batch_size] for layer, m in masks.items()}) as live:
            for i in range(0, b, batch_size):
                for layer, m in masks.items():
                    live[layer] = m[i : i + batch_size]
                out.append(F.softmax(model(x[i : i + batch_size]).to("cpu", torch.float64), -1))
        return torch.cat(out)

    p0 = probs()
    p_clean = p0.gather(1, target.view(-1, 1))[:, 0]
    pred_clean = p0.argmax(1)
    gen = torch.Generator().manual_seed(int(seed))
    scopes = [[layer] for layer in layers] + ([layers] if all_layers and len(layers) > 1 else [])
    tables = {m: result.top_k(m, k) for m in methods if m != "random"}
    rows = []
    for scope in scopes:
        scope_name = scope[0] if len(scope) == 1 else "all"
        for method in methods:
            for draw in range(n_random if method == "random" else 1):
                if method == "random":
                    masks = {}
                    for layer in scope:
                        c = result.num_channels[layer]
                        pick = torch.rand((b, c), generator=gen).argsort(1)[:, : min(int(k), c)]
                        masks[layer] = torch.zeros(b, c, dtype=torch.bool).scatter_(1, pick, True)
                else:
                    masks = _masks_from_table(tables[method], scope, b, result.num_channels)
                p = probs(masks)
                pred = p.argmax(1)
                row = {
                    "image": np.arange(b),
                    "scope": scope_name,
                    "method": method,
                    "draw": draw,
                    "n_zeroed": sum(masks[layer].sum(1) for layer in scope).numpy(),
                    "p_clean": p_clean.numpy(),
                    "p_ablated": p.gather(1, target.view(-1, 1))[:, 0].numpy(),
                    "flipped": (pred != pred_clean).numpy(),
                }
                if labels is not None:
                    row["correct_clean"] = (pred_clean == labels).numpy()
                    row["correct_ablated"] = (pred == labels).numpy()
                rows.append(pd.DataFrame(row))
    df = pd.concat(rows, ignore_index=True)
    df["drop"] = df["p_clean"] - df["p_ablated"]
    return df


def summarize_ablation(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (scope, method) of an :func:`ablation_study` table.

    Random draws are first averaged per image, so every method is a mean over the same images.
    Columns: ``mean_drop`` (of the predicted-class probability), ``sem_drop`` (standard error over
    images), ``flip_rate``, ``mean_zeroed``, and with labels ``accuracy_clean``,
    ``accuracy_ablated``, ``accuracy_drop``.
    """
    cols = ["drop", "flipped", "n_zeroed"] + [
        c for c in ("correct_clean", "correct_ablated") if c in df
    ]
    per_image = (
        df.astype({c: float for c in cols if c in ("flipped", "correct_clean", "correct_ablated")})
        .groupby(["scope", "method", "image"], sort=False)[cols]
        .mean()
        .reset_index()
    )
    g = per_image.groupby(["scope", "method"], sort=False)
    out = pd.DataFrame(
        {
            "mean_drop": g["drop"].mean(),
            "sem_drop": g["drop"].sem(),
            "flip_rate": g["flipped"].mean(),
            "mean_zeroed": g["n_zeroed"].mean(),
        }
    )
    if "correct_clean" in per_image:
        out["accuracy_clean"] = g["correct_clean"].mean()
        out["accuracy_ablated"] = g["correct_ablated"].mean()
        out["accuracy_drop"] = out["accuracy_clean"] - out["accuracy_ablated"]
    out["n_images"] = g.size()
    return out.reset_index()


# --------------------------------------------------------------------------------------------
# Across training
# --------------------------------------------------------------------------------------------
def overlap_over_training(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    images: torch.Tensor,
    layers: Sequence[str] | None = None,
    *,
    k: int = 5,
    a: str = "correlation",
    b: str = "precision",
    checkpoint_names: Sequence[Any] | None = None,
    device: str | torch.device | None = None,
    **analyze_kwargs: Any,
) -> pd.DataFrame:
    """The overlap of the ``a`` and ``b`` selections for each image under each of ``states``
    (state dicts, e.g. ``model.epoch_states`` from ``interpkit.models.train(...,
    keep_epoch_states=True)``).

    Returns :meth:`ResamplingResult.overlap` rows with a ``checkpoint`` column (``checkpoint_names``
    or 0, 1, ...). The model's own weights are restored afterwards.
    """
    if checkpoint_names is not None and len(checkpoint_names) != len(states):
        raise ValueError(f"{len(states)} states but {len(checkpoint_names)} checkpoint names.")
    names = list(checkpoint_names) if checkpoint_names is not None else list(range(len(states)))
    original = {key: v.detach().clone() for key, v in model.state_dict().items()}
    frames = []
    try:
        for name, state in zip(names, states):
            model.load_state_dict(state)
            res = analyze(model, images, layers, keep_maps=False, device=device, **analyze_kwargs)
            frames.append(res.overlap(k, a, b).assign(checkpoint=name))
    finally:
        model.load_state_dict(original)
    return pd.concat(frames, ignore_index=True)
