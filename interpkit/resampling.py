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
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .capture import capture, resolve_modules
from .checks import check_images, require_eval
from .device import model_device, resolve_device

SCHEMES = ("multiplicative", "additive", "occlusion")
OUTPUTS = ("probability", "logit")
#: Statistics a channel can be ranked by: the paper's two, and two baselines that need no resampling.
METRICS = ("correlation", "precision", "mean_activation", "weight_norm")
#: Ways of choosing channels in :func:`ablation_study` (the metrics plus uniform random choice).
METHODS = METRICS + ("random",)

__all__ = ["SCHEMES", "METRICS", "METHODS", "ResamplingResult", "perturb", "noise_scales", "analyze",
           "channel_scores", "weight_norms", "top_k", "set_overlap", "chance_overlap", "zero_channels",
           "ablation_study", "summarize_ablation", "overlap_over_training"]


# --------------------------------------------------------------------------------------------
# Perturbations
# --------------------------------------------------------------------------------------------
def _check_n_sigma(n: int, sigma: float) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n (the number of copies) must be an integer, got {type(n).__name__}.")
    if n < 3:
        raise ValueError(f"n = {n} copies is too few: a variance and a correlation over the copies need at "
                         "least 3 (the paper uses n = 50).")
    if not isinstance(sigma, (int, float, np.floating, np.integer)) or not math.isfinite(float(sigma)) \
            or float(sigma) <= 0:
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}; the paper uses 0.1 "
                         "(noise of standard deviation 0.1 * k on copy k).")


def noise_scales(n: int = 50, sigma: float = 0.1, ramp: bool = True) -> torch.Tensor:
    """The noise level of each copy: ``sigma * k`` (``ramp=True``, the authors' schedule) or
    ``sigma`` for every copy but the clean copy 0 (``ramp=False``). Shape ``(n,)``, float64."""
    _check_n_sigma(n, sigma)
    k = torch.arange(n, dtype=torch.float64)
    return float(sigma) * (k if ramp else (k > 0).to(torch.float64))


