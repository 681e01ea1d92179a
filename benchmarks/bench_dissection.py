"""Benchmark of ``interpkit.dissection`` (speed and memory as ratios measured in one run; not a test).

Setting: concept-world probe set (``ConceptWorld(size=224).as_broden(n)``: 224 x 224 images, masks at
112 x 112), a randomly initialised ``vgg8(width=0.5, image_size=224)`` and its layer ``features.6``
(256 units, 14 x 14 maps). A random network is the harder case for the tally: its top-0.5% cells are
spread over many more (image, unit) maps than a trained network's.

Times are wall-clock (the targets) and process CPU time (less sensitive to other load on a shared
machine). (a) total ``dissect(model, ds, layer)`` time / time of the forward passes alone (the ``model(x)`` calls
    only, full network, same batches; data loading is not counted in the baseline but is in the total);
    also against the forward passes up to the layer;
(b) the tally on precomputed activations and given thresholds vs the project's own reference
    loop (a correctness check, NOT a calibrated NetDissect-Lite baseline: it decodes images and
    upsamples twice per unit, about 4.5x slower per image than Lite itself (issue 23); the
    calibrated comparison is ``bench_lite.py``), written like NetDissect-Lite's ``tally_job`` (a Python loop over images and units: per unit, a max check, a
    bilinear upsampling of the map, ``argwhere``, ``bincount``); the counts and IoUs must be identical;
(c) peak resident memory (``ru_maxrss``) of fresh subprocesses that dissect N and 4N images read from
    a Broden directory on disk (model source: activations spooled to a temporary file).

Run ``python benchmarks/bench_dissection.py`` (about 15 minutes on 2 shared CPU cores) or ``--quick``.
Prints a table and writes ``results/bench_dissection.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import interpkit as ik  # noqa: E402
from interpkit import dissection as nd  # noqa: E402
from interpkit.io import atomic_write_json  # noqa: E402

LAYER = "features.6"


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return ik.models.vgg8(num_classes=10, in_channels=3, width=0.5, image_size=224).eval()


class Slice:
    """Images ``start .. stop - 1`` of a Broden-style dataset, with the same interface."""

    def __init__(self, ds, start: int, stop: int) -> None:
        self.ds, self.start, self.stop = ds, start, stop
        self.labels, self.categories = ds.labels, ds.categories
        self.seg_shape, self.image_shape = ds.seg_shape, ds.image_shape

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict:
        return self.ds[self.start + i]

    def segmentation_batch(self, indices):
        return self.ds.segmentation_batch([self.start + int(i) for i in indices])


def iou_from_counts(
    inter: np.ndarray, act_cat: np.ndarray, label_px: np.ndarray, ds, eps: float | None = None
) -> np.ndarray:
    """IoU from summed counts: 0 where the union is empty, or NetDissect-Lite's ``/(union + eps)``."""
    cats = list(ds.categories)
    prim = np.array([cats.index(c) if c in cats else -1 for c in ds.labels["category"]])
    act_lab = np.where(prim[None] >= 0, act_cat[:, np.clip(prim, 0, None)], 0)
    den = act_lab + label_px[None] - inter
    iou = (
        inter / (den + eps)
        if eps
        else np.divide(inter, den, out=np.zeros(den.shape), where=den > 0)
    )
    iou[:, 0] = 0
    return iou


# ----------------------------------------------------------------------------------------------
# reference: NetDissect-Lite's tally, image by image and unit by unit
# ----------------------------------------------------------------------------------------------
def reference_tally(acts: np.ndarray, ds, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    cats = list(ds.categories)
    L = len(ds.labels)
    prim = np.array([cats.index(c) if c in cats else -1 for c in ds.labels["category"]])
    labelcat = np.zeros((L, len(cats)))
    labelcat[np.arange(1, L), prim[1:]] = 1
    U = acts.shape[1]
    sh, sw = ds.seg_shape
    both = np.zeros((U, L), np.int64)
    units_cat = np.zeros((U, len(cats)), np.int64)
    units = np.zeros(U, np.int64)
    labels = np.zeros(L, np.int64)
    for i in range(len(ds)):
        item = ds[i]
        pixels = (
            np.concatenate([m.numpy() for m in item["masks"].values()])
            if item["masks"]
            else np.zeros((0, sh, sw), np.int64)
        )
        scalars = [int(s) for v in item["scalars"].values() for s in v if int(s) > 0]
        for s in scalars:
            labels[s] += sh * sw
        if len(pixels):
            tl = np.bincount(pixels.ravel())
            tl[0] = 0
            labels[: len(tl)] += tl
        for u in range(U):
            fmap = acts[i, u]
            if fmap.max() > thresholds[u]:
                up, hit = (
                    F.interpolate(
                        torch.from_numpy(z)[None, None],
                        size=(sh, sw),
                        mode="bilinear",
                        align_corners=False,
                    )[0, 0].numpy()
                    for z in (fmap, (fmap > thresholds[u]).astype(np.float32))
                )
                idx = np.argwhere(
                    (up > thresholds[u]) & (hit > 0)
                )  # only pixels with a source cell above T
                units[u] += len(idx)
                tally_cat = np.zeros(len(cats))
                if len(pixels):
                    bt = np.bincount(pixels[:, idx[:, 0], idx[:, 1]].ravel())
                    if len(bt):
                        bt[0] = 0
                    tally_cat = bt @ labelcat[: len(bt)]
                    both[u, : len(bt)] += bt
                for s in scalars:
                    tally_cat = tally_cat + labelcat[s]
                    both[u, s] += len(idx)
                units_cat[u] += len(idx) * (tally_cat > 0)
    return {
        "intersection": both,
        "activation": units_cat,
        "unit_pixels": units,
        "label_pixels": labels,
    }


# ----------------------------------------------------------------------------------------------
# memory child
# ----------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM (Linux; reset by exec, unlike ru_maxrss, which a
    child started by a large parent inherits), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(root: str, batch_size: int) -> None:
    import tracemalloc

    tracemalloc.start()
    ds = ik.data.Broden(root)
    model = make_model()
    base_rss = peak_rss_mb()
    t = time.perf_counter()
    r = nd.dissect(model, ds, LAYER, batch_size=batch_size, device="cpu", progress=False)
    secs = time.perf_counter() - t
    _, py_peak = tracemalloc.get_traced_memory()
    print(
        json.dumps(
            {
                "n": len(ds),
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_dissect_mb": base_rss,
                "tracemalloc_peak_mb": py_peak / 2**20,
                "seconds": secs,
                "detectors": r.num_detectors(),
                "threshold_method": r.threshold_method,
            }
        )
    )


