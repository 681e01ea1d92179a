"""Shared pieces of the Broden reader, the in-memory twin and the writer (internal)."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

META_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw"]
INDEX_COLUMNS = META_COLUMNS + ["color", "object", "part", "material", "scene", "texture"]
# written into every folder write_broden makes: overwrite=True replaces only those
MARKER = ".interpkit-broden"
_CAT_CELL = re.compile(r"^\s*([^()]+?)\s*\(\s*(\d+)\s*\)\s*$")


def half_resolution(mask: np.ndarray, sh: int | None = None, sw: int | None = None) -> np.ndarray:
    """Masks (..., H, W) at half resolution by striding: output pixel (i, j) = input (2i, 2j)."""
    sh = mask.shape[-2] // 2 if sh is None else sh
    sw = mask.shape[-1] // 2 if sw is None else sw
    return mask[..., ::2, ::2][..., :sh, :sw]


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------
def _read_csv(
    path: Path, required: Sequence[str], what: str
) -> tuple[list[str], list[dict[str, str]]]:
    """Rows of a CSV file as dicts, after checking the file and its required columns exist."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; a Broden directory needs {what}. Check the root "
            f"folder (it must contain index.csv, label.csv, category.csv, c_<category>.csv "
            f"and images/)."
        )
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a CSV saved by Excel
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; the header is {header}, "
                f"expected at least {list(required)}."
            )
        rows = []
        for r in reader:
            # DictReader pads a short row with None and puts extra cells under the key None: a row
            # cut
            # off by a truncated copy (or an unquoted comma) would otherwise be read as a valid row
            if None in r or None in r.values():
                n = sum(v is not None for k, v in r.items() if k is not None) + len(
                    r.get(None) or []
                )
                raise ValueError(
                    f"{path} line {reader.line_num}: {n} cells but the header has {len(header)}; "
                    f"the "
                    "file is truncated or the row is malformed (an unquoted comma?). Copy the "
                    "dataset "
                    "again or fix that row."
                )
            rows.append(r)
        return header, rows


def _primary_categories(
    frame: pd.DataFrame, categories: Sequence[str], fallback: Sequence[dict[str, int]]
) -> list[str]:
    """Primary category per label: highest coverage among the loaded categories holding it."""
    out = []
    for i in range(len(frame)):
        best, best_cov = "", -1.0
        for cat in categories:
            if frame[f"code_{cat}"].iat[i] > 0 and frame[f"coverage_{cat}"].iat[i] >= best_cov:
                best, best_cov = cat, float(frame[f"coverage_{cat}"].iat[i])
        if not best and fallback[i]:
            best = max(fallback[i].items(), key=lambda kv: kv[1])[0]
        out.append(best)
    return out


def _labels_frame(
    names: list[str],
    syns: list[str],
    frequency: np.ndarray,
    coverage: np.ndarray,
    per_cat: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    fallback: Sequence[dict[str, int]],
) -> pd.DataFrame:
    """The ``labels`` DataFrame (see module docstring) from per-label arrays."""
    L = len(names)
    data: dict[str, object] = {
        "name": names,
        "category": [""] * L,
        "frequency": np.asarray(frequency, np.int64),
        "coverage": np.asarray(coverage, np.float64),
        "syns": syns,
    }
    for cat, (code, freq, cov) in per_cat.items():
        data[f"code_{cat}"] = np.asarray(code, np.int64)
        data[f"frequency_{cat}"] = np.asarray(freq, np.int64)
        data[f"coverage_{cat}"] = np.asarray(cov, np.float64)
    frame = pd.DataFrame(data, index=pd.RangeIndex(L, name="number"))
    frame["category"] = _primary_categories(frame, list(per_cat), fallback)
    frame.loc[0, "category"] = ""
    return frame


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape[-2:] == tuple(shape):
        return a
    ri = (np.arange(shape[0]) * a.shape[-2]) // shape[0]
    ci = (np.arange(shape[1]) * a.shape[-1]) // shape[1]
    return a[..., ri[:, None], ci[None, :]]


def _resize_image(img: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(img.shape[-2:]) == tuple(shape):
        return img
    return F.interpolate(
        img[None], size=shape, mode="bilinear", align_corners=False, antialias=True
    )[0].clamp_(0, 1)


class _BrodenBase(Dataset):
    """Shared attributes of the file reader and the in-memory dataset."""

    categories: list[str]
    pixel_categories: list[str]
    scalar_categories: list[str]
    labels: pd.DataFrame
    category_info: pd.DataFrame
    seg_shape: tuple[int, int]
    image_shape: tuple[int, int]
    layer_categories: list[str]
    scalar_label_categories: list[str]

    @property
    def label_names(self) -> list[str]:
        """Label names indexed by label number (0 = "-")."""
        return list(self.labels["name"])

    def label_number(self, name: str, category: str | None = None) -> int:
        """The label number of ``name`` (optionally the one listed in ``category``)."""
        hit = self.labels.index[self.labels["name"] == name]
        if category is not None:
            col = f"code_{category}"
            if col not in self.labels:
                raise KeyError(f"category {category!r} is not loaded; loaded: {self.categories}")
            hit = [h for h in hit if self.labels.at[h, col] > 0]
        if len(hit) == 0:
            raise KeyError(
                f"no label named {name!r}"
                + (f" in category {category!r}" if category else "")
                + "; see ds.labels for the names."
            )
        return int(hit[0])

    def _layout(self, layer_counts: dict[str, int], scalar_counts: dict[str, int]) -> None:
        self.layer_categories = [c for c in self.pixel_categories for _ in range(layer_counts[c])]
        self.scalar_label_categories = [
            c for c in self.scalar_categories for _ in range(scalar_counts[c])
        ]
        self._layer_offset, self._scalar_offset = {}, {}
        k = s = 0
        for c in self.pixel_categories:
            self._layer_offset[c] = k
            k += layer_counts[c]
        for c in self.scalar_categories:
            self._scalar_offset[c] = s
            s += scalar_counts[c]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, categories={self.categories}, "
            f"image_shape={self.image_shape}, seg_shape={self.seg_shape}, "
            f"labels={len(self.labels)})"
        )


def _numeric_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns that parse as integers (else floats) converted; others kept as text."""
    frame = frame.copy()
    for col in frame.columns:
        for kind in (np.int64, np.float64):
            try:
                frame[col] = frame[col].astype(kind)
                break
            except (TypeError, ValueError):
                continue
    return frame


def _int_or_zero(v: str | None, path: Path, line: int) -> int:
    if v is None or str(v).strip() == "":
        return 0
    try:
        return int(float(v))
    except ValueError:
        raise ValueError(f"{path} line {line}: {v!r} is not a number.") from None


def _float_or_zero(v: str | None, path: Path, line: int) -> float:
    if v is None or str(v).strip() == "":
        return 0.0
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{path} line {line}: {v!r} is not a number.") from None
