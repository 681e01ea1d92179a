"""Seeded classifier training with a disk cache, so chapters share trained models."""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import random
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..capture import activations
from ..checks import check_images, check_number, check_positive_int
from ..data.base import ImageSet, require_image_set
from ..device import model_device, numerics, resolve_device
from ..io import _to_builtin, atomic_torch_save, load_torch_cache, state_mismatch

CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Where trained models are kept: ``$INTERPKIT_CACHE`` or ``~/.cache/interpkit``."""
    root = os.environ.get("INTERPKIT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "interpkit"


def ensure_cache_dir(folder: Path) -> Path:
    """Create ``folder`` (a cache folder) or raise at once, before any training, if it cannot be
    created or written: a late failure would lose the trained model."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(
            f"the model cache {folder} cannot be used ({exc.strerror or exc}); set INTERPKIT_CACHE "
            f"to a "
            "writable folder, or pass cache=False to train without caching."
        ) from exc
    return folder


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices).

    Args:
        seed: the seed.

    Returns:
        None.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def state_fingerprint(model: nn.Module) -> str:
    """A hash of a model's architecture and current weights."""
    h = hashlib.sha256(repr(model).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(
    model: nn.Module,
    data: ImageSet,
    hparams: dict[str, Any],
    device: str | torch.device = "cpu",
    *,
    weights: str | None = None,
) -> str:
    """Key of a training run: architecture + initial weights + data + hyper-parameters + where it
    runs (:func:`interpkit.device.numerics`: device type, and torch's thread count on the CPU).

    ``weights`` stands for the initial weights when they are a function of something smaller (the
    seed they were drawn from); by default they are hashed."""
    # seeded weights are a function of the seed *and* the architecture (width, layers): both are
    # keyed
    model_key = (
        f"{weights}:{hashlib.sha256(repr(model).encode()).hexdigest()[:16]}"
        if weights is not None
        else state_fingerprint(model)
    )
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "model": model_key,
            "arch": type(model).__name__,
            "data": data.fingerprint(),
            "hparams": hparams,
            "numerics": numerics(device),
        },
        sort_keys=True,
        default=_to_builtin,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def reinitialize(model: nn.Module, seed: int) -> bool:
    """Draw ``model``'s initial weights again, from ``seed`` alone, through each module's own
    ``reset_parameters`` (the initialisation its constructor uses); torch's global random state is
    left as it was. Returns False, with the weights untouched, when a module that owns parameters
    has no ``reset_parameters`` (its initialisation cannot be repeated from a seed)."""
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if any(not callable(getattr(m, "reset_parameters", None)) for m in owners):
        return False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in model.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    return True


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients for every parameter (returns the model).

    Args:
        model: the network.

    Returns:
        The same model, frozen.
    """
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class Schedule:
    """What ``fit_loop`` needs to train: every setting here changes the weights.

    Args:
        epochs: passes over the data.
        batch_size: images per step (a last batch of one image is skipped).
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        seed: seeds Python, NumPy, torch and the batch order.
        amp: mixed precision (CUDA only; ignored elsewhere).
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    seed: int = 0
    amp: bool = False


