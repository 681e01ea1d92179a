"""Data matrices seen as row blocks on the device, and their validation (internal)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import torch

from ..device import resolve_device

Matrix = torch.Tensor | np.ndarray  # a 2-D data matrix (rows x examples); np.memmap works
Mode = Literal["monotone", "faithful"]
Labels = torch.Tensor | np.ndarray | Sequence[int]  # one integer label per example


def _as_named(
    mats: Mapping[str, Matrix] | Sequence[Matrix] | None, prefix: str
) -> dict[str, Matrix]:
    if mats is None:
        return {}
    if isinstance(mats, Mapping):
        return dict(mats)
    if isinstance(mats, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"pass the {prefix} matrices as a dict or list of 2-D matrices, not a single "
            f"array; wrap it: [{prefix}_matrix] or {{'name': {prefix}_matrix}}."
        )
    return {f"{prefix}{i}": m for i, m in enumerate(mats)}


class _Data:
    """A data matrix seen as row blocks on the device (the whole matrix when ``chunk_rows`` is
    None)."""

    def __init__(
        self,
        kind: str,
        name: str,
        x,
        device: torch.device,
        dtype: torch.dtype,
        chunk_rows: int | None,
        normalize: str | None = None,
    ) -> None:
        self.kind, self.name, self.key = kind, name, f"{kind}:{name}"
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"{kind} matrix {name!r} is a {type(x).__name__}; pass a torch tensor or NumPy "
                f"array."
            )
        if x.ndim != 2:
            raise ValueError(
                f"{kind} matrix {name!r} has shape {tuple(x.shape)}; it must be 2-D "
                "(rows x examples). Flatten activations with activation_matrices()."
            )
        self.rows, self.cols = int(x.shape[0]), int(x.shape[1])
        if self.rows == 0 or self.cols == 0:
            raise ValueError(f"{kind} matrix {name!r} is empty (shape {tuple(x.shape)}).")
        self.device, self.dtype = device, dtype
        self.step = self.rows if chunk_rows is None else max(1, int(chunk_rows))
        self.src = x
        self.scale = 1.0  # every block is multiplied by this when loaded (normalize="rms")
        self.full: torch.Tensor | None = None
        if chunk_rows is None:
            self.full = self._load(0, self.rows)
        self.raw_sq_norm, self.max_abs = self._check()
        self.rms = math.sqrt(self.raw_sq_norm / (self.rows * self.cols))
        if normalize == "rms":  # mean square entry 1: the factorisation no longer depends on units
            self.scale = 1.0 / self.rms
            if self.full is not None:
                self.full = (
                    self.full * self.scale
                )  # a new tensor: the caller's matrix is not changed
        elif normalize is not None:
            raise ValueError(f"normalize must be 'rms' or None, got {normalize!r}.")
        self.sq_norm = self.raw_sq_norm * self.scale**2

    def _load(self, r0: int, r1: int) -> torch.Tensor:
        x = self.src[r0:r1]
        if isinstance(x, np.ndarray):  # a read-only memmap is copied (torch wants writable)
            x = np.ascontiguousarray(x)
            x = torch.from_numpy(x if x.flags.writeable else x.copy())
        x = x.to(self.device, self.dtype)
        return x * self.scale if self.scale != 1.0 else x

    def chunks(self) -> Iterator[tuple[slice, torch.Tensor]]:
        if self.full is not None:
            yield slice(0, self.rows), self.full
            return
        for r0 in range(0, self.rows, self.step):
            r1 = min(self.rows, r0 + self.step)
            yield slice(r0, r1), self._load(r0, r1)

    def _check(self) -> tuple[float, float]:
        """Validate the data; returns its squared Frobenius norm and largest entry."""
        sq, n_bad, lo, hi = 0.0, 0, math.inf, 0.0
        for _, xc in self.chunks():
            cmin, cmax = torch.aminmax(xc)
            if not (
                math.isfinite(float(cmin)) and math.isfinite(float(cmax))
            ):  # NaN or inf somewhere
                finite = torch.isfinite(xc)
                n_bad += int((~finite).sum())
                cmin = torch.where(
                    finite, xc, torch.zeros((), dtype=xc.dtype, device=xc.device)
                ).min()
            lo = min(lo, float(cmin))
            hi = max(hi, float(cmax))
            if n_bad == 0:
                sq += float(torch.linalg.vector_norm(xc, dtype=torch.float64)) ** 2
        if n_bad:
            raise ValueError(
                f"{self.kind} matrix {self.name!r} contains {n_bad} NaN/inf values (in "
                f"{str(self.dtype).replace('torch.', '')}); NMF needs finite data. Check the "
                f"images "
                "and model (activation_matrices reports which examples), or drop the affected "
                "examples from every matrix; values beyond the float32 range need "
                "dtype=torch.float64."
            )
        if lo < 0:
            hint = (
                "capture a post-ReLU layer or pass relu=True to activation_matrices"
                if self.kind == "activation"
                else "use pixel values in [0, 1] (pixel_matrices)"
            )
            raise ValueError(
                f"{self.kind} matrix {self.name!r} has negative entries (min {lo:.3g}); NMF "
                f"needs non-negative data: {hint}."
            )
        if sq == 0:
            raise ValueError(
                f"{self.kind} matrix {self.name!r} is all zeros (e.g. a dead layer); "
                "drop it or choose another layer."
            )
        return sq, hi


def _prepare(
    activations, pixels, rank: int, device, dtype, chunk_rows, normalize: str | None = None
) -> tuple[list[_Data], list[str], list[str]]:
    acts, pix = _as_named(activations, "layer"), _as_named(pixels, "channel")
    if not acts and not pix:
        raise ValueError("no data matrices given; pass at least one activation or pixel matrix.")
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}.")
    dev = resolve_device(device, needs_float64="coupled NMF")
    data = [_Data("pixel", k, v, dev, dtype, chunk_rows, normalize) for k, v in pix.items()]
    data += [_Data("activation", k, v, dev, dtype, chunk_rows, normalize) for k, v in acts.items()]
    if normalize is None:
        # products of entries (X F^T, W^T W F) must stay far inside the range of the dtype
        limit = math.sqrt(torch.finfo(dtype).max) * 1e-4
        big = [
            f"{d.kind} matrix {d.name!r} (largest entry {d.max_abs:.3g})"
            for d in data
            if d.max_abs > limit
        ]
        if big:
            raise ValueError(
                f"{', '.join(big)} too large for {str(dtype).replace('torch.', '')} arithmetic "
                f"(entries above {limit:.1g} overflow in the updates and give NaN factors); pass "
                "normalize='rms' (each matrix scaled to mean square 1) or dtype=torch.float64."
            )
    counts = {d.name: d.cols for d in data}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"the matrices have different numbers of examples (columns): {counts}. Every "
            "matrix needs one column per probe image, in the same order; build all of them "
            "from the same images (pixel_matrices / activation_matrices)."
        )
    for d in data:
        if rank > min(d.rows, d.cols):
            raise ValueError(
                f"rank={rank} is larger than min(rows, examples) = {min(d.rows, d.cols)} of "
                f"{d.kind} matrix {d.name!r} ({d.rows} x {d.cols}); use rank <= "
                f"{min(d.rows, d.cols)} or more probe images / a larger layer."
            )
    return data, list(pix), list(acts)
