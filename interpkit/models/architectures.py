"""Small classifiers that train on a CPU: the ClaDec authors' VGG and a CIFAR-style ResNet-18."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checks import check_number, check_positive_int

VGG8_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512)
VGG8_STRIDES = (2, 2, 1, 2, 1, 2, 1, 2)  # stride 2 in blocks 1, 2, 4, 6, 8 (no max-pooling)


def _scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def _check_args(num_classes: int, in_channels: int, width: float) -> None:
    if check_positive_int("num_classes", num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    check_positive_int("in_channels", in_channels)
    check_number("width", width, positive=True, hint="1.0 is the paper's channel counts")


class VGG8(nn.Module):
    """Eight blocks conv3x3 (no bias) + BatchNorm + ReLU, then flatten, dropout 0.5, linear.

    The layout of Schneider and Vlachos' ClaDec classifier; ``width`` multiplies every channel
    count (1.0 is the paper's 32..512). Block outputs are named ``features.0`` .. ``features.7``.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0, image_size: int = 32
    ) -> None:
        super().__init__()
        _check_args(num_classes, in_channels, width)
        check_positive_int("image_size", image_size)
        blocks, c_in, side = [], in_channels, image_size
        for c, s in zip(VGG8_CHANNELS, VGG8_STRIDES):
            c_out = _scaled(c, width)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, stride=s, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                )
            )
            c_in, side = c_out, (side + s - 1) // s
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(c_in * side * side, num_classes)
        )
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(
                f"VGG8 was built for {self.image_size}x{self.image_size} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]}; resize the data (ImageSet.resized) or build "
                f"vgg8(image_size={x.shape[-1]})."
            )
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet-18."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18CIFAR(nn.Module):
    """ResNet-18 for small images: 3x3 stem, no max-pool, four stages of two blocks.

    ``width`` multiplies the channel counts (64, 128, 256, 512 at 1.0). Stage outputs are
    ``layer1`` .. ``layer4`` (post-ReLU).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        _check_args(num_classes, in_channels, width)
        chans = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, chans[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chans[0])
        self.relu = nn.ReLU(inplace=True)
        stages, c_in = [], chans[0]
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)))
            c_in = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def vgg8(
    num_classes: int = 10, in_channels: int = 1, width: float = 1.0, image_size: int = 32
) -> VGG8:
    """The ClaDec authors' VGG-style classifier (see :class:`~interpkit.models.VGG8`)."""
    return VGG8(num_classes, in_channels, width, image_size)


def resnet18_cifar(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0
) -> ResNet18CIFAR:
    """A CIFAR-style ResNet-18 (see :class:`~interpkit.models.ResNet18CIFAR`)."""
    return ResNet18CIFAR(num_classes, in_channels, width)


def torchvision_model(
    name: str, weights_path: str | Path | None = None, num_classes: int | None = None
) -> nn.Module:
    """Any torchvision classifier by name, randomly initialised or loaded from a local weights file.

    Nothing is downloaded: pass ``weights_path`` to a state dict saved on disk (for example the
    ``.pth`` file torchvision caches under ``~/.cache/torch/hub/checkpoints``).

    Args:
        name: the torchvision constructor's name (e.g. ``"resnet18"``).
        weights_path: a local state dict to load (``weights_only=True``); ``None``: random init.
        num_classes: replace the last layer with one of this many outputs.

    Returns:
        The model in evaluation mode.
    """
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=5)
        raise KeyError(
            f"torchvision has no classifier named {name!r}; closest: {', '.join(close) or 'none'}."
        )
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"weights file {path} does not exist; download it where you have a network "
                "and pass its local path."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated download, or a pickled model rather than weights
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ValueError(
                f"weights file {path} cannot be read as a state dict with weights_only=True "
                f"({type(exc).__name__}: {msg}); download it again, or save model.state_dict() "
                "rather than the whole model."
            ) from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(state)
    return model.eval()


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the modules whose output is a conv feature map worth explaining.

    For the VGG8 these are the block outputs ``features.i``; for the CIFAR ResNet the stage
    outputs; otherwise every ``nn.Conv2d``.

    Args:
        model: the network.

    Returns:
        The layer names, in order.
    """
    if isinstance(model, VGG8):
        return [f"features.{i}" for i in range(len(model.features))]
    if isinstance(model, ResNet18CIFAR):
        return ["layer1", "layer2", "layer3", "layer4"]
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
