"""Distillation of an explainer from a frozen performer (seeded, disk-cached).

    loss = sum_targets ||f_hat - f_target||^2 / E||f_target||^2          (distillation)
           + filter_weight * mean_filters Loss_f       (ICNN; last or every interp. layer, Z_T over
                                                        the batch or per category)
           + p_weight * mean_images (-log p)

No annotations are used: the performer's own features are the only training signal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import check_images, check_number, check_positive_int, require_eval
from ..data.base import ImageSet, require_image_set
from ..device import numerics, resolve_device
from ..io import atomic_torch_save, load_torch_cache, state_mismatch
from ..models.training import cache_dir, ensure_cache_dir, seed_everything, state_fingerprint
from .icnn import _BETA, _BETA_HINT, DEFAULT_BETA, grouped_filter_loss, rescale_maps
from .network import Explainer
from .performer import _as_list, check_layer_order, performer_features

CACHE_FORMAT = 1

__all__: list[str] = []


@dataclass(frozen=True)
class ExplainerConfig:
    """The explainer's architecture and training settings (checked when built).

    Args:
        n_filters: filters K per interpretable layer and of the ordinary track (None: as many as
            the input layer has channels).
        hidden: width of the decoder (None: the largest of K and the targets' channels).
        n_interp_layers: interpretable conv layers, each followed by the ICNN mask.
        beta: fall-off of the ICNN templates (the paper: 4).
        epochs: passes over the training images.
        lr: peak learning rate of Adam under a one-cycle schedule.
        batch_size: images per step, at least 2 (``Z_T`` of the filter loss runs over a batch).
        weight_decay: Adam's weight decay.
        filter_weight: weight of the ICNN filter loss (0 switches it off: mask only).
        p_weight: weight of ``-log p``.
        loss_peak: scale at which ``Loss_f`` sees the maps (``rescale_maps``): ``"auto"`` is
            ``2 n^2``, None the raw maps (the paper's equations).
        filter_layers: ``"last"`` puts ``Loss_f`` on the last interpretable layer only, ``"all"``
            on every interpretable layer (the paper).
        z_groups: ``"batch"`` normalises ``Z_T`` over the whole batch, ``"category"`` over the
            images of each category (``data.labels``) in the batch (ICNN).
    """

    n_filters: int | None = None
    hidden: int | None = None
    n_interp_layers: int = 2
    beta: float = DEFAULT_BETA
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    filter_weight: float = 0.1
    p_weight: float = 0.05
    loss_peak: float | str | None = "auto"
    filter_layers: str = "last"
    z_groups: str = "batch"

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        if check_positive_int("batch_size", self.batch_size) < 2:
            raise ValueError(
                f"batch_size must be at least 2 (the filter loss compares images of a batch), "
                f"got {self.batch_size}."
            )
        check_number("lr", self.lr, positive=True)
        for name in ("filter_weight", "p_weight"):
            check_number(name, getattr(self, name), hint="pass 0 to switch that term off")
        check_number(_BETA, self.beta, hint=_BETA_HINT)
        if self.filter_layers not in ("last", "all"):
            raise ValueError(f"filter_layers must be 'last' or 'all', got {self.filter_layers!r}.")
        if self.z_groups not in ("batch", "category"):
            raise ValueError(f"z_groups must be 'batch' or 'category', got {self.z_groups!r}.")
        if self.loss_peak is not None and self.loss_peak != "auto":
            check_number(
                "loss_peak",
                self.loss_peak,
                positive=True,
                hint="or 'auto', or None for raw maps; to switch the "
                "filter loss off, pass filter_weight=0",
            )

    def hparams(self, n: int, seed: int) -> dict[str, Any]:
        """The training settings of the cache key, ``loss_peak`` resolved for an n x n input map.

        Args:
            n: side of the input layer's feature maps.
            seed: the run's seed.

        Returns:
            A dict; ``filter_layers`` and ``z_groups`` appear only off their defaults, so that
            caches written before they existed stay valid.
        """
        peak = float(2 * n**2) if self.loss_peak == "auto" else self.loss_peak
        hp = dict(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            filter_weight=self.filter_weight,
            p_weight=self.p_weight,
            loss_peak=peak,
            weight_decay=self.weight_decay,
            seed=seed,
        )
        if self.filter_layers != "last" or self.z_groups != "batch":
            hp.update(filter_layers=self.filter_layers, z_groups=self.z_groups)
        return hp


def _config(config: ExplainerConfig | None, options: dict[str, Any]) -> ExplainerConfig:
    """``config`` (default: ``ExplainerConfig()``) with the keyword ``options`` replacing fields."""
    config = ExplainerConfig() if config is None else config
    if not isinstance(config, ExplainerConfig):
        raise TypeError(f"config must be an ExplainerConfig, got {type(config).__name__}.")
    names = {f.name for f in dataclasses.fields(ExplainerConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(
            f"train_explainer() got unknown option(s) {unknown}; the options are the fields of "
            f"ExplainerConfig: {sorted(names)}."
        )
    return dataclasses.replace(config, **options) if options else config


def train_explainer(
    performer: nn.Module,
    data: ImageSet,
    input_layer: str,
    target_layers: str | Sequence[str],
    config: ExplainerConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    cache: bool = True,
    progress: bool = True,
    **options: Any,
) -> Explainer:
    """Distil an explainer from a frozen ``performer`` on ``data`` (labels unused, except for
    ``z_groups="category"``), or load the identical run from the cache
    (``$INTERPKIT_CACHE/explainers``).

    The performer must be in eval mode; it is never changed. Its features of ``input_layer`` and
    ``target_layers`` are computed once, then the explainer is trained with Adam on
    ``distillation + filter_weight * Loss_f + p_weight * (-log p)``.

    Args:
        performer: the CNN to explain, in eval mode.
        data: the training images (an ``ImageSet``).
        input_layer: the performer layer whose features the explainer disentangles.
        target_layers: the higher layer(s) it reconstructs.
        config: architecture and training settings (default ``ExplainerConfig()``).
        seed: seeds the explainer's initialisation and the batch order.
        device: where to train; None picks CUDA, MPS or the CPU.
        cache: load and save the trained explainer in the cache.
        progress: show a progress bar.
        **options: fields of :class:`ExplainerConfig` that replace those of ``config``
            (e.g. ``epochs=8, lr=2e-3``).

    Returns:
        The explainer, in eval mode on ``device``, with ``train_history`` (per-epoch losses and
        mean p), ``target_scales``, ``cache_path`` and ``performer_fingerprint``.
    """
    cfg = _config(config, options)
    require_image_set(data, "the data of train_explainer()")
    if not isinstance(input_layer, str):
        raise TypeError(
            f"input_layer must be a layer name (str), got {type(input_layer).__name__}."
        )
    targets = _as_list(target_layers)
    dev = resolve_device(device)
    feats, shapes = _performer_side(performer, data, input_layer, targets, dev)
    seed_everything(seed)
    explainer = Explainer(
        shapes[input_layer],
        {t: shapes[t] for t in targets},
        n_filters=cfg.n_filters,
        hidden=cfg.hidden,
        n_interp_layers=cfg.n_interp_layers,
        beta=cfg.beta,
        relu_out={t: bool(feats[t].min() >= 0) for t in targets},
        input_layer=input_layer,
    )
    hparams = cfg.hparams(shapes[input_layer][-1], seed)
    performer_print = state_fingerprint(performer.cpu())
    path = _cache_path(explainer, performer_print, data, hparams, dev)
    performer.to(dev)
    blob = _load(explainer, path) if cache else None
    if blob is None:
        groups = data.labels.to(dev) if cfg.z_groups == "category" else None
        blob = _fit(explainer, feats, input_layer, hparams, progress, groups)
        if cache:
            atomic_torch_save(blob, path)
    explainer.load_state_dict(blob["state_dict"])
    explainer.train_history = list(blob["history"])
    explainer.target_scales = dict(blob["scales"])
    explainer.cache_path = path if cache else None
    explainer.performer_fingerprint = performer_print  # the metrics refuse another performer
    return explainer.to(dev).eval()


def _performer_side(
    performer: nn.Module, data: ImageSet, input_layer: str, targets: list[str], dev: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, tuple]]:
    """Check the performer and the layers; its features (on ``dev``) and their shapes."""
    performer = performer.to(dev)
    require_eval(performer, "train_explainer")
    # finite, in [0, 1]: never cache a NaN explainer
    check_images(data.images, name="training images")
    check_images(data.images[:1].to(dev), performer, name="training images")
    shapes = check_layer_order(performer, input_layer, targets, data.images[:2].to(dev))
    feats = performer_features(
        performer, data.images, [input_layer, *targets], device=dev, out_device=dev
    )
    return feats, shapes


def _cache_path(
    explainer: Explainer,
    performer_print: str,
    data: ImageSet,
    hparams: dict[str, Any],
    dev: torch.device,
) -> Path:
    """The cache file of this run: a hash of everything that determines the trained weights."""
    blob_key = json.dumps(
        {
            "format": CACHE_FORMAT,
            "performer": performer_print,
            "data": data.fingerprint(),
            "config": explainer.config,
            "hparams": hparams,
            "init": state_fingerprint(explainer),
            "numerics": numerics(dev),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(blob_key.encode()).hexdigest()[:24]
    return cache_dir() / "explainers" / f"Explainer-{digest}.pt"


def _load(explainer: Explainer, path: Path) -> dict[str, Any] | None:
    """The cached run at ``path`` (None if absent, unreadable or of another architecture)."""
    ensure_cache_dir(path.parent)  # an unusable cache fails now, not after training
    blob = load_torch_cache(path, ("state_dict", "history", "scales"), "explainer")
    if blob is not None and (why := state_mismatch(explainer, blob["state_dict"])):
        warnings.warn(
            f"explainer cache file {path} holds weights of another architecture ({why}); "
            f"retraining.",
            RuntimeWarning,
            stacklevel=3,
        )
        blob = None
    return blob


def training_step(
    explainer: Explainer,
    f_in: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    scales: Mapping[str, float],
    filter_weight: float,
    p_weight: float,
    loss_peak: float | None = None,
    filter_layers: str = "last",
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """The explainer's loss on one batch of the performer's features.

    Args:
        explainer: the explainer (in train mode while training).
        f_in: the performer's features of the input layer (B, C, n, n).
        targets: ``{layer: features}`` of the target layers for the same images.
        scales: ``{layer: mean square}`` that divides each layer's distillation loss.
        filter_weight: weight of ``Loss_f`` (0: not computed, logged as 0).
        p_weight: weight of ``-log p``.
        loss_peak: the filter loss sees maps rescaled by :func:`rescale_maps` to this peak (None:
            raw maps).
        filter_layers: ``"last"``: ``Loss_f`` on the last interpretable layer only (earlier ones
            are masked only); ``"all"``: on every interpretable layer (the paper), averaged.
        groups: (B,) categories: ``Z_T`` per category (:func:`grouped_filter_loss`); None: over
            the whole batch.

    Returns:
        ``(loss, parts)``: the scalar loss to differentiate and the floats ``recon``, ``filter``,
        ``neg_log_p`` and ``p`` (mean ratio) for logging.
    """
    out = explainer(f_in)
    rec = explainer.distillation_loss(out, targets, scales)
    layers = out.interp_maps if filter_layers == "all" else out.interp_maps[-1:]
    if filter_weight == 0:  # switched off: not computed (logged as 0)
        floss = rec.new_zeros(())
    else:
        floss = sum(
            grouped_filter_loss(
                m if loss_peak is None else rescale_maps(m, loss_peak), groups, beta=explainer.beta
            )
            for m in layers
        ) / len(layers)
    ploss = -torch.log(out.p.clamp_min(1e-6)).mean()
    loss = rec + filter_weight * floss + p_weight * ploss
    return loss, {
        "recon": rec.item(),
        "filter": floss.item(),
        "neg_log_p": ploss.item(),
        "p": out.p.mean().item(),
    }


def _fit(
    explainer: Explainer,
    feats: dict[str, torch.Tensor],
    input_layer: str,
    hp: dict[str, Any],
    progress: bool,
    groups: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Train ``explainer`` on the performer's features ``feats`` with the settings ``hp``; returns
    the cache blob (CPU state dict, per-epoch history, target scales)."""
    from tqdm.auto import tqdm

    seed_everything(hp["seed"])
    f_in = feats[input_layer]
    explainer.to(f_in.device).train()
    targets = explainer.target_layers
    scales = {t: float(feats[t].pow(2).mean().clamp_min(1e-12)) for t in targets}
    opt = torch.optim.Adam(explainer.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    gen = torch.Generator().manual_seed(hp["seed"])
    n, bs = len(f_in), hp["batch_size"]
    n_batches = max(1, n // bs if n >= bs else 1)  # full batches only: Z_T runs over the batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=hp["lr"], total_steps=hp["epochs"] * n_batches, pct_start=0.15
    )
    bar = tqdm(
        total=hp["epochs"] * n_batches, desc="distil explainer", disable=not progress, leave=False
    )
    history = []
    for epoch in range(hp["epochs"]):
        perm = torch.randperm(n, generator=gen).to(f_in.device)
        sums: dict[str, float] = {}
        for b in range(n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            loss, parts = training_step(
                explainer,
                f_in[idx],
                {t: feats[t][idx] for t in targets},
                scales,
                hp["filter_weight"],
                hp["p_weight"],
                hp["loss_peak"],
                hp.get("filter_layers", "last"),
                None if groups is None else groups[idx],
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            parts["loss"] = loss.item()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, recon=f"{parts['recon']:.3f}", p=f"{parts['p']:.2f}")
        history.append({"epoch": epoch + 1, **{k: v / n_batches for k, v in sums.items()}})
    bar.close()
    explainer.eval()
    return {
        "state_dict": {k: v.detach().cpu() for k, v in explainer.state_dict().items()},
        "history": history,
        "scales": scales,
        "format": CACHE_FORMAT,
    }