def cached_run(
    path: Path | None,
    fit: Callable[[], dict[str, Any]],
    *,
    required: tuple[str, ...],
    what: str,
    mismatch: Callable[[dict[str, Any]], str] | None = None,
    accept: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Load a training run's blob from ``path`` or run ``fit()`` and save what it returns: the one
    cache of the library's trainers.

    Args:
        path: the cache file (``None``: no cache, ``fit()`` runs every time).
        fit: trains and returns the blob (a dict of tensors, lists and numbers).
        required: keys a cached blob must have (else it is retrained).
        what: what the file holds, for messages.
        mismatch: returns a reason (non-empty) when a loaded blob does not fit the model (another
            architecture); the run is then repeated, with a ``RuntimeWarning``.
        accept: returns False for a loaded blob that lacks something asked for; repeated silently.

    Returns:
        The blob, loaded with ``weights_only=True`` or freshly trained (then written atomically).
    """
    blob = None
    if path is not None:
        ensure_cache_dir(path.parent)  # an unusable cache fails now, not after training
        blob = load_torch_cache(path, required, what)
    if blob is not None and mismatch is not None and (why := mismatch(blob)):
        warnings.warn(
            f"{what} cache file {path} holds weights of another architecture ({why}); retraining.",
            RuntimeWarning,
            stacklevel=3,
        )
        blob = None
    if blob is not None and accept is not None and not accept(blob):
        blob = None
    if blob is None:
        blob = fit()
        if path is not None:
            atomic_torch_save(blob, path)
    return blob


def fit_loop(
    params: Iterable[nn.Parameter],
    n: int,
    step: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
    schedule: Schedule,
    device: torch.device,
    *,
    desc: str,
    progress: bool,
    end_epoch: Callable[[int, dict[str, float], int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The library's one seeded training loop: Adam over shuffled batches of ``range(n)``.

    Seeds everything with ``schedule.seed`` first, then shuffles each epoch with its own generator
    seeded the same way; batches of one image are skipped when ``n >= 2`` (batch norm cannot train
    on them). Put the modules on ``device`` and in training mode before calling.

    Args:
        params: the parameters to train.
        n: number of training images.
        step: ``step(idx) -> (loss, sums)`` for the rows ``idx`` of one batch, run under autocast;
            ``sums`` are per-batch sums (e.g. ``loss.item() * len(idx)``) added up over the epoch.
        schedule: epochs, batch size, optimiser settings, seed, AMP.
        device: the device the modules are on.
        desc: the progress bar's label.
        progress: show a progress bar.
        end_epoch: ``end_epoch(epoch, sums, seen) -> history entry`` (``epoch`` from 0; ``seen``
            images trained on).

    Returns:
        The history: one entry per epoch.
    """
    from tqdm.auto import tqdm

    seed_everything(schedule.seed)
    opt = torch.optim.Adam(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    gen = torch.Generator().manual_seed(schedule.seed)
    bs = schedule.batch_size
    use_amp = schedule.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    total = schedule.epochs * ((n + bs - 1) // bs)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    history = []
    for epoch in range(schedule.epochs):
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        seen = 0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            bar.update(1)
            if len(idx) < 2 and n >= 2:  # batch-norm cannot train on a single image
                continue
            with torch.autocast(device.type, enabled=use_amp):
                loss, batch_sums = step(idx)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            for k, v in batch_sums.items():
                sums[k] = sums.get(k, 0.0) + v
            seen += len(idx)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}")
        history.append(end_epoch(epoch, sums, seen))
    bar.close()
    return history


def train(
    model: nn.Module,
    data: ImageSet,
    *,
    epochs: int = 8,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    keep_epoch_states: bool = False,
    cache: bool = True,
    progress: bool = True,
    amp: bool = False,
    init: str = "seed",
) -> nn.Module:
    """Train a classifier with Adam and cross-entropy, or load the identical run from the cache.

    With ``init="seed"`` (the default) the initial weights are drawn again from ``seed``
    (``reinitialize``), so a run is a function of the architecture, the data,
    the arguments
    and the seed alone: the same call in a new process hits the cache, and another seed changes
    the initialisation as well as the batch order. ``init="keep"`` trains from the weights the model
    has (fine-tuning), and the cache key then hashes them.
    The cache key covers the architecture, the initial weights (or their seed), the data, every
    argument that changes the result and where it runs (device type; on the CPU, torch's thread
    count, since 1 and 2 threads round differently), so a hit is always the model training would
    give here. The cache folder is checked before training, so an unusable one fails at once.
    Files are written atomically once training finished (an interrupted run leaves nothing behind)
    and read with ``weights_only=True``.
    Returns the model in eval mode on ``device``, with ``model.train_history`` (per-epoch loss and
    accuracy) and, if ``keep_epoch_states``, ``model.epoch_states`` (CPU state dicts after each
    epoch).

    Args:
        model: the classifier to train (its initial weights are redrawn with ``init="seed"``).
        data: labelled training images.
        epochs, lr, batch_size, weight_decay: Adam on the cross-entropy.
        seed: seeds the initial weights and the batch order.
        device: where to train (``None``: CUDA, else MPS, else CPU).
        keep_epoch_states: keep a state dict per epoch.
        cache: load from / save to the model cache.
        progress: show a progress bar.
        amp: mixed precision (CUDA only).
        init: ``"seed"`` or ``"keep"`` (train from the current weights).

    Returns:
        The trained model (eval mode, on ``device``).
    """
    require_image_set(data, "the data of train()")
    epochs, batch_size = (
        check_positive_int("epochs", epochs),
        check_positive_int("batch_size", batch_size),
    )
    if batch_size < 2 and len(data) >= 2:
        raise ValueError(
            "batch_size must be at least 2: batches of one image are skipped (batch-norm cannot "
            "train on them), so nothing would be learned."
        )
    check_number("lr", lr, positive=True)
    check_number("weight_decay", weight_decay)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    seed = int(seed)
    if init not in ("seed", "keep"):
        raise ValueError(
            f"init must be 'seed' (initial weights drawn from the seed) or 'keep' (train from the "
            f"model's current weights), got {init!r}."
        )
    dev = resolve_device(device)
    model = model.to("cpu")
    check_images(
        data.images, name="training images"
    )  # finite, in [0, 1]: not NaN weights after the run
    check_images(data.images[:1], model, name="training images")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"{type(model).__name__} has no parameter that requires gradients (it is frozen, e.g. "
            f"by "
            "interpkit.models.freeze), so train() could not change it; build a fresh model, or "
            "call "
            "p.requires_grad_(True) on the parameters to train."
        )
    hparams = dict(
        epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed, amp=amp
    )
    weights = None
    if init == "seed":
        if not reinitialize(model, seed):
            raise ValueError(
                f"{type(model).__name__} has a module with parameters but no reset_parameters(), "
                f"so "
                "its initial weights cannot be drawn from the seed; pass init='keep' to train from "
                "the weights it has."
            )
        weights = f"seed:{seed}"
    path = (
        cache_dir()
        / "models"
        / f"{type(model).__name__}-{cache_key(model, data, hparams, dev, weights=weights)}.pt"
    )
    blob = cached_run(
        path if cache else None,
        lambda: _fit(model, data, dev, hparams, keep_epoch_states, progress),
        required=("state_dict", "history"),
        what="model",
        mismatch=lambda b: state_mismatch(model, b["state_dict"]),
        # cached without the per-epoch states asked for: train again
        accept=lambda b: not keep_epoch_states or bool(b.get("epoch_states")),
    )
    model.load_state_dict(blob["state_dict"])
    model.train_history = list(blob["history"])
    if keep_epoch_states:
        model.epoch_states = list(blob["epoch_states"])
    model.cache_path = path if cache else None
    return model.to(dev).eval()


def _fit(
    model: nn.Module,
    data: ImageSet,
    dev: torch.device,
    hp: dict[str, Any],
    keep_epoch_states: bool,
    progress: bool,
) -> dict[str, Any]:
    """Adam on the cross-entropy (``fit_loop``); the blob :func:`train` caches."""
    model.to(dev).train()
    top = int(data.labels.max())
    epoch_states = []

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = data.images[idx].to(dev, non_blocking=True)
        y = data.labels[idx].to(dev, non_blocking=True)
        logits = model(x)
        if logits.ndim != 2 or logits.shape[1] <= top:
            raise ValueError(
                f"the model gives outputs of shape {tuple(logits.shape)} but the labels go up "
                f"to {top}; build it with num_classes={top + 1} (data.num_classes)."
            )
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item() * len(idx), "correct": int((logits.argmax(1) == y).sum())}

    def end_epoch(epoch: int, sums: dict[str, float], seen: int) -> dict[str, Any]:
        if keep_epoch_states:
            epoch_states.append(
                {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            )
        # averages over the images trained on (a last batch of one image is skipped)
        return {
            "epoch": epoch + 1,
            "loss": sums["loss"] / seen,
            "train_acc": sums["correct"] / seen,
        }

    schedule = Schedule(
        hp["epochs"], hp["batch_size"], hp["lr"], hp["weight_decay"], hp["seed"], hp["amp"]
    )
    history = fit_loop(
        model.parameters(),
        len(data),
        step,
        schedule,
        dev,
        desc=f"train {type(model).__name__}",
        progress=progress,
        end_epoch=end_epoch,
    )
    model.eval()
    return {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history,
        "epoch_states": epoch_states,
        "format": CACHE_FORMAT,
    }


def predict_proba(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Softmax outputs of ``model`` for ``images``, computed in batches on ``device``.

    The model runs in evaluation mode (dropout off, batch-norm statistics untouched) and gets its
    own mode and device back afterwards (``interpkit.checks.evaluating``).

    Args:
        model: a classifier returning logits (N, classes).
        images: float images (N, C, H, W) in [0, 1].
        batch_size: images per forward pass.
        device: where to run (``None``: CUDA, else MPS, else CPU).

    Returns:
        Probabilities (N, classes) on the CPU.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    check_images(images)
    check_images(images[:1].to(model_device(model)), model)  # channels
    out = activations(
        model,
        images,
        model,
        batch_size=batch_size,
        device=device,
        reduce=lambda _, logits: F.softmax(logits, 1),
    )
    return next(iter(out.values()))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageSet,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (put in eval mode) on ``data``.

    Args:
        model: the classifier (put in evaluation mode).
        data: labelled images.
        batch_size: images per pass.
        device: where to run (``None``: CUDA, else MPS, else CPU).

    Returns:
        ``{"accuracy": ..., "loss": ...}``.
    """
    require_image_set(data, "the data of evaluate()")
    model.eval()
    p = predict_proba(model, data.images, batch_size=batch_size, device=device)
    if p.shape[1] <= int(data.labels.max()):
        raise ValueError(
            f"the model has {p.shape[1]} outputs but the labels go up to {int(data.labels.max())}; "
            "evaluate it on data with its own classes."
        )
    loss = F.nll_loss(torch.log(p.clamp_min(1e-12)), data.labels).item()
    return {"accuracy": float((p.argmax(1) == data.labels).float().mean()), "loss": loss}
