"""Seeded classifier training with a disk cache, so chapters share trained models."""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images, check_number, check_positive_int, require_eval
from ..data.base import ImageSet, require_image_set
from ..device import numerics, resolve_device
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
    """Seed Python, NumPy and torch (all devices)."""
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
    """Evaluation mode and no gradients for every parameter (returns the model)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


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
    (:func:`~interpkit.models.reinitialize`), so a run is a function of the architecture, the data,
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
    if cache:
        ensure_cache_dir(path.parent)
    blob = load_torch_cache(path, ("state_dict", "history"), "model") if cache else None
    if blob is not None and (why := state_mismatch(model, blob["state_dict"])):
        warnings.warn(
            f"model cache file {path} holds weights of another architecture ({why}); retraining.",
            RuntimeWarning,
            stacklevel=2,
        )
        blob = None
    if blob is not None and keep_epoch_states and not blob.get("epoch_states"):
        blob = None  # cached without the per-epoch states asked for
    if blob is None:
        blob = _fit(model, data, dev, hparams, keep_epoch_states, progress)
        if cache:
            atomic_torch_save(blob, path)
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
    from tqdm.auto import tqdm

    seed_everything(hp["seed"])
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    gen = torch.Generator().manual_seed(hp["seed"])
    n, bs = len(data), hp["batch_size"]
    use_amp = hp["amp"] and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history, epoch_states = [], []
    top = int(data.labels.max())
    bar = tqdm(
        total=hp["epochs"] * ((n + bs - 1) // bs),
        desc=f"train {type(model).__name__}",
        disable=not progress,
        leave=False,
    )
    for epoch in range(hp["epochs"]):
        perm = torch.randperm(n, generator=gen)
        total_loss, correct, seen = 0.0, 0, 0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            if len(idx) < 2 and n >= 2:  # batch-norm cannot train on a single image
                bar.update(1)
                continue
            x, y = (
                data.images[idx].to(dev, non_blocking=True),
                data.labels[idx].to(dev, non_blocking=True),
            )
            with torch.autocast(dev.type, enabled=use_amp):
                logits = model(x)
                if logits.ndim != 2 or logits.shape[1] <= top:
                    raise ValueError(
                        f"the model gives outputs of shape {tuple(logits.shape)} but the labels go "
                        f"up "
                        f"to {top}; build it with num_classes={top + 1} (data.num_classes)."
                    )
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        # averages over the images trained on (a last batch of one image is skipped)
        history.append({"epoch": epoch + 1, "loss": total_loss / seen, "train_acc": correct / seen})
        if keep_epoch_states:
            epoch_states.append(
                {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            )
    bar.close()
    model.eval()
    return {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history,
        "epoch_states": epoch_states,
        "format": CACHE_FORMAT,
    }


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Softmax outputs (N, classes) on the CPU, computed in batches on ``device``. The model must be
    in evaluation mode: in training mode dropout would make the outputs random and every batch would
    change the batch-norm statistics of the model."""
    require_eval(model, "predict_proba")
    batch_size = check_positive_int("batch_size", batch_size)
    check_images(images)
    dev = resolve_device(device)
    model = model.to(dev)
    check_images(images[:1].to(dev), model)
    out = [
        F.softmax(model(images[i : i + batch_size].to(dev)), 1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageSet,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (put in eval mode) on ``data``."""
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