def perturb(images: torch.Tensor, n: int = 50, sigma: float = 0.1, *, scheme: str = "multiplicative",
            ramp: bool = True, patch: int = 4, fill: float = 0.0, clip: bool = False,
            seed: int = 0) -> torch.Tensor:
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
    if scheme not in SCHEMES:
        raise ValueError(f"unknown perturbation scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    single = isinstance(images, torch.Tensor) and images.ndim == 3
    x = images[None] if single else images
    check_images(x)
    s = noise_scales(n, sigma, ramp).to(torch.float32)
    b, c, h, w = x.shape
    gen = torch.Generator().manual_seed(int(seed))
    if scheme == "occlusion":
        if int(patch) < 1:
            raise ValueError(f"patch must be a positive number of pixels, got {patch}.")
        gh, gw = -(-h // patch), -(-w // patch)
        p = s.clamp(max=1.0).view(1, n, 1, 1, 1)
        cells = (torch.rand((b, n, 1, gh, gw), generator=gen) < p).to(x.dtype)
        mask = cells.repeat_interleave(patch, 3).repeat_interleave(patch, 4)[..., :h, :w].to(x.device)
        out = x[:, None] * (1 - mask) + float(fill) * mask
    else:
        e = torch.randn((b, n, c, h, w), generator=gen).to(device=x.device, dtype=x.dtype)
        noise = s.to(x.device).view(1, n, 1, 1, 1) * e
        out = x[:, None] * (1 + noise) if scheme == "multiplicative" else x[:, None] + noise
    if clip:
        out = out.clamp(0, 1)
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# Channel statistics
# --------------------------------------------------------------------------------------------
def channel_scores(acts: torch.Tensor, outputs: torch.Tensor, *,
                   min_activation: float = 0.1) -> dict[str, torch.Tensor]:
    """The per-channel statistics of one layer from activations over the copies.

    ``acts``: ``(B, N, C, H, W)`` (or ``(N, C, H, W)`` for one image); ``outputs``: ``(B, N)`` (or
    ``(N,)``), the network output ``y_k`` on each copy. Returns tensors of shape ``(B, C)``:

    * ``correlation``: mean over positions of ``|Pearson_k(a, y)|``, skipping positions where the
      activation is constant over the copies; NaN when no position varies or ``y`` is constant;
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
        raise ValueError(f"acts must have shape (B, N, C, H, W) or (N, C, H, W), got {tuple(acts.shape)}; "
                         "the layer needs a channel axis and a spatial map (a conv layer).")
    b, n, c = acts.shape[:3]
    if outputs.shape != (b, n):
        raise ValueError(f"outputs must have shape {(b, n)} to match the activations, got {tuple(outputs.shape)}.")
    ones_u, y_varies = _unit_outputs(outputs.to(acts.device))
    out = _layer_stats(acts.reshape(b, n, c, -1), ones_u, y_varies, min_activation)
    return {k: v[0] for k, v in out.items()} if single else out


def _unit_outputs(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 2, N)``: a row of ones and ``y`` (B, N) centred and scaled to unit norm per image (zeros
    where ``y`` is constant); and whether ``y`` varies. Done in ``y``'s own precision (float64 from
    :func:`analyze`): probabilities near 1 differ only in late digits, which a cast to float32
    before centring would erase."""
    y = y if y.is_floating_point() else y.double()
    y_varies = y.amax(1) > y.amin(1)
    yc = y - y.mean(1, keepdim=True)
    norm = torch.linalg.vector_norm(yc, dim=1, keepdim=True)
    u = torch.where(y_varies[:, None], yc / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.zeros_like(yc))
    return torch.stack([torch.ones_like(u), u], 1), y_varies


def _layer_stats(a: torch.Tensor, ones_u: torch.Tensor, y_varies: torch.Tensor,
                 min_activation: float) -> dict[str, torch.Tensor]:
    """The statistics of :func:`channel_scores` from ``a`` (B, N, C, P) and :func:`_unit_outputs`."""
    b, n, c, _ = a.shape
    if a.dtype not in (torch.float32, torch.float64):
        a = a.float()
    ones_u = ones_u.to(device=a.device, dtype=a.dtype)
    # Shift by the clean copy: d is exactly 0 where an activation never changes (an exact test,
    # free of the rounding of a mean), and the shift keeps the one-pass variance accurate
    # (its relative error is at most about n * float eps, since copy 0 lies within sqrt(n) sd).
    a0 = a[:, 0]
    d = (a - a[:, :1]).view(b, n, -1)                    # (B, N, C*P)
    s1, cov = torch.bmm(ones_u, d).unbind(1)             # sum_k d_k and sum_k d_k u_k (= cov, as sum u = 0)
    s2 = d.square().sum(1)
    varies = (s2 > 0).view(b, c, -1)
    ss = torch.addcmul(s2, s1, s1, value=-1.0 / n).clamp_min_(0).view(b, c, -1)  # sum of squared deviations
    r = cov.view(b, c, -1) * torch.rsqrt(ss)            # Pearson; 0 * inf = NaN where nothing varies
    r.masked_fill_(~varies, 0.0)
    count = varies.sum(-1)
    signed = r.sum(-1) / count                           # mean over varying positions; 0/0 = NaN
    correlation = r.abs_().sum(-1) / count
    correlation.masked_fill_(~y_varies.view(b, 1), math.nan)
    signed.masked_fill_(~y_varies.view(b, 1), math.nan)
    mean_var = ss.mean(-1) / n
    mean_clean = a0.mean(-1)
    mean_all = mean_clean + s1.view(b, c, -1).mean(-1) / n
    precision = torch.reciprocal(mean_var).masked_fill_(mean_all < float(min_activation), math.nan)
    return {"correlation": correlation, "precision": precision, "mean_activation": mean_clean,
            "signed_correlation": signed, "mean_activation_copies": mean_all, "mean_variance": mean_var,
            "valid_positions": count}


def weight_norms(model: nn.Module, layer: str | nn.Module, num_channels: int | None = None,
                 fold_batchnorm: bool = True) -> np.ndarray:
    """L2 norm of the filter of each output channel of the convolution that produces ``layer``.

    ``layer`` may be a ``Conv2d`` or a block holding one (the last ``Conv2d`` inside is used). With
    ``fold_batchnorm`` a ``BatchNorm2d`` registered after that convolution inside the block scales
    each norm by ``|gamma| / sqrt(running_var + eps)``, the factor it applies in evaluation mode
    (without it, norms of batch-normalised convolutions are meaningless). Returns NaNs when the
    layer holds no convolution with ``num_channels`` outputs (for example a bare BatchNorm).
    """
    module = next(iter(resolve_modules(model, [layer]).values()))
    return _weight_norms_of(module, num_channels, fold_batchnorm)


_WN_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def _weight_norms_of(module: nn.Module, num_channels: int | None, fold_batchnorm: bool = True) -> np.ndarray:
    subs = list(module.modules())
    convs = [i for i, m in enumerate(subs) if isinstance(m, nn.Conv2d)]
    nan = np.full(num_channels or 0, np.nan)
    if not convs or (num_channels is not None and subs[convs[-1]].out_channels != num_channels):
        return nan
    i = convs[-1]
    conv = subs[i]
    bn = next((m for m in subs[i + 1:] if isinstance(m, nn.BatchNorm2d) and m.num_features == conv.out_channels),
              None) if fold_batchnorm else None
    tensors = [conv.weight] + ([t for t in (bn.weight, bn.running_var) if t is not None] if bn is not None else [])
    # cached per module; a tensor's version counter changes on every in-place update (training
    # steps, load_state_dict), so a stale entry is never used
    key = (fold_batchnorm, tuple((id(t), t._version) for t in tensors))
    hit = _WN_CACHE.get(module)
    if hit is not None and hit[0] == key:
        return hit[1].copy()
    norms = torch.linalg.vector_norm(conv.weight.flatten(1), dim=1).cpu().numpy().astype(np.float64)
    if bn is not None:
        if bn.weight is not None:
            norms = norms * np.abs(bn.weight.cpu().numpy().astype(np.float64))
        if bn.running_var is not None:
            norms = norms / np.sqrt(bn.running_var.cpu().numpy().astype(np.float64) + bn.eps)
    _WN_CACHE[module] = (key, norms)
    return norms.copy()


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
    activation maps, ``{layer: (B, C, H, W)}`` on the CPU (when ``keep_maps``).
    """

    scores: pd.DataFrame
    outputs: pd.DataFrame
    images: pd.DataFrame
    layers: list[str]
    num_channels: dict[str, int]
    params: dict[str, Any]
    maps: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def top_k(self, metric: str = "correlation", k: int = 5) -> pd.DataFrame:
        """The ``k`` highest-scoring channels per (image, layer); see :func:`top_k`."""
        return top_k(self.scores, metric, k)

    def selected(self, metric: str = "correlation", k: int = 5, image: int = 0) -> dict[str, list[int]]:
        """``{layer: [channels]}`` chosen by ``metric`` for one image (best first)."""
        if image not in set(self.images["image"]):
            raise KeyError(f"no image {image}; this result holds images {sorted(self.images['image'])}.")
        t = self.top_k(metric, k)
        t = t[t["image"] == image]
        return {layer: t.loc[t["layer"] == layer, "channel"].tolist() for layer in self.layers}

    def overlap(self, k: int = 5, a: str = "correlation", b: str = "precision",
                per_layer: bool = False) -> pd.DataFrame:
        """Overlap of the top-``k`` sets chosen by metrics ``a`` and ``b``, one row per image (pooled
        over layers as the authors do) or per (image, layer) with ``per_layer=True``.

        Columns: ``intersection``, ``size_a``, ``size_b``, ``union``, ``authors_similarity``
        (``|A & B| / (|A| + |B|)``, half the Dice coefficient, at most 0.5), ``dice``, ``jaccard``,
        and ``chance_dice``: the Dice coefficient expected for random sets of the same sizes.
        """
        ta, tb = self.top_k(a, k), self.top_k(b, k)
        rows = []
        for img in self.images["image"]:
            sa = ta[ta["image"] == img].groupby("layer")["channel"].apply(set).to_dict()
            sb = tb[tb["image"] == img].groupby("layer")["channel"].apply(set).to_dict()
            groups = [[layer] for layer in self.layers] if per_layer else [self.layers]
            for g in groups:
                ma = {layer: sa.get(layer, set()) for layer in g}
                mb = {layer: sb.get(layer, set()) for layer in g}
                row = {"image": img, **({"layer": g[0]} if per_layer else {}), **set_overlap(ma, mb)}
                row.update(chance_overlap(ma, mb, {layer: self.num_channels[layer] for layer in g}))
                rows.append(row)
        return pd.DataFrame(rows)


def top_k(scores: pd.DataFrame, metric: str = "correlation", k: int = 5) -> pd.DataFrame:
    """The ``k`` highest-scoring channels per (image, layer) of a ``scores`` table.

    Channels whose score is NaN (undefined or not eligible) are never chosen, so fewer than ``k``
    may come back; ties go to the lower channel index. Columns: image, layer, rank (0 = best),
    channel, score.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    s = scores.loc[scores[metric].notna(), ["image", "layer", "channel", metric]]
    s = s.sort_values(["image", "layer", metric, "channel"], ascending=[True, True, False, True], kind="stable")
    s = s.groupby(["image", "layer"], sort=False).head(int(k)).copy()
    s["rank"] = s.groupby(["image", "layer"], sort=False).cumcount()
    return s.rename(columns={metric: "score"})[["image", "layer", "rank", "channel", "score"]].reset_index(drop=True)


def _as_layer_sets(sel: Mapping[str, Iterable[int]] | Iterable[Any]) -> dict[Any, set]:
    if isinstance(sel, Mapping):
        return {layer: set(int(c) for c in chans) for layer, chans in sel.items()}
    return {None: set(sel)}


def set_overlap(a: Mapping[str, Iterable[int]] | Iterable[Any],
                b: Mapping[str, Iterable[int]] | Iterable[Any]) -> dict[str, float]:
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
    return {"intersection": inter, "size_a": size_a, "size_b": size_b, "union": union,
            "authors_similarity": half, "dice": 2 * half, "jaccard": inter / union if union else math.nan}


def chance_overlap(a: Mapping[str, Iterable[int]], b: Mapping[str, Iterable[int]],
                   num_channels: Mapping[str, int]) -> dict[str, float]:
    """Expected overlap of two *random* selections with the sizes of ``a`` and ``b`` per layer
    (uniform subsets of the layer's ``num_channels``): ``expected_intersection`` and
    ``chance_dice`` = 2 E|A & B| / (|A| + |B|) (exact, as the sizes are fixed)."""
    sa, sb = _as_layer_sets(a), _as_layer_sets(b)
    e = sum(len(sa.get(layer, ())) * len(sb.get(layer, ())) / num_channels[layer] for layer in set(sa) | set(sb))
    total = sum(len(v) for v in sa.values()) + sum(len(v) for v in sb.values())
    return {"expected_intersection": e, "chance_dice": 2 * e / total if total else math.nan}


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------
def _as_batch(images: torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        return images[None]
    return images


def _targets(target: int | Sequence[int] | torch.Tensor | None, logits_clean: torch.Tensor) -> torch.Tensor:
    b, classes = logits_clean.shape
    if target is None:
        return logits_clean.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise ValueError(f"target must be one class or one per image ({b}), got {t.numel()} values.")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target classes must lie in [0, {classes - 1}], got {t.tolist()}.")
    return t.to(logits_clean.device)


@torch.no_grad()
def analyze(model: nn.Module, images: torch.Tensor, layers: Sequence[str] | str | None = None, *,
            n: int = 50, sigma: float = 0.1, scheme: str = "multiplicative", ramp: bool = True,
            patch: int = 4, clip: bool = False, target: int | Sequence[int] | None = None,
            output: str = "probability", min_activation: float = 0.1, seed: int = 0,
            batch_size: int = 1024, keep_maps: bool = True,
            device: str | torch.device | None = None) -> ResamplingResult:
    """Score every channel of ``layers`` for each image by resampling the input (see the module doc).

    ``images``: one image ``(C, H, W)`` or a batch ``(B, C, H, W)``; each gets ``n`` copies made by
    :func:`perturb` (``scheme``, ``sigma``, ``ramp``, ``patch``, ``clip``; image ``i`` uses noise
    seed ``seed + i``). All copies go through the model in as few passes as fit in ``batch_size``
    copies, recording every layer at once with :func:`interpkit.capture`. ``layers`` defaults to
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
    check_images(x, model)
    x = x.to(dev)
    modules = resolve_modules(model, conv_layer_names(model) if layers is None else layers)
    names = list(modules)
    b = len(x)
    per_pass = max(1, int(batch_size) // n)
    stats: dict[str, list[dict[str, torch.Tensor]]] = {name: [] for name in names}
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    ys, preds, targets, p_clean = [], [], [], []
    for start in range(0, b, per_pass):
        xb = x[start:start + per_pass]
        nb = len(xb)
        copies = torch.cat([perturb(xb[i], n, sigma, scheme=scheme, ramp=ramp, patch=patch, clip=clip,
                                    seed=seed + start + i) for i in range(nb)])
        with capture(model, names) as acts:
            logits = model(copies)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError("the model must return class scores of shape (N, classes); got "
                             f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}.")
        logits = logits.view(nb, n, -1).double()
        t = _targets(target if target is None or np.ndim(target) == 0 else
                     torch.as_tensor(target).reshape(-1)[start:start + nb], logits[:, 0])
        scores = F.softmax(logits, -1) if output == "probability" else logits
        y = scores.gather(2, t.view(nb, 1, 1).expand(nb, n, 1))[..., 0]          # (nb, n) float64
        ones_u, y_varies = _unit_outputs(y)
        ones_u = ones_u.float()
        ys.append(y)
        preds.append(logits.argmax(-1))
        targets.append(t)
        p_clean.append(F.softmax(logits[:, 0], -1).gather(1, t.view(nb, 1))[:, 0])
        for name in names:
            a = acts[name]
            if not isinstance(a, torch.Tensor) or a.ndim != 4:
                raise ValueError(f"layer {name!r} outputs shape {tuple(getattr(a, 'shape', ()))}, not a conv map "
                                 "(N, C, H, W) with a channel axis; choose conv layers, for example "
                                 "interpkit.models.conv_layer_names(model).")
            a = a.view(nb, n, a.shape[1], -1)
            stats[name].append(_layer_stats(a, ones_u, y_varies, min_activation))
            if keep_maps:
                maps[name].append(acts[name].view(nb, n, *acts[name].shape[1:])[:, 0].clone())
    # tidy tables: one constructor call, columns concatenated over layers
    keys = ("correlation", "precision", "mean_activation", "signed_correlation", "mean_activation_copies",
            "mean_variance", "valid_positions")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "layer", "channel", "weight_norm") + keys}
    num_channels = {}
    for name in names:
        st = {k: torch.cat([s[k] for s in stats[name]]) if len(stats[name]) > 1 else stats[name][0][k] for k in keys}
        c = st["correlation"].shape[1]
        num_channels[name] = c
        cols["image"].append(np.repeat(np.arange(b), c))
        cols["layer"].append(np.full(b * c, name, dtype=object))
        cols["channel"].append(np.tile(np.arange(c), b))
        cols["weight_norm"].append(np.tile(_weight_norms_of(modules[name], c), b))
        for k in keys:
            v = st[k].reshape(-1).cpu().numpy()
            cols[k].append(v.astype(np.float64) if k != "valid_positions" else v)
    order = ("image", "layer", "channel") + METRICS + keys[3:]
    scores = pd.DataFrame({k: np.concatenate(cols[k]) for k in order})
    y_all = torch.cat(ys).cpu().numpy()
    s_k = noise_scales(n, sigma, ramp).numpy()
    outputs = pd.DataFrame({"image": np.repeat(np.arange(b), n), "copy": np.tile(np.arange(n), b),
                            "noise_scale": np.tile(s_k, b), "output": y_all.reshape(-1),
                            "predicted": torch.cat(preds).cpu().numpy().reshape(-1)})
    imgs = pd.DataFrame({"image": np.arange(b), "target": torch.cat(targets).cpu().numpy(),
                         "probability": torch.cat(p_clean).cpu().numpy(),
                         "output_constant": y_all.max(1) == y_all.min(1)})
    params = dict(n=n, sigma=float(sigma), scheme=scheme, ramp=ramp, patch=patch, clip=clip, output=output,
                  min_activation=float(min_activation), seed=seed)
    kept = {name: torch.cat(maps[name]).cpu() for name in names} if keep_maps else None
    return ResamplingResult(scores, outputs, imgs, names, num_channels, params, kept)


# --------------------------------------------------------------------------------------------
# Causal check: ablation
# --------------------------------------------------------------------------------------------
@contextmanager
def zero_channels(model: nn.Module, channels: Mapping[str, Sequence[int] | torch.Tensor]) -> Iterator[dict]:
    """Zero channels of layer outputs during every forward pass inside the block (forward hooks).

    ``channels``: ``{layer: [channel indices]}`` (the same channels for every image) or
    ``{layer: mask}`` with a boolean ``(B, C)`` tensor, ``True`` = zero, one row per image of the
    batch. The yielded dict can be updated inside the block to change the masks between passes.
    Hooks are removed when the block ends, also on error.
    """
    modules = resolve_modules(model, list(channels))
    state = dict(channels)

    def make_hook(name: str):
        def hook(_module, _args, out):
            if not isinstance(out, torch.Tensor) or out.ndim < 2:
                raise ValueError(f"layer {name!r} outputs {type(out).__name__} without a channel axis; "
                                 "zero_channels needs conv-like outputs (N, C, ...).")
            sel = state[name]
            c = out.shape[1]
            if isinstance(sel, torch.Tensor) and sel.dtype == torch.bool:
                if sel.shape != (out.shape[0], c):
                    raise ValueError(f"mask for {name!r} has shape {tuple(sel.shape)}, expected "
                                     f"{(out.shape[0], c)} (batch, channels).")
                keep = (~sel).to(device=out.device, dtype=out.dtype)
            else:
                idx = torch.as_tensor(list(sel) if not isinstance(sel, torch.Tensor) else sel, dtype=torch.long)
                if idx.numel() and (idx.min() < 0 or idx.max() >= c):
                    raise ValueError(f"channel indices for {name!r} must lie in [0, {c - 1}], got {idx.tolist()}.")
                keep = torch.ones(c, device=out.device, dtype=out.dtype)
                keep[idx.to(out.device)] = 0
                keep = keep.expand(out.shape[0], c)
            return out * keep.reshape(*keep.shape, *([1] * (out.ndim - 2)))
        return hook

    handles = [m.register_forward_hook(make_hook(name)) for name, m in modules.items()]
    try:
        yield state
    finally:
        for h in handles:
            h.remove()


def _masks_from_table(sel: pd.DataFrame, layers: Sequence[str], b: int, num_channels: Mapping[str, int]) -> dict:
    masks = {layer: torch.zeros(b, num_channels[layer], dtype=torch.bool) for layer in layers}
    for layer in layers:
        s = sel[sel["layer"] == layer]
        masks[layer][torch.tensor(s["image"].to_numpy(), dtype=torch.long),
                     torch.tensor(s["channel"].to_numpy(), dtype=torch.long)] = True
    return masks


@torch.no_grad()
def ablation_study(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | Sequence[int] | None = None, *,
                   result: ResamplingResult | None = None, layers: Sequence[str] | None = None, k: int = 5,
                   methods: Sequence[str] = METHODS, n_random: int = 10, all_layers: bool = True,
                   seed: int = 0, batch_size: int = 256, device: str | torch.device | None = None,
                   **analyze_kwargs: Any) -> pd.DataFrame:
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
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise ValueError(f"n_random must be a positive integer, got {n_random!r}.")
    require_eval(model, "ablation_study")
    dev = resolve_device(device)
    model = model.to(dev)
    x = _as_batch(images)
    check_images(x, model)
    b = len(x)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() != b:
            raise ValueError(f"{b} images but {labels.numel()} labels; pass one label per image.")
    if result is None:
        result = analyze(model, x, layers, device=dev, keep_maps=False, **analyze_kwargs)
    elif len(result.images) != b:
        raise ValueError(f"result holds {len(result.images)} images but {b} were passed; analyze these images.")
    layers = list(result.layers if layers is None else resolve_modules(model, layers))
    missing = [layer for layer in layers if layer not in result.num_channels]
    if missing:
        raise KeyError(f"layers {missing} were not analysed in `result`; analyze them first.")
    target = torch.tensor(result.images["target"].to_numpy(), dtype=torch.long)

    def probs(masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Softmax outputs of all images, zeroing ``masks`` (``{layer: (B, C) bool}``) if given."""
        out = []
        if masks is None:
            for i in range(0, b, batch_size):
                out.append(F.softmax(model(x[i:i + batch_size].to(dev)).double(), -1).cpu())
            return torch.cat(out)
        with zero_channels(model, {layer: m[:batch_size] for layer, m in masks.items()}) as live:
            for i in range(0, b, batch_size):
                for layer, m in masks.items():
                    live[layer] = m[i:i + batch_size]
                out.append(F.softmax(model(x[i:i + batch_size].to(dev)).double(), -1).cpu())
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
                        pick = torch.rand((b, c), generator=gen).argsort(1)[:, :min(int(k), c)]
                        masks[layer] = torch.zeros(b, c, dtype=torch.bool).scatter_(1, pick, True)
                else:
                    masks = _masks_from_table(tables[method], scope, b, result.num_channels)
                p = probs(masks)
                pred = p.argmax(1)
                row = {"image": np.arange(b), "scope": scope_name, "method": method, "draw": draw,
                       "n_zeroed": sum(masks[layer].sum(1) for layer in scope).numpy(),
                       "p_clean": p_clean.numpy(), "p_ablated": p.gather(1, target.view(-1, 1))[:, 0].numpy(),
                       "flipped": (pred != pred_clean).numpy()}
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
    cols = ["drop", "flipped", "n_zeroed"] + [c for c in ("correct_clean", "correct_ablated") if c in df]
    per_image = df.astype({c: float for c in cols if c in ("flipped", "correct_clean", "correct_ablated")}) \
        .groupby(["scope", "method", "image"], sort=False)[cols].mean().reset_index()
    g = per_image.groupby(["scope", "method"], sort=False)
    out = pd.DataFrame({"mean_drop": g["drop"].mean(), "sem_drop": g["drop"].sem(),
                        "flip_rate": g["flipped"].mean(), "mean_zeroed": g["n_zeroed"].mean()})
    if "correct_clean" in per_image:
        out["accuracy_clean"] = g["correct_clean"].mean()
        out["accuracy_ablated"] = g["correct_ablated"].mean()
        out["accuracy_drop"] = out["accuracy_clean"] - out["accuracy_ablated"]
    out["n_images"] = g.size()
    return out.reset_index()


# --------------------------------------------------------------------------------------------
# Across training
# --------------------------------------------------------------------------------------------
def overlap_over_training(model: nn.Module, states: Sequence[Mapping[str, torch.Tensor]], images: torch.Tensor,
                          layers: Sequence[str] | None = None, *, k: int = 5, a: str = "correlation",
                          b: str = "precision", checkpoint_names: Sequence[Any] | None = None,
                          device: str | torch.device | None = None, **analyze_kwargs: Any) -> pd.DataFrame:
    """The overlap of the ``a`` and ``b`` selections for each image under each of ``states``
    (state dicts, e.g. ``model.epoch_states`` from ``interpkit.models.train(..., keep_epoch_states=True)``).

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
