"""Speed of the concept world generator and of the Broden reader.

Generation: images with all masks and landmarks per second at 64x64 and 224x224, against a
baseline measured in the same run: drawing the same number of uniform-noise images of the same
shape with the same per-image seeded generators and allocating the four int64 masks (i.e. the
cost of "random arrays of that size"). Ratio = world time / baseline time (how many times the
bare array cost the full scene rendering takes).

Reader: a world export is read back through ``Broden.segmentation_batch`` (images + all mask
layers + scene labels, batches of 64) and through ``world.as_broden`` in memory; the baseline is
plain PIL decoding of the same PNG files. Ratio = reader time / decode time (1.0 = no overhead).

Wall times are best-of runs; ``cpu s`` is the process CPU time of that run (on a busy shared
machine it approximates the wall time on a quiet one, as generation is single-threaded).
Writes ``results/bench_concept_world.json``.

Usage: python benchmarks/bench_concept_world.py [--n64 10000] [--n224 300] [--nbroden 1000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interpkit.data.broden import Broden  # noqa: E402
from interpkit.data.world import ConceptWorld  # noqa: E402
from interpkit.io import atomic_write_json  # noqa: E402

CPU: dict[str, float] = {}


def timed(fn, repeats: int = 1, key: str | None = None) -> float:
    """Best wall time of ``repeats`` runs; the CPU time of that run is kept in ``CPU[key]``."""
    best = float("inf")
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best = wall
            if key:
                CPU[key] = cpu
    return best


def baseline_arrays(n: int, size: int) -> None:
    imgs = np.empty((n, 3, size, size), np.float32)
    masks = np.zeros((4, n, size, size), np.int64)
    for i in range(n):
        imgs[i] = np.random.default_rng([0, i]).random((3, size, size), dtype=np.float32)
    masks[:, :, 0, 0] = 1


def decode_all(root: Path) -> None:
    for p in sorted((root / "images").rglob("*.png")):
        with Image.open(p) as im:
            np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n64", type=int, default=10000, help="images generated at 64x64")
    ap.add_argument("--n224", type=int, default=300, help="images generated at 224x224")
    ap.add_argument(
        "--nbroden", type=int, default=1000, help="images exported and read back (64x64)"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.n64, args.n224, args.nbroden = 500, 30, 100

    rows = []
    for size, n in ((64, args.n64), (224, args.n224)):
        world = ConceptWorld(size=size, seed=0)
        world.generate(2)  # warm caches (backgrounds)
        t_world = timed(lambda: world.generate(n), key=f"gen{size}")
        t_base = timed(lambda: baseline_arrays(n, size))
        rows.append(
            {
                "task": f"generate {size}x{size}",
                "n": n,
                "seconds": t_world,
                "per_s": n / t_world,
                "cpu_seconds": CPU[f"gen{size}"],
                "baseline": "seeded uniform arrays + mask alloc",
                "baseline_s": t_base,
                "ratio": t_world / t_base,
            }
        )

    world = ConceptWorld(size=64, seed=0)
    nb = args.nbroden
    with tempfile.TemporaryDirectory() as d:
        t_export = timed(lambda: world.to_broden(Path(d) / "b", nb, overwrite=True))
        root = Path(d) / "b"
        ds = Broden(root)
        t_open = timed(lambda: Broden(root))

        def read_all() -> None:
            for s in range(0, len(ds), 64):
                ds.segmentation_batch(range(s, min(s + 64, len(ds))))

        t_read = timed(read_all, 2, key="read")
        t_decode = timed(lambda: decode_all(root), 2)
        n_files = sum(1 for _ in (root / "images").rglob("*.png"))
    rows.append(
        {
            "task": "export to Broden (64x64)",
            "n": nb,
            "seconds": t_export,
            "per_s": nb / t_export,
            "baseline": "",
            "baseline_s": float("nan"),
            "ratio": float("nan"),
        }
    )
    rows.append(
        {
            "task": "Broden open (parse CSVs)",
            "n": nb,
            "seconds": t_open,
            "per_s": nb / t_open,
            "baseline": "",
            "baseline_s": float("nan"),
            "ratio": float("nan"),
        }
    )
    rows.append(
        {
            "task": "Broden segmentation_batch",
            "n": nb,
            "seconds": t_read,
            "per_s": nb / t_read,
            "cpu_seconds": CPU["read"],
            "baseline": f"PIL decode of the {n_files} PNGs",
            "baseline_s": t_decode,
            "ratio": t_read / t_decode,
        }
    )
    mem = world.as_broden(nb)
    t_mem = timed(
        lambda: [mem.segmentation_batch(range(s, min(s + 64, nb))) for s in range(0, nb, 64)], 2
    )
    t_build = timed(lambda: world.as_broden(nb))
    rows.append(
        {
            "task": "as_broden build (in memory)",
            "n": nb,
            "seconds": t_build,
            "per_s": nb / t_build,
            "baseline": "",
            "baseline_s": float("nan"),
            "ratio": float("nan"),
        }
    )
    rows.append(
        {
            "task": "as_broden segmentation_batch",
            "n": nb,
            "seconds": t_mem,
            "per_s": nb / t_mem,
            "baseline": f"PIL decode of the {n_files} PNGs",
            "baseline_s": t_decode,
            "ratio": t_mem / t_decode,
        }
    )

    print(
        f"{'task':32s} {'n':>6s} {'seconds':>8s} {'cpu s':>7s} {'img/s':>9s} {'baseline s':>10s} "
        f"{'ratio':>7s}  baseline"
    )
    for r in rows:
        r.setdefault("cpu_seconds", float("nan"))
        print(
            f"{r['task']:32s} {r['n']:6d} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} {r['per_s']:9.0f} "
            f"{r['baseline_s']:10.2f} {r['ratio']:7.2f}  {r['baseline']}"
        )
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    out = Path(__file__).resolve().parents[1] / "results" / "bench_concept_world.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out,
        {
            "rows": rows,
            "quick": args.quick,
            "cpu_count": os.cpu_count(),
            "load_average_1min": load,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
