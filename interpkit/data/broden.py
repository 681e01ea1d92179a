"""Broden-format segmentation data: a reader, an in-memory twin, and a writer.

The layout is the one the Network Dissection code reads (Bau et al., 2017)::

    root/index.csv       image,split,ih,iw,sh,sw,<one column per category>  (e.g. color,object,part,
                         material,scene,texture). A category cell holds ';'-separated entries:
                         an integer is an image-level label number, any other string is a PNG path
                         (relative to images/) holding one layer of per-pixel labels.
    root/label.csv       number,name,category,frequency,coverage,syns; category like
                         "color(2);object(5)" (images per category)
    root/category.csv    name,first,last,count,frequency
    root/c_<cat>.csv     code,number,name,frequency,coverage (dense per-category codes)
    root/images/...      the images (ih x iw) and label PNGs (sh x sw, label = R + 256 * G)

Both ``Broden`` (files) and ``InMemoryBroden`` (e.g. ``ConceptWorld.as_broden``) offer:

* ``ds[i]`` -> ``{"image": float32 (3,H,W) in [0,1], "masks": {cat: long (k,sh,sw)},
  "scalars": {cat: long (m,)}, "split": str}``. A category is a *pixel* category when any cell of
  its column holds a PNG (then integers in its cells become constant layers, as in the reference
  code), otherwise a *scalar* (image-level) category. ``k`` and ``m`` may be 0.
* ``ds.categories`` (loaded categories, category.csv order), ``ds.pixel_categories``,
  ``ds.scalar_categories``, ``ds.seg_shape`` ``(sh, sw)``, ``ds.image_shape`` ``(ih, iw)``.
* ``ds.labels``: DataFrame indexed by label number ``0 .. L-1`` (row 0 is ``"-"``, unlabeled) with
  columns ``name``, ``category`` (primary category: the loaded category in which the label has
  the highest coverage; ties go to the later category; labels in no loaded category fall back to
  label.csv's category with most images, else ""), ``frequency``, ``coverage``, ``syns``, and
  for every loaded category ``cat``: ``code_<cat>`` (dense code, 0 = not in that category),
  ``frequency_<cat>`` and ``coverage_<cat>`` (0 where absent).
* ``ds.images_batch(indices)`` -> images only (float32 (B,3,H,W)), without reading label files.
* ``ds.segmentation_batch(indices)`` -> ``(images (B,3,H,W) float32, pixel_labels (B,K,sh,sw)
  long, scalar_labels (B,S) long)``: layers of every pixel category stacked in a fixed order
  given by ``ds.layer_categories`` (length K; each category gets as many slots as its largest
  cell), image-level labels likewise (``ds.scalar_label_categories``, length S); padding is 0.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..checks import row_indices
from . import _label_cache

__all__ = ["Broden", "InMemoryBroden", "write_broden", "half_resolution", "INDEX_COLUMNS"]

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


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------
class Broden(_BrodenBase):
    """A Broden directory (e.g. broden1_224, broden1_227, or ``ConceptWorld.to_broden``).

    Args:
        root: the folder holding index.csv, label.csv, category.csv, c_<cat>.csv, images/.
        split: keep only rows of this split (e.g. "train", "val"); None keeps every row, in file
            order.
        categories: load only these categories (default: all of category.csv).
        label_cache: where :meth:`labels_batch` keeps a decode-once cache of the pixel labels:
            False (default) decodes the PNGs on every call; True uses
            ``$INTERPKIT_CACHE/broden-labels`` (else ``~/.cache/interpkit/broden-labels``); a
            path uses that folder. The cache is built on the first call (every row decoded
            once), keyed on the CSVs' contents and the label PNGs' paths, sizes and mtimes, and
            checked by CRC-32 on open. Disk: ``len(layer_categories) * sh * sw * 2`` bytes per
            image, e.g. 25.1 MB per layer slot per 1,000 images at 112 x 112, 1.59 GB per slot
            for the full Broden (63,305 images; 9.5 GB with 6 slots).

    Files are read lazily (images and PNGs on access); the CSVs are checked when opening.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        categories: Iterable[str] | None = None,
        label_cache: bool | str | os.PathLike = False,
    ) -> None:
        self.root = Path(root).expanduser()
        if label_cache is True:
            self._cache_folder: Path | None = _label_cache.default_folder()
        elif label_cache is False or label_cache is None:
            self._cache_folder = None
        else:
            self._cache_folder = Path(label_cache).expanduser()
        self._cache_array: np.ndarray | None = None
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Broden root {self.root} does not exist or is not a folder; pass the "
                f"folder that holds index.csv (e.g. .../broden1_224)."
            )
        _, cat_rows = _read_csv(
            self.root / "category.csv", ["name"], "category.csv (the list of categories)"
        )
        all_cats = [r["name"] for r in cat_rows]
        twice = sorted({c for c in all_cats if all_cats.count(c) > 1})
        if twice:
            raise ValueError(
                f"{self.root / 'category.csv'} lists the categories {twice} more than once; keep "
                f"one "
                f"row per category."
            )
        index_path = self.root / "index.csv"
        header, rows = _read_csv(index_path, META_COLUMNS, "index.csv (one row per image)")
        for line, cat in enumerate(all_cats, start=2):
            if cat not in header:
                raise ValueError(
                    f"{self.root / 'category.csv'} line {line} lists category {cat!r} but "
                    f"{index_path} has no column {cat!r} (header: {header})."
                )
        if categories is None:
            cats = list(all_cats)
        else:
            wanted = list(categories)
            lacking = [c for c in wanted if c not in all_cats]
            if lacking:
                raise ValueError(
                    f"requested categories {lacking} are not in {self.root / 'category.csv'}; "
                    f"this dataset has {all_cats}."
                )
            cats = [c for c in all_cats if c in wanted]
        self.categories = cats
        self.category_info = _numeric_frame(pd.DataFrame(cat_rows).set_index("name").loc[cats])

        # label.csv -> label table and the set of known numbers
        label_path = self.root / "label.csv"
        _, label_rows = _read_csv(
            label_path, ["number", "name", "category"], "label.csv (names of labels)"
        )
        parsed = []
        for line, r in enumerate(label_rows, start=2):
            try:
                num = int(r["number"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{label_path} line {line}: label number {r['number']!r} is not an integer."
                ) from None
            cat_counts: dict[str, int] = {}
            for part in (r["category"] or "").split(";"):
                if not part.strip():
                    continue
                m = _CAT_CELL.match(part)
                if not m:
                    raise ValueError(
                        f"{label_path} line {line}: category cell {r['category']!r} should look "
                        f"like 'color(2);object(5)'."
                    )
                cat_counts[m.group(1)] = int(m.group(2))
            parsed.append((num, r, cat_counts, line))
        L = max([p[0] for p in parsed], default=0) + 1
        known = np.zeros(L, bool)
        known[0] = True
        names, syns = [""] * L, [""] * L
        names[0] = "-"
        freq, cov = np.zeros(L, np.int64), np.zeros(L, np.float64)
        fallback: list[dict[str, int]] = [{} for _ in range(L)]
        seen: dict[int, int] = {}
        for num, r, cat_counts, line in parsed:
            if num < 0:
                raise ValueError(f"{label_path} line {line}: negative label number {num}.")
            if num in seen:
                raise ValueError(
                    f"{label_path} line {line}: label number {num} is already on line {seen[num]}; "
                    "keep one row per label."
                )
            seen[num] = line
            known[num] = True
            names[num] = r["name"]
            syns[num] = r.get("syns") or ""
            freq[num] = _int_or_zero(r.get("frequency"), label_path, line)
            cov[num] = _float_or_zero(r.get("coverage"), label_path, line)
            fallback[num] = cat_counts
        per_cat = {}
        for cat in cats:
            c_path = self.root / f"c_{cat}.csv"
            _, crows = _read_csv(
                c_path, ["code", "number"], f"c_{cat}.csv (codes of category {cat})"
            )
            code, cf, cc = np.zeros(L, np.int64), np.zeros(L, np.int64), np.zeros(L, np.float64)
            for line, r in enumerate(crows, start=2):
                num = _int_or_zero(r["number"], c_path, line)
                if not 0 <= num < L or not known[num]:
                    raise ValueError(
                        f"{c_path} line {line}: label number {num} is not in {label_path}."
                    )
                code[num] = _int_or_zero(r["code"], c_path, line)
                cf[num] = _int_or_zero(r.get("frequency"), c_path, line)
                cc[num] = _float_or_zero(r.get("coverage"), c_path, line)
            per_cat[cat] = (code, cf, cc)
        self._known = known
        self.labels = _labels_frame(names, syns, freq, cov, per_cat, fallback)

        # index.csv rows
        self._rows: list[tuple[str, str, int, int, int, int, int]] = []
        cells: dict[str, list[tuple[list[int], list[tuple[int, str | int]]]]] = {
            c: [] for c in cats
        }
        has_png = {c: False for c in cats}
        for line, r in enumerate(rows, start=2):
            if split is not None and r["split"] != split:
                continue
            try:
                ih, iw, sh, sw = (int(r[k]) for k in ("ih", "iw", "sh", "sw"))
            except (TypeError, ValueError):
                raise ValueError(
                    f"{index_path} line {line}: ih, iw, sh, sw must be integers, got "
                    f"{[r['ih'], r['iw'], r['sh'], r['sw']]}."
                ) from None
            if min(ih, iw, sh, sw) < 1:
                raise ValueError(
                    f"{index_path} line {line}: ih, iw, sh, sw must be positive, got "
                    f"{[ih, iw, sh, sw]}."
                )
            if not r["image"]:
                raise ValueError(f"{index_path} line {line}: the image cell is empty.")
            self._rows.append((r["image"], r["split"], ih, iw, sh, sw, line))
            for cat in cats:
                ints, entries = [], []
                for e in (r[cat] or "").split(";"):
                    e = e.strip()
                    if not e:
                        continue
                    if re.fullmatch(r"-?\d+", e):
                        v = int(e)
                        if not 0 <= v < L or not known[v]:
                            raise ValueError(
                                f"{index_path} line {line}, column {cat!r}: label number {v} "
                                f"is not in {label_path}."
                            )
                        ints.append(v)
                        entries.append((0, v))
                    else:
                        has_png[cat] = True
                        entries.append((1, e))
                cells[cat].append((ints, entries))
        if not self._rows:
            splits = sorted({r["split"] for r in rows})
            raise ValueError(
                f"{index_path} has no rows"
                + (
                    f" of split {split!r}; splits present: {splits}"
                    if split is not None
                    else "; add images to it."
                )
            )
        self._cells = cells
        self.split = split
        self.pixel_categories = [c for c in cats if has_png[c]]
        self.scalar_categories = [c for c in cats if not has_png[c]]
        layer_counts = {c: max(len(e) for _, e in cells[c]) for c in self.pixel_categories}
        scalar_counts = {c: max(len(i) for i, _ in cells[c]) for c in self.scalar_categories}
        self._layout(layer_counts, scalar_counts)
        self.image_shape = Counter((r[2], r[3]) for r in self._rows).most_common(1)[0][0]
        self.seg_shape = Counter((r[4], r[5]) for r in self._rows).most_common(1)[0][0]

    # -- access --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def image_path(self, i: int) -> Path:
        """Path of the image of row ``i``."""
        return self.root / "images" / self._rows[i][0]

    def _read(self, path: Path, line: int, keep_modes: tuple[str, ...] = ()) -> np.ndarray:
        """The image file ``path`` (of index.csv line ``line``) as an array, converted to RGB
        unless its
        mode is in ``keep_modes``; a missing, truncated or corrupt file says which row it belongs
        to."""
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} (index.csv line {line}) is missing; the Broden copy is incomplete."
            )
        try:
            with Image.open(path) as im:
                return np.array(im if im.mode in keep_modes else im.convert("RGB"))
        except (OSError, SyntaxError) as exc:  # PIL: truncated or not an image
            raise ValueError(
                f"{path} (index.csv line {line}) cannot be read ({exc}); the file is truncated or "
                "corrupt, copy it again."
            ) from None

    def _load_image(self, i: int) -> torch.Tensor:
        name, _, ih, iw, _, _, line = self._rows[i]
        path = self.root / "images" / name
        arr = self._read(path, line)
        if arr.shape[:2] != (ih, iw):
            raise ValueError(
                f"{path} is {arr.shape[0]}x{arr.shape[1]} but index.csv line {line} says "
                f"ih={ih}, iw={iw}; fix the row or the image."
            )
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)

    def _load_png(self, rel: str, i: int) -> np.ndarray:
        _, _, _, _, sh, sw, line = self._rows[i]
        path = self.root / "images" / rel
        arr = self._read(path, line, keep_modes=("RGB", "RGBA", "L", "I", "I;16"))
        if arr.ndim == 3:
            lab = arr[..., 0].astype(np.int64) + 256 * arr[..., 1].astype(np.int64)
        else:
            lab = arr.astype(np.int64)
        if lab.shape != (sh, sw):
            raise ValueError(
                f"{path} is {lab.shape[0]}x{lab.shape[1]} but index.csv line {line} says "
                f"sh={sh}, sw={sw}; segmentations must have the size in sh, sw."
            )
        if lab.size and (lab.max() >= len(self._known) or not self._known[lab].all()):
            bad = sorted(
                {int(v) for v in np.unique(lab) if v >= len(self._known) or not self._known[v]}
            )
            raise ValueError(
                f"{path} (index.csv line {line}) holds label number(s) {bad[:10]} that are not in "
                f"{self.root / 'label.csv'}."
            )
        return lab

    def _layers(self, i: int, cat: str) -> np.ndarray:
        sh, sw = self._rows[i][4], self._rows[i][5]
        entries = self._cells[cat][i][1]
        out = np.empty((len(entries), sh, sw), np.int64)
        for q, (kind, e) in enumerate(entries):
            if kind == 0:
                out[q] = e
            else:
                out[q] = self._load_png(e, i)  # type: ignore[arg-type]
        return out

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a Broden set of {len(self)} rows")
        i = i % len(self)
        masks = {c: torch.from_numpy(self._layers(i, c)) for c in self.pixel_categories}
        scalars = {
            c: torch.tensor(self._cells[c][i][0], dtype=torch.long) for c in self.scalar_categories
        }
        return {
            "image": self._load_image(i),
            "masks": masks,
            "scalars": scalars,
            "split": self._rows[i][1],
        }

    def images_batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Only the images of ``indices`` as float32 (B, 3, H, W) (no label PNGs are read)."""
        idx = row_indices(indices, len(self)).tolist()
        H, W = self.image_shape
        images = torch.empty((len(idx), 3, H, W), dtype=torch.float32)
        for b, i in enumerate(idx):
            images[b] = _resize_image(self._load_image(i), (H, W))
        return images

    def segmentation_batch(
        self, indices: Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, stacked pixel-label layers and image-level labels of ``indices`` (see module
        doc)."""
        idx = row_indices(indices, len(self)).tolist()
        H, W = self.image_shape
        images = torch.empty((len(idx), 3, H, W), dtype=torch.float32)
        for b, i in enumerate(idx):
            images[b] = _resize_image(self._load_image(i), (H, W))
        pixel = torch.from_numpy(self._decode_layers(idx))
        return images, pixel, torch.from_numpy(self._scalar_labels(idx))

    def labels_batch(
        self, indices: Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The labels of ``indices`` without decoding any image.

        Args:
            indices: row numbers (a sequence or a 1-d integer tensor).

        Returns:
            ``(pixel_labels (B, K, sh, sw) long, scalar_labels (B, S) long)``, equal to the last
            two outputs of :meth:`segmentation_batch`. With ``label_cache`` set, the pixel labels
            come from the decode-once cache (built on the first call).
        """
        idx = row_indices(indices, len(self)).tolist()
        if self._cache_folder is None:
            pixel = self._decode_layers(idx)
        else:
            pixel = self._cached_layers()[idx].astype(np.int64)
        return torch.from_numpy(pixel), torch.from_numpy(self._scalar_labels(idx))

    def _decode_layers(self, idx: list[int]) -> np.ndarray:
        """Pixel-label layers of rows ``idx`` decoded from the PNGs: (B, K, sh, sw) int64."""
        sh, sw = self.seg_shape
        pixel = np.zeros((len(idx), len(self.layer_categories), sh, sw), np.int64)
        for b, i in enumerate(idx):
            for c in self.pixel_categories:
                lay = self._layers(i, c)
                if len(lay):
                    o = self._layer_offset[c]
                    pixel[b, o : o + len(lay)] = _resize_nearest(lay, (sh, sw))
        return pixel

    def _scalar_labels(self, idx: list[int]) -> np.ndarray:
        """Image-level labels of rows ``idx`` from index.csv: (B, S) int64, 0-padded."""
        scal = np.zeros((len(idx), len(self.scalar_label_categories)), np.int64)
        for b, i in enumerate(idx):
            for c in self.scalar_categories:
                v = self._cells[c][i][0]
                o = self._scalar_offset[c]
                scal[b, o : o + len(v)] = v
        return scal

    def _cached_layers(self) -> np.ndarray:
        """The whole (N, K, sh, sw) label array from the cache, built or rebuilt when needed.

        The key is computed on the first call of this object; a dataset changed while the object
        is open is seen by the next ``Broden`` opened on it."""
        if self._cache_array is None:
            assert self._cache_folder is not None
            pngs = sorted(
                {
                    self.root / "images" / e
                    for c in self.pixel_categories
                    for _, entries in self._cells[c]
                    for kind, e in entries
                    if kind == 1
                }
            )
            key = _label_cache.dataset_key(self.root, self.split, self.categories, pngs)
            path = _label_cache.cache_paths(
                self._cache_folder, self.root, self.split, self.categories
            )
            sh, sw = self.seg_shape
            shape = (len(self), len(self.layer_categories), sh, sw)
            self._cache_array = _label_cache.cached_layers(
                path, key, shape, len(self._known), self._decode_layers
            )
        return self._cache_array


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


# ---------------------------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------------------------
class InMemoryBroden(_BrodenBase):
    """Broden-style data held in arrays, with the same interface as ``Broden``.

    Args:
        images: uint8 ``(N, 3, H, W)``.
        pixel: category -> integer label numbers ``(N, k, sh, sw)`` (0 = unlabeled; all-zero
            layers are dropped per image, like empty cells in index.csv).
        scalar: category -> image-level label numbers ``(N, m)`` (0 = none).
        label_names: name of each label number (index 0 is the unlabeled "-").
        label_categories: category (or categories) each label number belongs to.
        categories: category order (default: pixel then scalar categories).
        splits, image_names: per-image split and file stem (used by ``write_broden``).

    Statistics (frequency: images holding a label; coverage: summed pixel fraction, 1 per image for
    image-level labels) are computed from the data, as the Broden tools do.
    """

    def __init__(
        self,
        images: np.ndarray,
        pixel: dict[str, np.ndarray],
        scalar: dict[str, np.ndarray],
        label_names: Sequence[str],
        label_categories: Sequence[str | Sequence[str]],
        categories: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        image_names: Sequence[str] | None = None,
    ) -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (N, 3, H, W), got {images.dtype} {images.shape}."
            )
        N = len(images)
        if N == 0:
            raise ValueError("images is empty (N = 0); pass at least one image.")
        self.categories = list(categories) if categories is not None else [*pixel, *scalar]
        if sorted(self.categories) != sorted([*pixel, *scalar]):
            raise ValueError(
                f"categories {self.categories} must list each of {[*pixel, *scalar]} once."
            )
        clash = [c for c in self.categories if c in META_COLUMNS]
        if (
            clash
        ):  # index.csv has these columns already: write_broden would write a header with them twice
            raise ValueError(
                f"categories {clash} have the names of index.csv's own columns {META_COLUMNS}; "
                "rename them."
            )
        self.pixel_categories = [c for c in self.categories if c in pixel]
        self.scalar_categories = [c for c in self.categories if c in scalar]
        L = len(label_names)
        self._images = images
        self.image_shape = (int(images.shape[2]), int(images.shape[3]))
        shapes = {np.shape(a)[2:] for a in pixel.values()}
        if len(shapes) > 1:
            raise ValueError(f"all pixel categories need one segmentation shape, got {shapes}.")
        self.seg_shape = (
            tuple(int(s) for s in shapes.pop())
            if shapes
            else (self.image_shape[0] // 2, self.image_shape[1] // 2)
        )
        self._pixel: dict[str, np.ndarray] = {}
        self._nonzero: dict[str, np.ndarray] = {}
        for c in self.pixel_categories:
            a = np.asarray(pixel[c])
            if a.ndim != 4 or a.shape[0] != N:
                raise ValueError(f"pixel[{c!r}] must be (N={N}, k, sh, sw), got {a.shape}.")
            if a.size and (a.min() < 0 or a.max() >= L):
                raise ValueError(
                    f"pixel[{c!r}] holds label numbers outside 0..{L - 1} (label_names)."
                )
            nz = a.reshape(N, a.shape[1], -1).any(-1)
            if (np.diff(nz.astype(np.int8), axis=1) > 0).any():  # move non-empty layers first
                order = np.argsort(~nz, axis=1, kind="stable")
                a = np.take_along_axis(a, order[:, :, None, None], axis=1)
                nz = np.take_along_axis(nz, order, axis=1)
            self._pixel[c], self._nonzero[c] = a, nz
        self._scalar = {}
        for c in self.scalar_categories:
            a = np.asarray(scalar[c])
            if a.ndim == 0 or a.shape[0] != N:
                raise ValueError(f"scalar[{c!r}] must be (N={N},) or (N, m), got {a.shape}.")
            a = a.reshape(N, -1)
            if a.size and (a.min() < 0 or a.max() >= L):
                raise ValueError(
                    f"scalar[{c!r}] holds label numbers outside 0..{L - 1} (label_names)."
                )
            self._scalar[c] = a
        self._splits = list(splits) if splits is not None else ["train"] * N
        self.image_names = (
            list(image_names) if image_names is not None else [f"{i:06d}" for i in range(N)]
        )
        if len(self._splits) != N or len(self.image_names) != N:
            raise ValueError("splits and image_names need one entry per image.")
        self._layout(
            {c: int(self._nonzero[c].sum(1).max(initial=0)) for c in self.pixel_categories},
            {c: int((self._scalar[c] > 0).sum(1).max(initial=0)) for c in self.scalar_categories},
        )
        self.labels, self.category_info = self._statistics(list(label_names), label_categories)

    def _statistics(
        self, names: list[str], label_categories: Sequence[str | Sequence[str]]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        N, L = len(self), len(names)
        members = [
            [c] if isinstance(c, str) and c else ([] if isinstance(c, str) else list(c))
            for c in label_categories
        ]
        if len(members) != L:
            raise ValueError(
                f"label_categories needs {L} entries (one per label), got {len(members)}."
            )
        per_cat, freq_any, cov_total = {}, np.zeros((N, L), bool), np.zeros(L)
        cat_rows = []
        for c in self.categories:
            if c in self._pixel:
                a = self._pixel[c]
                flat = a.reshape(N, -1)
                counts = np.bincount(
                    (flat + np.arange(N)[:, None] * L).ravel(), minlength=N * L
                ).reshape(N, L)
                counts[:, 0] = 0
                cov = counts.sum(0) / float(a.shape[2] * a.shape[3])
            else:
                a = self._scalar[c]
                counts = np.zeros((N, L), np.int64)
                np.add.at(counts, (np.repeat(np.arange(N), a.shape[1]), a.ravel()), 1)
                counts[:, 0] = 0
                cov = (counts > 0).sum(0).astype(np.float64)
            present = counts > 0
            freq = present.sum(0)
            code = np.zeros(L, np.int64)
            nums = [n for n in range(1, L) if c in members[n]]
            code[nums] = np.arange(1, len(nums) + 1)
            per_cat[c] = (code, np.where(code > 0, freq, 0), np.where(code > 0, cov, 0.0))
            freq_any |= present
            cov_total += np.where(code > 0, cov, 0.0)
            cat_rows.append(
                {
                    "name": c,
                    "first": min(nums, default=0),
                    "last": max(nums, default=0),
                    "count": len(nums),
                    "frequency": int(present.any(1).sum()),
                }
            )
        fallback = [{c: 1 for c in m} for m in members]
        syns = [""] * L
        labels = _labels_frame(names, syns, freq_any.sum(0), cov_total, per_cat, fallback)
        labels.loc[0, "name"] = "-"
        info = pd.DataFrame(cat_rows).set_index("name") if cat_rows else pd.DataFrame()
        return labels, info

    def __len__(self) -> int:
        return len(self._images)

    def _image(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self._images[i]).float().div_(255.0)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a set of {len(self)} images")
        i = i % len(self)
        masks = {
            c: torch.from_numpy(self._pixel[c][i][self._nonzero[c][i]].astype(np.int64))
            for c in self.pixel_categories
        }
        scalars = {
            c: torch.from_numpy(self._scalar[c][i][self._scalar[c][i] > 0].astype(np.int64))
            for c in self.scalar_categories
        }
        return {
            "image": self._image(i),
            "masks": masks,
            "scalars": scalars,
            "split": self._splits[i],
        }

    def images_batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Only the images of ``indices`` as float32 (B, 3, H, W)."""
        idx = row_indices(indices, len(self)).numpy()
        return torch.from_numpy(self._images[idx]).float().div_(255.0)

    def segmentation_batch(
        self, indices: Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, stacked pixel-label layers and image-level labels of ``indices`` (see module
        doc)."""
        idx = row_indices(indices, len(self)).numpy()
        images = torch.from_numpy(self._images[idx]).float().div_(255.0)
        sh, sw = self.seg_shape
        pixel = np.zeros((len(idx), len(self.layer_categories), sh, sw), np.int64)
        for c in self.pixel_categories:
            o, k = self._layer_offset[c], self.layer_categories.count(c)
            pixel[:, o : o + k] = self._pixel[c][idx, :k]
        scal = np.zeros((len(idx), len(self.scalar_label_categories)), np.int64)
        for c in self.scalar_categories:
            o, k = self._scalar_offset[c], self.scalar_label_categories.count(c)
            a = self._scalar[c][idx]
            # non-zero entries first, keeping their order
            order = np.argsort(a <= 0, axis=1, kind="stable")
            scal[:, o : o + k] = np.take_along_axis(a, order, axis=1)[:, :k]
        return images, torch.from_numpy(pixel), torch.from_numpy(scal)


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------
def _png_labels(lab: np.ndarray) -> Image.Image:
    if lab.max(initial=0) >= 65536:
        raise ValueError("label numbers must be < 65536 to fit the R + 256 * G encoding.")
    rgb = np.zeros(lab.shape + (3,), np.uint8)
    rgb[..., 0] = lab % 256
    rgb[..., 1] = lab // 256
    return Image.fromarray(rgb, "RGB")


def _fmt(x: float) -> str:
    return repr(float(x))


def write_broden(
    root: str | os.PathLike, ds: InMemoryBroden, overwrite: bool = False, prefix: str = ""
) -> Path:
    """Write ``ds`` as a Broden directory at ``root`` (images as PNG); returns ``root``.

    Everything is written into a temporary sibling folder first and renamed into place, so
    ``root`` never holds a half-written dataset. ``overwrite=True`` replaces an existing ``root``
    only if it is a folder this function wrote (it holds the marker file ``.interpkit-broden``) with
    nothing else in it; any other file or folder there is refused with a ``FileExistsError``
    naming it, and left as it was.
    Empty layers are left out of index.csv, as in Broden; ``Broden(root)`` then returns exactly
    ``ds[i]`` and ``ds.labels``.
    """
    if not isinstance(ds, InMemoryBroden):
        hint = (
            " A Broden read from files is already on disk: copy its folder (shutil.copytree) "
            "instead."
            if isinstance(ds, Broden)
            else ""
        )
        raise TypeError(
            f"write_broden writes an InMemoryBroden (e.g. ConceptWorld.as_broden(n)), got "
            f"{type(ds).__name__}.{hint}"
        )
    root = Path(root).expanduser()
    if (root.exists() or root.is_symlink()) and not overwrite:
        raise FileExistsError(
            f"{root} already exists; pass overwrite=True or choose another folder."
        )
    if root.exists() or root.is_symlink():
        _check_replaceable(root)
    twice = sorted({n for n, k in Counter(ds.image_names).items() if k > 1})
    if twice:
        raise ValueError(
            f"image_names must be unique (each names a file), but {twice[:5]} occur more than once."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        _write_into(tmp, ds, prefix)
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
            os.replace(root, old / "d")
            try:
                os.replace(tmp, root)
            except BaseException:
                os.replace(old / "d", root)  # put the old copy back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _written_here(name: str) -> bool:
    """Whether a top-level entry of a dataset folder is one :func:`write_broden` writes."""
    return name in (MARKER, "index.csv", "label.csv", "category.csv", "images") or bool(
        re.fullmatch(r"c_.+\.csv", name)
    )


def _check_replaceable(root: Path) -> None:
    """Raise unless ``root`` is a Broden folder this library wrote (it holds :data:`MARKER`) and
    holds
    nothing else than what the writer writes: ``overwrite=True`` must never delete anything else."""
    if root.is_symlink() or not root.is_dir():
        raise FileExistsError(
            f"{root} exists and is not a folder written by write_broden (it is a "
            f"{'link' if root.is_symlink() else 'file'}); overwrite=True replaces only such "
            f"folders. "
            "Remove it yourself or choose another folder."
        )
    if not (root / MARKER).is_file():
        raise FileExistsError(
            f"{root} is not a Broden folder written by write_broden (it has no {MARKER} file); "
            "overwrite=True replaces only such folders, so nothing was deleted. Remove it "
            "yourself or choose another folder."
        )
    foreign = sorted(p.name for p in root.iterdir() if not _written_here(p.name))
    if foreign:
        raise FileExistsError(
            f"{root} holds files write_broden did not write ({', '.join(foreign[:5])}); "
            "overwrite=True would delete them, so nothing was changed. Move them out or "
            "choose another folder."
        )


def _write_into(tmp: Path, ds: InMemoryBroden, prefix: str) -> None:
    (tmp / MARKER).write_text(
        "written by interpkit.data.write_broden; overwrite=True may replace this folder\n",
        encoding="utf-8",
    )
    labels = ds.labels
    sh, sw = ds.seg_shape
    ih, iw = ds.image_shape
    (tmp / "images").mkdir()
    columns = (
        META_COLUMNS
        + [c for c in INDEX_COLUMNS[6:]]
        + [c for c in ds.categories if c not in INDEX_COLUMNS]
    )
    with open(tmp / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i in range(len(ds)):
            stem = prefix + ds.image_names[i]
            img_rel = f"{stem}.png"
            (tmp / "images" / img_rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(ds._images[i].transpose(1, 2, 0)), "RGB").save(
                tmp / "images" / img_rel, compress_level=1
            )
            cells = {c: "" for c in columns[6:]}
            for c in ds.pixel_categories:
                rels = []
                for q in np.flatnonzero(ds._nonzero[c][i]):
                    rel = f"{stem}_{c}.png" if q == 0 else f"{stem}_{c}_{q}.png"
                    _png_labels(ds._pixel[c][i, q].astype(np.int64)).save(
                        tmp / "images" / rel, compress_level=1
                    )
                    rels.append(rel)
                cells[c] = ";".join(rels)
            for c in ds.scalar_categories:
                v = ds._scalar[c][i]
                cells[c] = ";".join(str(int(x)) for x in v[v > 0])
            w.writerow([img_rel, ds._splits[i], ih, iw, sh, sw] + [cells[c] for c in columns[6:]])
    with open(tmp / "label.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for num in range(1, len(labels)):
            row = labels.iloc[num]
            cat_cell = ";".join(
                f"{c}({int(row[f'frequency_{c}'])})" for c in ds.categories if row[f"code_{c}"] > 0
            )
            w.writerow(
                [
                    num,
                    row["name"],
                    cat_cell,
                    int(row["frequency"]),
                    _fmt(row["coverage"]),
                    row["syns"],
                ]
            )
    with open(tmp / "category.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for c in ds.categories:
            r = ds.category_info.loc[c]
            w.writerow([c, int(r["first"]), int(r["last"]), int(r["count"]), int(r["frequency"])])
    for c in ds.categories:
        with open(tmp / f"c_{c}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            sel = labels[labels[f"code_{c}"] > 0].sort_values(f"code_{c}")
            for num, row in sel.iterrows():
                w.writerow(
                    [
                        int(row[f"code_{c}"]),
                        int(num),
                        row["name"],
                        int(row[f"frequency_{c}"]),
                        _fmt(row[f"coverage_{c}"]),
                    ]
                )