def run_child(root: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child-memory",
        str(root),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    p.add_argument(
        "--n", type=int, default=None, help="probe images for (a) and (b) (default 2000)"
    )
    p.add_argument(
        "--mem-n", type=int, default=None, help="N for (c); 4N is also run (default 500)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine one thread is fastest)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=str(ROOT / "results" / "bench_dissection.json"))
    p.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_memory:
        memory_child(args.child_memory, args.batch_size)
        return
    n = args.n or (200 if args.quick else 2000)
    mem_n = args.mem_n or (25 if args.quick else 500)
    bs = args.batch_size
    world = ik.data.ConceptWorld(size=224, seed=0)
    # (c), first (before this process grows): memory at N and 4N images read from disk, in fresh processes
    with tempfile.TemporaryDirectory(prefix="bench-dissect-") as tmp:
        rows = []
        for k in (mem_n, 4 * mem_n):
            root = world.to_broden(Path(tmp) / f"broden{k}", k)
            rows.append(run_child(root, args))
    peak_ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    grow = [r["peak_rss_mb"] - r["rss_before_dissect_mb"] for r in rows]
    print(
        f"(c) peak RSS {rows[0]['peak_rss_mb']:.0f} MB at {mem_n} images, {rows[1]['peak_rss_mb']:.0f} MB at "
        f"{4 * mem_n}"
    )

    t = time.perf_counter()
    ds = world.as_broden(n)
    t_data = time.perf_counter() - t
    model = make_model()
    print(
        f"probe set: {n} images {ds.image_shape}, masks {ds.seg_shape}, {len(ds.labels) - 1} labels "
        f"(built in {t_data:.0f} s); model vgg8(width=0.5) layer {LAYER}; threads {args.threads}"
    )

    # (a) forward passes alone, full network and up to the layer (only the model calls are timed)
    t_full = t_layer = c_full = c_layer = 0.0
    acts = None
    with torch.inference_mode():
        for s in range(0, n, bs):
            x = ds.segmentation_batch(list(range(s, min(s + bs, n))))[0]
            t, c = time.perf_counter(), time.process_time()
            model(x)
            t_full += time.perf_counter() - t
            c_full += time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            with ik.capture(model, [LAYER], stop=True, clone=False) as a:
                model(x)
            t_layer += time.perf_counter() - t
            c_layer += time.process_time() - c
            if acts is None:
                acts = np.empty((n, *a[LAYER].shape[1:]), np.float32)
            acts[s : s + len(x)] = a[LAYER].numpy()
    t, c = time.perf_counter(), time.process_time()
    res = nd.dissect(model, ds, LAYER, batch_size=bs, device="cpu", progress=False)
    t_dissect, c_dissect = time.perf_counter() - t, time.process_time() - c
    print(
        f"(a) forward full {t_full:.1f} s, to layer {t_layer:.1f} s, dissect total {t_dissect:.1f} s"
    )

    # (b) tally on precomputed activations vs the NetDissect-Lite style loop. The two alternate over
    # blocks of images, so that a change in the machine's load hits both alike; counts are summed.
    thr = res.thresholds
    nd.dissect(acts[:bs], Slice(ds, 0, bs), thresholds=thr, device="cpu", progress=False)  # warm-up
    keys = ("intersection", "activation", "unit_pixels", "label_pixels")
    fast_tot = {k: 0 for k in keys}
    ref_tot = {k: 0 for k in keys}
    t_fast = t_ref = c_fast = c_ref = 0.0
    block = max(bs, n // 8)
    for a in range(0, n, block):
        b = min(a + block, n)
        view = Slice(ds, a, b)
        t, c = time.perf_counter(), time.process_time()
        r = nd.dissect(acts[a:b], view, thresholds=thr, batch_size=bs, device="cpu", progress=False)
        t_fast += time.perf_counter() - t
        c_fast += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        rr = reference_tally(acts[a:b], view, thr)
        t_ref += time.perf_counter() - t
        c_ref += time.process_time() - c
        for k in keys:
            fast_tot[k] = fast_tot[k] + getattr(r, k)
            ref_tot[k] = ref_tot[k] + rr[k]
    same = {k: bool(np.array_equal(fast_tot[k], ref_tot[k])) for k in keys}
    fast_iou = iou_from_counts(
        fast_tot["intersection"], fast_tot["activation"], fast_tot["label_pixels"], ds
    )
    ref_iou = iou_from_counts(
        ref_tot["intersection"], ref_tot["activation"], ref_tot["label_pixels"], ds
    )
    same["iou"] = bool(np.array_equal(fast_iou, ref_iou))
    same["iou_vs_whole_set_result"] = bool(np.array_equal(fast_iou, res.iou))
    lite = iou_from_counts(
        ref_tot["intersection"], ref_tot["activation"], ref_tot["label_pixels"], ds, eps=1e-10
    )
    lite_diff = float(np.abs(fast_iou - lite).max())
    t = time.perf_counter()
    thr_exact = nd.quantile_thresholds(acts, nd.QUANTILE, device="cpu")
    t_thr = time.perf_counter() - t
    same["thresholds_model_vs_array"] = bool(np.array_equal(thr, thr_exact))
    np_thr = np.quantile(
        acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1).astype(np.float64),
        1 - nd.QUANTILE,
        axis=1,
    )
    print(
        f"(b) fast tally {t_fast:.1f} s, reference {t_ref:.1f} s (alternating blocks of {block}), identical: {same}"
    )

    out = {
        "setting": {
            "images": n,
            "image_shape": list(ds.image_shape),
            "seg_shape": list(ds.seg_shape),
            "labels": len(ds.labels) - 1,
            "model": "vgg8(width=0.5, image_size=224), random init",
            "layer": LAYER,
            "units": int(acts.shape[1]),
            "map": list(acts.shape[2:]),
            "threads": args.threads,
            "batch_size": bs,
            "quick": args.quick,
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
        },
        "a_cpu_s": {
            "forward_full": c_full,
            "forward_to_layer": c_layer,
            "dissect_total": c_dissect,
        },
        "a_ratio_vs_full_forward_cpu_time": c_dissect / c_full,
        "b_cpu_s": {"fast": c_fast, "reference": c_ref},
        "b_speedup_cpu_time": c_ref / c_fast,
        "a_forward_full_s": t_full,
        "a_forward_to_layer_s": t_layer,
        "a_dissect_total_s": t_dissect,
        "a_ratio_vs_full_forward": t_dissect / t_full,
        "a_ratio_vs_forward_to_layer": t_dissect / t_layer,
        "a_target": 2.0,
        "b_fast_tally_s": t_fast,
        "b_reference_tally_s": t_ref,
        "b_speedup": t_ref / t_fast,
        "b_target": 10.0,
        "b_identical": same,
        "b_max_abs_iou_diff_vs_netdissect_lite_formula": lite_diff,
        "b_threshold_pass_s": t_thr,
        "b_thresholds_vs_numpy_quantile_max_abs_err": float(np.max(np.abs(thr_exact - np_thr))),
        "c_runs": rows,
        "c_peak_rss_ratio_4n_vs_n": peak_ratio,
        "c_growth_over_process_baseline_mb": grow,
        "c_target": 1.2,
        "detectors": res.num_detectors(),
        "unique_detectors": res.unique_detectors(),
    }
    atomic_write_json(args.out, out)
    table = [
        (
            "(a) dissect total / forward passes (full net)",
            f"{out['a_ratio_vs_full_forward']:.2f}",
            "<= 2",
        ),
        (
            "(a) dissect total / forward passes (to layer)",
            f"{out['a_ratio_vs_forward_to_layer']:.2f}",
            "(info)",
        ),
        ("(a) same, process CPU time", f"{out['a_ratio_vs_full_forward_cpu_time']:.2f}", "(info)"),
        (
            "(b) speed-up vs own re-implementation (NOT calibrated Lite; see bench_lite.py)",
            f"{out['b_speedup']:.1f}x",
            ">= 10x",
        ),
        ("(b) same, process CPU time", f"{out['b_speedup_cpu_time']:.1f}x", "(info)"),
        ("(b) identical counts and IoU", str(all(same.values())), "True"),
        (f"(c) peak RSS {4 * mem_n} / {mem_n} images", f"{peak_ratio:.3f}", "<= 1.2"),
    ]
    print()
    print(f"{'measure':50s} {'value':>10s} {'target':>8s}")
    for name, val, tgt in table:
        print(f"{name:50s} {val:>10s} {tgt:>8s}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
