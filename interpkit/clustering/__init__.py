"""Concepts from a coupled non-negative factorisation of images, neurons and pixels.

Reproduces U. S. Saini and E. E. Papalexakis, "Analyzing Representations inside Convolutional
Neural Networks", arXiv:2012.12516 (2020).

N probe images are the columns of every data matrix: ``D_i`` (pixels x N) holds colour channel
``i`` in [0, 1], ``A_j`` (units x N) the post-ReLU activations of layer ``j`` (every channel and
position is a unit). One example factor ``F`` (R x N) is shared by all matrices::

    min  1/2 sum_i ||D_i - P_i F||^2 + 1/2 sum_j ||A_j - O_j F||^2 + lambda_F (sum F + 1/2 ||F||^2)

over non-negative ``F``, ``P_i`` (pixels x R) and ``O_j`` (units x R), by multiplicative updates
(F first, then every ``P_i``, then every ``O_j``, each using the new F)::

    F   <- F   * (sum_k W_k^T X_k) / (sum_k W_k^T W_k F + lambda_F (1 + F) + eps)
    W_k <- W_k * (X_k F^T) / (W_k F F^T + eps)

where ``(X_k, W_k)`` runs over all pairs ``(D_i, P_i)`` and ``(A_j, O_j)``. The F rule is the
exact multiplicative update of the 1/2-scaled objective above (the gradient's positive part is
``sum W^T W F + lambda_F (1 + F)``, its negative part ``sum W^T X``); the authors' code writes every
term with a factor 2, which gives the same ratio. With ``eps -> 0`` each update cannot increase
the objective (Lee and Seung's auxiliary function, with ``diag((W^T W F + lambda_F (1 + F)) / F)``
as the majoriser for the F step). Two modes:

``mode="monotone"`` (default)
    the updates above; columns are normalised once, at the end: the stacked factor
    ``[P_1; ...; O_J]`` gets unit-norm columns and the scale moves into F, so every product
    ``W_k F`` (and the reconstruction error) is unchanged. The penalised objective never
    increases (up to floating-point rounding, and terms of order ``eps``).
``mode="faithful"``
    the authors' code: after its update every ``P_i`` and ``O_j`` gets unit-L2-norm columns,
    every iteration, and F is not rescaled. F is shared, so it cannot compensate for every
    matrix at once: the error is not monotone and settles higher.

Initialisation (as the authors): F uniform in [0, 1), each ``P_i``/``O_j`` by NNDSVD of its own
matrix (Boutsidis and Gallopoulos 2008, zeros kept). Pass your own factors via ``init=`` to
compare runs across implementations. Stops early when the relative error
``sum ||X - W F||^2 / sum ||X||^2`` changes by less than ``tol`` between iterations.

Data matrices may be torch tensors, NumPy arrays or ``np.memmap`` s; with ``chunk_rows`` they
stay where they are and are streamed to the device in blocks of rows each iteration, so a probe
set whose activations do not fit in device memory can still be factorised.

Modules: ``matrices`` (probe-set data matrices), ``init`` (initial factors),
``nmf`` (the updates, :class:`NMFOptions`), ``summaries`` (tables and images of the
concepts). The summaries and the other helpers the chapters use stay importable from
``interpkit.clustering`` (``concept_table``, ``knn_impurity``, ...); ``__all__`` lists the core.
"""

from __future__ import annotations

from .init import Factors, init_factors, nndsvd
from .matrices import ActivationMatrices, activation_matrices, pixel_matrices
from .nmf import CoupledNMF, NMFOptions, coupled_nmf, layer_nmf
from .summaries import (
    KNNImpurity,
    accuracy_vs_impurity,
    class_weights,
    concept_pixel_image,
    concept_pixel_mask,
    concept_similarity,
    concept_table,
    factor_purity,
    knn_impurity,
    masked_images,
    purity_summary,
    top_examples,
    top_units,
)

__all__ = [
    "activation_matrices",
    "pixel_matrices",
    "coupled_nmf",
    "CoupledNMF",
    "NMFOptions",
    "init_factors",
    "concept_table",
    "purity_summary",
]
# also importable from here (used by the chapters and tests), documented in their modules
_COMPAT = (
    ActivationMatrices,
    Factors,
    KNNImpurity,
    nndsvd,
    layer_nmf,
    accuracy_vs_impurity,
    class_weights,
    concept_pixel_image,
    concept_pixel_mask,
    concept_similarity,
    factor_purity,
    knn_impurity,
    masked_images,
    top_examples,
    top_units,
)
