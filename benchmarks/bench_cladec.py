"""ClaDec training throughput: decoder training (images/s) against the classifier's own training
throughput on the same images, as a ratio measured in the same process.

Rows: the classifier (VGG8, Adam, cross-entropy, ``interpkit.models.train``), then ClaDec at an
early and the last block (alpha 0: activations precomputed, only the decoder trains), ClaDec with
alpha 0.1 (the frozen classifier also runs forward and backward on every reconstruction) and the
RefAE (a fresh encoder up to the layer trains with the decoder). Every run is uncached, one epoch;
the interleaved repeats keep the best (the machine may be shared), and CPU time is recorded next
to wall time. Ratio > 1: the decoder trains faster per image than the classifier.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import interpkit as ik
from interpkit import cladec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument(
        "--width", type=float, default=0.25, help="VGG8 channel multiplier (notebook: 0.25)"
    )
    ap.add_argument(
        "--decoder-width",
        type=float,
        default=0.25,
        help="decoder channel multiplier (notebook: 0.25)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    dev = ik.resolve_device(args.device)
    data = ik.data.mnist5k().resized(32).subset(range(args.images))
    torch.manual_seed(0)
    clf = ik.models.vgg8(10, 1, width=args.width)
    init = {k: v.clone() for k, v in clf.state_dict().items()}
    frozen = ik.models.freeze(ik.models.vgg8(10, 1, width=args.width)).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def classifier_run():
        clf.load_state_dict(init)
        ik.models.train(
            clf, data, epochs=1, lr=1e-3, batch_size=128, cache=False, progress=False, device=dev
        )

    kw = dict(epochs=1, width=args.decoder_width, cache=False, progress=False, device=dev)
    runs = {
        "classifier (VGG8)": classifier_run,
        "ClaDec features.1, alpha 0": lambda: cladec.train_cladec(frozen, "features.1", data, **kw),
        "ClaDec features.7, alpha 0": lambda: cladec.train_cladec(frozen, "features.7", data, **kw),
        "ClaDec features.3, alpha 0.1": lambda: cladec.train_cladec(
            frozen, "features.3", data, alpha=0.1, **kw
        ),
        "RefAE features.3": lambda: cladec.train_refae(frozen, "features.3", data, **kw),
    }
    best: dict[str, tuple[float, float]] = {}
    for fn in runs.values():  # warm-up (first-call allocations, thread pools)
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            sync()
            w, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            w, c = time.perf_counter() - w, time.process_time() - c
            if name not in best or w < best[name][0]:
                best[name] = (w, c)
    base_rate = args.images / best["classifier (VGG8)"][0]
    rows = []
    print(f"{'run':<30} {'wall s':>8} {'cpu s':>8} {'images/s':>9} {'ratio':>7}")
    for name, (w, c) in best.items():
        rate = args.images / w
        rows.append(
            {
                "run": name,
                "wall_s": w,
                "cpu_s": c,
                "images_per_s": rate,
                "ratio_to_classifier": rate / base_rate,
            }
        )
        print(f"{name:<30} {w:8.2f} {c:8.2f} {rate:9.0f} {rate / base_rate:7.2f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "device": str(dev),
        "images": args.images,
        "width": args.width,
        "decoder_width": args.decoder_width,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": load,
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
        "ratio_cladec_last_layer": next(
            r["ratio_to_classifier"] for r in rows if "features.7" in r["run"]
        ),
    }
    print(f"(device {dev}, {torch.get_num_threads()} torch threads, 1-min load average {load})")
    ik.io.atomic_write_json(ik.nb.results_dir() / "bench_cladec.json", result)


if __name__ == "__main__":
    main()
