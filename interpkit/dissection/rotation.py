"""Random rotation of a layer's representation (Sec. 3.2 of the paper): Haar-random rotations,
their fractional powers, and a model wrapper that exposes the rotated basis to dissection."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..capture import resolve_modules
from ..device import model_device
from ..stats import _as_tensor, _check_acts_array


def _one_blas_thread():
    """Run small dense linear algebra on one BLAS thread: on a busy 2-core machine OpenBLAS's
    threads wait
    on each other and a 128 x 128 Schur form takes seconds instead of milliseconds."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def random_rotation(n: int, seed: int = 0) -> np.ndarray:
    """A Haar-random rotation in SO(n): QR of a Gaussian matrix with signs fixed, det +1.

    Args:
        n: the dimension (units of the layer).
        seed: seed of the Gaussian matrix.

    Returns:
        An (n, n) float64 orthogonal matrix with determinant +1.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}.")
    rng = np.random.default_rng(seed)
    with _one_blas_thread():
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))[None, :]
    with _one_blas_thread():
        det = np.linalg.det(q)
    if det < 0:
        q[:, 0] = -q[:, 0]
    return q


def fractional_rotation(Q: np.ndarray, alpha: float) -> np.ndarray:
    """``Q ** alpha`` for a rotation ``Q`` (orthogonal, det +1) and ``alpha`` in [0, 1], real
    orthogonal.

    Real Schur form ``Q = Z T Z^T``: ``T`` is block diagonal with 2x2 plane rotations by ``theta``
    and
    1x1 entries +-1; each plane rotation becomes a rotation by ``alpha * theta`` and pairs of -1 a
    rotation by ``alpha * pi``. ``alpha = 0`` gives the identity, ``alpha = 1`` gives ``Q``.

    Args:
        Q: a rotation (orthogonal, det +1), e.g. from :func:`random_rotation`.
        alpha: the fraction of the rotation, in [0, 1].

    Returns:
        The (n, n) float64 rotation ``Q ** alpha``.
    """
    import scipy.linalg

    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"Q must be a square matrix, got shape {Q.shape}.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    with _one_blas_thread():
        if not np.allclose(Q @ Q.T, np.eye(Q.shape[0]), atol=1e-8):
            raise ValueError(
                "Q is not orthogonal (Q @ Q.T != I); build it with random_rotation(n)."
            )
        if np.linalg.det(Q) < 0:
            raise ValueError(
                "Q has determinant -1 (a reflection), which has no real fractional power; "
                "use a rotation (det +1), e.g. random_rotation(n)."
            )
        return _fractional_rotation(Q, float(alpha), scipy.linalg)


def _fractional_rotation(Q: np.ndarray, alpha: float, linalg: Any) -> np.ndarray:
    n = Q.shape[0]
    T, Z = linalg.schur(Q, output="real")
    Ta = np.zeros_like(T)
    neg: list[int] = []
    i = 0
    while i < n:
        if i + 1 < n and abs(T[i + 1, i]) > 1e-12:
            theta = math.atan2((T[i + 1, i] - T[i, i + 1]) / 2, (T[i, i] + T[i + 1, i + 1]) / 2)
            c, s = math.cos(alpha * theta), math.sin(alpha * theta)
            Ta[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
            i += 2
        else:
            if T[i, i] > 0:
                Ta[i, i] = 1.0
            else:
                neg.append(i)
            i += 1
    c, s = math.cos(alpha * math.pi), math.sin(alpha * math.pi)
    for a, b in zip(neg[0::2], neg[1::2]):  # -I on a plane is a rotation by pi there
        Ta[a, a] = Ta[b, b] = c
        Ta[a, b], Ta[b, a] = -s, s
    R = Z @ Ta @ Z.T
    u, _, vt = np.linalg.svd(R)  # remove rounding drift: nearest orthogonal matrix
    return u @ vt


def rotate_activations(
    acts: np.ndarray | torch.Tensor, R: np.ndarray | torch.Tensor, batch_size: int = 256
) -> np.ndarray | torch.Tensor:
    """Rotate the channel vector at every position: ``out[:, i] = sum_j R[i, j] * acts[:, j]``.

    Args:
        acts: (N, units, h, w) array or tensor.
        R: (units, units) rotation.
        batch_size: images per block (arrays only).

    Returns:
        The rotated activations, of the same kind as ``acts`` (float32).
    """
    _check_acts_array(acts, None, "acts")
    U = int(acts.shape[1])
    Rt = torch.as_tensor(
        np.asarray(R) if not isinstance(R, torch.Tensor) else R, dtype=torch.float32
    )
    if Rt.shape != (U, U):
        raise ValueError(
            f"R must be {U} x {U} for activations with {U} units, got {tuple(Rt.shape)}."
        )
    if isinstance(acts, torch.Tensor):
        return torch.einsum("ij,njhw->nihw", Rt.to(acts.device), acts.float())
    out = np.empty(acts.shape, dtype=np.float32)
    for s in range(0, len(acts), batch_size):
        out[s : s + batch_size] = torch.einsum(
            "ij,njhw->nihw", Rt, _as_tensor(acts[s : s + batch_size], Rt.device)
        ).numpy()
    return out


class ChannelRotation(nn.Module):
    """A fixed channel rotation ``x -> R x`` at every position of a (N, C, h, w) feature map."""

    def __init__(self, R: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer(
            "R",
            torch.as_tensor(
                np.asarray(R) if not isinstance(R, torch.Tensor) else R, dtype=torch.float32
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.R.shape[1]:
            r, c = self.R.shape
            raise ValueError(
                f"R is {r} x {c} but the feature map has {x.shape[1] if x.ndim > 1 else '?'} "
                f"channels "
                f"(shape {tuple(x.shape)}); use an R with one column per channel of this 4-D map."
            )
        return torch.einsum("ij,njhw->nihw", self.R.to(x.dtype), x)


class RotatedOutput(nn.Module):
    """``inner`` followed by ``rotate`` (R) and ``unrotate`` (R^T): the network computes the same
    function while ``<layer>.rotate`` exposes the rotated representation for dissection."""

    def __init__(self, inner: nn.Module, R: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        R = torch.as_tensor(
            np.asarray(R) if not isinstance(R, torch.Tensor) else R, dtype=torch.float32
        )
        if R.ndim != 2 or R.shape[0] != R.shape[1]:
            raise ValueError(
                f"R must be a square matrix (channels x channels), got shape {tuple(R.shape)}."
            )
        if not torch.allclose(
            R.double() @ R.double().T, torch.eye(len(R), dtype=torch.float64), atol=1e-4
        ):
            raise ValueError(
                "R is not orthogonal (R @ R.T != I), so R then R^T would change the network's "
                "outputs; build it with random_rotation(n) or fractional_rotation(Q, alpha)."
            )
        self.inner, self.rotate, self.unrotate = (
            inner,
            ChannelRotation(R),
            ChannelRotation(R.T.contiguous()),
        )

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.unrotate(self.rotate(self.inner(*args, **kwargs)))


def with_rotation(model: nn.Module, layer: str, R: np.ndarray | torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose ``layer`` output is rotated by ``R`` then by ``R^T`` (so the
    outputs
    match up to rounding); dissect ``f"{layer}.rotate"`` to score the rotated basis.

    Args:
        model: the network (left unchanged).
        layer: the name of the layer whose output is rotated.
        R: an orthogonal (channels, channels) matrix.

    Returns:
        The rotated copy of ``model``.
    """
    resolve_modules(model, [layer])
    new = copy.deepcopy(model)
    parent_name, _, child = layer.rpartition(".")
    parent = new.get_submodule(parent_name) if parent_name else new
    inner = getattr(parent, child) if not child.isdigit() else parent[int(child)]
    wrapped = RotatedOutput(inner, R).to(model_device(model))
    if child.isdigit() and isinstance(parent, (nn.Sequential, nn.ModuleList)):
        parent[int(child)] = wrapped
    else:
        setattr(parent, child, wrapped)
    return new
