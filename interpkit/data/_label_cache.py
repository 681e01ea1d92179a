"""A decode-once cache of a Broden folder's pixel labels, reused across layers, runs and models.

Decoding the label PNGs is the largest cost of Network Dissection on precomputed features. The
cache holds every row's stacked label layers, resized to ``seg_shape``, in one ``.npy`` file
(``uint16`` when the label numbers fit, else ``int32``) that is memory-mapped on later opens.

Key: a SHA-256 over the resolved root, the split, the loaded categories, the *contents* of
index.csv, label.csv, category.csv and the c_<cat>.csv files, and the *path, size and
modification time (ns)* of every label PNG the rows name. Changing any of them gives a new key,
and the stale cache file (which we wrote) is replaced. The file name depends only on the root,
split and categories, so one dataset keeps one cache file.

Integrity: a JSON sidecar holds the key, shape, dtype, size and CRC-32 of the array file; a cache
whose sidecar is unreadable, whose key differs, or whose size or checksum does not match is
rebuilt, never trusted. Both files are written atomically (:mod:`interpkit.io`); files of other
names in the folder are never touched.

Disk cost: ``K * sh * sw * 2`` bytes per image (``K`` label layers, uint16). At 112 x 112
segmentations that is 25.1 kB per layer per image, 25.1 MB per layer per 1,000 images, and
1.59 GB per layer for the full Broden (63,305 images); with ``K = 6`` layers (object, part x2,
material, color, ...; ``len(ds.layer_categories)``) 150 MB per 1,000 images and 9.5 GB in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, atomic_write_json

_VERSION = 1
_PREFIX = "broden-labels-"


def default_folder() -> Path:
    """``$INTERPKIT_CACHE/broden-labels`` or ``~/.cache/interpkit/broden-labels``."""
    root = os.environ.get("INTERPKIT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "interpkit"
    return base / "broden-labels"


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def dataset_key(root: Path, split: str | None, categories: list[str], pngs: list[Path]) -> str:
    """SHA-256 over what the cached labels depend on (see module doc)."""
    h = hashlib.sha256()
    h.update(json.dumps([_VERSION, str(root.resolve()), split, categories]).encode())
    for name in ["index.csv", "label.csv", "category.csv"] + [f"c_{c}.csv" for c in categories]:
        h.update(name.encode() + b"\0" + (root / name).read_bytes())
    for p in pngs:
        try:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def cache_paths(folder: Path, root: Path, split: str | None, categories: list[str]) -> Path:
    """The cache's array file for this dataset selection (the sidecar is ``.json`` beside it)."""
    ident = hashlib.sha256(json.dumps([str(root.resolve()), split, categories]).encode())
    return folder / f"{_PREFIX}{ident.hexdigest()[:20]}.npy"


def _open_valid(path: Path, meta_path: Path, key: str) -> np.ndarray | None:
    """The memory-mapped cache if it is present, of this key and intact; else None."""
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("key") != key or path.stat().st_size != meta["bytes"]:
            return None
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
            return None
        if _crc32(path) != meta["crc32"]:
            return None
        return arr
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def cached_layers(
    path: Path,
    key: str,
    shape: tuple[int, ...],
    num_labels: int,
    decode: Callable[[list[int]], np.ndarray],
    chunk: int = 256,
) -> np.ndarray:
    """The cached (N, K, sh, sw) label array for ``key``, built with ``decode`` if needed.

    Args:
        path: the array file (from :func:`cache_paths`).
        key: the dataset key (from :func:`dataset_key`).
        shape: (N, K, sh, sw) of the full array.
        num_labels: number of label numbers (chooses uint16 or int32).
        decode: ``decode(rows) -> (len(rows), K, sh, sw)`` integer labels of those rows.
        chunk: rows decoded at a time while building.

    Returns:
        A read-only memory map of the labels.
    """
    meta_path = path.with_suffix(".json")
    arr = _open_valid(path, meta_path, key)
    if arr is not None:
        return arr
    dtype = np.uint16 if num_labels <= 65536 else np.int32
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        for r0 in range(0, shape[0], chunk):
            rows = list(range(r0, min(r0 + chunk, shape[0])))
            out[r0 : r0 + len(rows)] = decode(rows)
        out.flush()
        del out
        meta = {
            "key": key,
            "shape": list(shape),
            "dtype": np.dtype(dtype).name,
            "bytes": tmp.stat().st_size,
            "crc32": _crc32(tmp),
        }
    atomic_write_json(meta_path, meta)
    return np.load(path, mmap_mode="r", allow_pickle=False)
