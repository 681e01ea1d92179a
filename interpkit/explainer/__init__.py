"""An explainer network distilled from a CNN, disentangling its features into object parts.

Reproduces Q. Zhang, Y. Yang, Y. Liu, Y. N. Wu and S.-C. Zhu, "Unsupervised Learning of Neural
Networks to Explain Neural Networks", arXiv:1805.07468 (2018; extended abstract arXiv:1901.07538),
built on the filter loss of Q. Zhang, Y. N. Wu and S.-C. Zhu, "Interpretable Convolutional Neural
Networks", CVPR 2018 (ICNN).

A frozen CNN (the *performer*) is explained by a small network (the *explainer*) that works like an
auto-encoder on the feature maps ``f`` of one middle layer of the performer::

    x_interp = mask(relu(conv(mask(relu(conv(f))))))   interpretable track (ICNN filter loss)
    x_ordin  = relu(conv(f))                           ordinary track
    p        = sigmoid(g(f))                           ratio of interpretable features, per image
    x        = p * norm(x_interp) + (1 - p) * norm(x_ordin)
    f_hat    = decoder(x)                              reconstructs higher-layer features

    loss = sum_targets ||f_hat - f_target||^2 / E||f_target||^2          (distillation)
           + filter_weight * mean_filters Loss_f       (ICNN filter loss)
           + p_weight * mean_images (-log p)

No annotations are used: the performer's own features are the only training signal.

Modules: ``icnn`` (the ICNN templates, filter loss and mask),
``network`` (the explainer), ``performer`` (the
performer's features and its forward pass with a reconstructed layer),
``training`` (distillation), ``parts`` (peaks, top
images, location instability, part IoU) and ``metrics`` (every metric of an
explainer next to its performer).

Metrics (tidy results, nothing printed): relative reconstruction error, the performer's accuracy
with its higher-layer features replaced by the explainer's reconstruction, the ratio ``p``, the
location instability of filters (ICNN, Sec. 4) for the explainer's interpretable filters and the
performer's own filters, and the IoU of each filter's thresholded map with the best-matching
ground-truth part.
"""

from __future__ import annotations

from .icnn import (
    DEFAULT_BETA,
    FilterMask,
    filter_loss,
    grouped_filter_loss,
    icnn_mask,
    icnn_templates,
    rescale_maps,
    template_log_priors,
)
from .metrics import (
    ExplainerReport,
    accuracy_with_reconstruction,
    evaluate_explainer,
    explainer_maps,
    interpretable_ratio,
    reconstruction_error,
)
from .network import Explainer, ExplainerOutput, check_same_shape
from .parts import location_instability, part_iou, peak_positions, top_activations
from .performer import check_layer_order, layer_shapes, performer_features, replaced_features
from .training import CACHE_FORMAT, ExplainerConfig, train_explainer, training_step

# The public API: what a reader of the book calls.
__all__ = [
    "ExplainerConfig",
    "train_explainer",
    "evaluate_explainer",
    "explainer_maps",
    "reconstruction_error",
    "accuracy_with_reconstruction",
    "location_instability",
]

# Building blocks, reachable as ``interpkit.explainer.<name>`` (chapters, tests, benchmarks) but
# documented in their own submodule.
_BUILDING_BLOCKS = (
    DEFAULT_BETA,
    CACHE_FORMAT,
    Explainer,
    ExplainerOutput,
    ExplainerReport,
    FilterMask,
    check_layer_order,
    check_same_shape,
    filter_loss,
    grouped_filter_loss,
    icnn_mask,
    icnn_templates,
    interpretable_ratio,
    layer_shapes,
    part_iou,
    peak_positions,
    performer_features,
    replaced_features,
    rescale_maps,
    template_log_priors,
    top_activations,
    training_step,
)
