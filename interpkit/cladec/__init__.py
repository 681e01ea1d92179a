"""ClaDec: explain a layer by decoding its activations back into an image (Schneider and Vlachos).

J. Schneider, M. Vlachos, "Explaining Neural Networks by Decoding Layer Activations", IDA 2021
(arXiv 2005.13630); journal version "Explaining classifiers by constructing familiar concepts",
Machine Learning 2022 (arXiv 2203.04109).

A trained classifier is frozen. A decoder learns to map one layer's activations back to the input
image; whatever the layer does not keep cannot come back, so the reconstructions show what the
layer "sees". A reference auto-encoder (RefAE) with the same encoder architecture up to that layer,
trained from scratch on reconstruction only, shows what the same architecture *could* keep. The
trade-off extension trains the decoder on ``(1 - alpha) * MSE(x_hat, x) + alpha * CE(f(x_hat), y)``
with the classifier ``f`` frozen, so ``alpha`` trades fidelity to the input for fidelity to the
classifier.

Public API::

    dec = build_decoder(act_shape, image_shape, width=1.0, mean_pixel=None)   # Decoder
    cd = train_cladec(classifier, "features.3", train, alpha=0.0, epochs=12)  # ClaDec (cached)
    ae = train_refae(classifier, "features.3", train, epochs=12)              # RefAE  (cached)
    explainers = train_explainers(classifier, train, layers, alphas=(0.0,), refae=True)
    x_hat = reconstruct(cd, images)                                           # CPU tensor
    table = evaluate_explainers(classifier, explainers, train, test)          # pandas DataFrame
    cladec_loss(x_hat, x, logits, y, alpha) -> (loss, mse, ce)
    mean_image_mse(train, test) -> float

Differences from the authors' code (``github.com/JohnTailor/ClaDec``), all documented in the
chapter: the decoder's output bias starts at the logit of the training images' mean pixel
(``init="mean"``; ``init="default"`` keeps PyTorch's initialisation as the authors do), which
stops the sigmoid from saturating early in training (see :func:`train_cladec`); the RefAE
encoder's batch-norm statistics are recomputed over the training images after training (see
``_recalibrate_batchnorm``); the decoder's channel counts can be scaled with ``width`` for CPU
speed. The frozen classifier stays in evaluation mode while the trade-off loss is computed, as in
the authors' ``master`` branch (an unmerged pull request there would put it in training mode).
"""

# ruff: noqa: I001 (public names imported first, the importable rest after)

from .evaluation import evaluate_explainers, mean_image_mse, reconstruct
from .fitting import train_cladec, train_explainers
from .model import build_decoder

# importable as interpkit.cladec.<name>, outside the public list (__all__)
from .evaluation import EvaluationOptions  # noqa: F401
from .fitting import DecoderTraining, train_refae  # noqa: F401
from .model import CACHE_FORMAT, ClaDec, Decoder, RefAE, cladec_loss, fresh_copy  # noqa: F401

__all__ = [
    "train_cladec",
    "train_explainers",
    "build_decoder",
    "reconstruct",
    "evaluate_explainers",
    "mean_image_mse",
]
