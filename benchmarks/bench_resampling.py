"""Cost of the input-resampling analysis against a plain forward pass of the same copies.

For one MNIST test image and N = 50 copies, times (a) ``model(copies)`` under ``no_grad`` and
(b) ``interpkit.resampling.analyze`` over every conv layer, including making the copies, the
metrics and the tidy tables. The two are timed alternately in the same process, many times; the
ratio of their lower-quartile times is the headline (the lower quartile is robust to other jobs
on a shared CPU). The target is a ratio of at most 1.5. Prints a table and writes
``results/bench_resampling.json``.

    python benchmarks/bench_resampling.py [--reps 40] [--widths 0.25 0.5 1.0] [--device cpu]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd
import torch

import interpkit as ik
from interpkit import resampling as rs
from interpkit.io import atomic_write_json

TARGET_RATIO = 1.5


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench(width: float, image: torch.Tensor, n: int, reps: int, dev: torch.device) -> dict:
    ik.models.seed_everything(0)
    model = ik.models.vgg8(10, 1, width=width).to(dev).eval()
    layers = ik.models.conv_layer_names(model)
    copies = rs.perturb(image, n, 0.1, seed=0).to(dev)
    x = image.to(dev)

    @torch.no_grad()
    def plain():
        model(copies)

    def analysis():
        res = rs.analyze(model, x, layers, n=n, sigma=0.1, device=dev)
        res.scores  # the tidy table is part of the cost

    for _ in range(3):  # warm up both
        plain(); analysis()
    t_plain, t_analysis = [], []
    for _ in range(reps):
        for f, out in ((plain, t_plain), (analysis, t_analysis)):
            _sync(dev)
            t0 = time.perf_counter()
            f()
            _sync(dev)
            out.append(time.perf_counter() - t0)
    q = lambda v: float(np.quantile(v, 0.25))  # noqa: E731
    return {"width": width, "channels": sum(model.features[i][0].out_channels for i in range(8)),
            "plain_ms": 1e3 * q(t_plain), "analysis_ms": 1e3 * q(t_analysis),
            "ratio": q(t_analysis) / q(t_plain),
            "ratio_median": float(np.median(t_analysis) / np.median(t_plain)),
            "ratio_min": float(min(t_analysis) / min(t_plain))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = ik.resolve_device(args.device)
    image = ik.data.mnist5k().resized(32).images[0]
    rows = [bench(w, image, args.n, args.reps, dev) for w in args.widths]
    df = pd.DataFrame(rows)
    print(f"input resampling, N = {args.n} copies of one 1x32x32 image, all 8 conv blocks of VGG8, "
          f"{dev}, {torch.get_num_threads()} threads, lower-quartile of {args.reps} alternating runs")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    ok = bool((df["ratio"] <= TARGET_RATIO).all())
    print(f"target: analysis <= {TARGET_RATIO}x plain forward -> {'met' if ok else 'NOT met'}")
    path = atomic_write_json(ik.nb.results_dir() / "bench_resampling.json", {
        "benchmark": "resampling", "n_copies": args.n, "device": str(dev), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "reps": args.reps,
        "target_ratio": TARGET_RATIO, "target_met": ok, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
