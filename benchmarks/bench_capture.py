"""Capture overhead: a ResNet-18 forward pass over 256 images with and without recording four layers.

Reported as a ratio (capture time / plain time) measured in the same process; target < 1.10.
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_seconds

import interpkit as ik


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    dev = ik.resolve_device(args.device)
    model = ik.models.torchvision_model("resnet18", num_classes=10).to(dev).eval()
    x = torch.rand(args.images, 3, args.size, args.size, device=dev)
    layers = ["layer1", "layer2", "layer3", "layer4"]

    @torch.no_grad()
    def plain():
        model(x)

    @torch.no_grad()
    def captured():
        with ik.capture(model, layers):
            model(x)

    t_plain, t_cap = [], []
    for _ in range(3):  # interleave to cancel drift from other load on the machine
        t_plain.append(median_seconds(plain, args.repeats))
        t_cap.append(median_seconds(captured, args.repeats))
    tp, tc = min(t_plain), min(t_cap)
    result = {
        "device": str(dev),
        "images": args.images,
        "size": args.size,
        "plain_s": tp,
        "capture_s": tc,
        "ratio": tc / tp,
        "target": 1.10,
    }
    print(f"{'device':>8} {'plain s':>9} {'capture s':>10} {'ratio':>7}")
    print(f"{str(dev):>8} {tp:9.3f} {tc:10.3f} {tc / tp:7.3f}   (target < 1.10)")
    ik.io.atomic_write_json(ik.nb.results_dir() / "bench_capture.json", result)


if __name__ == "__main__":
    main()
