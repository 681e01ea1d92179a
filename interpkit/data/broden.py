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

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..checks import row_indices
from . import _label_cache
from ._broden_common import (
    _CAT_CELL,
    INDEX_COLUMNS,
    META_COLUMNS,
    _BrodenBase,
    _float_or_zero,
    _int_or_zero,
    _labels_frame,
    _numeric_frame,
    _read_csv,
    _resize_image,
    _resize_nearest,
    half_resolution,
)
from ._broden_memory import InMemoryBroden
from ._broden_write import _png_labels, write_broden

__all__ = ["Broden", "InMemoryBroden", "write_broden", "half_resolution", "INDEX_COLUMNS"]
_REEXPORTED = (META_COLUMNS, _png_labels)


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

        self._read_labels(cats)
        cells, has_png = self._read_index(rows, index_path, cats, split)
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

    def _read_labels(self, cats: list[str]) -> None:
        """label.csv and c_<cat>.csv -> ``self.labels`` and ``self._known``."""
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

    def _read_index(
        self, rows: list[dict], index_path: Path, cats: list[str], split: str | None
    ) -> tuple[dict, dict[str, bool]]:
        """index.csv rows -> ``self._rows``; returns the parsed cells per category and
        which categories hold a PNG."""
        known, label_path = self._known, self.root / "label.csv"
        L = len(known)
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
        return cells, has_png

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
