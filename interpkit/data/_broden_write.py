"""Writing an in-memory Broden set as a Broden folder, atomically (internal)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ._broden_common import INDEX_COLUMNS, MARKER, META_COLUMNS
from ._broden_memory import InMemoryBroden


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
        from .broden import Broden  # the reader imports this module

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
