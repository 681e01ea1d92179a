"""Atomic file writes (a reader never sees a half-written file, even after a crash), and the
matching tolerant read of cached checkpoints."""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_path",
    "atomic_write_json",
]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed onto ``path`` when the block ends without
    an error, removed when it raises (an existing ``path`` is then left as it was). The new file
    gets the permissions of the file it replaces, or those ``open()`` gives a new file (umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file_beside(path)
    try:
        if path.is_file():  # keep the permissions of the file being replaced
            with suppress(OSError):  # best effort: some file systems do not keep permissions
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_file_beside(path: Path) -> Path:
    """Create an empty file with a fresh name beside ``path``, with the permissions ``open()`` gives
    a new file (0o666 less the umask; ``tempfile.mkstemp`` would make it private, 0o600)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free temporary name beside {path}.")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NumPy scalars and arrays and tensors are
    converted).

    NaN and infinities, which JSON cannot hold (``json.dumps`` would write the invalid tokens
    ``NaN`` and ``Infinity``), are written as ``null``.
    """
    text = json.dumps(
        _finite_or_none(obj),
        indent=2,
        sort_keys=True,
        allow_nan=False,
        default=lambda o: _finite_or_none(_to_builtin(o)),
    )
    return atomic_write_text(path, text + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a truncated file behind."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_torch_cache(
    path: str | os.PathLike, required: Iterable[str], what: str
) -> dict[str, Any] | None:
    """Read a cache file written by ``atomic_torch_save`` (``weights_only=True``).

    Returns ``None`` when it does not exist, and also, with a ``RuntimeWarning`` naming ``what``,
    when it is truncated, corrupt or lacks one of the ``required`` keys: the caller then retrains
    instead of crashing. Call it directly from the public function, so the warning points at its
    caller.
    """
    path = Path(path)
    if not path.exists():
        return None
    if isinstance(required, str):  # one key, not its letters
        required = (required,)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or not set(required) <= set(blob):
            raise ValueError("missing keys")
    except Exception as exc:  # truncated, corrupt or foreign file: retrain, never crash
        warnings.warn(
            f"{what} cache file {path} is unreadable ({type(exc).__name__}: {exc}); retraining.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return blob


def state_mismatch(module: torch.nn.Module, state: Any) -> str:
    """Why ``state`` cannot be loaded into ``module`` ("" when it can): not a dict of tensors,
    missing
    or unexpected keys, or a tensor of another shape. Checked without loading, so a cache file of
    another architecture leaves the module untouched (``load_state_dict`` copies the matching
    tensors before it raises on the others)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "not a state dict of tensors"
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        return f"missing keys {missing[:3]}, unexpected keys {extra[:3]}"
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            return f"{k} has shape {tuple(state[k].shape)}, the model's {tuple(v.shape)}"
    return ""


def _finite_or_none(o: Any) -> Any:
    """``o`` with every non-finite float in it (also in nested dicts, lists and tuples) as
    ``None``."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite_or_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite_or_none(v) for v in o]
    return o


def _to_builtin(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write an object of type {type(o).__name__} as JSON")
