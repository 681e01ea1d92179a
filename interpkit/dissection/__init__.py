"""Network Dissection (Bau, Zhou, Khosla, Oliva, Torralba, CVPR 2017): score every unit of a
convolutional layer against a dictionary of labelled visual concepts.

For each unit ``k`` of a layer:

1. ``T_k`` is the top-``quantile`` level (0.005 -> the 0.995 quantile, linear interpolation as
   ``numpy.quantile``) of the unit's activation over every position of every probe image, on the
   raw (not upsampled) maps (``interpkit.stats.quantile_thresholds``).
2. Per image the unit's map is upsampled bilinearly (``align_corners=False``) to the segmentation
   resolution and thresholded strictly: ``M_k = up(A_k) > T_k``, counting only pixels with a
   source cell above ``T_k`` (a convex combination of cells <= T cannot exceed T; float rounding
   can, by an ulp).
3. Over the dataset, per unit and label ``c``: ``I = |M_k & L_c|``; ``G(c)`` the label's pixel
   count; ``A_cat(k, p)`` the unit's activated pixels in the images where the activated region
   overlaps at least one pixel of a label of primary category ``p`` (NetDissect-Lite's
   category-restricted count; image-level labels, e.g. scenes, cover the whole image).
   ``IoU = I / (A_cat(k, primary(c)) + G(c) - I)``.
4. A unit is a *detector* of its best label when that IoU >= ``iou_threshold`` (0.04).

Everything is streamed in batches with tensor ops on the chosen device (no Python loop over units
or pixels) and memory does not grow with the number of images, except for the exact threshold
buffers (the top ``quantile`` fraction of the values).

Modules: ``.core`` (:func:`dissect`: sources as streams of feature maps, the two passes),
``.tally`` (the mergeable counts: ``tally_shard``, ``combine_tallies``), ``.sparse`` (the
exact sparse evaluation of the upsampled masks), ``.labels`` (the label space and packed
labels), ``.result``, ``.rotation`` (Sec. 3.2 of the paper).
"""

from __future__ import annotations

# old names kept importable (not in __all__): the statistics live in interpkit.stats
from ..stats import quantile_thresholds, top_images  # noqa: F401
from .core import DissectOptions, dissect  # noqa: F401
from .result import IOU_THRESHOLD, QUANTILE, DissectionResult, summarize  # noqa: F401
from .rotation import fractional_rotation, random_rotation, rotate_activations, with_rotation
from .sparse import upsample_masks

__all__ = [
    "dissect",
    "DissectionResult",
    "summarize",
    "upsample_masks",
    "random_rotation",
    "fractional_rotation",
    "rotate_activations",
    "with_rotation",
]
