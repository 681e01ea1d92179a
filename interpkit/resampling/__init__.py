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

# ruff: noqa: I001 (public names imported first, the importable rest after)

from .ablation import ablation_study, overlap_over_training, summarize_ablation, zero_channels
from .analysis import analyze
from .core import METHODS, METRICS, perturb
from .result import top_k

# importable as interpkit.resampling.<name>, outside the public list (__all__)
from .core import SCHEMES, channel_scores, noise_scales, weight_norms  # noqa: F401
from .analysis import ResamplingOptions  # noqa: F401
from .result import ResamplingResult, chance_overlap, set_overlap  # noqa: F401

__all__ = [
    "analyze",
    "perturb",
    "top_k",
    "zero_channels",
    "ablation_study",
    "summarize_ablation",
    "overlap_over_training",
    "METRICS",
    "METHODS",
]
